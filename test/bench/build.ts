// `node --expose-gc test/bench/build.ts`: only the build figures of `npm run bench` (section 1), for profiling
// (add --cpu-prof) and before/after comparisons without the push benchmark's processes. BUILD_ONLY=full|one|parse
// runs one of them (BUILD_ONLY=add: one service added per build); BENCH_SERVICES / BENCH_ENDPOINTS size the mesh.
import { isDeepStrictEqual } from 'node:util';
import { SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { liveApplier, meshSpecs, registryYaml } from './mesh.ts';

const SERVICES = Number(process.env['BENCH_SERVICES'] ?? 1000);
const ENDPOINTS = Number(process.env['BENCH_ENDPOINTS'] ?? 10);
const ONLY = process.env['BUILD_ONLY'];
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
// CPU time of this thread (BENCH_CLOCK=wall for wall time): the box is shared, and a busy neighbour stretches
// wall time but not CPU time.
const WALL = process.env['BENCH_CLOCK'] === 'wall';
const time = (f: () => void): number => {
  if (WALL) {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  }
  const c0 = process.threadCpuUsage();
  f();
  const c = process.threadCpuUsage(c0);
  return (c.user + c.system) / 1000;
};

if (!ONLY || ONLY === 'full') {
  const full: number[] = [];
  for (let i = 0; i < 8; i++) {
    const specs = meshSpecs(SERVICES, ENDPOINTS);
    gc();
    const t = time(() => {
      const { mesh, commit } = new MeshBuilder().build(specs);
      new SnapshotCache().setMesh(mesh);
      commit();
    });
    if (i >= 2) full.push(t);
  }
  console.log(`full build ${SERVICES}x${ENDPOINTS}: median ${median(full).toFixed(1)} ms [${full.map((x) => x.toFixed(0)).join(' ')}]`);
}
if (!ONLY || ONLY === 'one') {
  const apply = liveApplier();
  apply(meshSpecs(SERVICES, ENDPOINTS));
  // CPU time is counted in 4 ms ticks here: the figure is the mean over all rounds (specs made beforehand).
  const rounds = Number(process.env['ONE_ROUNDS'] ?? 100);
  const warm = Math.floor(rounds / 4);
  const specs = Array.from({ length: rounds }, (_, i) =>
    meshSpecs(SERVICES, ENDPOINTS, { service: (i * 37) % SERVICES, port: 30_000 + i }),
  );
  specs.slice(0, warm).forEach(apply);
  const wall: number[] = [];
  const c0 = process.threadCpuUsage();
  for (const s of specs.slice(warm)) {
    const t0 = performance.now();
    apply(s);
    wall.push(performance.now() - t0);
  }
  const c = process.threadCpuUsage(c0);
  const cpuMean = (c.user + c.system) / 1000 / (rounds - warm);
  console.log(`one endpoint change: CPU mean ${cpuMean.toFixed(2)} ms, wall median ${median(wall).toFixed(2)} ms`);
}
if (ONLY === 'add') {
  // One service added per build (its cluster, endpoints and a virtual host in the gateway's route table).
  const apply = liveApplier();
  apply(meshSpecs(SERVICES, ENDPOINTS));
  const add: number[] = [];
  for (let i = 1; i <= 12; i++) {
    const specs = meshSpecs(SERVICES + i, ENDPOINTS);
    const t = time(() => apply(specs));
    if (i > 2) add.push(t);
  }
  console.log(`one service added ${SERVICES}x${ENDPOINTS}: median ${median(add).toFixed(1)} ms`);
}
if (!ONLY || ONLY === 'parse') {
  const specs = meshSpecs(SERVICES, ENDPOINTS);
  const yaml = registryYaml(specs);
  const parse: number[] = [];
  for (let i = 0; i < 4; i++) {
    let parsed: unknown;
    const t = time(() => {
      parsed = parseRegistry(yaml, 'bench.yaml');
    });
    if (i === 0 && !isDeepStrictEqual(parsed, specs)) throw new Error('registryYaml/parseRegistry round trip differs from meshSpecs');
    if (i >= 1) parse.push(t);
  }
  console.log(`registry YAML parse: median ${median(parse).toFixed(0)} ms`);
}
