// A development OAuth 2.0 authorization server for the embedded default: it signs access tokens (RS256,
// jose) for registered clients through the client-credentials grant, publishes its JWKS and RFC 8414
// metadata, and validates tokens the way the gateway must (algorithm allow-list, issuer, audience, expiry).
// Production deployments point the policy's JWT providers at their real identity provider instead.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { errors, exportJWK, generateKeyPair, jwtVerify, SignJWT, createLocalJWKSet, type JWK, type JWTPayload, type CryptoKey } from 'jose';

export interface DevClient {
  readonly secret: string;
  /** Roles this client may ask for (`*` = any). */
  readonly roles: readonly string[];
}

export interface DevIssuerOptions {
  /** `iss` of every token, e.g. http://127.0.0.1:18001/oauth. */
  issuer: string;
  /** Default `aud` (the mesh as a resource server). */
  audience: string;
  /** Claim that carries roles (same as the policy's roleClaim). */
  roleClaim?: string;
  ttlMs?: number;
  clients?: Readonly<Record<string, DevClient>>;
}

export interface TokenRequest {
  subject: string;
  roles: readonly string[];
  audience?: string;
  ttlMs?: number;
  /** Extra OAuth scopes for the `scope` claim. */
  scopes?: readonly string[];
  /** Seconds from now until the token becomes valid (default 0). */
  notBeforeInSeconds?: number;
}

export class OAuthError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, description: string) {
    super(description);
    this.status = status;
    this.code = code;
  }
}

const ALG = 'RS256';

function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class DevIssuer {
  readonly issuer: string;
  readonly audience: string;
  readonly roleClaim: string;
  private readonly ttlMs: number;
  private readonly clients: Readonly<Record<string, DevClient>>;
  private readonly kid: string;
  private readonly privateKey: CryptoKey;
  private readonly publicJwk: JWK;

  private constructor(o: DevIssuerOptions, kid: string, privateKey: CryptoKey, publicJwk: JWK) {
    this.issuer = o.issuer;
    this.audience = o.audience;
    this.roleClaim = o.roleClaim ?? 'roles';
    this.ttlMs = o.ttlMs ?? 3_600_000;
    this.clients = o.clients ?? {};
    this.kid = kid;
    this.privateKey = privateKey;
    this.publicJwk = publicJwk;
  }

  /** A fresh signing key each start: dev tokens do not outlive the control plane that issued them. */
  static async create(o: DevIssuerOptions): Promise<DevIssuer> {
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = randomUUID();
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: ALG, use: 'sig' };
    return new DevIssuer(o, kid, privateKey, jwk);
  }

  /** The public JWKS (serve at jwks_uri). */
  jwks(): { keys: JWK[] } {
    return { keys: [this.publicJwk] };
  }

  /** RFC 8414 authorization server metadata. */
  metadata(tokenEndpoint: string, jwksUri: string): Record<string, unknown> {
    return {
      issuer: this.issuer,
      token_endpoint: tokenEndpoint,
      jwks_uri: jwksUri,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
      response_types_supported: [],
      scopes_supported: ['roles'],
    };
  }

  async sign(r: TokenRequest): Promise<{ token: string; expiresIn: number }> {
    const ttl = r.ttlMs ?? this.ttlMs;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ [this.roleClaim]: this.roleClaim === 'scope' ? r.roles.join(' ') : [...r.roles], ...(r.scopes && this.roleClaim !== 'scope' ? { scope: r.scopes.join(' ') } : {}) })
      .setProtectedHeader({ alg: ALG, kid: this.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setAudience(r.audience ?? this.audience)
      .setSubject(r.subject)
      .setIssuedAt(now)
      .setNotBefore(now + (r.notBeforeInSeconds ?? 0))
      .setExpirationTime(now + Math.ceil(ttl / 1000) + (r.notBeforeInSeconds ?? 0))
      .setJti(randomUUID())
      .sign(this.privateKey);
    return { token, expiresIn: Math.ceil(ttl / 1000) };
  }

  /**
   * The client-credentials grant (RFC 6749 §4.4). `scope` lists the roles wanted; none = all the client may have.
   * Throws OAuthError with the RFC 6749 error code.
   */
  async tokenEndpoint(form: URLSearchParams, basicAuth?: string): Promise<Record<string, unknown>> {
    if (form.get('grant_type') !== 'client_credentials') throw new OAuthError(400, 'unsupported_grant_type', 'only grant_type=client_credentials is supported');
    let id = form.get('client_id') ?? '';
    let secret = form.get('client_secret') ?? '';
    if (basicAuth?.startsWith('Basic ')) {
      const decoded = Buffer.from(basicAuth.slice(6), 'base64').toString();
      const i = decoded.indexOf(':');
      id = decodeURIComponent(decoded.slice(0, i));
      secret = decodeURIComponent(decoded.slice(i + 1));
    }
    const client = this.clients[id];
    if (!client || !constantTimeEqual(client.secret, secret)) throw new OAuthError(401, 'invalid_client', 'unknown client or wrong secret');
    const wanted = (form.get('scope') ?? '').split(' ').filter(Boolean);
    const mayAll = client.roles.includes('*');
    const refused = wanted.filter((r) => !mayAll && !client.roles.includes(r));
    if (refused.length > 0) throw new OAuthError(400, 'invalid_scope', `client "${id}" may not have role(s): ${refused.join(', ')}`);
    const roles = wanted.length > 0 ? wanted : client.roles.filter((r) => r !== '*');
    const audience = form.get('resource') ?? form.get('audience') ?? undefined;
    const { token, expiresIn } = await this.sign({ subject: id, roles, ...(audience ? { audience } : {}) });
    return { access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope: roles.join(' ') };
  }

  /** Validates a token as the gateway must. Throws with a reason naming what is wrong. */
  async verify(token: string, audience = this.audience): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, createLocalJWKSet(this.jwks()), {
        algorithms: [ALG], issuer: this.issuer, audience, requiredClaims: ['exp', 'sub'],
      });
      return payload;
    } catch (err) {
      if (err instanceof errors.JOSEError) throw new Error(`invalid token: ${err.code}: ${err.message}`);
      throw new Error(`invalid token: ${(err as Error).message}`);
    }
  }
}
