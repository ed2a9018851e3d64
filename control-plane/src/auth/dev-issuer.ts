// A development OAuth 2.0 authorization server for the embedded default: it signs access tokens (RS256,
// jose) for registered clients through the client-credentials grant, publishes its JWKS and RFC 8414
// metadata, and validates tokens the way the gateway must (algorithm allow-list, token type, issuer,
// audience, expiry). Production deployments point the policy's JWT providers at their real identity
// provider instead.
//
// The token endpoint is reachable by anyone who can reach the admin port, so it is written to be probed:
// every malformed request gets an RFC 6749 §5.2 error (never an exception that would become a 500),
// secrets are compared in constant time, and a client can only be granted roles the control plane allows.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  decodeProtectedHeader,
  errors,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  createLocalJWKSet,
  type JWK,
  type JWTPayload,
  type CryptoKey,
} from 'jose';

export interface DevClient {
  readonly secret: string;
  /**
   * Roles this client may ask for. `*` = every role in DevIssuerOptions.grantableRoles (none when that is
   * not set). Named roles are granted as listed, but only those also in grantableRoles when that is set.
   */
  readonly roles: readonly string[];
}

/** The roles the token endpoint may grant: a set, or a function read at every request (sees policy reloads). */
export type GrantableRoles = ReadonlySet<string> | (() => ReadonlySet<string>);

export interface DevIssuerOptions {
  /**
   * `iss` of every token, e.g. http://127.0.0.1:18001/oauth. A function when the URL is known only once the
   * admin port is bound (`--admin-port 0`): it is read when a token is minted, checked or described.
   */
  issuer: string | (() => string);
  /** Default `aud` (the mesh as a resource server). */
  audience: string;
  /** Claim that carries roles (same as the policy's roleClaim). */
  roleClaim?: string;
  ttlMs?: number;
  clients?: Readonly<Record<string, DevClient>>;
  /**
   * The ceiling on roles the token endpoint grants, to any client: with a policy, the roles it defines
   * (pass a function so a hot-reloaded policy is seen). Not set: a `*` client gets no role at all, because
   * an issuer that knows no policy cannot tell which roles are meant to exist.
   */
  grantableRoles?: GrantableRoles;
}

export interface TokenRequest {
  subject: string;
  roles: readonly string[];
  /** RFC 9068 `client_id`; default `subject` (in the client-credentials grant the client is the subject). */
  clientId?: string;
  audience?: string;
  ttlMs?: number;
  /** Extra OAuth scopes for the `scope` claim. */
  scopes?: readonly string[];
  /** Seconds from now until the token becomes valid (default 0). */
  notBeforeInSeconds?: number;
}

/** An RFC 6749 §5.2 error: the HTTP status, the `error` code, `error_description`, and headers to send. */
export class OAuthError extends Error {
  readonly status: number;
  readonly code: string;
  /** Response headers the error needs, e.g. WWW-Authenticate on 401 invalid_client (RFC 6749 §5.2). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, code: string, description: string, headers: Readonly<Record<string, string>> = {}) {
    super(description);
    this.status = status;
    this.code = code;
    // Token responses, errors included, must not be cached (RFC 6749 §5.1).
    this.headers = { 'cache-control': 'no-store', pragma: 'no-cache', ...headers };
  }

  /** The JSON body (RFC 6749 §5.2). */
  body(): { error: string; error_description: string } {
    return { error: this.code, error_description: this.message };
  }
}

/** The realm of the token endpoint's Basic challenge. */
export const TOKEN_ENDPOINT_REALM = 'mcpmesh';
/** RFC 9068 §2.1: the `typ` header of a JWT access token. */
export const ACCESS_TOKEN_TYP = 'at+jwt';
/** RFC 9068 §2.2: the claims every JWT access token carries. */
export const ACCESS_TOKEN_CLAIMS = ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'] as const;

const ALG = 'RS256';

function invalidClient(description: string): OAuthError {
  return new OAuthError(401, 'invalid_client', description, { 'www-authenticate': `Basic realm="${TOKEN_ENDPOINT_REALM}"` });
}
function invalidRequest(description: string): OAuthError {
  return new OAuthError(400, 'invalid_request', description);
}

// Secrets are compared as HMACs under a per-process key: the digests always have the same length, so
// neither the comparison's duration nor an early length check tells a caller how long the secret is.
const COMPARE_KEY = randomBytes(32);
function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHmac('sha256', COMPARE_KEY).update(a).digest(), createHmac('sha256', COMPARE_KEY).update(b).digest());
}
/** Compared against when the client id is unknown, so an unknown client takes as long as a wrong secret. */
const NO_SUCH_CLIENT_SECRET = randomBytes(18).toString('base64url');

/** RFC 4648 base64 (padding optional), and nothing else: Buffer.from(..., 'base64') skips junk silently. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** `Basic <token68>`; the scheme is case-insensitive (RFC 9110 §11.1). */
const BASIC = /^Basic +(\S+) *$/i;

/** Parameters that must not be repeated (RFC 6749 §3.2); `resource` may be, by RFC 8707, but we take one. */
const SINGLE_PARAMS = ['grant_type', 'scope', 'client_id', 'client_secret', 'audience'] as const;

/** At most this many role names are quoted in an error, each cut to ROLE_QUOTE_MAX characters. */
const REFUSED_SHOWN = 10;
const ROLE_QUOTE_MAX = 64;

/** Role names quoted in an error description, bounded: some come from the caller, who could send thousands. */
function quoteList(names: readonly string[]): string {
  const quote = (s: string): string => JSON.stringify(s.length > ROLE_QUOTE_MAX ? `${s.slice(0, ROLE_QUOTE_MAX)}…` : s);
  const more = names.length > REFUSED_SHOWN ? ` and ${names.length - REFUSED_SHOWN} more` : '';
  return names.slice(0, REFUSED_SHOWN).map(quote).join(', ') + more;
}

/** RFC 6749 §2.3.1: the Basic user name and password are each application/x-www-form-urlencoded. */
function formDecode(s: string, what: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    throw invalidClient(`the Basic credentials' ${what} is not valid form-urlencoding (RFC 6749 §2.3.1)`);
  }
}

/** client_secret_basic credentials from an Authorization header, or an invalid_client OAuthError. */
function parseBasic(header: string): { id: string; secret: string } {
  const m = BASIC.exec(header);
  if (!m) {
    // Name the scheme but never echo the credentials: the header may hold a real token.
    const scheme = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}/.exec(header)?.[0];
    if (scheme && scheme.toLowerCase() === 'basic')
      throw invalidClient('malformed Authorization: Basic header: expected "Basic <base64 of client_id:client_secret>"');
    throw invalidClient(
      `the token endpoint authenticates clients with HTTP Basic (client_secret_basic) or client_id + client_secret form fields (client_secret_post), not ${scheme ? `"${scheme}"` : 'this'} Authorization header`,
    );
  }
  const b64 = m[1] ?? '';
  const bytes = Buffer.from(b64, 'base64');
  // The round trip refuses what BASE64 lets through but is not canonical base64 (bad length, stray bits).
  if (!BASE64.test(b64) || bytes.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, '')) {
    throw invalidClient('the Authorization: Basic credentials are not base64');
  }
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalidClient('the Authorization: Basic credentials are not UTF-8 text');
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidClient('the Authorization: Basic credentials have no ":" between client_id and client_secret');
  return { id: formDecode(decoded.slice(0, colon), 'client_id'), secret: formDecode(decoded.slice(colon + 1), 'client_secret') };
}

export class DevIssuer {
  private readonly issuerOf: () => string;
  readonly audience: string;
  readonly roleClaim: string;
  private readonly ttlMs: number;
  private readonly clients: Readonly<Record<string, DevClient>>;
  private readonly grantableRoles: GrantableRoles | undefined;
  private readonly kid: string;
  private readonly privateKey: CryptoKey;
  private readonly publicJwk: JWK;

  private constructor(o: DevIssuerOptions, kid: string, privateKey: CryptoKey, publicJwk: JWK) {
    const issuer = o.issuer;
    this.issuerOf = typeof issuer === 'string' ? () => issuer : issuer;
    this.audience = o.audience;
    this.roleClaim = o.roleClaim ?? 'roles';
    this.ttlMs = o.ttlMs ?? 3_600_000;
    this.clients = o.clients ?? {};
    this.grantableRoles = o.grantableRoles;
    this.kid = kid;
    this.privateKey = privateKey;
    this.publicJwk = publicJwk;
  }

  get issuer(): string {
    return this.issuerOf();
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

  /** The roles the token endpoint may grant right now; undefined when no ceiling was configured. */
  private grantable(): ReadonlySet<string> | undefined {
    const g = this.grantableRoles;
    return typeof g === 'function' ? g() : g;
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
      // Roles are requested as scope values, so the scopes are the roles this issuer may grant.
      scopes_supported: [...(this.grantable() ?? [])].sort(),
    };
  }

  /** Signs an RFC 9068 JWT access token (header typ at+jwt; iss, exp, aud, sub, client_id, iat, jti). */
  async sign(r: TokenRequest): Promise<{ token: string; expiresIn: number }> {
    const ttl = r.ttlMs ?? this.ttlMs;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      client_id: r.clientId ?? r.subject,
      [this.roleClaim]: this.roleClaim === 'scope' ? r.roles.join(' ') : [...r.roles],
      ...(r.scopes && this.roleClaim !== 'scope' ? { scope: r.scopes.join(' ') } : {}),
    })
      .setProtectedHeader({ alg: ALG, kid: this.kid, typ: ACCESS_TOKEN_TYP })
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

  /** Which client sent the request, authenticated, or an OAuthError (RFC 6749 §2.3). */
  private authenticate(form: URLSearchParams, authorization: string | undefined): { id: string; client: DevClient } {
    const formId = form.get('client_id');
    const formSecret = form.get('client_secret');
    let id: string;
    let secret: string;
    if (authorization !== undefined && authorization !== '') {
      const basic = parseBasic(authorization);
      // RFC 6749 §2.3: one authentication method per request; a client_id field may only repeat the Basic one.
      if (formSecret !== null)
        throw invalidRequest('client credentials were sent twice (Authorization: Basic and a client_secret form field); use one method');
      if (formId !== null && formId !== basic.id)
        throw invalidRequest('the client_id form field and the Authorization: Basic client_id differ');
      ({ id, secret } = basic);
    } else {
      if (formId === null && formSecret === null)
        throw invalidClient(
          'no client credentials: send Authorization: Basic (client_secret_basic) or client_id and client_secret form fields (client_secret_post)',
        );
      if (!formId) throw invalidClient('client_id is missing or empty');
      if (formSecret === null || formSecret === '')
        throw invalidClient('client_secret is missing or empty (this issuer has no public clients)');
      id = formId;
      secret = formSecret;
    }
    if (id === '') throw invalidClient('the Authorization: Basic client_id is empty');
    // Own properties only: "constructor" or "__proto__" must not find Object.prototype's members.
    const client = Object.hasOwn(this.clients, id) ? this.clients[id] : undefined;
    const ok = constantTimeEqual(client?.secret ?? NO_SUCH_CLIENT_SECRET, secret);
    if (!client || !ok) throw invalidClient('unknown client or wrong secret');
    return { id, client };
  }

  /** The roles `client` may be granted now, `*` expanded, and the ones it gets when it asks for none. */
  private rolesFor(client: DevClient): { may: ReadonlySet<string>; byDefault: readonly string[] } {
    const ceiling = this.grantable();
    const named = client.roles.filter((r) => r !== '*' && (ceiling === undefined || ceiling.has(r)));
    const may = new Set(named);
    if (client.roles.includes('*')) for (const r of ceiling ?? []) may.add(r);
    // Asking for nothing gets the roles the client is registered with by name, never everything `*` allows:
    // a role as broad as "admin" is only in a token that asked for it.
    return { may, byDefault: named };
  }

  /**
   * The client-credentials grant (RFC 6749 §4.4). Roles are requested as the space-separated `scope` form
   * field (what `mcpmesh token --role` sends); no scope = the roles the client is registered with by name
   * (none for a `*` client). The token's audience is the `resource` (RFC 8707) or `audience` field, default
   * the issuer's. `contentType`, when given, must be application/x-www-form-urlencoded.
   * Throws OAuthError (with the status, RFC 6749 §5.2 code and headers to send) for every bad request.
   */
  async tokenEndpoint(form: URLSearchParams, authorization?: string, contentType?: string): Promise<Record<string, unknown>> {
    if (contentType !== undefined && contentType.split(';')[0]?.trim().toLowerCase() !== 'application/x-www-form-urlencoded') {
      throw invalidRequest('the token request body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)');
    }
    for (const p of SINGLE_PARAMS) {
      if (form.getAll(p).length > 1) throw invalidRequest(`the ${p} parameter is repeated; each may appear once (RFC 6749 §3.2)`);
    }
    if (form.getAll('resource').length > 1)
      throw new OAuthError(400, 'invalid_target', 'this issuer puts one audience in a token: send one resource');
    const grant = form.get('grant_type');
    if (grant === null || grant === '') throw invalidRequest('grant_type is missing (use grant_type=client_credentials)');
    if (grant !== 'client_credentials')
      throw new OAuthError(400, 'unsupported_grant_type', 'only grant_type=client_credentials is supported');
    const { id, client } = this.authenticate(form, authorization);
    const wanted = [...new Set((form.get('scope') ?? '').split(' ').filter(Boolean))];
    const { may, byDefault } = this.rolesFor(client);
    const refused = wanted.filter((r) => !may.has(r));
    if (refused.length > 0) {
      // The caller has authenticated: telling it what it may ask for instead is what makes the error useful.
      const allowed = [...may].sort();
      const why =
        allowed.length > 0
          ? `it may be granted: ${quoteList(allowed)}`
          : this.grantable() === undefined
            ? 'it may be granted no role (this issuer was given no grantable roles: no policy)'
            : 'it may be granted no role';
      throw new OAuthError(400, 'invalid_scope', `client "${id}" may not have role(s) ${quoteList(refused)}; ${why}`);
    }
    const roles = wanted.length > 0 ? wanted : [...byDefault];
    const audience = form.get('resource') || form.get('audience') || undefined;
    const { token, expiresIn } = await this.sign({ subject: id, clientId: id, roles, ...(audience ? { audience } : {}) });
    return { access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope: roles.join(' ') };
  }

  /**
   * Validates a token as the gateway must: RS256 only, this issuer's key, RFC 9068 `typ` at+jwt (so an ID
   * token or another JWT signed by the same key is not taken for an access token), issuer, audience, time
   * and every RFC 9068 claim. Throws with a reason naming what is wrong.
   */
  async verify(token: string, audience = this.audience): Promise<JWTPayload> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, createLocalJWKSet(this.jwks()), {
        algorithms: [ALG],
        issuer: this.issuer,
        audience,
        typ: ACCESS_TOKEN_TYP,
        requiredClaims: [...ACCESS_TOKEN_CLAIMS],
      }));
    } catch (err) {
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'typ') {
        // jose checks typ only after the signature, so the header is this issuer's and safe to quote.
        const typ = decodeProtectedHeader(token).typ;
        throw new Error(
          `invalid token: ${err.code}: not an access token: header typ is ${typ === undefined ? 'missing' : JSON.stringify(typ)}, an RFC 9068 access token has typ "${ACCESS_TOKEN_TYP}"`,
        );
      }
      if (err instanceof errors.JOSEError) throw new Error(`invalid token: ${err.code}: ${err.message}`);
      throw new Error(`invalid token: ${(err as Error).message}`);
    }
    for (const claim of ['client_id', 'jti'] as const) {
      if (typeof payload[claim] !== 'string')
        throw new Error(`invalid token: ERR_JWT_CLAIM_VALIDATION_FAILED: "${claim}" claim must be a string`);
    }
    return payload;
  }
}
