// A local xDS relay for proxyless gRPC clients (grpc-js-xds and friends) in a secured mesh. Their xDS
// client can only dial its server in plain text (grpc-js-xds 1.14 knows the `insecure` and `google_default`
// channel credentials only), so the agent beside them serves ADS on loopback and carries every stream to the
// control plane over mTLS with the agent's workload certificate: the control plane sees that certificate,
// and derives the client's identity from it as for any proxy. Bytes pass through untouched (both SotW and
// delta). The data plane is mTLS too: the control plane sends such clients clusters whose TLS comes from
// gRPC's certificate providers, fed by the files the agent writes (`--identity-dir`).
import * as grpc from '@grpc/grpc-js';
import type { Log } from './envoy.ts';
import type { Held } from './identity.ts';

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';
const METHODS = ['StreamAggregatedResources', 'DeltaAggregatedResources'] as const;
const raw = (b: Buffer): Buffer => b;

export interface XdsRelayOptions {
  readonly controlPlane: { readonly host: string; readonly port: number };
  /** The agent's current certificate (undefined until it has one: streams are then refused as UNAVAILABLE). */
  readonly identity: () => Held | undefined;
  readonly log: Log;
}

export class XdsRelay {
  readonly #opts: XdsRelayOptions;
  readonly #server = new grpc.Server();
  readonly #streams = new Set<() => void>();
  #client: { fingerprint: string; client: grpc.Client } | undefined;

  constructor(opts: XdsRelayOptions) {
    this.#opts = opts;
    const definition: grpc.ServiceDefinition = Object.fromEntries(
      METHODS.map((m) => [
        m,
        {
          path: `${ADS}${m}`,
          requestStream: true,
          responseStream: true,
          requestSerialize: raw,
          requestDeserialize: raw,
          responseSerialize: raw,
          responseDeserialize: raw,
        },
      ]),
    );
    const handlers: grpc.UntypedServiceImplementation = Object.fromEntries(
      METHODS.map((m) => [m, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.#relay(m, call)]),
    );
    this.#server.addService(definition, handlers);
  }

  /** Listens on `address` (`127.0.0.1:15010`, `unix:/path`): plain, so keep it on loopback or a local socket. */
  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
    });
  }

  async close(): Promise<void> {
    for (const end of this.#streams) end();
    this.#client?.client.close();
    await new Promise<void>((resolve) => this.#server.tryShutdown(() => resolve()));
  }

  /** One upstream channel per certificate: a renewal opens the next streams with the new one, old ones go on. */
  #upstream(held: Held): grpc.Client {
    const fingerprint = held.certChainPem;
    if (this.#client?.fingerprint === fingerprint) return this.#client.client;
    const previous = this.#client?.client;
    const creds = grpc.credentials.createSsl(Buffer.from(held.bundlePem), Buffer.from(held.keyPem), Buffer.from(held.certChainPem), {
      checkServerIdentity: (_host, cert) =>
        cert.subjectaltname?.split(', ').includes(`URI:${held.controlPlaneId}`)
          ? undefined
          : new Error(`the control plane presented ${cert.subjectaltname ?? 'no SAN'}, not ${held.controlPlaneId}`),
    });
    const client = new grpc.Client(`${this.#opts.controlPlane.host}:${this.#opts.controlPlane.port}`, creds);
    this.#client = { fingerprint, client };
    // Streams on the old channel keep it alive; close it once they are gone (grpc closes after the last call).
    previous?.close();
    return client;
  }

  #relay(method: (typeof METHODS)[number], down: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    const held = this.#opts.identity();
    if (!held) {
      down.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the local agent has no workload certificate yet' });
      return;
    }
    const up = this.#upstream(held).makeBidiStreamRequest(`${ADS}${method}`, raw, raw);
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      this.#streams.delete(end);
      up.cancel();
      down.end();
    };
    this.#streams.add(end);
    down.on('data', (b: Buffer) => up.write(b));
    down.on('end', () => up.end());
    down.on('cancelled', end);
    down.on('error', end);
    up.on('data', (b: Buffer) => down.write(b));
    up.on('error', (err: grpc.ServiceError) => {
      if (done) return;
      done = true;
      this.#streams.delete(end);
      this.#opts.log('warn', 'xDS relay: the control plane ended a stream', { code: err.code, details: err.details });
      down.emit('error', { code: err.code, details: err.details });
    });
    up.on('end', end);
  }
}
