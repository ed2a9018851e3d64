// Every generated name lives here: dashboards, alerts and docs depend on them, so they change in
// one place or not at all.

/**
 * The name Envoy's statistics use for a cluster (its `alt_stat_name`). Envoy's default tag extractors take
 * a cluster or virtual host name only up to its first dot (`cluster.mcp.weather.upstream_rq_total` would
 * become envoy_cluster_name="mcp"), so what Prometheus sees has underscores: `mcp_weather`.
 */
export function statName(name: string): string {
  return name.replaceAll('.', '_');
}

/** Upstream cluster for an MCP service (gateway -> service endpoints). */
export function serviceCluster(service: string): string {
  return `mcp.${service}`;
}

/**
 * EDS name of a service's endpoints. A re-added service gets a suffixed name so xDS clients that cache
 * removed clusters (grpc-js-xds) see a changed cluster rather than an identical one they would ignore.
 */
export function serviceEndpoints(service: string, incarnation: number): string {
  return incarnation === 0 ? serviceCluster(service) : `${serviceCluster(service)}~${incarnation}`;
}

/** Cluster from a sidecar to the MCP server beside it. */
export function localAppCluster(service: string): string {
  return `local.${service}`;
}

export const GATEWAY_LISTENER = 'gateway.http';
export const GATEWAY_ROUTES = 'gateway.routes';
export const SIDECAR_INBOUND_LISTENER = 'sidecar.inbound';
export const SIDECAR_INBOUND_ROUTES = 'sidecar.inbound.routes';

/**
 * Proxyless gRPC clients (grpc-js-xds) dial `xds:///<service>` and ask for a listener of that exact name;
 * it carries an API listener (no socket) bound to the gateway route table.
 */
export function apiListener(service: string): string {
  return service;
}

/**
 * Per-service route table for an API listener. grpc-js-xds keeps the route name of a removed listener and
 * does not re-watch it when the listener returns with the same name, so a re-added service gets a new name.
 */
export function apiRoutes(service: string, incarnation: number): string {
  return incarnation === 0 ? `api.${service}` : `api.${service}~${incarnation}`;
}

/** Virtual host names appear in virtual cluster stats (vhost.<name>.vcluster...): no dots, as statName. */
export function virtualHost(service: string): string {
  return `mcp_${service}`;
}

export const GATEWAY_PATH_VHOST = 'gateway_paths';

/** The sidecar inbound virtual host (everything to the local MCP server). */
export function localVirtualHost(service: string): string {
  return `local_${service}`;
}

/**
 * Virtual cluster (Envoy per-request-class stats) of one MCP method of a 2026-07-28 service, which names
 * the method in the Mcp-Method header: `<service>__tools_call`. Prometheus sees it as the
 * envoy_virtual_cluster label of envoy_vhost_vcluster_* metrics. No dots: Envoy's tag extractor takes the
 * virtual cluster name as one dot-free token (`vhost.$.vcluster.$.**`, well_known_names.cc), and service
 * names (DNS labels) hold no `_`, so the double underscore splits service from method unambiguously.
 */
export function methodVirtualCluster(service: string, method: string): string {
  return `${service}__${method.replace(/[^A-Za-z0-9]+/g, '_')}`;
}

/** The control plane's MCP authorizer (ext_authz gRPC), as a cluster of the gateway. */
export const AUTHZ_CLUSTER = 'mcpmesh.authz';

/**
 * The tools/list processor (ext_proc gRPC; same port as the authorizer) as a cluster of its own: its streams
 * live as long as the HTTP streams they watch, so they must not take the authorizer's circuit-breaker slots.
 */
export const EXT_PROC_CLUSTER = 'mcpmesh.extproc';

/** Remote JWKS of a JWT provider. */
export function jwksCluster(provider: string): string {
  return `jwks.${provider}`;
}

/**
 * The header older gateways used for the verified claims (jwt_authn forward_payload_header). No longer set:
 * routes still remove any copy a client sends, so an MCP server never mistakes it for verified claims.
 */
export const JWT_PAYLOAD_HEADER = 'x-jwt-payload';

/** Key of the verified claims in jwt_authn's dynamic metadata (read by RBAC and the authorizer). */
export const JWT_PAYLOAD_METADATA_KEY = 'jwt_payload';

/** RFC 9728 protected resource metadata (a service's document is this path + its MCP path). */
export const PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource';

/** Gateway path prefix for a service: `/mcp/<service>`. */
export function gatewayPathPrefix(service: string): string {
  return `/mcp/${service}`;
}

/**
 * ext_authz context extension (set per route) with the URL of the RFC 9728 document that route's challenges
 * name: the authorizer's 403 insufficient_scope points where the client actually is (path or host routing).
 */
export const RESOURCE_METADATA_CONTEXT_KEY = 'resource_metadata';

/** RFC 9728 metadata document of a service as clients reach it through the gateway's path routes. */
export function protectedResourceMetadataUrl(publicUrl: string, service: string): string {
  return `${publicUrl}${PROTECTED_RESOURCE_PATH}${gatewayPathPrefix(service)}`;
}

/**
 * Stat and dynamic-metadata prefixes of the two RBAC filters. Envoy counts under the filter-level prefix only
 * (http.<hcm>.rbac.<prefix>[policy.<name>.]allowed|denied|shadow_*) and names its metadata keys
 * `<prefix>shadow_effective_policy_id` etc. in the one namespace both filters share (envoy.filters.http.rbac),
 * so the two prefixes keep the filters' counters and decisions apart.
 */
export const RBAC_STAT_PREFIX = { deny: 'mcpmesh_deny_', allow: 'mcpmesh_allow_', callers: 'mcpmesh_callers_' } as const;

/**
 * RBAC policy name: the service and the policy rule (`weather/roles/analyst/allow[0]`), so per-policy counters
 * (track_per_rule_stats) count per service. No dots: Envoy's tag extractor takes the policy name as one
 * dot-free token; a role name's own `.`, `/` and `%` are percent-encoded so names stay distinct.
 */
export function rbacPolicyName(service: string, ...parts: readonly string[]): string {
  const encode = (part: string): string => part.replace(/[%./]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return [service, ...parts].map(encode).join('/');
}

/** The parts of an RBAC policy name (rbacPolicyName's inverse): [service, ...parts]. */
export function rbacPolicyNameParts(name: string): string[] {
  return name.split('/').map((part) => part.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))));
}

/** Envoy stat prefixes (HTTP connection managers); Prometheus sees them as envoy_http_<prefix>_*. */
export const STAT_PREFIX = {
  gateway: 'gateway',
  sidecarInbound: 'sidecar_inbound',
  apiListener: (service: string): string => `api_${service.replace(/-/g, '_')}`,
} as const;
