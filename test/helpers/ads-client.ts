// A raw ADS client for tests and benchmarks: speaks DiscoveryRequest/Response (SotW) and the delta
// variants with Envoy's own protos, so tests can send exactly what a proxy would, NACKs included.
import * as grpc from '@grpc/grpc-js';
import { lookupType, TYPE_URLS, type ResourceKind } from '../../control-plane/src/xds/proto.ts';

export type Msg = Record<string, unknown>;

const codec = (typeName: string) => {
  const t = lookupType(typeName);
  return {
    serialize: (m: Msg): Buffer => Buffer.from(t.encode(t.fromObject(m)).finish()),
    deserialize: (b: Buffer): Msg => t.toObject(t.decode(b), { longs: String, enums: String, arrays: true }) as Msg,
  };
};

const req = codec('envoy.service.discovery.v3.DiscoveryRequest');
const resp = codec('envoy.service.discovery.v3.DiscoveryResponse');
const dreq = codec('envoy.service.discovery.v3.DeltaDiscoveryRequest');
const dresp = codec('envoy.service.discovery.v3.DeltaDiscoveryResponse');

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';

export function node(id: string, metadata: Record<string, string | number>, locality?: { region: string; zone: string }): Msg {
  const fields = Object.fromEntries(
    Object.entries(metadata).map(([k, v]) => [k, typeof v === 'number' ? { numberValue: v } : { stringValue: v }]),
  );
  return { id, cluster: 'test', metadata: { fields }, ...(locality ? { locality } : {}) };
}

/** A stream whose responses queue up until a test takes them. */
export class AdsStream {
  private readonly queue: Msg[] = [];
  private waiters: Array<() => void> = [];
  readonly call: grpc.ClientDuplexStream<Msg, Msg>;
  error: grpc.ServiceError | undefined;
  ended = false;

  constructor(call: grpc.ClientDuplexStream<Msg, Msg>) {
    this.call = call;
    call.on('data', (m: Msg) => {
      this.queue.push(m);
      this.wake();
    });
    call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      this.wake();
    });
    call.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(m: Msg): void {
    this.call.write(m);
  }

  /** Next response of `kind` (others stay queued), or throws after `timeoutMs`. */
  async next(kind: ResourceKind, timeoutMs = 5000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.queue.findIndex((m) => m['type_url'] === TYPE_URLS[kind]);
      if (i >= 0) return this.queue.splice(i, 1)[0] as Msg;
      if (this.error) throw this.error;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${kind} response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves when the server closes the stream with an error. */
  async closedWithError(timeoutMs = 5000): Promise<grpc.ServiceError> {
    const deadline = Date.now() + timeoutMs;
    while (!this.error) {
      if (Date.now() > deadline) throw new Error('stream still open');
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.error;
  }

  pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.call.cancel();
  }
}

export class RawAdsClient {
  private readonly client: grpc.Client;

  constructor(
    address: string,
    options: grpc.ChannelOptions = {},
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    this.client = new grpc.Client(address, credentials, options);
  }

  /** StreamSecrets of an SDS server (an agent's, on its Unix socket): the same DiscoveryRequest/Response. */
  secrets(): AdsStream {
    return new AdsStream(
      this.client.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', req.serialize, resp.deserialize),
    );
  }

  sotw(): AdsStream {
    return new AdsStream(this.client.makeBidiStreamRequest(`${ADS}StreamAggregatedResources`, req.serialize, resp.deserialize));
  }

  delta(): AdsStream {
    return new AdsStream(this.client.makeBidiStreamRequest(`${ADS}DeltaAggregatedResources`, dreq.serialize, dresp.deserialize));
  }

  close(): void {
    this.client.close();
  }
}

/** Names of the resources in a SotW response, decoded from their Any bytes. */
export function resourceNames(m: Msg): string[] {
  const kind = (Object.keys(TYPE_URLS) as ResourceKind[]).find((k) => TYPE_URLS[k] === m['type_url']);
  if (!kind) throw new Error(`unknown type ${String(m['type_url'])}`);
  const t = lookupType(TYPE_URLS[kind]);
  return (m['resources'] as Array<{ value: Uint8Array }>).map((a) => {
    const decoded = t.toObject(t.decode(a.value)) as { name?: string; cluster_name?: string };
    return decoded.name ?? decoded.cluster_name ?? '';
  });
}

/** Decodes the resources of a SotW response. */
export function decodeResources(m: Msg): Msg[] {
  const t = lookupType(String(m['type_url']));
  return (m['resources'] as Array<{ value: Uint8Array }>).map(
    (a) => t.toObject(t.decode(a.value), { longs: String, enums: String, arrays: true }) as Msg,
  );
}
