// The benchmark's mesh: N services x M endpoints, as ServiceSpecs (for ControlPlane.apply and the snapshot
// cache) and as the equivalent registry YAML (for a control plane started from a file).
import { SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { MeshBuilder, type ServiceSpec } from '../../control-plane/src/model/mesh.ts';
import type { MeshEndpoint } from '../../control-plane/src/model/types.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';

export const BENCH_PROTOCOL = '2025-11-25';
export const BENCH_REGION = 'bench';
/** The zone every benchmark gateway says it is in; half of each service's endpoints are there, half next door. */
export const BENCH_ZONE = 'a';
export const BASE_PORT = 8000;

export function serviceName(i: number): string {
  return `svc-${String(i).padStart(4, '0')}`;
}

function endpoint(i: number, j: number, port: number): MeshEndpoint {
  return {
    address: `10.${(i >> 8) & 255}.${i & 255}.${j + 1}`,
    port,
    locality: { region: BENCH_REGION, zone: j % 2 === 0 ? 'a' : 'b' },
    weight: 1,
    healthy: true,
    // What the registry reader records for an endpoint that declares no health (registryYaml writes none).
    healthFrom: { source: 'registry', declared: false },
  };
}

let template: Omit<ServiceSpec, 'name' | 'endpoints'> | undefined;

/**
 * Everything a service spec carries besides its name and endpoints, exactly as the registry reader fills it in
 * for a service that sets nothing but its protocol (so the benchmark follows the model as it grows).
 */
function serviceTemplate(): Omit<ServiceSpec, 'name' | 'endpoints'> {
  if (!template) {
    const [spec] = parseRegistry(`services:\n  - name: template\n    protocol: "${BENCH_PROTOCOL}"\n    endpoints: []\n`, 'bench template');
    if (!spec) throw new Error('registry template yielded no service');
    const { name: _name, endpoints: _endpoints, ...rest } = spec;
    template = rest;
  }
  return template;
}

/**
 * The mesh. `portOverride` changes the port of one endpoint (service `service`, endpoint 0): a one-endpoint
 * change. Specs are built fresh on every call (sources hand the control plane new objects each time).
 */
export function meshSpecs(services: number, endpointsPer: number, portOverride?: { service: number; port: number }): ServiceSpec[] {
  const base = serviceTemplate();
  const out: ServiceSpec[] = [];
  for (let i = 0; i < services; i++) {
    const endpoints: MeshEndpoint[] = [];
    for (let j = 0; j < endpointsPer; j++) {
      const port = portOverride && portOverride.service === i && j === 0 ? portOverride.port : BASE_PORT;
      endpoints.push(endpoint(i, j, port));
    }
    out.push({ ...base, name: serviceName(i), endpoints });
  }
  return out;
}

/** The same mesh as registry YAML (parseRegistry(registryYaml(x)) deep-equals meshSpecs(x)). */
export function registryYaml(specs: readonly ServiceSpec[]): string {
  const lines = ['services:'];
  for (const s of specs) {
    lines.push(`  - name: ${s.name}`, `    protocol: "${s.protocol}"`, '    endpoints:');
    for (const e of s.endpoints) {
      lines.push(
        `      - { address: ${e.address}, port: ${e.port}, locality: { region: ${e.locality.region}, zone: ${e.locality.zone} } }`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Consul's view of the same mesh: one agent registration per endpoint (Consul services are per instance). */
export interface ConsulRegistration {
  ID: string;
  Name: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
}

/** Instance `j` of service `i`, tagged and annotated as the Consul source expects; specsFromConsul over every
 * registration of meshSpecs(services, endpointsPer) gives back meshSpecs(services, endpointsPer). */
export function consulRegistration(i: number, j: number, port = BASE_PORT): ConsulRegistration {
  const e = endpoint(i, j, port);
  return {
    ID: `${serviceName(i)}-${j}`,
    Name: serviceName(i),
    Tags: ['mcp'],
    Address: e.address,
    Port: port,
    Meta: { region: e.locality.region, zone: e.locality.zone, 'mcp-protocol': BENCH_PROTOCOL },
  };
}

/**
 * A mesh builder and snapshot cache that live across builds, as in the control plane: each call builds the specs
 * against the previous commit, so unchanged services keep their objects (what the incremental figures measure).
 */
export function liveApplier(): (specs: readonly ServiceSpec[]) => void {
  const builder = new MeshBuilder();
  const cache = new SnapshotCache();
  return (specs) => {
    const { mesh, commit } = builder.build(specs);
    cache.setMesh(mesh);
    commit();
  };
}
