// Turns what a source reports (service specs) into the mesh model. A service's incarnation comes from the
// source's state when the source has one (Consul: see specFromConsul), so replicas and restarts agree; only a
// source without history (the registry file) falls back to counting re-adds in this process.
import { deepEqual } from './equal.ts';
import type { Locality, Mesh, MeshEndpoint, MeshSecurity, MeshService } from './types.ts';

/**
 * A service as a source describes it: the model minus what the control plane derives. `incarnation`, when
 * the source sets it, must be a pure function of the source's state that changes when the service is removed
 * and re-added (e.g. Consul's CreateIndex); when unset, the builder counts re-adds itself.
 */
export type ServiceSpec = Omit<MeshService, 'incarnation'> & { readonly incarnation?: number };

function compareEndpoints(a: MeshEndpoint, b: MeshEndpoint): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port;
}

function isSorted<T>(xs: readonly T[], compare: (a: T, b: T) => number): boolean {
  for (let i = 1; i < xs.length; i++) if (compare(xs[i - 1] as T, xs[i] as T) > 0) return false;
  return true;
}

function byName(a: ServiceSpec, b: ServiceSpec): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/**
 * deepEqual for endpoint lists, written out: every build compares every service's endpoints. It reads the
 * model's fields only (what translators read); the checks below fail to compile when a field is added to
 * MeshEndpoint or Locality and not to this comparison.
 */
function sameEndpoints(a: readonly MeshEndpoint[], b: readonly MeshEndpoint[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as MeshEndpoint;
    const y = b[i] as MeshEndpoint;
    if (x === y) continue;
    if (x.address !== y.address || x.port !== y.port || x.weight !== y.weight || x.healthy !== y.healthy) return false;
    if (x.locality !== y.locality && (x.locality.region !== y.locality.region || x.locality.zone !== y.locality.zone)) return false;
    // Not read by translators, but /debug/mesh and the console show it: a check that turns from warning to
    // passing changes no config and must still replace the endpoint.
    if (x.healthFrom !== y.healthFrom && !deepEqual(x.healthFrom, y.healthFrom)) return false;
  }
  return true;
}
const COMPARED_ENDPOINT_FIELDS = ['address', 'port', 'weight', 'healthy', 'locality', 'healthFrom'] as const;
const COMPARED_LOCALITY_FIELDS = ['region', 'zone'] as const;
type Uncompared =
  | Exclude<keyof MeshEndpoint, (typeof COMPARED_ENDPOINT_FIELDS)[number]>
  | Exclude<keyof Locality, (typeof COMPARED_LOCALITY_FIELDS)[number]>;
const everyFieldCompared: [Uncompared] extends [never] ? true : Uncompared = true;
void everyFieldCompared;

/** Whether `prev` is what `spec` (with `endpoints` in order, at `incarnation`) builds: deepEqual without building it. */
function sameService(prev: MeshService, spec: ServiceSpec, endpoints: readonly MeshEndpoint[], incarnation: number): boolean {
  if (prev.incarnation !== incarnation || !sameEndpoints(prev.endpoints, endpoints)) return false;
  let n = 0;
  for (const k in spec) {
    if (k === 'incarnation' || k === 'endpoints') continue;
    n++;
    if (!deepEqual((prev as unknown as Record<string, unknown>)[k], (spec as unknown as Record<string, unknown>)[k])) return false;
  }
  // prev also has incarnation and endpoints.
  return keyCount(prev) === n + 2;
}

export class MeshBuilder {
  // The last committed mesh by name, with the spec each service came from: an unchanged service keeps its
  // object, so translators and the encoder can recognise it by identity and skip re-translating,
  // re-validating and re-encoding it. (One map: every build looks every service up.)
  private committed = new Map<string, { readonly svc: MeshService; readonly spec: ServiceSpec }>();
  /** The last incarnation of services that were removed, so a re-add counts up from it. */
  private readonly gone = new Map<string, number>();

  /**
   * Builds a sorted, deterministic mesh. A service that comes back after a removal gets a new incarnation
   * (the source's, or the next count when the source gives none).
   * Nothing is remembered until `commit` is called, so a mesh that is then refused leaves no trace.
   */
  build(specs: readonly ServiceSpec[], security?: MeshSecurity): { mesh: Mesh; commit: () => void } {
    // Sources usually list services in order already: check before sorting.
    const ordered = isSorted(specs, byName) ? specs : [...specs].sort(byName);
    const services = ordered.map((spec): MeshService => {
      const rec = this.committed.get(spec.name);
      let incarnation = spec.incarnation ?? (rec ? rec.svc.incarnation : this.gone.get(spec.name));
      if (incarnation === undefined) incarnation = 0;
      else if (spec.incarnation === undefined && !rec) incarnation += 1;
      const prev = rec?.svc;
      // A source that hands back the same spec object for an unchanged service saves the comparison.
      if (prev && rec.spec === spec && prev.incarnation === incarnation) return prev;
      const endpoints = isSorted(spec.endpoints, compareEndpoints) ? spec.endpoints : [...spec.endpoints].sort(compareEndpoints);
      // Every build compares every service: done without building the candidate, which is rarely needed.
      if (prev && sameService(prev, spec, endpoints, incarnation)) return prev;
      const svc: MeshService = { ...spec, incarnation, endpoints: endpoints === spec.endpoints ? [...endpoints] : endpoints };
      if (!prev) return svc;
      // Keep unchanged parts too: routing is what the shared gateway route table depends on.
      return deepEqual(prev.routing, svc.routing) ? { ...svc, routing: prev.routing } : svc;
    });
    return {
      mesh: { services, ...(security ? { security } : {}) },
      commit: () => {
        // Updated in place: most builds change a service or two of thousands.
        for (let i = 0; i < services.length; i++) {
          const svc = services[i] as MeshService;
          const spec = ordered[i] as ServiceSpec;
          const rec = this.committed.get(svc.name);
          if (!rec || rec.svc !== svc || rec.spec !== spec) this.committed.set(svc.name, { svc, spec });
        }
        if (this.committed.size !== services.length) {
          const names = new Set(services.map((svc) => svc.name));
          for (const [name, rec] of [...this.committed]) {
            if (names.has(name)) continue;
            this.gone.set(name, rec.svc.incarnation);
            this.committed.delete(name);
          }
        }
      },
    };
  }
}
