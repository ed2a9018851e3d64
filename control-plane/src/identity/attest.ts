// Attestation: how a workload proves which identity it may hold before the CA signs its CSR. The CA signs
// `spiffe://<td>/mcp/<service>` or `spiffe://<td>/gateway/<name>` only for a caller whose credential an
// attestor accepts for exactly that identity. Two methods:
// - join tokens (join-token.ts): minted by an operator (`mcpmesh join-token`), short-lived, scoped to one
//   identity, bound to the first key that uses them; for Compose and VMs;
// - Kubernetes ServiceAccount tokens (attest-k8s.ts): the pod's projected token, checked with the TokenReview
//   API against a service -> ServiceAccount mapping; for production on Kubernetes.
// A renewal needs no credential: the caller proves the identity with its current, still valid certificate.

/** The identity a caller asks for, already parsed from its SPIFFE ID. */
export interface IdentityRequest {
  readonly spiffeId: string;
  readonly role: 'sidecar' | 'gateway';
  /** The service (sidecar) or gateway name. */
  readonly name: string;
  /** SHA-256 (hex) of the CSR's SubjectPublicKeyInfo: single-use credentials bind to it. */
  readonly keyHash: string;
}

export type AttestationResult =
  | { readonly ok: true; readonly method: string; readonly subject: string }
  | { readonly ok: false; readonly method: string; readonly reason: string };

export interface Attestor {
  /** The credential type a SignRequest names (`join-token`, `k8s-sat`). */
  readonly method: string;
  /** Accepts or refuses `credential` for `request`; never throws for a bad credential (says why instead). */
  attest(credential: string, request: IdentityRequest): Promise<AttestationResult>;
  /** For /debug/sources-like pages: what this attestor is configured with (no secrets). */
  describe(): string;
}
