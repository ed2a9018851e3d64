// The gateway's authorization chain for one request on a service route, as the generated config wires it:
// jwt_authn's verified payload in dynamic metadata, the route's header RBAC (DENY, then ALLOW: 2026-07-28
// services; disabled for the others), then the MCP authorizer (ext_authz) with the route's context extensions.
// Built from the very per-route filter configs the control plane pushes (translate/routes.ts securedRoute) and
// evaluated with Envoy's RBAC semantics (envoy-rbac.ts) and the authorizer's own `authorize` (check.ts), so
// `mcpmesh policy explain` and the tests that compare revisions see what the mesh decides, not a copy of it.
// Not on any request path: the gateway runs Envoy, and the authorizer runs server.ts.
import { DEFAULT_HEALTH_CHECK, DEFAULT_OUTLIER_DETECTION, DEFAULT_CIRCUIT_BREAKERS, DEFAULT_ROUTING } from '../model/defaults.ts';
import type { McpProtocol, MeshSecurity, MeshService } from '../model/types.ts';
import type { CompiledPolicy } from '../policy/engine.ts';
import { authorize, JWT_AUTHN_NAMESPACE, type AuthorizeOptions, type CheckInput, type CheckOutcome } from './check.ts';
import { compileRbacPerRoute, normalizedPayload, type DynamicMetadata, type RbacFilter, type RbacFilterResult } from './envoy-rbac.ts';
import { JWT_PAYLOAD_METADATA_KEY, gatewayPathPrefix } from '../translate/naming.ts';
import { rbacFilters } from '../translate/rbac.ts';
import type { ProtoObject } from '../translate/resource.ts';
import { securedRoute } from '../translate/routes.ts';
import { EXT_AUTHZ_FILTER, gatewayResource, spaceDelimitedClaims } from '../translate/security.ts';

/** One HTTP request as it reaches the gateway. */
export interface GatewayRequest {
  /** HTTP method, upper case. */
  readonly method: string;
  /** Headers as sent, each copy its own entry; names in any case. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
  /** The token's payload as jwt_authn verified it; absent: no token (only where the gateway requires none). */
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** A service route's authorization filters, in the gateway's filter order. */
export interface GatewayRoute {
  readonly service: MeshService;
  readonly path: string;
  /** The RBAC filters the route enables (none for services that are not header-routable). */
  readonly rbac: ReadonlyArray<{ readonly filter: string; readonly config: RbacFilter }>;
  /** The route's ext_authz check_settings context extensions; undefined when ext_authz is disabled on it. */
  readonly contextExtensions: Readonly<Record<string, string>> | undefined;
  /** Claims jwt_authn normalizes into lists in its metadata. */
  readonly spaceDelimitedClaims: readonly string[];
}

/** A MeshService for `name` speaking `protocol`, everything else defaulted (only name and protocol shape the route's security). */
export function serviceOf(name: string, protocol: McpProtocol): MeshService {
  return {
    name,
    protocol,
    transport: 'streamable-http',
    sidecar: false,
    incarnation: 0,
    endpoints: [],
    routing: DEFAULT_ROUTING,
    outlierDetection: DEFAULT_OUTLIER_DETECTION,
    circuitBreakers: DEFAULT_CIRCUIT_BREAKERS,
    healthCheck: DEFAULT_HEALTH_CHECK,
  };
}

/** The authorization filters of the gateway's route to `svc` (path routing), from the config the control plane generates. */
export function gatewayRoute(sec: MeshSecurity, svc: MeshService): GatewayRoute {
  const route = securedRoute({ services: [svc], security: sec }, svc, (s) => gatewayResource(s, svc));
  const perFilter = (route['typed_per_filter_config'] ?? {}) as Record<string, ProtoObject>;
  // The HCM's order: jwt_authn, the RBAC filters (rbacFilters: DENY then ALLOW), ext_authz, ext_proc.
  const rbac = rbacFilters().flatMap((f) => {
    const name = f['name'] as string;
    const cfg = perFilter[name];
    const config = cfg ? compileRbacPerRoute(cfg) : undefined;
    return config ? [{ filter: name, config }] : [];
  });
  const authz = perFilter[EXT_AUTHZ_FILTER] as
    | { disabled?: boolean; check_settings?: { context_extensions?: Record<string, string> } }
    | undefined;
  return {
    service: svc,
    path: gatewayPathPrefix(svc.name),
    rbac,
    contextExtensions: authz && !authz.disabled ? { ...authz.check_settings?.context_extensions } : undefined,
    spaceDelimitedClaims: spaceDelimitedClaims(sec.policy.roleClaim),
  };
}

/** jwt_authn's dynamic metadata for the request (what RBAC principals and the authorizer read), or none. */
export function jwtMetadata(route: GatewayRoute, req: GatewayRequest): DynamicMetadata {
  return req.claims
    ? { [JWT_AUTHN_NAMESPACE]: { [JWT_PAYLOAD_METADATA_KEY]: normalizedPayload(req.claims, route.spaceDelimitedClaims) } }
    : {};
}

export interface RbacStage {
  /** Each enabled RBAC filter that ran, in order (the chain stops at the first enforced denial). */
  readonly filters: ReadonlyArray<{ readonly filter: string; readonly result: RbacFilterResult }>;
  /** The enforced denial, if any: Envoy answers 403 itself and the authorizer is not asked. */
  readonly denied?: { readonly filter: string; readonly result: RbacFilterResult };
}

/** The route's RBAC filters on the request's headers and jwt_authn metadata. */
export function runRbac(route: GatewayRoute, req: GatewayRequest): RbacStage {
  const filters: Array<{ filter: string; result: RbacFilterResult }> = [];
  const metadata = jwtMetadata(route, req);
  for (const { filter, config } of route.rbac) {
    const result = config.evaluate({ headers: req.headers, path: route.path, metadata });
    filters.push({ filter, result });
    if (!result.allowed && !result.shadow) return { filters, denied: { filter, result } };
  }
  return { filters };
}

/**
 * The check the route's ext_authz filter sends for the request: its context extensions, the body, every header
 * copy on its own (encode_raw_headers) and jwt_authn's metadata (metadata_context_namespaces).
 */
export function extAuthzCheck(route: GatewayRoute, req: GatewayRequest): CheckInput {
  const joined = new Map<string, string>();
  const counts = new Map<string, number>();
  for (const [k, v] of req.headers) {
    const name = k.toLowerCase();
    const prev = joined.get(name);
    joined.set(name, prev === undefined ? v : `${prev},${v}`);
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  const payload = jwtMetadata(route, req)[JWT_AUTHN_NAMESPACE]?.[JWT_PAYLOAD_METADATA_KEY];
  return {
    method: req.method.toUpperCase(),
    header: (name) => joined.get(name),
    headerCount: (name) => counts.get(name) ?? 0,
    contextExtensions: route.contextExtensions ?? {},
    body: req.body,
    size: Buffer.byteLength(req.body),
    ...(payload !== undefined ? { metadataClaims: payload } : {}),
  };
}

export interface ChainOutcome {
  readonly rbac: RbacStage;
  /** The authorizer's answer; absent when RBAC denied first or ext_authz is disabled on the route. */
  readonly authz?: CheckOutcome;
  /** Does the request reach the MCP server (shadow-mode denials do)? */
  readonly forwarded: boolean;
}

/** The whole chain with the authorizer's own `authorize` in process (as `mcpmesh policy explain` runs it). */
export function gatewayDecision(
  route: GatewayRoute,
  policy: CompiledPolicy,
  req: GatewayRequest,
  opts: AuthorizeOptions = {},
): ChainOutcome {
  const rbac = runRbac(route, req);
  if (rbac.denied) return { rbac, forwarded: false };
  if (route.contextExtensions === undefined) return { rbac, forwarded: true };
  const authz = authorize(policy, extAuthzCheck(route, req), opts);
  return { rbac, authz, forwarded: authz.verdict === 'allow' || authz.verdict === 'shadow_deny' };
}
