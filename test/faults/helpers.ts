// Shared by the ADS fault tests: meshes of a chosen size, forced-GC memory readings, and a stuck reader.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import type { ServiceSpec } from '../../control-plane/src/model/mesh.ts';
import type { Metrics } from '../../control-plane/src/metrics.ts';

/** Long versions run with MCPMESH_FAULTS_LONG=1 (npm run faults); npm test runs the short ones. */
export const LONG = process.env['MCPMESH_FAULTS_LONG'] === '1';

/** A registry of `services` services whose names carry `generation`, so every edit changes every resource. */
export function registryYaml(services: number, generation: number, endpointsPer = 2): string {
  const lines = ['services:'];
  for (let i = 0; i < services; i++) {
    lines.push(`  - name: s${generation}-${i}`, '    protocol: "2025-11-25"', '    endpoints:');
    for (let e = 0; e < endpointsPer; e++) {
      lines.push(
        `      - { address: 10.${(i >> 8) & 255}.${i & 255}.${e + 1}, port: ${7000 + (generation % 1000)}, locality: { region: eu-west, zone: ${e % 2 ? 'b' : 'a'} } }`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

export function specs(services: number, generation: number, endpointsPer = 2): ServiceSpec[] {
  return parseRegistry(registryYaml(services, generation, endpointsPer), 'fault-test');
}

let gcFn: (() => void) | undefined;
/** Heap plus array buffers after a forced full GC (works without --expose-gc on the command line). */
export function usedAfterGc(): number {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  for (let i = 0; i < 3; i++) gcFn();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

export const MiB = 1024 * 1024;

/** Value of a counter/gauge series from the registry (0 when absent). */
export async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const data = await m.get();
  let sum = 0;
  for (const v of data.values) {
    if (Object.entries(labels).every(([k, x]) => v.labels[k] === x)) sum += v.value;
  }
  return sum;
}
