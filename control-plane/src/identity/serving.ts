// The control plane's own workload identity, `spiffe://<td>/control-plane`: the certificate its xDS port
// (ADS and the CA's signing service) presents. Proxies' bootstraps and agents check exactly that SPIFFE ID
// against the trust bundle. Its key is the control plane's own (made here, like any workload's); it is renewed
// at half-life and handed to the TLS server without dropping connections (gRPC certificate providers).
import type * as grpc from '@grpc/grpc-js';
import type { CertificateAuthority } from './ca.ts';
import { CertificateManager } from './rotation.ts';
import { spiffeId } from './spiffe.ts';

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/** The SPIFFE ID of the control plane in trust domain `td`. */
export function controlPlaneId(td: string): string {
  return spiffeId(td, 'control-plane');
}

/** A gRPC certificate provider fed from memory: set() pushes to every TLS server using it. */
export class MemoryCertificateProvider implements grpc.experimental.CertificateProvider {
  #ca: Buffer | undefined;
  #identity: { certificate: Buffer; privateKey: Buffer } | undefined;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();
  #caDelivered = false;
  #identityDelivered = false;
  #waiters: Array<() => void> = [];

  /** Resolves once some listener has been handed both a CA and an identity: a TLS server using this provider can serve. */
  delivered(): Promise<void> {
    if (this.#caDelivered && this.#identityDelivered) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #markDelivered(kind: 'ca' | 'identity'): void {
    if (kind === 'ca') this.#caDelivered = true;
    else this.#identityDelivered = true;
    if (!(this.#caDelivered && this.#identityDelivered)) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  set(update: { caPem?: string; certPem?: string; keyPem?: string }): void {
    if (update.caPem !== undefined) {
      this.#ca = Buffer.from(update.caPem);
      for (const l of this.#caListeners) l({ caCertificate: this.#ca });
    }
    if (update.certPem !== undefined && update.keyPem !== undefined) {
      this.#identity = { certificate: Buffer.from(update.certPem), privateKey: Buffer.from(update.keyPem) };
      for (const l of this.#identityListeners) l(this.#identity);
    }
  }

  // A new listener hears the current value on the next turn, not during add: grpc-js registers its own
  // watcher only after adding the provider's listeners, and would miss a synchronous first update.
  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    setImmediate(() => {
      if (this.#ca && this.#caListeners.has(listener)) {
        listener({ caCertificate: this.#ca });
        this.#markDelivered('ca');
      }
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    setImmediate(() => {
      if (this.#identity && this.#identityListeners.has(listener)) {
        listener(this.#identity);
        this.#markDelivered('identity');
      }
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}

export interface ServingIdentityOptions {
  readonly ca: CertificateAuthority;
  /** DNS names proxies may dial the control plane by (added as DNS SANs; the SPIFFE ID is what is checked). */
  readonly dnsNames?: readonly string[];
  readonly ttlMs?: number;
  readonly onError?: (err: Error) => void;
}

/** The control plane's serving certificate and the trust bundle, as one provider for identity and CA. */
export class ServingIdentity {
  readonly provider = new MemoryCertificateProvider();
  readonly spiffeId: string;
  readonly #certs: CertificateManager;
  readonly #opts: ServingIdentityOptions;
  #notAfter: Date | undefined;

  private constructor(opts: ServingIdentityOptions) {
    this.#opts = opts;
    this.spiffeId = controlPlaneId(opts.ca.trustDomain);
    const dnsNames = opts.dnsNames ?? [];
    this.#certs = new CertificateManager({
      ca: { issue: (req) => opts.ca.issue({ ...req, dnsNames }) },
      ...(opts.ttlMs ? { ttlMs: opts.ttlMs } : {}),
      onRotate: (_id, cert) => this.#publish(cert.certPem + cert.chainPem, cert.keyPem, cert.notAfter),
      ...(opts.onError ? { onError: (_id, err) => opts.onError?.(err) } : {}),
    });
  }

  static async start(opts: ServingIdentityOptions): Promise<ServingIdentity> {
    const s = new ServingIdentity(opts);
    const cert = await s.#certs.get(s.spiffeId);
    s.#publish(cert.certPem + cert.chainPem, cert.keyPem, cert.notAfter);
    return s;
  }

  get notAfter(): Date | undefined {
    return this.#notAfter;
  }

  #publish(chainPem: string, keyPem: string, notAfter: Date): void {
    this.#notAfter = notAfter;
    this.provider.set({ caPem: this.#opts.ca.bundlePem, certPem: chainPem, keyPem });
  }

  stop(): void {
    this.#certs.stop();
  }
}

/** The first SPIFFE ID among a peer certificate's URI SANs (Node's `subjectaltname`: "URI:a, DNS:b"). */
export function peerSpiffeId(subjectAltName: string | undefined): string | undefined {
  for (const part of (subjectAltName ?? '').split(', ')) {
    if (part.startsWith('URI:spiffe://')) return part.slice(4);
  }
  return undefined;
}
