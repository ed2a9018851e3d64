// Turns what a source reports (service specs) into the mesh model, keeping the one piece of state the
// model needs across updates: each service's incarnation.
import { deepEqual } from './equal.ts';
import type { Mesh, MeshEndpoint, MeshSecurity, MeshService } from './types.ts';

/** A service as a source describes it: the model minus what the control plane derives. */
export type ServiceSpec = Omit<MeshService, 'incarnation'>;

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
   * Builds a sorted, deterministic mesh. A service that comes back after a removal gets a new incarnation.
   * Nothing is remembered until `commit` is called, so a mesh that is then refused leaves no trace.
   */
  build(specs: readonly ServiceSpec[], security?: MeshSecurity): { mesh: Mesh; commit: () => void } {
    const next = new Set<string>();
    const incarnations = new Map<string, number>();
    const services = [...specs]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((spec): MeshService => {
        next.add(spec.name);
        let incarnation = this.incarnations.get(spec.name);
        if (incarnation === undefined) incarnation = 0;
        else if (!this.present.has(spec.name)) incarnation += 1;
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
