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
    const services = [...specs]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((spec): MeshService => {
        next.add(spec.name);
        let incarnation = spec.incarnation ?? this.incarnations.get(spec.name);
        if (incarnation === undefined) incarnation = 0;
        else if (spec.incarnation === undefined && !this.present.has(spec.name)) incarnation += 1;
        incarnations.set(spec.name, incarnation);
        const prevSvc = this.previous.get(spec.name);
        // A source that hands back the same spec object for an unchanged service saves the comparison.
        if (prevSvc && this.previousSpecs.get(spec.name) === spec && prevSvc.incarnation === incarnation) return prevSvc;
        const svc: MeshService = { ...spec, incarnation, endpoints: [...spec.endpoints].sort(compareEndpoints) };
        const prev = prevSvc;
        if (!prev) return svc;
        if (deepEqual(prev, svc)) return prev;
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
