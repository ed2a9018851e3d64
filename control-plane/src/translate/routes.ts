import { protoDuration } from '../model/duration.ts';
import { escapeRegex } from '../model/glob.ts';
import type { Mesh, MeshSecurity, MeshService, Routing } from '../model/types.ts';
import {
  apiRoutes,
  GATEWAY_PATH_VHOST,
  PROTECTED_RESOURCE_PATH,
  GATEWAY_ROUTES,
  SIDECAR_INBOUND_ROUTES,
  gatewayPathPrefix,
  localAppCluster,
  localVirtualHost,
  methodVirtualCluster,
  serviceCluster,
  virtualHost,
} from './naming.ts';
import { u32, type ProtoObject, type XdsResource } from './resource.ts';
import { RBAC_ALLOW_FILTER, RBAC_DENY_FILTER, rbacDisabled, rbacPerRoute } from './rbac.ts';
import {
  challengeMetadata,
  EXT_AUTHZ_FILTER,
  extAuthzPerRoute,
  gatewayResource,
  headerRoutable,
  hostResource,
  notFoundRoute,
  protectedResourceRoute,
  tokenHeadersToRemove,
  type ProtectedResource,
} from './security.ts';
import { EXT_PROC_FILTER_NAME, extProcRouteOverride } from '../extproc/config.ts';
import { serverSessionEcho, sessionAffinityHash } from './sessions.ts';

// Only failures where the request never reached the server are retried: a tools/call is not idempotent.
// (`unavailable` is not one of them: it retries a gRPC UNAVAILABLE status, an answer the server produced.)
const RETRY_ON = 'connect-failure,refused-stream,reset-before-request';

/** Added to every route that reaches an MCP server: the server's own session id for the access log. */
const SERVER_SESSION: ProtoObject = { response_headers_to_add: [serverSessionEcho()] };

function routeAction(cluster: string, routing: Routing, extra: ProtoObject = {}): ProtoObject {
  return {
    cluster,
    // 0 disables Envoy's 15 s default, which would cut long tool calls and SSE streams.
    timeout: protoDuration(0),
    idle_timeout: protoDuration(routing.streamIdleTimeoutMs),
    max_stream_duration: { max_stream_duration: protoDuration(routing.maxStreamDurationMs) },
    ...(routing.retries > 0 ? { retry_policy: { retry_on: RETRY_ON, num_retries: u32(routing.retries) } } : {}),
    ...extra,
  };
}

// Listeners strip the port from Host (strip_any_host_port), so bare names match `weather:8080` too.
function hostDomains(svc: MeshService): string[] {
  return [...new Set([svc.name, ...svc.routing.hosts])].sort();
}

/**
 * What a route to a service adds when the mesh is secured: its authorizer settings, the metadata document
 * its 401 challenge names, and no client token upstream. (authz/chain.ts evaluates these very filter configs
 * for `mcpmesh policy explain` and the tests.)
 */
export function securedRoute(mesh: Mesh, svc: MeshService, resource: (sec: MeshSecurity) => ProtectedResource): ProtoObject {
  if (!mesh.security) return {};
  const rbac = headerRoutable(svc) ? rbacPerRoute(mesh.security, svc) : rbacDisabled();
  const doc = resource(mesh.security);
  return {
    metadata: challengeMetadata(doc),
    typed_per_filter_config: {
      [RBAC_DENY_FILTER]: rbac.deny,
      [RBAC_ALLOW_FILTER]: rbac.allow,
      [EXT_AUTHZ_FILTER]: extAuthzPerRoute(svc, doc),
      [EXT_PROC_FILTER_NAME]: extProcRouteOverride(svc.name),
    },
    request_headers_to_remove: tokenHeadersToRemove(mesh.security, svc),
  };
}

/** The methods of MCP 2026-07-28 that get their own request stats (others count as `<service>__other`). */
const MCP_METHODS = [
  'initialize',
  'ping',
  'server/discover',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
] as const;

/**
 * Per-MCP-method request stats for a 2026-07-28 service: Envoy virtual clusters on the Mcp-Method header
 * (envoy_vhost_vcluster_* with envoy_virtual_cluster="<service>__<method>"). They only count; routing and
 * per-route filter config stay on the one route, so this costs no duplicated config. Older revisions carry
 * the method in the body only: mcpmesh_authz_decisions_total and the access log cover them.
 * `pathScoped`: on the shared path virtual host, also match the service's gateway path.
 */
function methodVirtualClusters(svc: MeshService, pathScoped: boolean): ProtoObject[] {
  if (!headerRoutable(svc)) return [];
  const escaped = escapeRegex(gatewayPathPrefix(svc.name));
  const path = pathScoped ? [{ name: ':path', string_match: { safe_regex: { regex: `^${escaped}([/?].*)?$` } } }] : [];
  return [
    ...MCP_METHODS.map((m) => ({
      name: methodVirtualCluster(svc.name, m),
      headers: [...path, { name: 'mcp-method', string_match: { exact: m } }],
    })),
    // Envoy counts a request in its first matching virtual cluster only: this one takes the rest.
    { name: methodVirtualCluster(svc.name, 'other'), headers: pathScoped ? path : [{ name: ':path', string_match: { prefix: '/' } }] },
  ];
}

/**
 * By host (`weather`, extra hosts; any port) the whole path space goes to the service. In a secured mesh
 * each host also serves its own RFC 9728 documents, whose `resource` is the URL a client used on that host:
 * with several hosts, routes are per host (matched on :authority) so each challenge names its own document.
 */
function hostVhost(svc: MeshService, mesh?: Mesh): ProtoObject {
  const vclusters = mesh ? methodVirtualClusters(svc, false) : [];
  const domains = hostDomains(svc);
  const sec = mesh?.security;
  const perHost = sec !== undefined && domains.length > 1;
  const routesFor = (host: string): ProtoObject[] => {
    const match = perHost ? { headers: [{ name: ':authority', string_match: { exact: host } }] } : {};
    const suffix = perHost ? `.${host}` : '';
    const docs = sec
      ? [
          protectedResourceRoute(sec, `${svc.name}.oauth-protected-resource${suffix}`, hostResource(sec, svc, host), match),
          protectedResourceRoute(
            sec,
            `${svc.name}.oauth-protected-resource-root${suffix}`,
            { ...hostResource(sec, svc, host), metadataPath: PROTECTED_RESOURCE_PATH },
            match,
          ),
        ]
      : [];
    const main = {
      name: `${svc.name}.host${suffix}`,
      match: { ...match, prefix: '/' },
      route: routeAction(serviceCluster(svc.name), svc.routing, sessionAffinityHash(svc)),
      ...(mesh ? { ...SERVER_SESSION, ...securedRoute(mesh, svc, (s) => hostResource(s, svc, host)) } : {}),
    };
    return [...docs, main];
  };
  return {
    name: virtualHost(svc.name),
    domains,
    ...(vclusters.length > 0 ? { virtual_clusters: vclusters } : {}),
    routes: perHost ? domains.flatMap(routesFor) : routesFor(domains[0] as string),
  };
}

/**
 * Gateway routes: by host (hostVhost), and on any other host `/mcp/<service>[/...]` goes to the service
 * with the prefix rewritten to the service's own MCP path. Exact + slash-prefix matches keep `/mcp/weather`
 * from catching `/mcp/weatherx`.
 */
export function gatewayRoutes(mesh: Mesh): XdsResource {
  const hostVhosts = mesh.services.map((svc) => hostVhost(svc, mesh));
  const pathRoutes = mesh.services.flatMap((svc) => {
    const prefix = gatewayPathPrefix(svc.name);
    const target = svc.routing.mcpPath;
    const targetDir = target.endsWith('/') ? target : `${target}/`;
    const resource = (sec: MeshSecurity): ProtectedResource => gatewayResource(sec, svc);
    return [
      {
        name: `${svc.name}.path`,
        match: { path: prefix },
        route: routeAction(serviceCluster(svc.name), svc.routing, { prefix_rewrite: target, ...sessionAffinityHash(svc) }),
        ...SERVER_SESSION,
        ...securedRoute(mesh, svc, resource),
      },
      {
        name: `${svc.name}.subpath`,
        match: { prefix: `${prefix}/` },
        route: routeAction(serviceCluster(svc.name), svc.routing, { prefix_rewrite: targetDir, ...sessionAffinityHash(svc) }),
        ...SERVER_SESSION,
        ...securedRoute(mesh, svc, resource),
      },
    ];
  });
  const vclusters = mesh.services.flatMap((svc) => methodVirtualClusters(svc, true));
  const sec = mesh.security;
  const docs = sec
    ? [
        protectedResourceRoute(sec, 'oauth-protected-resource', gatewayResource(sec)),
        ...mesh.services.map((svc) => protectedResourceRoute(sec, `${svc.name}.oauth-protected-resource`, gatewayResource(sec, svc))),
      ]
    : [];
  const pathVhost = {
    name: GATEWAY_PATH_VHOST,
    domains: ['*'],
    ...(vclusters.length > 0 ? { virtual_clusters: vclusters } : {}),
    // Envoy answers an unrouted request 404 (NR) by itself; a secured gateway adds a catch-all so that even
    // an unauthenticated one gets a challenge naming a metadata document that exists.
    routes: [...docs, ...pathRoutes, ...(sec ? [notFoundRoute(sec)] : [])],
  };
  return {
    kind: 'route',
    name: GATEWAY_ROUTES,
    wildcard: true,
    body: { name: GATEWAY_ROUTES, virtual_hosts: [...hostVhosts, pathVhost], validate_clusters: { value: false } },
  };
}

/** Route table of one service's API listener (proxyless gRPC clients): the service's host virtual host only. */
export function apiRouteConfig(svc: MeshService): XdsResource {
  const name = apiRoutes(svc.name, svc.incarnation);
  return { kind: 'route', name, wildcard: false, body: { name, virtual_hosts: [hostVhost(svc)], validate_clusters: { value: false } } };
}

/**
 * Sidecar inbound: everything goes to the local MCP server. Host becomes localhost:<port>, what a server
 * bound to loopback expects (MCP servers must validate Host/Origin against DNS rebinding, and many accept
 * only localhost); the original host travels in X-Forwarded-Host.
 */
export function sidecarRoutes(service: string, appPort: number, routing: Routing, perFilter?: ProtoObject): XdsResource {
  return {
    kind: 'route',
    name: SIDECAR_INBOUND_ROUTES,
    wildcard: true,
    body: {
      name: SIDECAR_INBOUND_ROUTES,
      virtual_hosts: [
        {
          name: localVirtualHost(service),
          domains: ['*'],
          routes: [
            {
              name: 'local',
              match: { prefix: '/' },
              route: routeAction(localAppCluster(service), routing, {
                host_rewrite_literal: `localhost:${appPort}`,
                append_x_forwarded_host: true,
              }),
              ...SERVER_SESSION,
              ...(perFilter ? { typed_per_filter_config: perFilter } : {}),
            },
          ],
        },
      ],
      validate_clusters: { value: false },
    },
  };
}
