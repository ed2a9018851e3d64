// The MCP authorizer's logic, independent of gRPC: one Envoy ext_authz check (already decoded) in, the
// HTTP answer out. server.ts wraps it in envoy.service.auth.v3.Authorization/Check.
//
// What it reads from the check request:
//  - the service: context extension `mcp_service` (set per route by the gateway's ext_authz config); with
//    `trustRequestHeaders`, else the `x-mcp-service` header. Its MCP revision: context extension `mcp_protocol`;
//  - the caller's claims: jwt_authn's verified payload, from dynamic metadata
//    (`metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].<payload key>`, when the gateway sets
//    `payload_in_metadata` and ext_authz `metadata_context_namespaces`); with `trustRequestHeaders`, else from
//    the `x-jwt-payload` header (jwt_authn `forward_payload_header`: base64url JSON). None = anonymous, no
//    roles. Headers are not trusted by default: where jwt_authn verified nothing, a client's own
//    `x-jwt-payload: <base64 of {"roles":["admin"]}>` would pass through Envoy untouched;
//  - the body (`with_request_body`): `body`, or `raw_body` when Envoy packs it as bytes; `Content-Type`; and,
//    for 2026-07-28 services, `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version`, each copy of a repeated
//    header separately (`encode_raw_headers`).
// POST (and any other method but GET, DELETE, HEAD, OPTIONS): the decision is taken on the message the server
// will execute, or the request is refused:
//  - only `application/json` in UTF-8 (415 otherwise: another charset is another message, see media-type.ts);
//  - UTF-8 only, one leading BOM dropped as servers drop it (400 otherwise; engine.ts decodeBodyText);
//  - JSON.parse semantics (duplicate keys: the last wins), at most MAX_BATCH_SIZE messages in a batch;
//  - exact method names, no control characters or edge whitespace in names and URIs, resource URIs
//    normalized and ambiguous ones refused (400; policy/text.ts, policy/uri.ts);
//  - 2026-07-28: the headers must mirror the body (Mcp-Method = method, Mcp-Name = params.name / params.uri
//    after =?base64?...?= decoding, MCP-Protocol-Version a known header-validated revision and equal to the
//    body's _meta protocol version), each sent once; 400 with JSON-RPC error -32020 (HeaderMismatch) if not.
// Then every JSON-RPC message of the body is decided; GET (event stream) and DELETE (end of session) need only
// the service. A truncated body -> 413, denied -> 403 (insufficient_scope for missing scopes); each with a
// JSON-RPC error body of bounded size. A service in shadow mode gets OK plus `x-mcpmesh-shadow-deny` instead
// of a denial.
import { protectedResourceMetadataUrl, RESOURCE_METADATA_CONTEXT_KEY } from '../translate/naming.ts';
import {
  decide,
  describeAction,
  parseMcpBody,
  rolesFromClaims,
  scopesFromClaims,
  servicePolicyOf,
  type CompiledPolicy,
  type EngineDecision,
  type McpMessage,
} from '../policy/engine.ts';
import {
  decodeMcpHeaderValue,
  HEADER_VALIDATED_PROTOCOLS,
  headerValidated,
  MCP_METHOD_HEADER,
  MCP_NAME_HEADER,
  MCP_PROTOCOL_VERSION_HEADER,
  NAME_REQUIRED_METHODS,
} from '../policy/mcp-http.ts';
import { shown } from '../policy/text.ts';
import type { McpAction } from '../policy/types.ts';
import { jsonContentTypeProblem } from './media-type.ts';

/** JSON-RPC error code of a policy denial (-32001 is the SDK's RequestTimeout, so not that). */
export const JSONRPC_FORBIDDEN = -32003;
export const JSONRPC_INVALID_REQUEST = -32600;
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INTERNAL_ERROR = -32603;
/** MCP 2026-07-28 HeaderMismatch: headers that do not mirror the body, or are missing or malformed. */
export const JSONRPC_HEADER_MISMATCH = -32020;

export const SERVICE_CONTEXT_KEY = 'mcp_service';
/** Context extension naming the MCP revision the route's service speaks (header validation from 2026-07-28). */
export const PROTOCOL_CONTEXT_KEY = 'mcp_protocol';
export const CONTENT_TYPE_HEADER = 'content-type';
export const SERVICE_HEADER = 'x-mcp-service';
export const PAYLOAD_HEADER = 'x-jwt-payload';
export const PARTIAL_BODY_HEADER = 'x-envoy-auth-partial-body';
export const JWT_AUTHN_NAMESPACE = 'envoy.filters.http.jwt_authn';
export const DECISION_HEADER = 'x-mcpmesh-decision';
export const SHADOW_HEADER = 'x-mcpmesh-shadow-deny';
export const REQUEST_ID_HEADER = 'x-request-id';
/** The only request headers the authorizer reads (the decoder skips the others). */
export const HEADERS_READ: readonly string[] = [
  SERVICE_HEADER,
  PAYLOAD_HEADER,
  PARTIAL_BODY_HEADER,
  REQUEST_ID_HEADER,
  CONTENT_TYPE_HEADER,
  MCP_METHOD_HEADER,
  MCP_NAME_HEADER,
  MCP_PROTOCOL_VERSION_HEADER,
];

/** The parts of an ext_authz CheckRequest the authorizer looks at. */
export interface CheckInput {
  /** HTTP method, upper case. */
  readonly method: string;
  /** Request header by lower-case name; only the names in HEADERS_READ need be available. Copies joined with ",". */
  header(name: string): string | undefined;
  /**
   * How many copies of the header the client sent, when Envoy says (encode_raw_headers: each copy is its own
   * entry). Undefined when Envoy joined the copies with "," itself (the headers map): then a "," in the value
   * is all there is to go by.
   */
  headerCount?(name: string): number | undefined;
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** The body Envoy sent (string or bytes); empty when none. */
  readonly body: string | Uint8Array;
  /** Content length as Envoy saw it (-1 / 0 when unknown). */
  readonly size: number;
  /** Claims from jwt_authn dynamic metadata, when Envoy forwarded them (preferred over the header). */
  readonly metadataClaims?: unknown;
  /** Identity of that metadata (its encoded bytes, and the payload key read from them), so that the caller derived from it can be cached. */
  readonly metadataKey?: MetadataKey;
}

/** jwt_authn's metadata as Envoy encoded it, and the key under which the decoder reads the payload. */
export interface MetadataKey {
  readonly payloadKey: string;
  readonly bytes: Uint8Array;
}

/** Reading jwt_authn's metadata failed: it does not decode, or its payload is not a JSON object. */
export class ClaimsMetadataError extends Error {
  override readonly name = 'ClaimsMetadataError';
}

export type Verdict = 'allow' | 'deny' | 'shadow_deny' | 'error';

export interface CheckOutcome {
  readonly verdict: Verdict;
  /** The deciding rule (`roles.x.allow[0]`, `default-deny`, `malformed-request`, ...). */
  readonly rule: string;
  readonly reason: string;
  /** The service ('' when the request named none). */
  readonly service: string;
  /** Whether the service came from the route's context extensions (trusted, bounded). */
  readonly serviceFromRoute: boolean;
  /** The deciding action (the denied one, or the first tool call, or the first message). */
  readonly action?: McpAction;
  /**
   * The messages the policy was asked about (the body's, or service-level access for GET / DELETE); absent when
   * the request was refused before any rule was looked at (malformed, header mismatch, wrong media type...).
   */
  readonly messages?: readonly McpMessage[];
  /** The caller's roles and subject, for logs. */
  readonly roles: readonly string[];
  readonly subject?: string;
  /** Denials: HTTP status, headers and body Envoy sends to the client. */
  readonly http?: { readonly status: number; readonly headers: ReadonlyArray<readonly [string, string]>; readonly body: string };
}

interface Caller {
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  readonly subject?: string;
  /**
   * Roles and scopes as one string: what a decision depends on besides the service and the action. JSON of
   * the sorted lists: unambiguous whatever a role contains (a separator character would let the roles
   * ["ops\u0001zz2"] share the cache entry of ["ops", "zz2"]), and independent of claim order, which no
   * decision depends on.
   */
  readonly key: string;
}

const BODYLESS_METHODS: ReadonlySet<string> = new Set(['GET', 'DELETE', 'HEAD', 'OPTIONS']);

const ANONYMOUS: Caller = Object.freeze({ roles: [], scopes: [], key: callerKey([], []) });

function callerKey(roles: readonly string[], scopes: readonly string[]): string {
  return JSON.stringify([[...roles].sort(), [...scopes].sort()]);
}

/** Decodes `x-jwt-payload` (base64url JSON, as jwt_authn's forward_payload_header writes it). */
export function decodePayloadHeader(value: string): { claims: Record<string, unknown> } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value.trim(), 'base64url').toString('utf8'));
  } catch {
    return { error: `header ${PAYLOAD_HEADER} is not base64url-encoded JSON` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return { error: `header ${PAYLOAD_HEADER} does not hold a JSON object of claims` };
  return { claims: parsed as Record<string, unknown> };
}

type CallerOrError = Caller | { readonly error: string };

/** Most cached callers whose metadata bytes hash alike; past it the oldest goes (the work per check stays bounded). */
const HASH_BUCKET_MAX = 4;

interface MetaEntry {
  readonly payloadKey: string;
  readonly bytes: Buffer;
  readonly caller: CallerOrError | null;
}

/**
 * A 32-bit hash of the bytes (FNV-1a over 32-bit words, seeded per process). Only picks the bucket: an entry is
 * used only if its bytes are equal, so a collision costs a comparison, never a wrong caller.
 */
function hashBytes(b: Uint8Array, seed: number): number {
  let h = seed ^ b.length;
  const n = b.length & ~3;
  let i = 0;
  for (; i < n; i += 4)
    h = Math.imul(
      h ^ ((b[i] as number) | ((b[i + 1] as number) << 8) | ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24)),
      0x01000193,
    );
  for (; i < b.length; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}

/** Caches callers by payload header value or metadata bytes (tokens are reused across many requests); per policy (roleClaim). */
export class CallerCache {
  private readonly map = new Map<string, CallerOrError>();
  // By a hash of the metadata bytes, each entry checked byte for byte: a string key of the bytes (built, then
  // hashed by V8, on every check) cost ~0.7 us and ~450 bytes of garbage per check.
  private meta = new Map<number, MetaEntry[]>();
  private metaSize = 0;
  private readonly hash: (bytes: Uint8Array) => number;
  private readonly max: number;
  /** `hash` only for tests (a constant one makes every metadata collide). */
  constructor(max = 4096, hash?: (bytes: Uint8Array) => number) {
    this.max = max;
    const seed = (Math.random() * 0x100000000) >>> 0;
    this.hash = hash ?? ((b) => hashBytes(b, seed));
  }
  get(value: string, roleClaim: string): CallerOrError {
    let c = this.map.get(value);
    if (c === undefined) {
      const d = decodePayloadHeader(value);
      c = 'error' in d ? { error: d.error } : callerOf(d.claims, roleClaim);
      if (this.map.size >= this.max) this.map.clear();
      this.map.set(value, c);
    }
    return c;
  }
  /** The caller from jwt_authn metadata, by its key; undefined when the metadata holds no payload; an error when it cannot be read. */
  fromMetadata(req: CheckInput & { readonly metadataKey: MetadataKey }, roleClaim: string): CallerOrError | undefined {
    const { payloadKey, bytes } = req.metadataKey;
    const h = this.hash(bytes);
    let bucket = this.meta.get(h);
    if (bucket !== undefined) {
      for (const e of bucket) if (e.payloadKey === payloadKey && e.bytes.equals(bytes)) return e.caller ?? undefined;
    }
    const c = metadataCaller(req, roleClaim) ?? null;
    if (this.metaSize >= this.max) {
      this.meta = new Map();
      this.metaSize = 0;
      bucket = undefined;
    }
    if (bucket === undefined) this.meta.set(h, (bucket = []));
    if (bucket.length >= HASH_BUCKET_MAX) bucket.shift();
    else this.metaSize++;
    // A copy: a view would keep the whole request buffer alive.
    bucket.push({ payloadKey, bytes: Buffer.from(bytes), caller: c });
    return c ?? undefined;
  }
  clear(): void {
    this.map.clear();
    this.meta = new Map();
    this.metaSize = 0;
  }
}

/** The caller jwt_authn's metadata names (undefined: none), or why the metadata cannot be read. */
function metadataCaller(req: CheckInput, roleClaim: string): CallerOrError | undefined {
  let claims: unknown;
  try {
    claims = req.metadataClaims;
  } catch (err) {
    return { error: `jwt_authn metadata cannot be read: ${(err as Error).message}` };
  }
  if (claims === undefined) return undefined;
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
    return { error: 'jwt_authn metadata payload is not a JSON object of claims' };
  return callerOf(claims, roleClaim);
}

function callerOf(claims: unknown, roleClaim: string): Caller {
  const sub = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>)['sub'] : undefined;
  const roles = rolesFromClaims(claims, roleClaim);
  const scopes = scopesFromClaims(claims);
  return { roles, scopes, key: callerKey(roles, scopes), ...(typeof sub === 'string' ? { subject: sub } : {}) };
}

/** The action's target; '' for service-level access. */
export function actionTargetOf(a: McpAction): string {
  switch (a.kind) {
    case 'tool':
    case 'prompt':
      return a.name;
    case 'resource':
      return a.uri;
    case 'completion':
      return a.ref;
    case 'service':
      return '';
  }
}

/** Targets longer than this are decided without the cache: a flood of distinct megabyte names must not fill memory. */
const CACHED_TARGET_MAX = 512;

/**
 * Remembers decisions by (caller's roles and scopes, service, action) for one compiled policy: the same agents
 * call the same tools over and over. Bounded; emptied when the policy changes. Keys are JSON, so no value
 * (a role, a service, a name holding any character) can run into the next.
 */
export class DecisionCache {
  // caller key -> service -> action kind -> target. Nested maps rather than one JSON key: building and hashing
  // that string was a measurable share of a check, and each level is still an exact, unambiguous key.
  private map: DecisionLevels = new Map();
  private size = 0;
  private policy: CompiledPolicy | undefined;
  private readonly max: number;
  constructor(max = 10_000) {
    this.max = max;
  }
  decide(cp: CompiledPolicy, caller: Caller, service: string, action: McpAction): EngineDecision {
    if (cp !== this.policy) {
      this.clear();
      this.policy = cp;
    }
    const target = actionTargetOf(action);
    if (target.length > CACHED_TARGET_MAX) return decide(cp, { service, roles: caller.roles, scopes: caller.scopes, action });
    let byService = this.map.get(caller.key);
    if (byService === undefined) this.map.set(caller.key, (byService = new Map()));
    let byKind = byService.get(service);
    if (byKind === undefined) byService.set(service, (byKind = new Map()));
    let byTarget = byKind.get(action.kind);
    if (byTarget === undefined) byKind.set(action.kind, (byTarget = new Map()));
    let d = byTarget.get(target);
    if (d === undefined) {
      d = decide(cp, { service, roles: caller.roles, scopes: caller.scopes, action });
      if (this.size >= this.max) {
        // Emptied whole, as before: the levels above may now be stale, so start from the top again.
        this.clear();
        return d;
      }
      byTarget.set(target, d);
      this.size++;
    }
    return d;
  }
  clear(): void {
    this.map = new Map();
    this.size = 0;
  }
}

type DecisionLevels = Map<string, Map<string, Map<McpAction['kind'], Map<string, EngineDecision>>>>;

/** Longest JSON-RPC id echoed in an error; a longer one is answered with id null (the answer stays small). */
const ECHOED_ID_MAX = 256;

/** The JSON-RPC error body a denied MCP request gets (the callers' SDKs show `error.message`). */
export interface JsonRpcErrorReply {
  readonly jsonrpc: '2.0';
  readonly id: string | number | null;
  readonly error: { readonly code: number; readonly message: string; readonly data?: Record<string, unknown> };
}

function jsonRpcError(id: string | number | null, code: number, message: string, data?: Record<string, unknown>): JsonRpcErrorReply {
  const echoed = typeof id === 'string' && id.length > ECHOED_ID_MAX ? null : id;
  return { jsonrpc: '2.0', id: echoed, error: { code, message, ...(data ? { data } : {}) } };
}

/** Most per-request errors in the answer to a denied batch; the rest are summed up in one more. */
export const BATCH_ERRORS_MAX = 10;

const JSON_HEADERS = (rule: string, verdict: string): Array<readonly [string, string]> => [
  ['content-type', 'application/json'],
  [DECISION_HEADER, `${verdict}; rule=${rule}`],
];

function denial(
  status: number,
  rule: string,
  body: unknown,
  extra: ReadonlyArray<readonly [string, string]> = [],
): NonNullable<CheckOutcome['http']> {
  return { status, headers: [...JSON_HEADERS(rule, 'deny'), ...extra], body: JSON.stringify(body) };
}

/** The client-facing error message: names the rule, not the policy's patterns (those stay in the logs). */
function forbiddenMessage(service: string, action: McpAction, d: EngineDecision): string {
  if (d.missingScopes) return `Forbidden: the token lacks scope(s) ${d.missingScopes.join(', ')} required for service "${service}"`;
  return `Forbidden: ${action.kind === 'service' ? `access to service "${service}"` : `${describeAction(action)} on service "${service}"`} is denied by policy rule ${d.rule}`;
}

export interface AuthorizeOptions {
  /** Token payloads decoded from x-jwt-payload, by header value. */
  readonly callers?: CallerCache;
  /** Decisions already taken under this policy. */
  readonly decisions?: DecisionCache;
  /**
   * Also trust the request headers x-jwt-payload (caller's claims) and x-mcp-service (service) when Envoy sends
   * no jwt_authn metadata / no context extension. Off by default: a client can set any header, so this is only
   * safe behind a proxy that removes both from client requests before its own filters set them.
   */
  readonly trustRequestHeaders?: boolean;
  /** The gateway's public base URL: 403 insufficient_scope challenges then name the RFC 9728 metadata document. */
  readonly publicUrl?: string;
}

/** Was the header sent more than once? Exact with encode_raw_headers; else a "," is all there is to go by. */
function repeatedHeader(req: CheckInput, name: string): boolean {
  const n = req.headerCount?.(name);
  return n !== undefined ? n > 1 : (req.header(name) ?? '').includes(',');
}

/**
 * 2026-07-28: why the request's MCP headers do not mirror its body (-> 400, HeaderMismatch), or undefined.
 * Envoy's header RBAC decided on these headers; the server will execute the body: they must say the same.
 */
function headerMismatch(req: CheckInput, messages: readonly McpMessage[], batch: boolean): string | undefined {
  for (const h of [MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER]) {
    // Envoy before 1.38 matches a repeated header as its copies joined with ",", 1.38 and later each copy on
    // its own: either way RBAC may have judged a name the body does not carry.
    if (repeatedHeader(req, h)) return `header ${h} is sent more than once`;
  }
  const version = req.header(MCP_PROTOCOL_VERSION_HEADER);
  if (version === undefined) return `header ${MCP_PROTOCOL_VERSION_HEADER} is missing`;
  if (!HEADER_VALIDATED_PROTOCOLS.includes(version))
    return `header ${MCP_PROTOCOL_VERSION_HEADER} ${shown(version)} is not a revision the mesh knows to mirror the body in headers (${HEADER_VALIDATED_PROTOCOLS.join(', ')})`;
  if (batch) return 'a 2026-07-28 POST carries one JSON-RPC message, not a batch (its headers cannot mirror several)';
  const m = messages[0] as McpMessage;
  if (m.method === undefined) return 'a 2026-07-28 POST carries a request or a notification, not a response';
  const method = req.header(MCP_METHOD_HEADER);
  if (method === undefined) return `header ${MCP_METHOD_HEADER} is missing`;
  if (method !== m.method) return `header ${MCP_METHOD_HEADER} ${shown(method)} does not match the body's method ${shown(m.method)}`;
  const rawName = req.header(MCP_NAME_HEADER);
  if (rawName === undefined) {
    if (NAME_REQUIRED_METHODS.has(m.method)) return `header ${MCP_NAME_HEADER} is missing (required for ${m.method})`;
  } else {
    const decoded = decodeMcpHeaderValue(rawName);
    if ('error' in decoded) return `header ${MCP_NAME_HEADER} ${decoded.error}`;
    if (m.target === undefined)
      return `header ${MCP_NAME_HEADER} ${shown(decoded.value)} names something, the body's ${m.method} names nothing`;
    if (decoded.value !== m.target) return `header ${MCP_NAME_HEADER} ${shown(decoded.value)} does not match the body's ${shown(m.target)}`;
  }
  if (m.protocolVersion !== undefined && m.protocolVersion !== version)
    return `header ${MCP_PROTOCOL_VERSION_HEADER} ${shown(version)} does not match the body's _meta protocol version ${shown(m.protocolVersion)}`;
  return undefined;
}

/** Decides one ext_authz check against a compiled policy (the caches change nothing but speed). */
export function authorize(cp: CompiledPolicy, req: CheckInput, opts: AuthorizeOptions = {}): CheckOutcome {
  const trustHeaders = opts.trustRequestHeaders === true;
  const decisions = opts.decisions;
  // 1. Which service.
  const fromRoute = req.contextExtensions[SERVICE_CONTEXT_KEY];
  const service = fromRoute || (trustHeaders ? req.header(SERVICE_HEADER) : undefined) || '';
  if (service === '') {
    const reason = `the check request names no MCP service (context extension "${SERVICE_CONTEXT_KEY}" on the route's ext_authz check_settings${trustHeaders ? `, or header ${SERVICE_HEADER}` : ''})`;
    return {
      verdict: 'error',
      rule: 'no-service',
      reason,
      service: '',
      serviceFromRoute: false,
      roles: [],
      http: denial(
        403,
        'no-service',
        jsonRpcError(null, JSONRPC_INTERNAL_ERROR, `Forbidden: the mesh could not tell which MCP service this request is for`),
      ),
    };
  }
  const serviceFromRoute = !!fromRoute;

  // 2. Who is calling.
  let caller: Caller = ANONYMOUS;
  const fromMetadata =
    req.metadataKey !== undefined && opts.callers
      ? opts.callers.fromMetadata(req as CheckInput & { metadataKey: MetadataKey }, cp.policy.roleClaim)
      : metadataCaller(req, cp.policy.roleClaim);
  if (fromMetadata && 'error' in fromMetadata) {
    // Envoy sent jwt_authn metadata the authorizer cannot read: a fault between the two, not the client's.
    // Fail closed, and say why (a bare gRPC INTERNAL would reach the client as Envoy's status_on_error).
    return {
      verdict: 'error',
      rule: 'bad-claims-metadata',
      reason: fromMetadata.error,
      service,
      serviceFromRoute,
      roles: [],
      http: denial(
        500,
        'bad-claims-metadata',
        jsonRpcError(null, JSONRPC_INTERNAL_ERROR, 'Internal error: the mesh could not read the verified token claims'),
      ),
    };
  }
  if (fromMetadata) caller = fromMetadata;
  else if (trustHeaders) {
    const payload = req.header(PAYLOAD_HEADER);
    if (payload !== undefined && payload !== '') {
      const c = (opts.callers ?? new CallerCache()).get(payload, cp.policy.roleClaim);
      if ('error' in c) {
        return {
          verdict: 'error',
          rule: 'bad-claims',
          reason: c.error,
          service,
          serviceFromRoute,
          roles: [],
          http: denial(
            403,
            'bad-claims',
            jsonRpcError(null, JSONRPC_INTERNAL_ERROR, 'Forbidden: the mesh could not read the verified token claims'),
          ),
        };
      }
      caller = c;
    }
  }
  const who = caller;
  const wouldDeny = (
    rule: string,
    reason: string,
    http: NonNullable<CheckOutcome['http']>,
    action?: McpAction,
    messages?: readonly McpMessage[],
  ): CheckOutcome => {
    const base = { rule, reason, service, serviceFromRoute, roles: who.roles, subject: who.subject, action, messages };
    return servicePolicyOf(cp, service).mode === 'shadow' ? { verdict: 'shadow_deny', ...base } : { verdict: 'deny', ...base, http };
  };

  // 3. What is asked for.
  let messages: readonly McpMessage[];
  let batch = false;
  // POST carries JSON-RPC. So does any other body-carrying method a lenient server might accept (PUT, PATCH...):
  // only the methods that carry no message (GET stream, DELETE session, HEAD, OPTIONS) skip the body.
  if (!BODYLESS_METHODS.has(req.method)) {
    if (req.header(PARTIAL_BODY_HEADER) === 'true') {
      const reason = `the request body is larger than the authorizer may see (ext_authz with_request_body.max_request_bytes${req.size > 0 ? `; body is ${req.size} bytes` : ''}): a truncated MCP request cannot be authorized`;
      return wouldDeny(
        'body-too-large',
        reason,
        denial(413, 'body-too-large', jsonRpcError(null, JSONRPC_INVALID_REQUEST, 'Request body too large for the mesh to authorize')),
      );
    }
    const mediaProblem = jsonContentTypeProblem(req.header(CONTENT_TYPE_HEADER), repeatedHeader(req, CONTENT_TYPE_HEADER));
    if (mediaProblem) {
      return wouldDeny(
        'unsupported-media-type',
        mediaProblem,
        denial(415, 'unsupported-media-type', jsonRpcError(null, JSONRPC_INVALID_REQUEST, `Unsupported Media Type: ${mediaProblem}`)),
      );
    }
    const parsed = parseMcpBody(req.body);
    if ('error' in parsed) {
      const noBody = req.body.length === 0 && req.size > 0;
      const reason = noBody
        ? `Envoy sent no body for a ${req.size}-byte ${req.method || 'request'} (is ext_authz with_request_body configured?)`
        : parsed.error;
      const notJson = !noBody && parsed.notJson === true;
      const code = notJson ? JSONRPC_PARSE_ERROR : JSONRPC_INVALID_REQUEST;
      const msg = `${notJson ? 'Parse error' : 'Invalid Request'}: ${reason}`;
      return wouldDeny('malformed-request', reason, denial(400, 'malformed-request', jsonRpcError(parsed.id ?? null, code, msg)));
    }
    messages = parsed.messages;
    batch = parsed.batch;
    const protocol = req.contextExtensions[PROTOCOL_CONTEXT_KEY];
    if (protocol !== undefined && headerValidated(protocol)) {
      const mismatch = headerMismatch(req, messages, batch);
      if (mismatch) {
        const id = batch ? null : (messages[0]?.id ?? null);
        return wouldDeny(
          'header-mismatch',
          mismatch,
          denial(400, 'header-mismatch', jsonRpcError(id, JSONRPC_HEADER_MISMATCH, `Header mismatch: ${mismatch}`)),
        );
      }
    }
  } else {
    messages = [{ action: { kind: 'service' } }];
  }

  // 4. Decide every message; the first denial decides the request.
  let allowRule = '';
  let firstAllow: EngineDecision | undefined;
  let firstTool: McpAction | undefined;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as McpMessage;
    const d = decisions
      ? decisions.decide(cp, caller, service, m.action)
      : decide(cp, { service, roles: caller.roles, scopes: caller.scopes, action: m.action });
    if (!d.allow) {
      const where = batch ? `batch element [${i}]: ` : '';
      const message = forbiddenMessage(service, m.action, d);
      const data = { rule: d.rule, service };
      let body: unknown;
      if (!batch) body = jsonRpcError(m.id ?? null, JSONRPC_FORBIDDEN, message, data);
      else {
        // One error per request of the batch (notifications and responses get none), all for the same reason;
        // past BATCH_ERRORS_MAX, one more error (id null) counts the rest: the answer stays a few KiB.
        const ids = messages.flatMap((x) => (x.id !== undefined ? [x.id] : []));
        const errs = ids.slice(0, BATCH_ERRORS_MAX).map((id) => jsonRpcError(id, JSONRPC_FORBIDDEN, `${where}${message}`, data));
        if (ids.length > BATCH_ERRORS_MAX)
          errs.push(
            jsonRpcError(
              null,
              JSONRPC_FORBIDDEN,
              `${ids.length - BATCH_ERRORS_MAX} more requests of this batch are not executed: ${where}${message}`,
              data,
            ),
          );
        body = errs.length > 0 ? errs : jsonRpcError(null, JSONRPC_FORBIDDEN, `${where}${message}`, data);
      }
      // MCP authorization: a 403 for missing scopes says which scopes to ask for and where the metadata is.
      const document =
        req.contextExtensions[RESOURCE_METADATA_CONTEXT_KEY] ??
        (opts.publicUrl ? protectedResourceMetadataUrl(opts.publicUrl, service) : undefined);
      const metadata = document ? `, resource_metadata="${document}"` : '';
      const extra: Array<readonly [string, string]> = d.missingScopes
        ? [
            [
              'www-authenticate',
              `Bearer error="insufficient_scope", scope="${servicePolicyOf(cp, service).requiredScopes.join(' ')}"${metadata}`,
            ],
          ]
        : [];
      return wouldDeny(d.rule, where + d.reason, denial(403, d.rule, body, extra), m.action, messages);
    }
    if (firstAllow === undefined) {
      firstAllow = d;
      allowRule = d.rule;
    } else if (d.rule !== allowRule && !allowRule.split(',').includes(d.rule)) allowRule += `,${d.rule}`;
    if (firstTool === undefined && m.action.kind === 'tool') firstTool = m.action;
  }
  return new Allowed(
    allowRule,
    service,
    serviceFromRoute,
    caller,
    firstTool ?? messages[0]?.action,
    messages,
    firstAllow as EngineDecision,
  );
}

/**
 * An allow outcome. A class, not an object literal with a getter: such a literal is built slowly on every
 * check (the accessor is defined at run time), and allowing is the hot path.
 */
class Allowed implements CheckOutcome {
  readonly verdict = 'allow';
  readonly rule: string;
  readonly service: string;
  readonly serviceFromRoute: boolean;
  readonly roles: readonly string[];
  readonly subject: string | undefined;
  readonly action: McpAction | undefined;
  readonly messages: readonly McpMessage[];
  private readonly first: EngineDecision;
  constructor(
    rule: string,
    service: string,
    serviceFromRoute: boolean,
    caller: Caller,
    action: McpAction | undefined,
    messages: readonly McpMessage[],
    first: EngineDecision,
  ) {
    this.rule = rule;
    this.service = service;
    this.serviceFromRoute = serviceFromRoute;
    this.roles = caller.roles;
    this.subject = caller.subject;
    this.action = action;
    this.messages = messages;
    this.first = first;
  }
  // Only read for logs: built on demand.
  get reason(): string {
    const n = this.messages.length;
    return n > 1 ? `all ${n} batch elements allowed; first: ${this.first.reason}` : this.first.reason;
  }
}
