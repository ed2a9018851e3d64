// Turns what a source reports (service specs) into the mesh model. A service's incarnation comes from the
// source's state when the source has one (Consul: see specFromConsul), so replicas and restarts agree; only a
// source without history (the registry file) falls back to counting re-adds in this process.
import { deepEqual } from './equal.ts';
import type { Mesh, MeshEndpoint, MeshSecurity, MeshService } from './types.ts';

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

// The fields of MeshEndpoint and Locality: an object with other keys is compared by deepEqual.
const ENDPOINT_KEYS = 5;
const LOCALITY_KEYS = 2;

function sameLocality(a: MeshEndpoint['locality'], b: MeshEndpoint['locality']): boolean {
  if (a === b) return true;
  if (keyCount(a) !== LOCALITY_KEYS || keyCount(b) !== LOCALITY_KEYS) return deepEqual(a, b);
  return a.region === b.region && a.zone === b.zone;
}

function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/** deepEqual for endpoint lists, written out: every build compares every service's endpoints. */
function sameEndpoints(a: readonly MeshEndpoint[], b: readonly MeshEndpoint[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as MeshEndpoint;
    const y = b[i] as MeshEndpoint;
    if (x === y) continue;
    if (keyCount(x) !== ENDPOINT_KEYS || keyCount(y) !== ENDPOINT_KEYS) {
      if (!deepEqual(x, y)) return false;
      continue;
    }
    if (x.address !== y.address || x.port !== y.port || x.weight !== y.weight || x.healthy !== y.healthy) return false;
    if (!sameLocality(x.locality, y.locality)) return false;
  }
  return true;
}

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
  private readonly incarnations = new Map<string, number>();
  private present = new Set<string>();
  // The last committed mesh by name: an unchanged service keeps its object, so translators and the
  // encoder can recognise it by identity and skip re-translating, re-validating and re-encoding it.
  private previous = new Map<string, MeshService>();
  private previousSpecs = new Map<string, ServiceSpec>();

  /**
   * Builds a sorted, deterministic mesh. A service that comes back after a removal gets a new incarnation
   * (the source's, or the next count when the source gives none).
   * Nothing is remembered until `commit` is called, so a mesh that is then refused leaves no trace.
   */
  build(specs: readonly ServiceSpec[], security?: MeshSecurity): { mesh: Mesh; commit: () => void } {
    const next = new Set<string>();
    const incarnations = new Map<string, number>();
    // Sources usually list services in order already: check before sorting.
    const ordered = isSorted(specs, byName) ? specs : [...specs].sort(byName);
    const services = ordered.map((spec): MeshService => {
      next.add(spec.name);
      let incarnation = spec.incarnation ?? this.incarnations.get(spec.name);
      if (incarnation === undefined) incarnation = 0;
      else if (spec.incarnation === undefined && !this.present.has(spec.name)) incarnation += 1;
      incarnations.set(spec.name, incarnation);
      const prev = this.previous.get(spec.name);
      // A source that hands back the same spec object for an unchanged service saves the comparison.
      if (prev && this.previousSpecs.get(spec.name) === spec && prev.incarnation === incarnation) return prev;
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
        for (const [name, n] of incarnations) this.incarnations.set(name, n);
        this.present = next;
        this.previous = new Map(services.map((s) => [s.name, s]));
        this.previousSpecs = new Map(specs.map((s) => [s.name, s]));
      },
    };
  }
}
