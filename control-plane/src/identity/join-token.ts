// Join tokens: an operator's word that one workload may have one identity, for Compose and VMs where no
// platform can vouch for it (`mcpmesh join-token --service weather --ttl 1h`). A token is a JWT signed with
// the mesh CA's key (every replica sharing the CA verifies it), scoped to one SPIFFE ID, short-lived, and
// bound to the first key that uses it: the CA signs for that key again (a retry after a lost answer) but for
// no other. It also pins the trust bundle (`cah`), so an agent can trust the control plane before it sends
// the token, as kubeadm's discovery-token-ca-cert-hash does.
//
// The binding is held in memory: a restart forgets it, and each replica keeps its own. Tokens are therefore
// short-lived (default 1 h, at most 24 h); where that is not enough, use the platform's attestation.
import { createHash, randomBytes } from 'node:crypto';
import type { AttestationResult, Attestor, IdentityRequest } from './attest.ts';
import type { CertificateAuthority } from './ca.ts';
import { parseSpiffeId, trustDomainId } from './spiffe.ts';

export const JOIN_TOKEN_TYP = 'mcpmesh-join+jwt';
export const JOIN_TOKEN_AUDIENCE = 'mcpmesh-join';
export const DEFAULT_JOIN_TOKEN_TTL_MS = 3600_000;
export const MAX_JOIN_TOKEN_TTL_MS = 24 * 3600_000;

/** SHA-256 (hex) of a trust bundle's certificates, whitespace-insensitive: what a token pins. */
export function bundleHash(bundlePem: string): string {
  const blocks = bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const der = blocks.map((b) => Buffer.from(b.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
  return createHash('sha256').update(Buffer.concat(der)).digest('hex');
}

export interface MintedToken {
  readonly token: string;
  readonly spiffeId: string;
  readonly jti: string;
  readonly expiresAt: Date;
}

/** What an agent reads from a token without verifying it (it cannot): where it may go, and which CA to trust. */
export interface JoinTokenClaims {
  readonly spiffeId: string;
  readonly bundleHash: string;
  readonly expiresAt: Date;
}

/** Decodes (does not verify) a join token's claims: the agent's view, before it trusts anything. */
export function readJoinToken(token: string): JoinTokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a join token (expected a JWT: three dot-separated parts)');
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new Error('not a join token (its payload is not base64url JSON)');
  }
  if (typeof claims['sub'] !== 'string' || typeof claims['cah'] !== 'string' || typeof claims['exp'] !== 'number') {
    throw new Error('not a join token (it lacks sub, cah or exp)');
  }
  return { spiffeId: claims['sub'], bundleHash: claims['cah'], expiresAt: new Date(claims['exp'] * 1000) };
}

export class JoinTokens implements Attestor {
  readonly method = 'join-token';
  readonly #ca: CertificateAuthority;
  /** jti -> the key hash it was first used with, until the token expires. */
  readonly #bound = new Map<string, { keyHash: string; expires: number }>();

  constructor(ca: CertificateAuthority) {
    this.#ca = ca;
  }

  /** A token for `spiffeId` (in the CA's trust domain), valid for `ttlMs` (default 1 h, at most 24 h). */
  async mint(spiffeId: string, ttlMs = DEFAULT_JOIN_TOKEN_TTL_MS): Promise<MintedToken> {
    const { trustDomain } = parseSpiffeId(spiffeId);
    if (trustDomain !== this.#ca.trustDomain) throw new Error(`${spiffeId} is not in trust domain "${this.#ca.trustDomain}"`);
    if (!(ttlMs >= 1000 && ttlMs <= MAX_JOIN_TOKEN_TTL_MS))
      throw new Error(`a join token lives between 1 s and 24 h (asked for ${ttlMs} ms)`);
    const jti = randomBytes(16).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const exp = now + Math.ceil(ttlMs / 1000);
    const token = await this.#ca.signJwt(
      {
        iss: trustDomainId(trustDomain),
        aud: JOIN_TOKEN_AUDIENCE,
        sub: spiffeId,
        jti,
        iat: now,
        exp,
        cah: bundleHash(this.#ca.bundlePem),
      },
      JOIN_TOKEN_TYP,
    );
    return { token, spiffeId, jti, expiresAt: new Date(exp * 1000) };
  }

  async attest(credential: string, request: IdentityRequest): Promise<AttestationResult> {
    const refuse = (reason: string): AttestationResult => ({ ok: false, method: this.method, reason });
    let claims: Record<string, unknown>;
    try {
      claims = await this.#ca.verifyJwt(credential, JOIN_TOKEN_TYP, JOIN_TOKEN_AUDIENCE);
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e.code === 'ERR_JWT_EXPIRED') return refuse('the join token has expired');
      if (e.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return refuse("the join token was not signed by this mesh's CA");
      return refuse(`the join token is not valid: ${e.message}`);
    }
    if (claims['sub'] !== request.spiffeId) return refuse(`the join token is for ${String(claims['sub'])}, not ${request.spiffeId}`);
    const jti = typeof claims['jti'] === 'string' ? claims['jti'] : '';
    if (jti === '') return refuse('the join token has no jti');
    this.#forgetExpired();
    const bound = this.#bound.get(jti);
    if (bound && bound.keyHash !== request.keyHash)
      return refuse('the join token was already used, for another key (tokens are single-use: mint a new one)');
    this.#bound.set(jti, { keyHash: request.keyHash, expires: Number(claims['exp']) * 1000 });
    return { ok: true, method: this.method, subject: `join token ${jti}` };
  }

  describe(): string {
    return `join tokens signed by the mesh CA (${this.#bound.size} in use)`;
  }

  #forgetExpired(): void {
    const now = Date.now();
    for (const [jti, b] of this.#bound) if (b.expires < now) this.#bound.delete(jti);
  }
}
