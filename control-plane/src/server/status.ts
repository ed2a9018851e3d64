// What `mcpmesh status` reads from /debug/mesh: the published mesh (services, endpoints by locality and
// health) and certificate expiry (the CA, the control plane's own, and the last certificate signed for each
// workload identity). Facts only: no PEM, no key, no token.
import type { HealthOrigin, Mesh, MeshEndpoint } from '../model/types.ts';

export interface IssuedCertificate {
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly issuedAt: string;
  /** How the caller proved the identity ("join-token: …", "k8s-sat: …", "renewal"). */
  readonly attestedBy: string;
}

export interface MeshStatusView {
  readonly source: string;
  /** When the mesh now served was published; null before the first. */
  readonly publishedAt: string | null;
  readonly services: readonly {
    readonly name: string;
    readonly protocol: string;
    readonly transport: string;
    readonly endpoints: readonly {
      readonly address: string;
      readonly port: number;
      readonly region: string;
      readonly zone: string;
      readonly healthy: boolean;
      readonly weight: number;
      /** `healthy` and who said so, in words (healthText); `healthFrom` the same as data (null: not recorded). */
      readonly health: string;
      readonly healthFrom: HealthOrigin | null;
    }[];
  }[];
  /** null when the mesh is not secured (no CA). */
  readonly certificates: {
    readonly trustDomain: string;
    readonly ca: { readonly notAfter: string };
    readonly controlPlane: { readonly spiffeId: string; readonly notAfter: string | null };
    /** Sorted by SPIFFE ID: the last certificate signed for each identity since this control plane started. */
    readonly issued: readonly IssuedCertificate[];
  } | null;
}

/**
 * Where an endpoint's health came from, in words: the views must not claim that an endpoint was checked when
 * only a file says it is healthy (the registry's endpoints are not probed by the control plane; an Envoy's
 * own active health checks are on its admin port, not here).
 */
export function healthOrigin(o: HealthOrigin | undefined): string {
  if (!o) return 'origin not recorded';
  if (o.source === 'registry') return o.declared ? 'declared in registry, not checked' : 'registry default, not checked';
  if (o.checks === 0) return 'consul: no checks registered';
  return `consul checks: ${o.status}`;
}

/** "healthy (declared in registry, not checked)", "UNHEALTHY (consul checks: critical)". */
export function healthText(e: Pick<MeshEndpoint, 'healthy' | 'healthFrom'>): string {
  return `${e.healthy ? 'healthy' : 'UNHEALTHY'} (${healthOrigin(e.healthFrom)})`;
}

export function meshServicesView(mesh: Mesh | undefined): MeshStatusView['services'] {
  return (mesh?.services ?? []).map((s) => ({
    name: s.name,
    protocol: s.protocol,
    transport: s.transport,
    endpoints: s.endpoints.map((e) => ({
      address: e.address,
      port: e.port,
      region: e.locality.region,
      zone: e.locality.zone,
      healthy: e.healthy,
      weight: e.weight,
      health: healthText(e),
      healthFrom: e.healthFrom ?? null,
    })),
  }));
}
