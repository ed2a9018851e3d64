// Admin HTTP: health, readiness, Prometheus metrics and debug views of what proxies get.
//
// Exposure. Probes and scrapers (/healthz, /readyz, /metrics) are always open: kubelet and Prometheus
// cannot present credentials, and none of them says anything about configuration. Everything else
// (/debug/*, the dev issuer's token endpoint, unknown paths) is open only while the server listens on
// loopback (local development); on any other address it needs `Authorization: Bearer <debugToken>`, and
// without a configured token it answers 403 instead of serving. That per-route refusal is deliberate
// rather than refusing to start: the admin port must be reachable on the pod address for probes and
// metrics, and a missing debugging secret must not become a crash-looping control plane (no xDS at all).
//
// Key material. /debug/config_dump never renders an SDS Secret from its body: Secrets go through
// `summarizeSecret`, whose result type only has room for certificate facts (subject, SANs, serial,
// validity, fingerprint), SAN matchers and the words "[present, never shown]". `snapshotToJson` (the full
// decoded form, private keys included) exists for the goldens and static bootstraps and is never served.
import http from 'node:http';
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { isIP, type AddressInfo } from 'node:net';
import type { SnapshotCache } from '../cache/cache.ts';
import type { Snapshot } from '../cache/snapshot.ts';
import type { Metrics } from '../metrics.ts';
import { parseDurationMs } from '../model/duration.ts';
import type { ProxyInfo } from '../model/types.ts';
import { lookupType, RESOURCE_KINDS, TYPE_URLS, type ResourceKind } from '../xds/proto.ts';
import type { ProxyTracker } from './proxies.ts';
import type { MeshStatusView } from './status.ts';
import { OAuthError, type DevIssuer } from '../auth/dev-issuer.ts';
import type { ConsoleServer } from '../console/server.ts';

export interface AdminOptions {
  cache: SnapshotCache;
  tracker: ProxyTracker;
  metrics: Metrics;
  /** Last error of each source, shown by /readyz and /debug/sources. */
  sourceErrors: () => Record<string, string | undefined>;
  /** The published mesh and certificate expiry (/debug/mesh, what `mcpmesh status` reads). */
  meshStatus?: () => MeshStatusView;
  /** Each watch of the source, for /debug/sources?watches (Consul: every blocking query's loop state). */
  sourceWatches?: () => readonly object[];
  /** True once the control plane drains before exit: /readyz says 503 so load balancers stop sending proxies here. */
  draining?: () => boolean;
  /** The development OAuth issuer, when enabled: token endpoint, JWKS and metadata under /oauth. */
  oauth?: DevIssuer;
  /**
   * Address `listen(port)` binds (default 127.0.0.1). Whether a token is required is decided from the
   * address actually bound, so a host passed to `listen(host, port)` is judged the same way.
   */
  host?: string;
  /**
   * Bearer token for /debug/* and /oauth/token when the server listens beyond loopback. At least 16
   * characters of token68 syntax (e.g. `openssl rand -base64 32`). Without it those routes answer 403 there.
   */
  debugToken?: string;
  /**
   * Mints a join token (POST /admin/join-token, for `mcpmesh join-token`): present when the mesh is secured.
   * `kind` and `name` are the identity asked for (a service's sidecar, or a gateway).
   */
  joinTokens?: (
    kind: 'service' | 'gateway',
    name: string,
    ttlMs: number | undefined,
  ) => Promise<{ token: string; spiffeId: string; expiresAt: Date }>;
  /** GET /debug/routing[?service=NAME]: effective routing knobs and their sources (`mcpmesh routing explain`). */
  routing?: (service: string | undefined) => { code: number; body: unknown };
  /** The read-only web console, served under CONSOLE_PREFIX with the same exposure as /debug. */
  console?: Pick<ConsoleServer, 'handle'>;
}

/** Everything under it belongs to the console; its routes are `token` routes (see ADMIN_ROUTES). */
export const CONSOLE_PREFIX = '/ui';

export const OAUTH_PATHS = {
  token: '/oauth/token',
  jwks: '/oauth/jwks',
  metadata: '/.well-known/oauth-authorization-server',
  /** RFC 8414 path insertion for the default issuer `<origin>/oauth`. */
  issuerMetadata: '/.well-known/oauth-authorization-server/oauth',
} as const;

/**
 * Who may call each route when the server listens beyond loopback. `open`: anyone (probes, scrapers, and
 * the issuer's public documents: Envoy's jwt_authn fetches the JWKS without credentials, and OAuth clients
 * discover the metadata unauthenticated; both hold public keys and URLs only). `token`: the debug token.
 * Paths not listed here are `token` too, so a route added without a decision fails closed.
 */
export const ADMIN_ROUTES = {
  '/healthz': 'open',
  '/readyz': 'open',
  '/metrics': 'open',
  '/debug/proxies': 'token',
  '/debug/sources': 'token',
  '/debug/mesh': 'token',
  '/debug/config_dump': 'token',
  '/debug/routing': 'token',
  '/admin/join-token': 'token',
  '/oauth/token': 'token',
  '/oauth/jwks': 'open',
  '/.well-known/oauth-authorization-server': 'open',
  '/.well-known/oauth-authorization-server/oauth': 'open',
} as const satisfies Record<string, 'open' | 'token'>;

export type AdminRoute = keyof typeof ADMIN_ROUTES;

/** The realm of the admin server's Bearer challenges. */
export const ADMIN_REALM = 'mcpmesh-admin';

/** What stands in for a private key (or any other secret field) in debug output. */
export const NEVER_SHOWN = '[present, never shown]';

const MIN_TOKEN_LENGTH = 16;
// RFC 6750 b64token: the token must survive the Authorization header unchanged.
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

function readBody(req: http.IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error(`request body over ${limit} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

function decodeResource(kind: ResourceKind, bytes: Uint8Array): Record<string, unknown> {
  const type = lookupType(TYPE_URLS[kind]);
  return type.toObject(type.decode(bytes), { longs: String, enums: String, json: true });
}

/**
 * A snapshot as JSON, each resource decoded back from the exact bytes a proxy receives, SECRETS INCLUDED
 * (private keys in clear). For goldens and static bootstraps only; the admin server serves
 * `snapshotToDebugJson`.
 */
export function snapshotToJson(s: Snapshot): Record<string, unknown> {
  const out: Record<string, unknown> = { key: s.key, versions: s.versions };
  for (const kind of RESOURCE_KINDS) {
    out[kind] = [...s.resources[kind].values()].map((r) => ({ name: r.name, version: r.version, resource: decodeResource(kind, r.bytes) }));
  }
  return out;
}

// ---- Debug rendering: summaries that have no room for key bytes ----

/** What tells one certificate from another. Public facts only: a certificate has no secret, its key does. */
export interface CertificateFacts {
  readonly subject: string;
  readonly issuer: string;
  readonly subject_alt_names: readonly string[];
  readonly serial_number: string;
  readonly not_before: string;
  readonly not_after: string;
  readonly sha256_fingerprint: string;
}

/** One certificate of a chain or bundle, or where it is read from, or why it could not be read. */
export type CertificateSummary =
  | CertificateFacts
  | { readonly error: 'unparsable certificate' | 'no certificate' }
  | { readonly filename: string }
  | { readonly environment_variable: string };

/** A StringMatcher: the one test it applies. */
export interface StringMatcherSummary {
  readonly exact?: string;
  readonly prefix?: string;
  readonly suffix?: string;
  readonly contains?: string;
  readonly safe_regex?: string;
  readonly ignore_case?: true;
}

/** A SubjectAltNameMatcher: the SAN type and its StringMatcher. */
export interface SanMatcherSummary extends StringMatcherSummary {
  readonly san_type: string;
}

export interface TlsCertificateSummary {
  readonly certificate_chain: readonly CertificateSummary[];
  readonly private_key?: typeof NEVER_SHOWN;
  /** Other fields of the TlsCertificate that are set (names only: several hold secrets, e.g. password, pkcs12). */
  readonly also_set?: readonly string[];
}

export interface ValidationContextSummary {
  readonly trusted_ca?: readonly CertificateSummary[];
  readonly match_typed_subject_alt_names?: readonly SanMatcherSummary[];
  /** The deprecated form (any SAN type), which proxyless gRPC clients read. */
  readonly match_subject_alt_names?: readonly StringMatcherSummary[];
  /** Other fields that are set (names only). */
  readonly also_set?: readonly string[];
}

/** An SDS Secret as /debug shows it. Every leaf is a certificate fact, a SAN matcher, a name or NEVER_SHOWN. */
export interface SecretSummary {
  readonly name: string;
  readonly tls_certificate?: TlsCertificateSummary;
  readonly validation_context?: ValidationContextSummary;
  readonly session_ticket_keys?: typeof NEVER_SHOWN;
  readonly generic_secret?: typeof NEVER_SHOWN;
  /** Any other secret type Envoy may add (names only). */
  readonly also_set?: readonly string[];
}

export interface DebugResource<R> {
  readonly name: string;
  readonly version: string;
  readonly resource: R;
}

/** /debug/config_dump: `snapshotToJson`'s shape, with Secrets as SecretSummary. */
export type DebugSnapshot = {
  readonly key: string;
  readonly versions: Readonly<Record<ResourceKind, string>>;
  readonly secret: readonly DebugResource<SecretSummary>[];
} & { readonly [K in Exclude<ResourceKind, 'secret'>]: readonly DebugResource<unknown>[] };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const setFields = (o: Obj, except: readonly string[]): string[] =>
  Object.keys(o)
    .filter((k) => !except.includes(k) && o[k] !== undefined && o[k] !== null)
    .sort();

function certificateFacts(der: Buffer | string): CertificateSummary {
  try {
    const c = new X509Certificate(der);
    return {
      subject: c.subject.replace(/\n/g, ', '),
      issuer: c.issuer.replace(/\n/g, ', '),
      subject_alt_names: c.subjectAltName ? c.subjectAltName.split(', ') : [],
      serial_number: c.serialNumber,
      not_before: new Date(c.validFrom).toISOString(),
      not_after: new Date(c.validTo).toISOString(),
      sha256_fingerprint: c.fingerprint256,
    };
  } catch {
    return { error: 'unparsable certificate' };
  }
}

/**
 * The certificates of a DataSource (inline PEM or DER, or where it is read from). Only parsed facts come
 * out, never the text: a chain that by mistake carries a key still shows no key.
 */
function certificatesOf(source: unknown): CertificateSummary[] {
  if (!isObj(source)) return [{ error: 'no certificate' }];
  const filename = str(source['filename']);
  if (filename !== undefined) return [{ filename }];
  const envVar = str(source['environment_variable']);
  if (envVar !== undefined) return [{ environment_variable: envVar }];
  const raw = source['inline_bytes'];
  const bytes = raw instanceof Uint8Array ? Buffer.from(raw) : typeof raw === 'string' ? Buffer.from(raw, 'base64') : undefined;
  const text = str(source['inline_string']) ?? bytes?.toString('latin1') ?? '';
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (blocks) return blocks.map((b) => certificateFacts(b));
  if (bytes && bytes.length > 0) return [certificateFacts(bytes)];
  return [{ error: text.trim() === '' ? 'no certificate' : 'unparsable certificate' }];
}

const STRING_MATCHERS = ['exact', 'prefix', 'suffix', 'contains'] as const;

function stringMatcher(m: unknown): StringMatcherSummary {
  const matcher = isObj(m) ? m : {};
  const out: { -readonly [K in keyof StringMatcherSummary]: StringMatcherSummary[K] } = {};
  for (const k of STRING_MATCHERS) {
    const v = str(matcher[k]);
    if (v !== undefined) out[k] = v;
  }
  const regex = isObj(matcher['safe_regex']) ? str(matcher['safe_regex']['regex']) : undefined;
  if (regex !== undefined) out.safe_regex = regex;
  if (matcher['ignore_case'] === true) out.ignore_case = true;
  return out;
}

function sanMatcher(m: unknown): SanMatcherSummary {
  const o = isObj(m) ? m : {};
  return { san_type: str(o['san_type']) ?? 'SAN_TYPE_UNSPECIFIED', ...stringMatcher(o['matcher']) };
}

function tlsCertificateSummary(tc: unknown): TlsCertificateSummary {
  const o = isObj(tc) ? tc : {};
  const also = setFields(o, ['certificate_chain', 'private_key']);
  return {
    certificate_chain: certificatesOf(o['certificate_chain']),
    ...(o['private_key'] !== undefined && o['private_key'] !== null ? { private_key: NEVER_SHOWN } : {}),
    ...(also.length > 0 ? { also_set: also } : {}),
  };
}

function validationContextSummary(vc: unknown): ValidationContextSummary {
  const o = isObj(vc) ? vc : {};
  const matchers = Array.isArray(o['match_typed_subject_alt_names']) ? o['match_typed_subject_alt_names'].map(sanMatcher) : [];
  const untyped = Array.isArray(o['match_subject_alt_names']) ? o['match_subject_alt_names'].map(stringMatcher) : [];
  const also = setFields(o, ['trusted_ca', 'match_typed_subject_alt_names', 'match_subject_alt_names']);
  return {
    ...(o['trusted_ca'] !== undefined ? { trusted_ca: certificatesOf(o['trusted_ca']) } : {}),
    ...(matchers.length > 0 ? { match_typed_subject_alt_names: matchers } : {}),
    ...(untyped.length > 0 ? { match_subject_alt_names: untyped } : {}),
    ...(also.length > 0 ? { also_set: also } : {}),
  };
}

/** An SDS Secret (decoded) as its summary. Built field by field; nothing of `secret` is copied through. */
export function summarizeSecret(secret: Readonly<Obj>): SecretSummary {
  const also = setFields(secret, ['name', 'tls_certificate', 'validation_context', 'session_ticket_keys', 'generic_secret']);
  return {
    name: str(secret['name']) ?? '',
    ...(secret['tls_certificate'] !== undefined ? { tls_certificate: tlsCertificateSummary(secret['tls_certificate']) } : {}),
    ...(secret['validation_context'] !== undefined ? { validation_context: validationContextSummary(secret['validation_context']) } : {}),
    ...(secret['session_ticket_keys'] !== undefined ? { session_ticket_keys: NEVER_SHOWN } : {}),
    ...(secret['generic_secret'] !== undefined ? { generic_secret: NEVER_SHOWN } : {}),
    ...(also.length > 0 ? { also_set: also } : {}),
  };
}

/**
 * Listeners and clusters only refer to secrets by name (SDS), but the TLS context protos can hold keys
 * inline. Whatever message holds a TlsCertificate, session ticket keys or a generic secret is rendered by
 * the same summaries here, so a translator that ever inlines one still cannot put it on /debug.
 */
function withKeyBearingFieldsSummarized(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withKeyBearingFieldsSummarized);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'tls_certificates') out[k] = Array.isArray(x) ? x.map(tlsCertificateSummary) : [tlsCertificateSummary(x)];
    else if (k === 'tls_certificate') out[k] = tlsCertificateSummary(x);
    else if (k === 'private_key' || k === 'session_ticket_keys' || k === 'generic_secret' || k === 'pkcs12' || k === 'password')
      out[k] = NEVER_SHOWN;
    else out[k] = withKeyBearingFieldsSummarized(x);
  }
  return out;
}

/** A snapshot for /debug/config_dump: like `snapshotToJson`, but Secrets are summaries (no key material). */
export function snapshotToDebugJson(s: Snapshot): DebugSnapshot {
  const others = Object.fromEntries(
    RESOURCE_KINDS.filter((k) => k !== 'secret').map((kind) => [
      kind,
      [...s.resources[kind].values()].map((r) => ({
        name: r.name,
        version: r.version,
        resource: withKeyBearingFieldsSummarized(decodeResource(kind, r.bytes)),
      })),
    ]),
  );
  return {
    key: s.key,
    versions: s.versions,
    secret: [...s.resources.secret.values()].map((r) => ({
      name: r.name,
      version: r.version,
      resource: summarizeSecret(decodeResource('secret', r.bytes)),
    })),
    ...(others as { [K in Exclude<ResourceKind, 'secret'>]: DebugResource<unknown>[] }),
  };
}

// ---- HTTP ----

function json(res: http.ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'application/json', ...headers });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

function isLoopbackAddress(address: string): boolean {
  const a = address.replace(/^::ffff:/i, '');
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}

/**
 * A Host header naming this machine by a loopback name. On a loopback bind this is what stops DNS
 * rebinding: a web page whose name re-resolves to 127.0.0.1 still sends its own name as Host.
 */
function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return true; // HTTP/1.0 without Host: not a browser
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '')).toLowerCase();
  return name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name);
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

type Denial = { code: 401 | 403; body: { error: string; error_description: string }; headers: Record<string, string> };

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> | void;

export class AdminServer {
  private readonly server: http.Server;
  private readonly opts: AdminOptions;
  private readonly tokenDigest: Buffer | undefined;
  private readonly handlers: Record<AdminRoute, Handler>;
  // Until listen() knows the bound address, assume the worst.
  private loopback = false;

  constructor(opts: AdminOptions) {
    if (opts.debugToken !== undefined) {
      const t = opts.debugToken;
      if (t.length < MIN_TOKEN_LENGTH || !TOKEN68.test(t)) {
        throw new Error(
          `admin debug token: must be at least ${MIN_TOKEN_LENGTH} characters of [A-Za-z0-9-._~+/] (optionally "=" padded), e.g. from \`openssl rand -base64 32\``,
        );
      }
      // Compared as digests: equal lengths for timingSafeEqual, and no length leak.
      this.tokenDigest = digest(t);
    }
    this.opts = opts;
    this.handlers = {
      '/healthz': (_req, res) => void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'),
      '/readyz': (_req, res) => {
        if (this.opts.draining?.()) res.writeHead(503, { 'content-type': 'text/plain' }).end('not ready: draining (shutting down)\n');
        else if (this.opts.cache.ready) res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
        else
          res
            .writeHead(503, { 'content-type': 'text/plain' })
            .end(`not ready: no snapshot built yet\n${JSON.stringify(this.opts.sourceErrors())}\n`);
      },
      '/metrics': async (_req, res) => {
        const { registry } = this.opts.metrics;
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(await registry.metrics());
      },
      '/debug/proxies': (_req, res) =>
        json(
          res,
          200,
          this.opts.tracker.list().map((s) => ({
            id: s.proxy.id,
            role: s.proxy.role,
            mode: s.mode,
            peer: s.peer,
            locality: s.proxy.locality ?? null,
            service: s.proxy.service ?? null,
            connectedAt: new Date(s.connectedAt).toISOString(),
            types: s.types,
          })),
        ),
      '/debug/sources': (_req, res, url) =>
        json(res, 200, url.searchParams.has('watches') ? (this.opts.sourceWatches?.() ?? []) : this.opts.sourceErrors()),
      '/debug/mesh': (_req, res) =>
        this.opts.meshStatus ? json(res, 200, this.opts.meshStatus()) : json(res, 404, { error: 'no mesh status here' }),
      '/debug/config_dump': (_req, res, url) => {
        const snap = this.configFor(url);
        if ('error' in snap) return json(res, snap.code, { error: snap.error });
        json(res, 200, snapshotToDebugJson(snap.snapshot));
      },
      '/debug/routing': (_req, res, url) => {
        const r = this.opts.routing?.(url.searchParams.get('service') ?? undefined) ?? {
          code: 404,
          body: { error: 'routing is not available' },
        };
        json(res, r.code, r.body);
      },
      '/admin/join-token': (req, res) => this.joinToken(req, res),
      '/oauth/token': (req, res, url) => this.oauth(req, res, url),
      '/oauth/jwks': (req, res, url) => this.oauth(req, res, url),
      '/.well-known/oauth-authorization-server': (req, res, url) => this.oauth(req, res, url),
      '/.well-known/oauth-authorization-server/oauth': (req, res, url) => this.oauth(req, res, url),
    };
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => json(res, 500, { error: (err as Error).message }));
    });
  }

  /** How /debug is reachable once listening: on loopback only, with the token, or not at all. */
  get debugAccess(): 'loopback' | 'token' | 'disabled' {
    if (this.loopback) return 'loopback';
    return this.tokenDigest ? 'token' : 'disabled';
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = Object.hasOwn(ADMIN_ROUTES, url.pathname) ? (url.pathname as AdminRoute) : undefined;
    // The console shows what /debug shows (proxies, config versions, policy): it is guarded like /debug.
    if (this.opts.console && (url.pathname === CONSOLE_PREFIX || url.pathname.startsWith(`${CONSOLE_PREFIX}/`))) {
      const denied = this.authorize(req);
      if (denied) return json(res, denied.code, denied.body, denied.headers);
      return this.opts.console.handle(req, res, url);
    }
    if (!route || ADMIN_ROUTES[route] === 'token') {
      const denied = this.authorize(req);
      if (denied) return json(res, denied.code, denied.body, denied.headers);
    }
    if (!route) {
      return json(res, 404, {
        error: 'not found',
        endpoints: [
          '/healthz',
          '/readyz',
          '/metrics',
          '/debug/proxies',
          '/debug/sources',
          '/debug/sources?watches',
          '/debug/mesh',
          '/debug/routing?service=<name>',
          '/debug/config_dump?node=<id>',
          '/debug/config_dump?role=gateway&region=&zone=',
          '/debug/config_dump?role=sidecar&service=<name>',
          ...(this.opts.console ? [CONSOLE_PREFIX] : []),
        ],
      });
    }
    await this.handlers[route](req, res, url);
  }

  /**
   * POST {"service": "weather"} or {"gateway": "edge"}, optional "ttl" ("30m", "1h"; default 1 h, at most
   * 24 h): a join token an agent uses once to get that identity. Who may call this may add workloads to
   * the mesh: loopback or the admin token only, like /debug.
   */
  private async joinToken(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const mint = this.opts.joinTokens;
    if (!mint) return json(res, 404, { error: 'join tokens need a secured mesh: start the control plane with --policy' });
    if (req.method !== 'POST')
      return json(
        res,
        405,
        { error: 'POST a JSON body: {"service": "<name>"} or {"gateway": "<name>"}, optional "ttl"' },
        { allow: 'POST' },
      );
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 4096) return json(res, 413, { error: 'body too large' });
      chunks.push(c as Buffer);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      return json(res, 400, { error: 'the body is not JSON' });
    }
    const service = typeof body['service'] === 'string' ? body['service'] : undefined;
    const gateway = typeof body['gateway'] === 'string' ? body['gateway'] : undefined;
    if ((service === undefined) === (gateway === undefined))
      return json(res, 400, { error: 'give exactly one of "service" and "gateway"' });
    const name = (service ?? gateway) as string;
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name))
      return json(res, 400, { error: `${JSON.stringify(name)} is not a service or gateway name (a DNS label)` });
    let ttlMs: number | undefined;
    if (body['ttl'] !== undefined) {
      ttlMs = parseDurationMs(String(body['ttl']));
      if (ttlMs === undefined) return json(res, 400, { error: `ttl ${JSON.stringify(body['ttl'])}: use a duration such as "30m" or "1h"` });
    }
    try {
      const t = await mint(service !== undefined ? 'service' : 'gateway', name, ttlMs);
      json(res, 200, { token: t.token, spiffe_id: t.spiffeId, expires_at: t.expiresAt.toISOString() });
    } catch (err) {
      json(res, 400, { error: (err as Error).message });
    }
  }

  /** Undefined when the request may see a `token` route. */
  private authorize(req: http.IncomingMessage): Denial | undefined {
    if (this.loopback) {
      if (isLoopbackHost(req.headers.host)) return undefined;
      return {
        code: 403,
        headers: {},
        body: {
          error: 'forbidden',
          error_description: `Host "${req.headers.host ?? ''}" is not a loopback name; the admin server is bound to loopback and serves /debug only to local clients`,
        },
      };
    }
    if (!this.tokenDigest) {
      return {
        code: 403,
        headers: {},
        body: {
          error: 'forbidden',
          error_description:
            'the admin server listens on a non-loopback address and no admin token is configured, so /debug and /oauth/token are disabled; set MCPMESH_ADMIN_TOKEN (--admin-token) or bind the admin port to loopback (--admin-host 127.0.0.1). /healthz, /readyz and /metrics stay open.',
        },
      };
    }
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    if (!m) {
      return {
        code: 401,
        headers: { 'www-authenticate': `Bearer realm="${ADMIN_REALM}"` },
        body: { error: 'unauthorized', error_description: 'send Authorization: Bearer <admin token>' },
      };
    }
    if (!timingSafeEqual(digest(m[1] as string), this.tokenDigest)) {
      return {
        code: 401,
        headers: { 'www-authenticate': `Bearer realm="${ADMIN_REALM}", error="invalid_token"` },
        body: { error: 'invalid_token', error_description: 'wrong admin token' },
      };
    }
    return undefined;
  }

  // A connected proxy by node id, or a hypothetical one described by query parameters.
  private configFor(url: URL): { snapshot: Snapshot } | { error: string; code: number } {
    const nodeId = url.searchParams.get('node');
    let proxy: ProxyInfo | undefined;
    const port = (name: string, dflt: number): number | undefined => {
      const raw = url.searchParams.get(name);
      const n = raw === null ? dflt : Number(raw);
      return Number.isInteger(n) && n > 0 && n < 65536 ? n : undefined;
    };
    if (nodeId) {
      proxy = this.opts.tracker.byNodeId(nodeId)?.proxy;
      if (!proxy) return { error: `no connected proxy with node id "${nodeId}"`, code: 404 };
    } else {
      const role = url.searchParams.get('role') ?? 'gateway';
      const region = url.searchParams.get('region') ?? '';
      const zone = url.searchParams.get('zone') ?? '';
      const locality = region || zone ? { region, zone } : undefined;
      if (role === 'gateway') {
        const listenerPort = port('port', 8080);
        if (listenerPort === undefined) return { error: 'port must be an integer in 1..65535', code: 400 };
        // local_authz=true: what a gateway whose agent decides beside it gets (no authorizer clusters).
        const localAuthz = url.searchParams.get('local_authz');
        if (localAuthz !== null && localAuthz !== 'true' && localAuthz !== 'false')
          return { error: 'local_authz must be true or false', code: 400 };
        proxy = {
          id: 'config-dump',
          role,
          listenerPort,
          ...(locality ? { locality } : {}),
          ...(localAuthz === 'true' ? { localAuthz: true } : {}),
        };
      } else if (role === 'sidecar') {
        const service = url.searchParams.get('service');
        if (!service) return { error: 'role=sidecar needs service=<name>', code: 400 };
        // Building a snapshot for a sidecar issues its workload certificate: only for services that exist,
        // so a query cannot make the CA sign (and keep renewing) identities for arbitrary names.
        const mesh = this.opts.cache.currentMesh;
        if (mesh && !mesh.services.some((s) => s.name === service)) return { error: `no service "${service}" in the mesh`, code: 404 };
        const listenerPort = port('port', 15006);
        const appPort = port('app_port', 8080);
        if (listenerPort === undefined || appPort === undefined)
          return { error: 'port and app_port must be integers in 1..65535', code: 400 };
        proxy = { id: 'config-dump', role, service, listenerPort, appPort };
      } else return { error: `role must be gateway or sidecar (got "${role}")`, code: 400 };
    }
    const snapshot = this.opts.cache.peek(proxy);
    if (!snapshot) return { error: 'no snapshot built yet', code: 503 };
    return { snapshot };
  }

  private async oauth(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const issuer = this.opts.oauth;
    if (!issuer) return json(res, 404, { error: 'the development OAuth issuer is not enabled on this control plane' });
    if (url.pathname === OAUTH_PATHS.jwks) return json(res, 200, issuer.jwks());
    const base = new URL(issuer.issuer).origin;
    if (url.pathname !== OAUTH_PATHS.token) {
      const meta = issuer.metadata(`${base}${OAUTH_PATHS.token}`, `${base}${OAUTH_PATHS.jwks}`);
      // Beyond loopback the Authorization header carries the admin token, so HTTP Basic client
      // authentication cannot be used there: advertise only what works.
      return json(res, 200, this.loopback ? meta : { ...meta, token_endpoint_auth_methods_supported: ['client_secret_post'] });
    }
    if (req.method !== 'POST')
      return json(res, 405, { error: 'invalid_request', error_description: 'use POST with application/x-www-form-urlencoded' });
    try {
      // Beyond loopback the header held the admin token (already checked): never read it as client credentials.
      const authorization = this.loopback ? req.headers.authorization : undefined;
      const answer = await issuer.tokenEndpoint(new URLSearchParams(await readBody(req)), authorization, req.headers['content-type']);
      // Token responses must not be cached (RFC 6749 §5.1).
      json(res, 200, answer, { 'cache-control': 'no-store', pragma: 'no-cache' });
    } catch (err) {
      if (err instanceof OAuthError) return json(res, err.status, err.body(), { ...err.headers });
      throw err;
    }
  }

  /**
   * Listens on `opts.host` (default 127.0.0.1), or on `host` when given. Resolves with the port. Whether
   * /debug needs the token is decided here, from the address actually bound.
   */
  listen(port?: number): Promise<number>;
  listen(host: string, port: number): Promise<number>;
  listen(hostOrPort?: string | number, maybePort?: number): Promise<number> {
    const host = typeof hostOrPort === 'string' ? hostOrPort : (this.opts.host ?? '127.0.0.1');
    const port = typeof hostOrPort === 'number' ? hostOrPort : (maybePort ?? 0);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        const address = this.server.address() as AddressInfo;
        this.loopback = isLoopbackAddress(address.address);
        resolve(address.port);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
