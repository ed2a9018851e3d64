// The whole resource set for one proxy: a pure function of the mesh and what the proxy told us about itself.
import { DEFAULT_ROUTING } from '../model/defaults.ts';
import type { Locality, Mesh, MeshService, ProxyInfo, Routing, TrustBundle } from '../model/types.ts';
import {
  downstreamTlsTransportSocket,
  proxylessUpstreamTlsTransportSocket,
  trustBundleSecret,
  trustSecretName,
  upstreamTlsTransportSocket,
} from '../identity/sds.ts';
import { sidecarId } from '../identity/spiffe.ts';
import { localAppClusterResource, serviceClusterResource } from './clusters.ts';
import { loadAssignment } from './endpoints.ts';
import { apiListenerResource, socketListener } from './listeners.ts';
import {
  EXT_PROC_CLUSTER,
  serviceCluster,
  GATEWAY_LISTENER,
  GATEWAY_ROUTES,
  SIDECAR_INBOUND_LISTENER,
  SIDECAR_INBOUND_ROUTES,
  STAT_PREFIX,
} from './naming.ts';
import type { XdsResource } from './resource.ts';
import { apiRouteConfig, gatewayRoutes, sidecarRoutes } from './routes.ts';
import { extAuthzFilter, jwtAuthnFilter, localReplyConfig, securityClusters } from './security.ts';
import { sessionAffinityFilter } from './sessions.ts';
import { extProcFilterConfig } from '../extproc/config.ts';
import { callerRbacFilter, callerRbacPerRoute, RBAC_CALLERS_FILTER, rbacFilters } from './rbac.ts';
import { servicePolicyOf } from '../policy/engine.ts';

// Memoization by identity: the mesh builder hands back the same MeshService object for an unchanged
// service, so one endpoint change re-translates one service, not the whole mesh. Outputs are the same
// objects too, which lets the encoder skip them by identity.
interface ServiceOutputs {
  cluster?: XdsResource;
  /** The cluster with mTLS to the service's sidecars (secured mesh): Envoy's form, and proxyless gRPC's. */
  clusterTls?: XdsResource;
  clusterTlsProxyless?: XdsResource;
  apiListener?: XdsResource;
  apiRoutes?: XdsResource;
  endpoints: Map<string, XdsResource>;
}
const outputs = new WeakMap<MeshService, ServiceOutputs>();

function memo(svc: MeshService): ServiceOutputs {
  let m = outputs.get(svc);
  if (!m) {
    m = { endpoints: new Map() };
    outputs.set(svc, m);
  }
  return m;
}

function endpointsFor(svc: MeshService, locality: Locality | undefined): XdsResource {
  const m = memo(svc);
  const key = locality ? `${locality.region}/${locality.zone}` : '';
  let r = m.endpoints.get(key);
  if (!r) {
    r = loadAssignment(svc, locality);
    m.endpoints.set(key, r);
  }
  return r;
}

// The shared route table depends only on each service's name, incarnation, routing, protocol (which decides
// header RBAC and per-method stats) and transport (SSE services hash to a replica).
type RouteInputs = [string, number, Routing, string, string];
let lastRoutes: { services: readonly MeshService[]; inputs: RouteInputs[]; security: Mesh['security']; resource: XdsResource } | undefined;
function gatewayRoutesFor(mesh: Mesh): XdsResource {
  const last = lastRoutes;
  const inputs = mesh.services.map(
    (s, k): RouteInputs =>
      last?.services[k] === s ? (last.inputs[k] as RouteInputs) : [s.name, s.incarnation, s.routing, s.protocol, s.transport],
  );
  const same =
    last &&
    last.security === mesh.security &&
    last.inputs.length === inputs.length &&
    last.inputs.every((row, k) => row === inputs[k] || row.every((v, j) => v === inputs[k]?.[j]));
  lastRoutes = { services: mesh.services, inputs, security: mesh.security, resource: same && last ? last.resource : gatewayRoutes(mesh) };
  return lastRoutes.resource;
}

/**
 * Gateway -> service cluster: mTLS verifying the sidecar's SPIFFE ID in a secured mesh (the gateway's own
 * certificate comes from its agent). Proxyless gRPC clients take theirs from certificate provider files.
 */
function clusterFor(mesh: Mesh, s: MeshService, proxy: ProxyInfo, trust: TrustBundle | undefined): XdsResource {
  const m = memo(s);
  if (!(mesh.security && trust && s.sidecar)) return (m.cluster ??= serviceClusterResource(s));
  const tls = { peerSpiffeIds: [sidecarId(mesh.security.policy.trustDomain, s.name)], sni: serviceCluster(s.name) };
  return proxy.proxyless
    ? (m.clusterTlsProxyless ??= serviceClusterResource(s, proxylessUpstreamTlsTransportSocket(tls)))
    : (m.clusterTls ??= serviceClusterResource(s, upstreamTlsTransportSocket(tls)));
}

/** Envoy gateways get a socket listener and the shared route table; proxyless gRPC clients an API listener per service. */
export function gatewayResources(mesh: Mesh, proxy: ProxyInfo, trust?: TrustBundle): XdsResource[] {
  const front = proxy.proxyless
    ? [
        ...mesh.services.map((s) => (memo(s).apiListener ??= apiListenerResource(s))),
        ...mesh.services.map((s) => (memo(s).apiRoutes ??= apiRouteConfig(s))),
      ]
    : [
        socketListener(GATEWAY_LISTENER, proxy.listenerPort, {
          statPrefix: STAT_PREFIX.gateway,
          routeConfigName: GATEWAY_ROUTES,
          edge: true,
          filters: [
            ...(mesh.security
              ? [jwtAuthnFilter(mesh.security), ...rbacFilters(), extAuthzFilter(), extProcFilterConfig(EXT_PROC_CLUSTER)]
              : []),
            sessionAffinityFilter(),
          ],
          ...(mesh.security ? { localReplyConfig: localReplyConfig() } : {}),
        }),
        gatewayRoutesFor(mesh),
        ...(mesh.security ? securityClusters(mesh.security, { localAuthz: proxy.localAuthz === true }) : []),
      ];
  return [
    ...front,
    ...mesh.services.map((s) => clusterFor(mesh, s, proxy, trust)),
    ...mesh.services.map((s) => endpointsFor(s, proxy.locality)),
  ];
}

export function sidecarResources(mesh: Mesh, proxy: ProxyInfo, trust?: TrustBundle): XdsResource[] {
  const service = proxy.service ?? 'unknown';
  const sec = mesh.security;
  // In a secured mesh the inbound listener takes only mTLS with a certificate from the mesh CA, and the route
  // admits only the identities the policy allows (allowedCallers). ALPN lets a gateway whose cluster
  // negotiates (upstreamProtocol auto) reach the sidecar over HTTP/2.
  const secured = sec !== undefined && trust !== undefined;
  const callers = sec ? servicePolicyOf(sec.policy, service).allowedCallers : [];
  const transportSocket = secured ? downstreamTlsTransportSocket({ alpnProtocols: ['h2', 'http/1.1'] }) : undefined;
  // A sidecar may start before its service is registered: it still fronts its local server with defaults.
  const routing = mesh.services.find((s) => s.name === service)?.routing ?? DEFAULT_ROUTING;
  return [
    socketListener(SIDECAR_INBOUND_LISTENER, proxy.listenerPort, {
      statPrefix: STAT_PREFIX.sidecarInbound,
      routeConfigName: SIDECAR_INBOUND_ROUTES,
      edge: false,
      ...(transportSocket ? { transportSocket, filters: [callerRbacFilter()] } : {}),
    }),
    sidecarRoutes(
      service,
      proxy.appPort ?? 0,
      routing,
      secured ? { [RBAC_CALLERS_FILTER]: callerRbacPerRoute(service, callers) } : undefined,
    ),
    localAppClusterResource(service, proxy.appPort ?? 0, routing),
  ];
}

/** The mesh's trust bundle as an SDS secret (the proxy's own certificate comes from its agent, never from here). */
export function trustSecrets(trust: TrustBundle): XdsResource[] {
  return [{ kind: 'secret', name: trustSecretName(), wildcard: true, body: trustBundleSecret(trustSecretName(), trust.bundlePem) }];
}

export function proxyResources(mesh: Mesh, proxy: ProxyInfo, trust?: TrustBundle): XdsResource[] {
  const resources = proxy.role === 'gateway' ? gatewayResources(mesh, proxy, trust) : sidecarResources(mesh, proxy, trust);
  return trust && !proxy.proxyless ? [...trustSecrets(trust), ...resources] : resources;
}
