// The mesh's decision on one client request, taken the way a gateway Envoy takes it, from the xDS the control
// plane really generates for a fixed policy (translate/proxy.ts gatewayResources):
//  - the gateway listener's HTTP filter chain, in its order: jwt_authn (the caller's token is taken as
//    verified: its payload is the case's claims, normalized as the provider config says), the RBAC deny and
//    allow filters (per-route RBACPerRoute: 2026-07-28 services decide on Mcp-Method/Mcp-Name headers), the
//    ext_authz filter (the real AuthzServer over gRPC, on an ephemeral port, configured as control-plane.ts
//    runs it, unless the route disables it),
//    ext_proc and stateful sessions (response-side and routing only: they pass every request), the router;
//  - RBAC, per route, by the same evaluator as `mcpmesh policy explain` (authz/envoy-rbac.ts): a proto round
//    trip, permissions in grpc-js-xds's RBAC engine with headers as Envoy before 1.38 matches them (a repeated
//    header's values joined with ","), principals as metadata matchers on jwt_authn's payload;
//  - the CheckRequest is what Envoy's ext_authz builds: header map (lower-case names, values trimmed of
//    OWS, repeated headers joined with ",", pseudo-headers), the body as raw_body bytes up to
//    with_request_body.max_request_bytes (x-envoy-auth-partial-body says whether it was cut), the route's
//    context extensions, jwt_authn's metadata; an OK answer's header mutations apply to the upstream request.
// Anything the model does not know (a filter, a permission or principal kind, a header match gRPC's engine
// cannot judge) throws: the fuzz must not silently decide by a model that no longer matches the generated config.
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { JWT_AUTHN_NAMESPACE } from '../../control-plane/src/authz/check.ts';
import { compileRbacPerRoute, normalizedPayload, type DynamicMetadata, type RbacFilter } from '../../control-plane/src/authz/envoy-rbac.ts';
import { AuthzServer, CHECK_PATH } from '../../control-plane/src/authz/server.ts';
import {
  DEFAULT_HEALTH_CHECK,
  DEFAULT_OUTLIER_DETECTION,
  DEFAULT_CIRCUIT_BREAKERS,
  DEFAULT_ROUTING,
} from '../../control-plane/src/model/defaults.ts';
import type { Mesh, McpProtocol, MeshService } from '../../control-plane/src/model/types.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { Policy } from '../../control-plane/src/policy/types.ts';
import { GATEWAY_LISTENER, GATEWAY_PATH_VHOST, GATEWAY_ROUTES, gatewayPathPrefix } from '../../control-plane/src/translate/naming.ts';
import { gatewayResources } from '../../control-plane/src/translate/proxy.ts';
import { struct, type JsonValue } from '../../control-plane/src/translate/resource.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import type { ReplayRequest } from './oracles.ts';

/** The fuzz policy: a reader and an operator who are each denied some tools, resources and prompts. */
export const FUZZ_POLICY_YAML = `
trustDomain: fuzz.mcpmesh.test
providers:
  - name: fuzz
    issuer: "https://issuer.fuzz.test/"
    audiences: [mcp-mesh]
    jwksUri: "https://issuer.fuzz.test/jwks"
services:
  weather: {}
  tides: {}
roles:
  # Reads forecasts and reports; may drop caches except the shared one.
  reader:
    allow:
      - service: "*"
        tools: ["get_*", "drop_*", warm_cache]
        resources: ["file:///reports/*"]
        prompts: ["summary_*"]
    deny:
      - { service: "*", tools: [drop_cache] }
  # Everything but the reset, /etc and the secret prompt.
  operator:
    allow:
      - { service: "*", tools: ["*"], resources: ["*"], prompts: ["*"] }
    deny:
      - { service: "*", tools: [admin_reset], resources: ["file:///etc/*"], prompts: [secret_prompt] }
  # Service-level only (ping, lists) on weather.
  guest:
    allow:
      - service: weather
`;

/** Services of the fuzz mesh: one decided by the body (ext_authz), one by headers (RBAC). */
export const FUZZ_SERVICES: Readonly<Record<string, McpProtocol>> = { weather: '2025-11-25', tides: '2026-07-28' };
export type FuzzService = 'weather' | 'tides';

export interface Caller {
  readonly name: string;
  /** The verified token's payload as the client's identity provider wrote it. */
  readonly claims: { readonly [k: string]: JsonValue };
}

export const CALLERS: readonly Caller[] = [
  { name: 'reader', claims: { sub: 'rita', roles: ['reader'] } },
  { name: 'operator', claims: { sub: 'otto', roles: ['operator'] } },
  { name: 'guest', claims: { sub: 'gus', roles: 'guest' } },
];

/** What a client sends the gateway. */
export interface MeshRequest extends ReplayRequest {
  readonly service: FuzzService;
  readonly caller: Caller;
  /** Envoy's x-request-id for the check (deterministic per case). */
  readonly requestId: string;
}

export interface MeshVerdict {
  readonly allowed: boolean;
  /** The filter that answered (`envoy.filters.http.router` when the request went through). */
  readonly by: string;
  /** The HTTP status the client gets from the mesh (0 when the request went upstream). */
  readonly status: number;
  /** RBAC policy that decided, or the authorizer's decision header / status message. */
  readonly rule: string;
  /** Body of the mesh's own answer (denials). */
  readonly body: Uint8Array;
  /** Round trip of the ext_authz Check, when there was one. */
  readonly checkMs?: number;
  /** What goes upstream (the client's header lines after route and ext_authz mutations). */
  readonly upstream: ReplayRequest;
}

// ------------------------------------------------------------------------------------- small readers

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objAt = (o: unknown, k: string): Obj | undefined => (isObj(o) && isObj(o[k]) ? (o[k] as Obj) : undefined);
const listAt = (o: unknown, k: string): unknown[] => (isObj(o) && Array.isArray(o[k]) ? (o[k] as unknown[]) : []);
const strAt = (o: unknown, k: string): string | undefined => (isObj(o) && typeof o[k] === 'string' ? (o[k] as string) : undefined);
const typeUrl = (o: unknown): string => (strAt(o, '@type') ?? '').replace(/^type\.googleapis\.com\//, '');

const roundTrips = new WeakMap<Obj, Obj>();

/** protobufjs round trip of an Any-shaped object (what an xDS client decodes), with oneof discriminators. */
function roundTrip(any: Obj): Obj {
  let out = roundTrips.get(any);
  if (!out) {
    out = decodeAny(any);
    roundTrips.set(any, out);
  }
  return out;
}

function decodeAny(any: Obj): Obj {
  const t = lookupType(typeUrl(any));
  const { '@type': _drop, ...fields } = any;
  return t.toObject(t.decode(t.encode(t.fromObject(fields)).finish()), {
    enums: String,
    longs: Number,
    defaults: true,
    oneofs: true,
    arrays: true,
    objects: true,
  }) as Obj;
}

// -------------------------------------------------------------------------------------------- model

const ROUTER = 'envoy.extensions.filters.http.router.v3.Router';
const RBAC = 'envoy.extensions.filters.http.rbac.v3.RBAC';
const EXT_AUTHZ = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const JWT_AUTHN = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
/** Filters that never refuse a request (response-side tools/list filtering; session stickiness). */
const PASS_THROUGH = new Set([
  'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
  'envoy.extensions.filters.http.stateful_session.v3.StatefulSession',
]);

const GATEWAY_AUTHORITY = 'gateway.fuzz.test';
const identity = (b: Buffer): Buffer => b;

function service(name: string, protocol: McpProtocol): MeshService {
  return {
    name,
    protocol,
    transport: 'streamable-http',
    sidecar: false,
    incarnation: 0,
    endpoints: [{ address: '127.0.0.1', port: 9, locality: { region: 'r', zone: 'z' }, weight: 1, healthy: true }],
    routing: DEFAULT_ROUTING,
    outlierDetection: DEFAULT_OUTLIER_DETECTION,
    circuitBreakers: DEFAULT_CIRCUIT_BREAKERS,
    healthCheck: DEFAULT_HEALTH_CHECK,
  };
}

interface Filter {
  readonly name: string;
  readonly type: string;
  readonly config: Obj;
}
interface Route {
  readonly name: string;
  readonly perFilter: Obj;
  readonly headersToRemove: readonly string[];
}

/** Envoy's view of the client's header lines: lower-case names, values trimmed of spaces and tabs. */
export function envoyHeaders(lines: ReadonlyArray<readonly [string, string]>): Array<[string, string]> {
  return lines.map(([k, v]): [string, string] => [k.toLowerCase(), v.replace(/^[ \t]+|[ \t]+$/g, '')]);
}

interface DecodedCheckResponse {
  status?: { code?: number; message?: string };
  ok_response?: { headers?: HeaderOption[]; headers_to_remove?: string[] };
  denied_response?: { status?: { code?: number | string }; headers?: HeaderOption[]; body?: string };
}
interface HeaderOption {
  header?: { key?: string; value?: string };
  append_action?: string;
  append?: { value?: boolean };
}

export class MeshModel {
  readonly policy: Policy;
  readonly mesh: Mesh;
  private readonly filters: readonly Filter[];
  private readonly routes: ReadonlyMap<string, Route>;
  private readonly rbac = new Map<string, RbacFilter | undefined>();
  private readonly closeAuthz: () => Promise<void>;
  private readonly client: grpc.Client;
  /** jwt_authn: where the payload goes in metadata, and which string claims become lists. */
  private readonly payloadKey: string;
  private readonly spaceDelimited: readonly string[];

  private constructor(policy: Policy, mesh: Mesh, closeAuthz: () => Promise<void>, port: number) {
    this.policy = policy;
    this.mesh = mesh;
    this.closeAuthz = closeAuthz;
    this.client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
    const resources = gatewayResources(mesh, { id: 'gateway-fuzz', role: 'gateway', listenerPort: 8080, gatewayName: 'fuzz' });
    const listener = resources.find((r) => r.kind === 'listener' && r.name === GATEWAY_LISTENER);
    const hcm = listAt(listAt(listener?.body, 'filter_chains')[0], 'filters')
      .map((f) => objAt(f, 'typed_config'))
      .find((c) => c !== undefined);
    this.filters = listAt(hcm, 'http_filters').map((f) => ({
      name: strAt(f, 'name') ?? '',
      type: typeUrl(objAt(f, 'typed_config')),
      config: objAt(f, 'typed_config') ?? {},
    }));
    if (strAt(objAt(hcm, 'rds'), 'route_config_name') !== GATEWAY_ROUTES)
      throw new Error('fuzz mesh model: the gateway listener does not use the gateway route table');
    const routeConfig = resources.find((r) => r.kind === 'route' && r.name === GATEWAY_ROUTES);
    const vhost = listAt(routeConfig?.body, 'virtual_hosts').find((v) => strAt(v, 'name') === GATEWAY_PATH_VHOST);
    const routes = new Map<string, Route>();
    for (const svc of mesh.services) {
      // The route Envoy picks for POST /mcp/<service> on the path virtual host: the first whose match takes it.
      const path = gatewayPathPrefix(svc.name);
      const route = listAt(vhost, 'routes').find((r) => {
        const m = objAt(r, 'match') ?? {};
        if (listAt(m, 'headers').length > 0) throw new Error('fuzz mesh model: header-matched routes on the path virtual host');
        return strAt(m, 'path') === path || (strAt(m, 'prefix') !== undefined && path.startsWith(strAt(m, 'prefix') as string));
      });
      if (!route || !objAt(route, 'route')) throw new Error(`fuzz mesh model: no route to service ${svc.name}`);
      routes.set(svc.name, {
        name: strAt(route, 'name') ?? '',
        perFilter: objAt(route, 'typed_per_filter_config') ?? {},
        headersToRemove: listAt(route, 'request_headers_to_remove') as string[],
      });
    }
    this.routes = routes;
    const jwt = this.filters.find((f) => f.type === JWT_AUTHN);
    const providers = Object.values(objAt(jwt?.config, 'providers') ?? {});
    const keys = new Set(providers.map((p) => strAt(p, 'payload_in_metadata')));
    if (keys.size !== 1 || [...keys][0] === undefined) throw new Error('fuzz mesh model: expected one jwt_authn payload_in_metadata key');
    this.payloadKey = [...keys][0] as string;
    this.spaceDelimited = listAt(objAt(providers[0], 'normalize_payload_in_metadata'), 'space_delimited_claims') as string[];
  }

  static async start(policyYaml = FUZZ_POLICY_YAML): Promise<MeshModel> {
    const policy = parsePolicy(policyYaml, 'fuzz-policy.yaml');
    const publicUrl = 'https://gateway.fuzz.test';
    const mesh: Mesh = {
      services: Object.entries(FUZZ_SERVICES)
        .map(([n, p]) => service(n, p))
        .sort((a, b) => a.name.localeCompare(b.name)),
      security: { policy, publicUrl, authz: { host: '127.0.0.1', port: 18002 } },
    };
    // As the control plane runs it (control-plane.ts): claims from jwt_authn metadata only, no header trust.
    const authz = new AuthzServer({ policy, registry: new Registry(), publicUrl });
    const port = await authz.listen('127.0.0.1', 0);
    try {
      return new MeshModel(policy, mesh, () => authz.close(), port);
    } catch (err) {
      await authz.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    this.client.close();
    await this.closeAuthz();
  }

  /** The payload jwt_authn writes to metadata (space-delimited claims split into lists). */
  metadataClaims(c: Caller): { [k: string]: JsonValue } {
    return normalizedPayload(c.claims, this.spaceDelimited) as { [k: string]: JsonValue };
  }

  /** A filter's RBAC on a route (Envoy's semantics, envoy-rbac.ts), or undefined when it is disabled there. */
  private rbacFor(filter: Filter, route: Route): RbacFilter | undefined {
    const key = `${filter.name}\u0000${route.name}`;
    if (!this.rbac.has(key)) {
      // RBACPerRoute without `rbac` disables the filter on the route; no per-route config: the filter's own.
      const { '@type': _type, ...own } = filter.config;
      this.rbac.set(key, compileRbacPerRoute(objAt(route.perFilter, filter.name) ?? { rbac: own }));
    }
    return this.rbac.get(key);
  }

  async decide(r: MeshRequest): Promise<MeshVerdict> {
    const route = this.routes.get(r.service);
    if (!route) throw new Error(`fuzz mesh model: unknown service ${r.service}`);
    const lines = envoyHeaders(r.headers);
    const claims = this.metadataClaims(r.caller);
    const metadata: DynamicMetadata = { [JWT_AUTHN_NAMESPACE]: { [this.payloadKey]: claims } };
    let upstream: Array<[string, string]> = r.headers
      .filter(([k]) => !route.headersToRemove.includes(k.toLowerCase()))
      .map(([k, v]): [string, string] => [k, v]);
    const deny = (by: string, status: number, rule: string, body: string | Uint8Array, checkMs?: number): MeshVerdict => ({
      allowed: false,
      by,
      status,
      rule,
      body: typeof body === 'string' ? Buffer.from(body) : body,
      ...(checkMs !== undefined ? { checkMs } : {}),
      upstream: { method: r.method, headers: upstream, body: r.body },
    });
    for (const f of this.filters) {
      if (f.type === JWT_AUTHN || PASS_THROUGH.has(f.type)) continue;
      if (f.type === ROUTER)
        return {
          allowed: true,
          by: f.name,
          status: 0,
          rule: '',
          body: new Uint8Array(),
          upstream: { method: r.method, headers: upstream, body: r.body },
        };
      if (f.type === RBAC) {
        const rbac = this.rbacFor(f, route);
        // Shadow rules are evaluated and never deny.
        if (!rbac || rbac.shadow) continue;
        const out = rbac.evaluate({ headers: lines, path: gatewayPathPrefix(r.service), metadata });
        if (!out.allowed) return deny(f.name, 403, out.policy ?? '(no allow policy)', 'RBAC: access denied');
        continue;
      }
      if (f.type === EXT_AUTHZ) {
        const per = objAt(route.perFilter, f.name);
        const perRoute = per ? roundTrip(per) : {};
        if (perRoute['disabled'] === true) continue;
        const settings = objAt(perRoute, 'check_settings') ?? {};
        const cfg = roundTrip(f.config);
        const wrb = objAt(settings, 'with_request_body') ?? objAt(cfg, 'with_request_body');
        const out = await this.check(r, lines, claims, cfg, wrb, (objAt(settings, 'context_extensions') ?? {}) as Record<string, string>);
        if (out.denied) return deny(f.name, out.status, out.rule, out.body, out.ms);
        upstream = applyMutations(upstream, out.add, out.remove);
        continue;
      }
      throw new Error(`fuzz mesh model: gateway filter ${f.name} (${f.type}) is not modelled`);
    }
    throw new Error('fuzz mesh model: the gateway filter chain has no router');
  }

  private async check(
    r: MeshRequest,
    lines: ReadonlyArray<readonly [string, string]>,
    claims: { [k: string]: JsonValue },
    cfg: Obj,
    wrb: Obj | undefined,
    ext: Record<string, string>,
  ): Promise<
    | { denied: true; status: number; rule: string; body: string; ms: number }
    | { denied: false; add: HeaderOption[]; remove: string[]; ms: number }
  > {
    const headers: Record<string, string> = {
      ':authority': GATEWAY_AUTHORITY,
      ':method': r.method,
      ':path': gatewayPathPrefix(r.service),
      ':scheme': 'https',
    };
    const raw: Array<{ key: string; raw_value: Buffer }> = Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v) }));
    for (const [k, v] of lines) {
      headers[k] = headers[k] === undefined ? v : `${headers[k]},${v}`;
      raw.push({ key: k, raw_value: Buffer.from(v, 'latin1') });
    }
    headers['x-request-id'] = r.requestId;
    headers['x-forwarded-proto'] = 'https';
    raw.push({ key: 'x-request-id', raw_value: Buffer.from(r.requestId) }, { key: 'x-forwarded-proto', raw_value: Buffer.from('https') });
    let body = Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength);
    const http: Obj = {
      id: r.requestId,
      method: r.method,
      path: gatewayPathPrefix(r.service),
      host: GATEWAY_AUTHORITY,
      scheme: 'https',
      protocol: 'HTTP/1.1',
      size: body.length,
    };
    if (wrb) {
      const max = Number(wrb['max_request_bytes'] ?? 0);
      const partial = max > 0 && body.length > max;
      if (partial && wrb['allow_partial_message'] !== true)
        return { denied: true, status: 413, rule: 'ext_authz: body over max_request_bytes', body: 'Payload Too Large', ms: 0 };
      if (partial) body = body.subarray(0, max);
      // Envoy tells the authorizer whether the body it sends is the whole body.
      headers['x-envoy-auth-partial-body'] = partial ? 'true' : 'false';
      raw.push({ key: 'x-envoy-auth-partial-body', raw_value: Buffer.from(partial ? 'true' : 'false') });
      if (wrb['pack_as_bytes'] === true) http['raw_body'] = body;
      else http['body'] = body.toString('utf8');
    }
    if (cfg['encode_raw_headers'] === true) http['header_map'] = { headers: raw };
    else http['headers'] = headers;
    const namespaces = listAt(cfg, 'metadata_context_namespaces') as string[];
    const attributes: Obj = {
      source: { address: { socket_address: { address: '203.0.113.7', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.0.1', port_value: 8080 } } },
      request: { time: { seconds: 1_785_000_000, nanos: 0 }, http },
      context_extensions: ext,
      ...(namespaces.includes(JWT_AUTHN_NAMESPACE)
        ? { metadata_context: { filter_metadata: { [JWT_AUTHN_NAMESPACE]: struct({ [this.payloadKey]: claims }) } } }
        : {}),
    };
    const reqType = lookupType('envoy.service.auth.v3.CheckRequest');
    const encoded = Buffer.from(reqType.encode(reqType.fromObject({ attributes })).finish());
    const t0 = performance.now();
    const resp = await new Promise<Buffer>((resolve, reject) => {
      this.client.makeUnaryRequest(CHECK_PATH, identity, identity, encoded, (err, value) => (err ? reject(err) : resolve(value as Buffer)));
    }).catch((err: grpc.ServiceError) => err);
    const ms = performance.now() - t0;
    // failure_mode_allow false: an error answer is a denial with status_on_error (or 403).
    if (!Buffer.isBuffer(resp)) {
      const status = httpStatusCode(objAt(cfg, 'status_on_error')?.['code']) ?? 403;
      return { denied: true, status, rule: `ext_authz error: ${resp.message}`, body: '', ms };
    }
    const respType = lookupType('envoy.service.auth.v3.CheckResponse');
    let d: DecodedCheckResponse;
    try {
      d = respType.toObject(respType.decode(resp), {
        enums: String,
        longs: Number,
        defaults: false,
        arrays: true,
        objects: true,
      }) as DecodedCheckResponse;
    } catch (err) {
      // Envoy cannot parse it either (e.g. a proto3 string that is not UTF-8): the call fails, and fails closed.
      return {
        denied: true,
        status: httpStatusCode(objAt(cfg, 'status_on_error')?.['code']) ?? 403,
        rule: `ext_authz error: undecodable CheckResponse (${(err as Error).message})`,
        body: '',
        ms,
      };
    }
    if ((d.status?.code ?? 0) !== 0) {
      const dr = d.denied_response;
      // HttpStatus.code is an enum (decoded by name); Envoy answers 403 when the authorizer names no status.
      const code: unknown = dr?.status?.code;
      const status = (typeof code === 'number' ? code : httpStatusCode(code)) || 403;
      const decision = dr?.headers?.find((h) => h.header?.key === 'x-mcpmesh-decision')?.header?.value;
      return { denied: true, status, rule: decision ?? d.status?.message ?? '', body: dr?.body ?? '', ms };
    }
    return { denied: false, add: d.ok_response?.headers ?? [], remove: d.ok_response?.headers_to_remove ?? [], ms };
  }
}

/** envoy.type.v3.StatusCode by name (decoded with enums as strings) as a number. */
function httpStatusCode(name: unknown): number | undefined {
  if (typeof name !== 'string') return undefined;
  const field = lookupType('envoy.type.v3.HttpStatus').fields['code'];
  const values = (field?.resolve().resolvedType as { values?: Record<string, number> } | null)?.values;
  return values?.[name];
}

/** An OK CheckResponse's header mutations on the upstream request (default: overwrite, as Envoy's ext_authz does). */
function applyMutations(lines: Array<[string, string]>, add: readonly HeaderOption[], remove: readonly string[]): Array<[string, string]> {
  let out = lines.filter(([k]) => !remove.includes(k.toLowerCase()));
  for (const h of add) {
    const key = h.header?.key ?? '';
    const value = h.header?.value ?? '';
    if (key === '') continue;
    const action = h.append_action ?? (h.append?.value === true ? 'APPEND_IF_EXISTS_OR_ADD' : 'OVERWRITE_IF_EXISTS_OR_ADD');
    const exists = out.some(([k]) => k.toLowerCase() === key);
    if (action === 'ADD_IF_ABSENT' && exists) continue;
    if (action === 'OVERWRITE_IF_EXISTS' && !exists) continue;
    if (action.startsWith('OVERWRITE')) out = out.filter(([k]) => k.toLowerCase() !== key);
    out.push([key, value]);
  }
  return out;
}
