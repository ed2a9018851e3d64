// The whole resource set for one proxy: a pure function of the mesh and what the proxy told us about itself.
import { DEFAULT_ROUTING } from '../model/defaults.ts';
import type { Mesh, ProxyInfo } from '../model/types.ts';
import { localAppClusterResource, serviceClusterResource } from './clusters.ts';
import { loadAssignment } from './endpoints.ts';
import { apiListenerResource, socketListener } from './listeners.ts';
import { GATEWAY_LISTENER, GATEWAY_ROUTES, SIDECAR_INBOUND_LISTENER, SIDECAR_INBOUND_ROUTES, STAT_PREFIX } from './naming.ts';
import type { XdsResource } from './resource.ts';
import { apiRouteConfig, gatewayRoutes, sidecarRoutes } from './routes.ts';

export function gatewayResources(mesh: Mesh, proxy: ProxyInfo): XdsResource[] {
  const idle = Math.max(DEFAULT_ROUTING.streamIdleTimeoutMs, ...mesh.services.map((s) => s.routing.streamIdleTimeoutMs));
  return [
    socketListener(GATEWAY_LISTENER, proxy.listenerPort, { statPrefix: STAT_PREFIX.gateway, routeConfigName: GATEWAY_ROUTES, streamIdleTimeoutMs: idle, edge: true }),
    ...mesh.services.map(apiListenerResource),
    gatewayRoutes(mesh),
    ...mesh.services.map(apiRouteConfig),
    ...mesh.services.map(serviceClusterResource),
    ...mesh.services.map((svc) => loadAssignment(svc, proxy.locality)),
  ];
}

export function sidecarResources(mesh: Mesh, proxy: ProxyInfo): XdsResource[] {
  const service = proxy.service ?? 'unknown';
  // A sidecar may start before its service is registered: it still fronts its local server with defaults.
  const routing = mesh.services.find((s) => s.name === service)?.routing ?? DEFAULT_ROUTING;
  return [
    socketListener(SIDECAR_INBOUND_LISTENER, proxy.listenerPort, {
      statPrefix: STAT_PREFIX.sidecarInbound, routeConfigName: SIDECAR_INBOUND_ROUTES, streamIdleTimeoutMs: routing.streamIdleTimeoutMs, edge: false,
    }),
    sidecarRoutes(service, routing),
    localAppClusterResource(service, proxy.appPort ?? 0, routing),
  ];
}

export function proxyResources(mesh: Mesh, proxy: ProxyInfo): XdsResource[] {
  return proxy.role === 'gateway' ? gatewayResources(mesh, proxy) : sidecarResources(mesh, proxy);
}
