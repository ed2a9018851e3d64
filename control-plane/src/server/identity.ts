// The CA's signing service (protos/mcpmesh/identity/v1/identity.proto), on the xDS port's gRPC server. It
// signs a workload's CSR for the identity it asks for only when the caller proves that identity: a credential
// an attestor accepts (first certificate), or its current certificate on this very connection (renewal).
// It never sees a private key.
import * as grpc from '@grpc/grpc-js';
import type { Attestor, IdentityRequest } from '../identity/attest.ts';
import { CaError, csrKeyHash, type CertificateAuthority, type SignedCert } from '../identity/ca.ts';
import { controlPlaneId, peerSpiffeId } from '../identity/serving.ts';
import { parseSpiffeId, type SpiffeId, SpiffeIdError, workloadRole } from '../identity/spiffe.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { lookupType } from '../xds/proto.ts';
import type { IssuedCertificate } from './status.ts';

const SERVICE = '/mcpmesh.identity.v1.Identity/';

interface SignRequest {
  csr_pem?: string;
  spiffe_id?: string;
  credential_type?: string;
  credential?: string;
  ttl_seconds?: number;
}

export interface IdentityServiceOptions {
  readonly ca: CertificateAuthority;
  readonly attestors: readonly Attestor[];
  /** Lifetime of workload certificates (default 24 h); a request may ask for less, never more. */
  readonly ttlMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
}

class Refusal extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, message: string) {
    super(message);
    this.code = code;
  }
}

/** The SPIFFE ID a caller proved with its TLS client certificate on this call, if any (Node verified the chain). */
export function callerSpiffeId(call: { getAuthContext(): { sslPeerCertificate?: { subjectaltname?: string } } }): string | undefined {
  return peerSpiffeId(call.getAuthContext().sslPeerCertificate?.subjectaltname);
}

/** Identities remembered at most (the console, /debug/mesh): one entry per identity, so only a mesh that large fills it. */
const MAX_ISSUED = 10_000;

export class IdentityService {
  readonly #opts: IdentityServiceOptions;
  readonly #attestors: ReadonlyMap<string, Attestor>;
  /** The latest certificate signed for each identity (facts only): the agents hold them, this is the CA's record. */
  readonly #issued = new Map<string, IssuedCertificate>();

  constructor(opts: IdentityServiceOptions) {
    this.#opts = opts;
    this.#attestors = new Map(opts.attestors.map((a) => [a.method, a]));
  }

  /** The last certificate this CA signed for each identity since start (facts only, no PEM), sorted by identity. */
  issued(): IssuedCertificate[] {
    return [...this.#issued.values()].sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
  }

  /** Adds the service to a gRPC server (the ADS server, so one TLS port serves both). */
  addTo(server: grpc.Server): void {
    const codec = <T>(typeName: string): { ser: (v: T) => Buffer; de: (b: Buffer) => T } => {
      const t = lookupType(typeName);
      return {
        ser: (v) => Buffer.from(t.encode(t.fromObject(v as object)).finish()),
        de: (b) => t.toObject(t.decode(b), { longs: Number, defaults: true }) as T,
      };
    };
    const signReq = codec<SignRequest>('mcpmesh.identity.v1.SignRequest');
    const signRes = codec<object>('mcpmesh.identity.v1.SignResponse');
    const bundleReq = codec<object>('mcpmesh.identity.v1.BundleRequest');
    const bundleRes = codec<object>('mcpmesh.identity.v1.BundleResponse');
    server.addService(
      {
        Sign: {
          path: `${SERVICE}Sign`,
          requestStream: false,
          responseStream: false,
          requestSerialize: signReq.ser,
          requestDeserialize: signReq.de,
          responseSerialize: signRes.ser,
          responseDeserialize: signRes.de,
          originalName: 'sign',
        },
        Bundle: {
          path: `${SERVICE}Bundle`,
          requestStream: false,
          responseStream: false,
          requestSerialize: bundleReq.ser,
          requestDeserialize: bundleReq.de,
          responseSerialize: bundleRes.ser,
          responseDeserialize: bundleRes.de,
          originalName: 'bundle',
        },
      },
      {
        Sign: (call: grpc.ServerUnaryCall<SignRequest, object>, done: grpc.sendUnaryData<object>) => {
          this.sign(call.request, callerSpiffeId(call), call.getPeer()).then(
            (r) => done(null, r),
            (err: unknown) => {
              const r = err instanceof Refusal ? err : new Refusal(grpc.status.INTERNAL, (err as Error).message);
              done({ code: r.code, details: r.message });
            },
          );
        },
        Bundle: (_call: grpc.ServerUnaryCall<object, object>, done: grpc.sendUnaryData<object>) => {
          done(null, { bundle_pem: this.#opts.ca.bundlePem, control_plane_id: controlPlaneId(this.#opts.ca.trustDomain) });
        },
      },
    );
  }

  /** Decides and signs one request. Throws Refusal with the gRPC status and the reason. */
  async sign(req: SignRequest, peerId: string | undefined, peer: string): Promise<object> {
    const { ca, metrics, log } = this.#opts;
    const spiffeId = req.spiffe_id ?? '';
    let request: IdentityRequest;
    try {
      request = this.#request(spiffeId, req.csr_pem ?? '');
    } catch (err) {
      metrics.certificateErrors.inc();
      throw new Refusal(grpc.status.INVALID_ARGUMENT, (err as Error).message);
    }
    const type = req.credential_type ?? '';
    let how: string;
    if (type === '') {
      // Renewal: the current certificate of that very identity must be on this connection.
      if (peerId !== spiffeId) {
        metrics.certificateErrors.inc();
        log.warn('certificate request refused', {
          spiffe_id: spiffeId,
          peer,
          reason: 'renewal without that identity',
          presented: peerId ?? 'none',
        });
        throw new Refusal(
          grpc.status.PERMISSION_DENIED,
          `a request without a credential is a renewal: it needs the current certificate of ${spiffeId} on this connection (presented: ${peerId ?? 'no client certificate'})`,
        );
      }
      how = 'renewal (mTLS)';
    } else {
      const attestor = this.#attestors.get(type);
      if (!attestor) {
        metrics.certificateErrors.inc();
        throw new Refusal(
          grpc.status.INVALID_ARGUMENT,
          `unknown credential type "${type}"; this control plane accepts: ${[...this.#attestors.keys()].join(', ') || 'renewals only'}`,
        );
      }
      const result = await attestor.attest(req.credential ?? '', request);
      if (!result.ok) {
        metrics.certificateErrors.inc();
        log.warn('certificate request refused', { spiffe_id: spiffeId, peer, method: type, reason: result.reason });
        throw new Refusal(grpc.status.PERMISSION_DENIED, `${type}: ${result.reason}`);
      }
      how = `${result.method}: ${result.subject}`;
    }
    const ttlMs = req.ttl_seconds ? Math.min(req.ttl_seconds * 1000, this.#opts.ttlMs) : this.#opts.ttlMs;
    let signed: SignedCert;
    try {
      signed = await ca.signCsr({ csrPem: req.csr_pem ?? '', spiffeId, ttlMs });
    } catch (err) {
      metrics.certificateErrors.inc();
      if (err instanceof CaError) throw new Refusal(grpc.status.INVALID_ARGUMENT, err.message);
      throw err;
    }
    metrics.certificatesIssued.inc({ role: request.role });
    this.#issued.delete(spiffeId);
    if (this.#issued.size >= MAX_ISSUED) this.#issued.delete(this.#issued.keys().next().value as string);
    this.#issued.set(spiffeId, {
      spiffeId,
      serial: signed.serial,
      notAfter: signed.notAfter.toISOString(),
      issuedAt: new Date().toISOString(),
      attestedBy: how,
    });
    log.info('certificate signed', {
      spiffe_id: spiffeId,
      serial: signed.serial,
      not_after: signed.notAfter.toISOString(),
      attested_by: how,
      peer,
    });
    return {
      cert_chain_pem: signed.certPem + signed.chainPem,
      bundle_pem: ca.bundlePem,
      not_after: Math.floor(signed.notAfter.getTime() / 1000),
      control_plane_id: controlPlaneId(ca.trustDomain),
    };
  }

  #request(spiffeId: string, csrPem: string): IdentityRequest {
    let parsed: SpiffeId;
    try {
      parsed = parseSpiffeId(spiffeId);
    } catch (err) {
      throw new Error(`spiffe_id: ${err instanceof SpiffeIdError ? err.message : String(err)}`);
    }
    if (parsed.trustDomain !== this.#opts.ca.trustDomain)
      throw new Error(`spiffe_id: ${spiffeId} is not in trust domain "${this.#opts.ca.trustDomain}"`);
    const role = workloadRole(spiffeId);
    const segments = parsed.path.split('/').filter(Boolean);
    if (!role || segments.length !== 2)
      throw new Error(`spiffe_id: ${spiffeId} is not a workload identity (spiffe://<td>/mcp/<service> or spiffe://<td>/gateway/<name>)`);
    let keyHash: string;
    try {
      keyHash = csrKeyHash(csrPem);
    } catch (err) {
      throw new Error(`csr_pem: ${(err as Error).message}`);
    }
    return { spiffeId, role, name: segments[1] as string, keyHash };
  }
}
