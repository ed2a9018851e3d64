import type { Locality, MeshEndpoint, MeshService } from '../model/types.ts';
import { serviceEndpoints } from './naming.ts';
import { struct, u32, type ProtoObject, type XdsResource } from './resource.ts';

/** 0 = the proxy's own zone, 1 = its region, 2 = elsewhere. Without a proxy locality everything is local. */
function distance(proxy: Locality | undefined, ep: Locality): number {
  if (!proxy || (proxy.region === '' && proxy.zone === '')) return 0;
  if (ep.region !== proxy.region) return 2;
  return ep.zone === proxy.zone ? 0 : 1;
}

function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}`;
}

/**
 * Endpoints of one service as a proxy at `proxyLocality` should see them: edge first (same zone),
 * then the rest of the region, then everything else. Priorities are renumbered to be contiguous
 * from 0, as Envoy and gRPC require.
 */
export function loadAssignment(svc: MeshService, proxyLocality: Locality | undefined): XdsResource {
  const groups = new Map<string, { locality: Locality; distance: number; eps: MeshEndpoint[] }>();
  for (const ep of svc.endpoints) {
    const key = localityKey(ep.locality);
    let g = groups.get(key);
    if (!g) {
      g = { locality: ep.locality, distance: distance(proxyLocality, ep.locality), eps: [] };
      groups.set(key, g);
    }
    g.eps.push(ep);
  }
  const distances = [...new Set([...groups.values()].map((g) => g.distance))].sort((a, b) => a - b);
  const localities: ProtoObject[] = [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, g]) => {
      // Envoy's access log can name an upstream's metadata but not its locality: copy it there
      // (%UPSTREAM_METADATA(mcpmesh:locality)%). One object per locality, shared by its endpoints.
      const metadata = key === '/' ? undefined : { filter_metadata: { mcpmesh: struct({ locality: key }) } };
      return {
        locality: { region: g.locality.region, zone: g.locality.zone },
        priority: distances.indexOf(g.distance),
        load_balancing_weight: u32(g.eps.reduce((sum, ep) => sum + ep.weight, 0)),
        lb_endpoints: g.eps.map((ep) => ({
          endpoint: { address: { socket_address: { address: ep.address, port_value: ep.port } } },
          health_status: ep.healthy ? 'HEALTHY' : 'UNHEALTHY',
          load_balancing_weight: u32(ep.weight),
          ...(metadata ? { metadata } : {}),
        })),
      };
    })
    .sort((a, b) => (a['priority'] as number) - (b['priority'] as number));
  const name = serviceEndpoints(svc.name, svc.incarnation);
  return { kind: 'endpoint', name, wildcard: true, body: { cluster_name: name, endpoints: localities } };
}
