// The workload's identity, held by its agent (the sidecar agent or the gateway agent) and nobody else: the
// agent makes the key pair here, sends the mesh CA a CSR, and hands the certificate to its Envoy over SDS on
// a local socket (sds-server.ts). The private key never leaves this process and the files it writes for
// proxyless gRPC clients (mode 0600).
//
// First certificate: the CSR carries a credential the control plane's attestors accept (a join token, a
// Kubernetes ServiceAccount token). Renewal, at half-life: the CSR for a new key travels over mTLS with the
// current certificate, which is the proof. The control plane is trusted through the trust bundle given to
// the agent, or pinned by the join token (its `cah`: the bundle is fetched, hashed and compared before the
// token is ever sent); its certificate must carry the control plane's SPIFFE ID.
import * as grpc from '@grpc/grpc-js';
import { createHash, webcrypto, KeyObject, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleHash, readJoinToken } from '../../control-plane/src/identity/join-token.ts';
import { controlPlaneId, peerSpiffeId } from '../../control-plane/src/identity/serving.ts';
import { parseSpiffeId } from '../../control-plane/src/identity/spiffe.ts';
import { x509 } from '../../control-plane/src/identity/x509.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import type { Log } from './envoy.ts';

const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const SERVICE = '/mcpmesh.identity.v1.Identity/';
const MAX_RETRY_MS = 60_000;

/** How the agent proves, the first time, which identity it may have. */
export type Credential =
  | { readonly type: 'join-token'; readonly token: string }
  | { readonly type: 'k8s-sat'; readonly token: () => string };

export interface WorkloadIdentityOptions {
  /** The identity to ask for. With a join token, the token's own `sub` when omitted. */
  readonly spiffeId?: string;
  readonly controlPlane: { readonly host: string; readonly port: number };
  readonly credential: Credential;
  /** PEM roots the control plane's certificate must chain to. Optional with a join token (it pins them). */
  readonly bundlePem?: string;
  /** Requested lifetime; the CA may cut it. */
  readonly ttlSeconds?: number;
  /** Where to write cert.pem, key.pem and bundle.pem for proxyless gRPC clients (file_watcher). Optional. */
  readonly dir?: string;
  /** Renew when this fraction of the lifetime is left (default 0.5). */
  readonly renewBelow?: number;
  readonly log: Log;
}

export interface Held {
  readonly spiffeId: string;
  /** Leaf then intermediates. */
  readonly certChainPem: string;
  /** PKCS#8 PEM: for the local SDS server and the proxyless files, never sent anywhere. */
  readonly keyPem: string;
  readonly bundlePem: string;
  readonly notAfter: Date;
  readonly controlPlaneId: string;
}

type Listener = (held: Held) => void;

interface SignResponse {
  cert_chain_pem: string;
  bundle_pem: string;
  not_after: number;
  control_plane_id: string;
}

function codec<T>(typeName: string): { ser: (v: T) => Buffer; de: (b: Buffer) => T } {
  const t = lookupType(typeName);
  return {
    ser: (v) => Buffer.from(t.encode(t.fromObject(v as object)).finish()),
    de: (b) => t.toObject(t.decode(b), { longs: Number, defaults: true }) as T,
  };
}

/** One unary call of the Identity service over `creds`. */
function call<Req, Res>(
  target: string,
  creds: grpc.ChannelCredentials,
  method: string,
  reqType: string,
  resType: string,
  req: Req,
  timeoutMs = 10_000,
): Promise<Res> {
  const reqC = codec<Req>(reqType);
  const resC = codec<Res>(resType);
  const client = new grpc.Client(target, creds);
  return new Promise<Res>((resolve, reject) => {
    client.makeUnaryRequest(
      `${SERVICE}${method}`,
      reqC.ser,
      resC.de,
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res as Res);
      },
    );
  });
}

/** Accepts the control plane's certificate only if it carries the control plane's SPIFFE ID. */
function checkControlPlane(expected: string): (host: string, cert: { subjectaltname?: string }) => Error | undefined {
  return (_host, cert) => {
    const id = peerSpiffeId(cert.subjectaltname);
    return id === expected ? undefined : new Error(`the control plane presented ${id ?? 'no SPIFFE ID'}, not ${expected}`);
  };
}

/** A fresh key pair and a CSR for it (the subject is informative only: the CA decides what it signs). */
export async function newKeyAndCsr(spiffeId: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'O=MCP Mesh',
    keys,
    signingAlgorithm: SIGN_ALG,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  return { keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString(), csrPem: csr.toString('pem') };
}

export class WorkloadIdentity {
  readonly spiffeId: string;
  readonly #o: WorkloadIdentityOptions;
  readonly #target: string;
  readonly #listeners = new Set<Listener>();
  #held: Held | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;
  /**
   * The key of the first certificate, kept across retries: a join token binds to the first key it is used
   * with, so a retry after a lost answer must ask for the same key again.
   */
  #firstKey: Promise<{ keyPem: string; csrPem: string }> | undefined;

  constructor(o: WorkloadIdentityOptions) {
    this.#o = o;
    const fromToken = o.credential.type === 'join-token' ? readJoinToken(o.credential.token).spiffeId : undefined;
    const id = o.spiffeId ?? fromToken;
    if (!id)
      throw new Error('the workload identity is unknown: give the SPIFFE ID (a Kubernetes agent knows its service and trust domain)');
    if (fromToken && o.spiffeId && fromToken !== o.spiffeId)
      throw new Error(`the join token is for ${fromToken}, but this agent is ${o.spiffeId}`);
    parseSpiffeId(id);
    this.spiffeId = id;
    this.#target = `${o.controlPlane.host}:${o.controlPlane.port}`;
  }

  get current(): Held | undefined {
    return this.#held;
  }

  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Gets the first certificate (with the credential). Throws with the control plane's reason when refused. */
  async start(): Promise<Held> {
    const bundle = this.#o.bundlePem ?? (await this.#pinnedBundle());
    const held = await this.#sign(bundle, undefined);
    this.#install(held);
    return held;
  }

  /** Renews now, over mTLS with the current certificate. */
  async renew(): Promise<Held> {
    const cur = this.#held;
    if (!cur) return this.start();
    const held = await this.#sign(cur.bundlePem, cur);
    this.#install(held);
    return held;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** With a join token and no bundle: fetch the bundle without trusting anyone, keep it only if the token pins it. */
  async #pinnedBundle(): Promise<string> {
    const cred = this.#o.credential;
    if (cred.type !== 'join-token')
      throw new Error("the control plane's trust bundle is needed (a join token pins it; otherwise give --ca-bundle FILE)");
    const pin = readJoinToken(cred.token).bundleHash;
    const insecure = grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false });
    const res = await call<object, { bundle_pem: string }>(
      this.#target,
      insecure,
      'Bundle',
      'mcpmesh.identity.v1.BundleRequest',
      'mcpmesh.identity.v1.BundleResponse',
      {},
    );
    const got = bundleHash(res.bundle_pem);
    if (got !== pin)
      throw new Error(
        `the control plane at ${this.#target} offered a trust bundle (sha256 ${got.slice(0, 16)}…) that the join token does not pin (${pin.slice(0, 16)}…): refusing to send it the token`,
      );
    return res.bundle_pem;
  }

  async #sign(bundlePem: string, current: Held | undefined): Promise<Held> {
    const { keyPem, csrPem } = await (current ? newKeyAndCsr(this.spiffeId) : (this.#firstKey ??= newKeyAndCsr(this.spiffeId)));
    const expectCp = current?.controlPlaneId ?? controlPlaneId(parseSpiffeId(this.spiffeId).trustDomain);
    const verify = { checkServerIdentity: checkControlPlane(expectCp) };
    const creds = current
      ? grpc.credentials.createSsl(Buffer.from(bundlePem), Buffer.from(current.keyPem), Buffer.from(current.certChainPem), verify)
      : grpc.credentials.createSsl(Buffer.from(bundlePem), null, null, verify);
    const cred = this.#o.credential;
    const credential = current ? '' : cred.type === 'join-token' ? cred.token : cred.token();
    const res = await call<object, SignResponse>(
      this.#target,
      creds,
      'Sign',
      'mcpmesh.identity.v1.SignRequest',
      'mcpmesh.identity.v1.SignResponse',
      {
        csr_pem: csrPem,
        spiffe_id: this.spiffeId,
        credential_type: current ? '' : cred.type,
        credential,
        ttl_seconds: this.#o.ttlSeconds ?? 0,
      },
    );
    const leaf = new X509Certificate(res.cert_chain_pem);
    if (peerSpiffeId(leaf.subjectAltName) !== this.spiffeId)
      throw new Error(`the CA signed ${peerSpiffeId(leaf.subjectAltName) ?? 'no SPIFFE ID'}, not ${this.spiffeId}`);
    if (!leaf.checkPrivateKey(KeyObject.from(await importPkcs8(keyPem)))) throw new Error('the CA signed a certificate for another key');
    return {
      spiffeId: this.spiffeId,
      certChainPem: res.cert_chain_pem,
      keyPem,
      bundlePem: res.bundle_pem,
      notAfter: new Date(res.not_after * 1000),
      controlPlaneId: res.control_plane_id || expectCp,
    };
  }

  #install(held: Held): void {
    this.#held = held;
    this.#failures = 0;
    if (this.#o.dir) writeIdentityFiles(this.#o.dir, held);
    this.#o.log('info', 'workload certificate installed', {
      spiffe_id: held.spiffeId,
      not_after: held.notAfter.toISOString(),
      fingerprint: fingerprint(held.certChainPem),
    });
    for (const l of this.#listeners) l(held);
    this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    const held = this.#held;
    if (this.#stopped || !held) return;
    const lifetime = held.notAfter.getTime() - Date.now();
    const delay =
      this.#failures > 0
        ? Math.min(1000 * 2 ** (this.#failures - 1), MAX_RETRY_MS)
        : Math.max(0, lifetime * (1 - (this.#o.renewBelow ?? 0.5)));
    this.#timer = setTimeout(
      () => {
        this.renew().catch((err: unknown) => {
          this.#failures += 1;
          this.#o.log('error', 'certificate renewal failed; keeping the current one and retrying', {
            spiffe_id: this.spiffeId,
            error: (err as Error).message,
            attempt: this.#failures,
          });
          this.#schedule();
        });
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    this.#timer.unref();
  }
}

async function importPkcs8(pem: string): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, KEY_ALG, true, ['sign']);
}

function fingerprint(chainPem: string): string {
  return createHash('sha256').update(new X509Certificate(chainPem).raw).digest('hex').slice(0, 16);
}

/**
 * cert.pem (chain), key.pem (0600) and bundle.pem in `dir`, each replaced atomically (write + rename), for
 * gRPC's file_watcher certificate provider.
 */
export function writeIdentityFiles(dir: string, held: Held): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const put = (name: string, text: string, mode: number): void => {
    const tmp = path.join(dir, `.${name}.tmp`);
    writeFileSync(tmp, text, { mode });
    chmodSync(tmp, mode);
    renameSync(tmp, path.join(dir, name));
  };
  put('key.pem', held.keyPem, 0o600);
  put('cert.pem', held.certChainPem, 0o644);
  put('bundle.pem', held.bundlePem, 0o644);
}
