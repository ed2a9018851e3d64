// The agent's SDS server: Envoy's SecretDiscoveryService (state of the world) on a Unix socket that only the
// workload's own Envoy can reach, serving the workload certificate with its key (`mcpmesh.identity`) and the
// roots the xDS channel trusts (`mcpmesh.bootstrap-trust`). A renewal is pushed as a new version of the same
// secret: Envoy uses it for new handshakes and keeps open connections (TLS checks certificates only there).
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import {
  identitySecret,
  SECRET_TYPE,
  SECRET_TYPE_URL,
  trustBundleSecret,
  workloadSecretName,
} from '../../control-plane/src/identity/sds.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import type { Log } from './envoy.ts';
import type { Held } from './identity.ts';

/** The roots the bootstrap's xDS cluster checks the control plane against (not the data plane's, which come over ADS). */
export const BOOTSTRAP_TRUST_SECRET = 'mcpmesh.bootstrap-trust';

const SERVICE = '/envoy.service.secret.v3.SecretDiscoveryService/';

interface DiscoveryRequest {
  version_info?: string;
  resource_names?: string[];
  response_nonce?: string;
  error_detail?: { message?: string } | null;
}

interface Stream {
  names: string[];
  lastVersion: string;
  call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>;
}

export class SdsServer {
  readonly socketPath: string;
  readonly #server = new grpc.Server();
  readonly #streams = new Set<Stream>();
  readonly #log: Log;
  #secrets = new Map<string, Buffer>();
  #nonce = 0;

  constructor(socketPath: string, log: Log) {
    this.socketPath = socketPath;
    this.#log = log;
    const req = lookupType('envoy.service.discovery.v3.DiscoveryRequest');
    const decode = (b: Buffer): DiscoveryRequest => req.toObject(req.decode(b), { arrays: true }) as DiscoveryRequest;
    const identity = (b: Buffer): Buffer => b;
    this.#server.addService(
      {
        StreamSecrets: {
          path: `${SERVICE}StreamSecrets`,
          requestStream: true,
          responseStream: true,
          requestSerialize: identity,
          requestDeserialize: decode,
          responseSerialize: identity,
          responseDeserialize: identity,
          originalName: 'streamSecrets',
        },
        FetchSecrets: {
          path: `${SERVICE}FetchSecrets`,
          requestStream: false,
          responseStream: false,
          requestSerialize: identity,
          requestDeserialize: decode,
          responseSerialize: identity,
          responseDeserialize: identity,
          originalName: 'fetchSecrets',
        },
      },
      {
        StreamSecrets: (call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>) => this.#stream(call),
        FetchSecrets: (call: grpc.ServerUnaryCall<DiscoveryRequest, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
          done(null, this.#response(call.request.resource_names ?? []).bytes);
        },
      },
    );
  }

  /** Listens on the Unix socket (replacing a stale one), owner-only. */
  async listen(): Promise<void> {
    mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o700 });
    rmSync(this.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.#server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Serves `held` from now on and pushes it to every stream that asked for it. */
  update(held: Held): void {
    const secret = lookupType(SECRET_TYPE);
    const encode = (body: object): Buffer => Buffer.from(secret.encode(secret.fromObject(body)).finish());
    this.#secrets = new Map([
      [
        workloadSecretName(),
        encode(identitySecret(workloadSecretName(), { certPem: held.certChainPem, chainPem: '', keyPem: held.keyPem })),
      ],
      [BOOTSTRAP_TRUST_SECRET, encode(trustBundleSecret(BOOTSTRAP_TRUST_SECRET, held.bundlePem))],
    ]);
    for (const s of this.#streams) this.#push(s);
  }

  async close(): Promise<void> {
    for (const s of this.#streams) s.call.end();
    await new Promise<void>((resolve) => this.#server.tryShutdown(() => resolve()));
    rmSync(this.socketPath, { force: true });
  }

  #version(names: readonly string[]): string {
    const h = createHash('sha256');
    for (const n of [...names].sort()) h.update(n).update(this.#secrets.get(n) ?? Buffer.alloc(0));
    return h.digest('base64url').slice(0, 16);
  }

  #response(names: readonly string[]): { version: string; bytes: Buffer } {
    const version = this.#version(names);
    this.#nonce += 1;
    const res = lookupType('envoy.service.discovery.v3.DiscoveryResponse');
    const resources = names
      .filter((n) => this.#secrets.has(n))
      .map((n) => ({ type_url: SECRET_TYPE_URL, value: this.#secrets.get(n) as Buffer }));
    const bytes = Buffer.from(
      res.encode(res.fromObject({ version_info: version, resources, type_url: SECRET_TYPE_URL, nonce: String(this.#nonce) })).finish(),
    );
    return { version, bytes };
  }

  #push(s: Stream): void {
    // Nothing to say until the agent holds a certificate: Envoy waits (the listener or cluster stays warming).
    if (!s.names.some((n) => this.#secrets.has(n))) return;
    const { version, bytes } = this.#response(s.names);
    if (version === s.lastVersion) return;
    s.lastVersion = version;
    s.call.write(bytes);
  }

  #stream(call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>): void {
    const s: Stream = { names: [], lastVersion: '', call };
    this.#streams.add(s);
    const drop = (): void => {
      this.#streams.delete(s);
    };
    call.on('data', (r: DiscoveryRequest) => {
      if (r.error_detail?.message) this.#log('error', 'envoy refused a secret', { names: r.resource_names, error: r.error_detail.message });
      const names = r.resource_names ?? [];
      if (names.join('\n') !== s.names.join('\n')) {
        s.names = names;
        s.lastVersion = '';
      }
      this.#push(s);
    });
    call.on('end', () => {
      drop();
      call.end();
    });
    call.on('error', drop);
    call.on('cancelled', drop);
  }
}
