// The MCP authorizer's logic, independent of gRPC: one Envoy ext_authz check (already decoded) in, the
// HTTP answer out. server.ts wraps it in envoy.service.auth.v3.Authorization/Check.
//
// What it reads from the check request:
//  - the service: context extension `mcp_service` (set per route by the gateway's ext_authz config); with
//    `trustRequestHeaders`, else the `x-mcp-service` header;
//  - the caller's claims: jwt_authn's verified payload, from dynamic metadata
//    (`metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].<payload key>`, when the gateway sets
//    `payload_in_metadata` and ext_authz `metadata_context_namespaces`); with `trustRequestHeaders`, else from
//    the `x-jwt-payload` header (jwt_authn `forward_payload_header`: base64url JSON). None = anonymous, no
//    roles. Headers are not trusted by default: where jwt_authn verified nothing, a client's own
//    `x-jwt-payload: <base64 of {"roles":["admin"]}>` would pass through Envoy untouched;
//  - the body (`with_request_body`): `body`, or `raw_body` when Envoy packs it as bytes.
// POST (and any other method but GET, DELETE, HEAD, OPTIONS): every JSON-RPC message of the body is decided;
// GET (event stream) and DELETE (end of session) need only the service. Malformed JSON-RPC -> 400, a truncated
// body -> 413, denied -> 403; each with a JSON-RPC error body. A service in shadow mode gets OK plus
// `x-mcpmesh-shadow-deny` instead of a denial.
import { protectedResourceMetadataUrl, RESOURCE_METADATA_CONTEXT_KEY } from '../translate/naming.ts';
import { decide, describeAction, parseMcpBody, rolesFromClaims, scopesFromClaims, servicePolicyOf, type CompiledPolicy, type EngineDecision, type McpMessage } from '../policy/engine.ts';
import type { McpAction } from '../policy/types.ts';

/** JSON-RPC error code of a policy denial (-32001 is the SDK's RequestTimeout, so not that). */
export const JSONRPC_FORBIDDEN = -32003;
export const JSONRPC_INVALID_REQUEST = -32600;
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INTERNAL_ERROR = -32603;

export const SERVICE_CONTEXT_KEY = 'mcp_service';
export const SERVICE_HEADER = 'x-mcp-service';
export const PAYLOAD_HEADER = 'x-jwt-payload';
export const PARTIAL_BODY_HEADER = 'x-envoy-auth-partial-body';
export const JWT_AUTHN_NAMESPACE = 'envoy.filters.http.jwt_authn';
export const DECISION_HEADER = 'x-mcpmesh-decision';
export const SHADOW_HEADER = 'x-mcpmesh-shadow-deny';
export const REQUEST_ID_HEADER = 'x-request-id';
/** The only request headers the authorizer reads (the decoder skips the others). */
export const HEADERS_READ: readonly string[] = [SERVICE_HEADER, PAYLOAD_HEADER, PARTIAL_BODY_HEADER, REQUEST_ID_HEADER];

/** The parts of an ext_authz CheckRequest the authorizer looks at. */
export interface CheckInput {
  /** HTTP method, upper case. */
  readonly method: string;
  /** Request header by lower-case name; only the names in HEADERS_READ need be available. */
  header(name: string): string | undefined;
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** The body Envoy sent (string or bytes); empty when none. */
  readonly body: string | Uint8Array;
  /** Content length as Envoy saw it (-1 / 0 when unknown). */
  readonly size: number;
  /** Claims from jwt_authn dynamic metadata, when Envoy forwarded them (preferred over the header). */
  readonly metadataClaims?: unknown;
  /** Identity of that metadata (e.g. its encoded bytes), so that the caller derived from it can be cached. */
  readonly metadataKey?: string;
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
  /** Roles and scopes as one string: what a decision depends on besides the service and the action. */
  readonly key: string;
}

const BODYLESS_METHODS: ReadonlySet<string> = new Set(['GET', 'DELETE', 'HEAD', 'OPTIONS']);

const ANONYMOUS: Caller = Object.freeze({ roles: [], scopes: [], key: '\u0002' });

/** Decodes `x-jwt-payload` (base64url JSON, as jwt_authn's forward_payload_header writes it). */
export function decodePayloadHeader(value: string): { claims: Record<string, unknown> } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value.trim(), 'base64url').toString('utf8'));
  } catch {
    return { error: `header ${PAYLOAD_HEADER} is not base64url-encoded JSON` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { error: `header ${PAYLOAD_HEADER} does not hold a JSON object of claims` };
  return { claims: parsed as Record<string, unknown> };
}

/** Caches callers by payload header value or metadata bytes (tokens are reused across many requests); per policy (roleClaim). */
export class CallerCache {
  private readonly map = new Map<string, Caller | { error: string }>();
  private readonly meta = new Map<string, Caller | null>();
  private readonly max: number;
  constructor(max = 4096) {
    this.max = max;
  }
  get(value: string, roleClaim: string): Caller | { error: string } {
    let c = this.map.get(value);
    if (c === undefined) {
      const d = decodePayloadHeader(value);
      c = 'error' in d ? { error: d.error } : callerOf(d.claims, roleClaim);
      if (this.map.size >= this.max) this.map.clear();
      this.map.set(value, c);
    }
    return c;
  }
  /** The caller from jwt_authn metadata, by its key; undefined when the metadata holds no payload. */
  fromMetadata(req: CheckInput & { readonly metadataKey: string }, roleClaim: string): Caller | undefined {
    let c = this.meta.get(req.metadataKey);
    if (c === undefined) {
      const claims = req.metadataClaims;
      c = claims === undefined ? null : callerOf(claims, roleClaim);
      if (this.meta.size >= this.max) this.meta.clear();
      this.meta.set(req.metadataKey, c);
    }
    return c ?? undefined;
  }
  clear(): void {
    this.map.clear();
    this.meta.clear();
  }
}

function callerOf(claims: unknown, roleClaim: string): Caller {
  const sub = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>)['sub'] : undefined;
  const roles = rolesFromClaims(claims, roleClaim);
  const scopes = scopesFromClaims(claims);
  return { roles, scopes, key: `${roles.join('\u0001')}\u0002${scopes.join('\u0001')}`, ...(typeof sub === 'string' ? { subject: sub } : {}) };
}

function actionKey(a: McpAction): string {
  switch (a.kind) {
    case 'tool': return `t\u0000${a.name}`;
    case 'resource': return `r\u0000${a.uri}`;
    case 'prompt': return `p\u0000${a.name}`;
    case 'completion': return `c\u0000${a.ref}`;
    case 'service': return 's';
  }
}

/**
 * Remembers decisions by (caller's roles and scopes, service, action) for one compiled policy: the same agents
 * call the same tools over and over. Bounded; emptied when the policy changes.
 */
export class DecisionCache {
  private map = new Map<string, EngineDecision>();
  private policy: CompiledPolicy | undefined;
  private readonly max: number;
  constructor(max = 10_000) {
    this.max = max;
  }
  decide(cp: CompiledPolicy, caller: Caller, service: string, action: McpAction): EngineDecision {
    if (cp !== this.policy) {
      this.map.clear();
      this.policy = cp;
    }
    const key = `${caller.key}\u0000${service}\u0000${actionKey(action)}`;
    let d = this.map.get(key);
    if (d === undefined) {
      d = decide(cp, { service, roles: caller.roles, scopes: caller.scopes, action });
      if (this.map.size >= this.max) this.map.clear();
      this.map.set(key, d);
    }
    return d;
  }
  clear(): void {
    this.map.clear();
  }
}

function jsonRpcError(id: string | number | null, code: number, message: string, data?: Record<string, unknown>): Record<string, unknown> {
  return { jsonrpc: '2.0', id, error: { code, message, ...(data ? { data } : {}) } };
}

const JSON_HEADERS = (rule: string, verdict: string): Array<readonly [string, string]> => [['content-type', 'application/json'], [DECISION_HEADER, `${verdict}; rule=${rule}`]];

function denial(status: number, rule: string, body: unknown, extra: ReadonlyArray<readonly [string, string]> = []): NonNullable<CheckOutcome['http']> {
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
      verdict: 'error', rule: 'no-service', reason, service: '', serviceFromRoute: false, roles: [],
      http: denial(403, 'no-service', jsonRpcError(null, JSONRPC_INTERNAL_ERROR, `Forbidden: the mesh could not tell which MCP service this request is for`)),
    };
  }
  const serviceFromRoute = !!fromRoute;

  // 2. Who is calling.
  let caller: Caller = ANONYMOUS;
  const fromMetadata = req.metadataKey !== undefined && opts.callers
    ? opts.callers.fromMetadata(req as CheckInput & { metadataKey: string }, cp.policy.roleClaim)
    : req.metadataClaims !== undefined ? callerOf(req.metadataClaims, cp.policy.roleClaim) : undefined;
  if (fromMetadata) caller = fromMetadata;
  else if (trustHeaders) {
    const payload = req.header(PAYLOAD_HEADER);
    if (payload !== undefined && payload !== '') {
      const c = (opts.callers ?? new CallerCache()).get(payload, cp.policy.roleClaim);
      if ('error' in c) {
        return {
          verdict: 'error', rule: 'bad-claims', reason: c.error, service, serviceFromRoute, roles: [],
          http: denial(403, 'bad-claims', jsonRpcError(null, JSONRPC_INTERNAL_ERROR, 'Forbidden: the mesh could not read the verified token claims')),
        };
      }
      caller = c;
    }
  }
  const who = caller;
  const wouldDeny = (rule: string, reason: string, http: NonNullable<CheckOutcome['http']>, action?: McpAction): CheckOutcome => {
    const base = { rule, reason, service, serviceFromRoute, roles: who.roles, subject: who.subject, action };
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
      return wouldDeny('body-too-large', reason, denial(413, 'body-too-large', jsonRpcError(null, JSONRPC_INVALID_REQUEST, 'Request body too large for the mesh to authorize')));
    }
    const parsed = parseMcpBody(req.body);
    if ('error' in parsed) {
      const noBody = req.body.length === 0 && req.size > 0;
      const reason = noBody ? `Envoy sent no body for a ${req.size}-byte ${req.method || 'request'} (is ext_authz with_request_body configured?)` : parsed.error;
      const notJson = !noBody && parsed.error.startsWith('body is not JSON');
      const code = notJson ? JSONRPC_PARSE_ERROR : JSONRPC_INVALID_REQUEST;
      const msg = `${notJson ? 'Parse error' : 'Invalid Request'}: ${reason}`;
      return wouldDeny('malformed-request', reason, denial(400, 'malformed-request', jsonRpcError(parsed.id ?? null, code, msg)));
    }
    messages = parsed.messages;
    batch = parsed.batch;
  } else {
    messages = [{ action: { kind: 'service' } }];
  }

  // 4. Decide every message; the first denial decides the request.
  let allowRule = '';
  let firstAllow: EngineDecision | undefined;
  let firstTool: McpAction | undefined;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as McpMessage;
    const d = decisions ? decisions.decide(cp, caller, service, m.action) : decide(cp, { service, roles: caller.roles, scopes: caller.scopes, action: m.action });
    if (!d.allow) {
      const where = batch ? `batch element [${i}]: ` : '';
      const message = forbiddenMessage(service, m.action, d);
      const data = { rule: d.rule, service };
      let body: unknown;
      if (!batch) body = jsonRpcError(m.id ?? null, JSONRPC_FORBIDDEN, message, data);
      else {
        // One error per request of the batch (notifications and responses get none), all for the same reason.
        const errs = messages.filter((x) => x.id !== undefined).map((x) => jsonRpcError(x.id as string | number, JSONRPC_FORBIDDEN, `${where}${message}`, data));
        body = errs.length > 0 ? errs : jsonRpcError(null, JSONRPC_FORBIDDEN, `${where}${message}`, data);
      }
      // MCP authorization: a 403 for missing scopes says which scopes to ask for and where the metadata is.
      const document = req.contextExtensions[RESOURCE_METADATA_CONTEXT_KEY] ?? (opts.publicUrl ? protectedResourceMetadataUrl(opts.publicUrl, service) : undefined);
      const metadata = document ? `, resource_metadata="${document}"` : '';
      const extra: Array<readonly [string, string]> = d.missingScopes ? [['www-authenticate', `Bearer error="insufficient_scope", scope="${servicePolicyOf(cp, service).requiredScopes.join(' ')}"${metadata}`]] : [];
      return wouldDeny(d.rule, where + d.reason, denial(403, d.rule, body, extra), m.action);
    }
    if (firstAllow === undefined) {
      firstAllow = d;
      allowRule = d.rule;
    } else if (d.rule !== allowRule && !allowRule.split(',').includes(d.rule)) allowRule += `,${d.rule}`;
    if (firstTool === undefined && m.action.kind === 'tool') firstTool = m.action;
  }
  const first = firstAllow as EngineDecision;
  const n = messages.length;
  return {
    verdict: 'allow', rule: allowRule, service, serviceFromRoute, roles: caller.roles, subject: caller.subject,
    action: firstTool ?? messages[0]?.action,
    // Only read for logs: built on demand.
    get reason() { return n > 1 ? `all ${n} batch elements allowed; first: ${first.reason}` : first.reason; },
  };
}
