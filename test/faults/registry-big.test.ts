// Issue 15 (big inputs): a 10,000-service registry (about 1.4 MB of YAML) is parsed and checked without blocking
// the event loop (worker thread). The figures are printed; the assertions are generous (a loaded 2-core box).
// MCPMESH_FAULTS_LONG=1 adds the whole control plane started on that file, and a real 50 MB YAML file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { RegistryFileSource } from '../../control-plane/src/sources/registry-file.ts';
import { meshSpecs, registryYaml } from '../bench/mesh.ts';
import { startOnRegistry } from './registry-harness.ts';

const LONG = process.env['MCPMESH_FAULTS_LONG'] === '1';
/**
 * The loop may stall this long at most while a big registry loads. The inline parse stalled it 1.3-2.6 s; with the
 * worker this box measures 20-60 ms, but with five other engineers' test runs on two cores a thread that is
 * ready can wait hundreds of ms for a CPU, so the budget leaves room for that and the main thread's own CPU time
 * (which contention does not inflate) is checked too.
 */
const MAX_LOOP_DELAY_MS = 500;
const MAX_MAIN_THREAD_CPU_MS = 250;
const SERVICES = 10_000;

/** Runs `work` while sampling the event loop; returns its result and the longest stall seen, in ms. */
async function loopDelayDuring<T>(work: () => Promise<T>): Promise<{ result: T; maxMs: number; p99Ms: number; ms: number; cpuMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const started = performance.now();
  const cpu = process.threadCpuUsage();
  try {
    const result = await work();
    // A stall at the very end is only recorded when the histogram's timer next runs: let it run first.
    await new Promise((r) => setTimeout(r, 20));
    const used = process.threadCpuUsage(cpu);
    return {
      result,
      maxMs: h.max / 1e6,
      p99Ms: h.percentile(99) / 1e6,
      ms: performance.now() - started,
      cpuMs: (used.user + used.system) / 1000,
    };
  } finally {
    h.disable();
  }
}

describe(`a ${SERVICES.toLocaleString('en')}-service registry file`, () => {
  it('is parsed and checked off the event loop: max loop delay stays small, every service arrives intact', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-big-'));
    const file = path.join(dir, 'registry.yaml');
    const specs = meshSpecs(SERVICES, 1);
    const yaml = registryYaml(specs);
    writeFileSync(file, yaml);
    const src = new RegistryFileSource(file);
    try {
      const { result, maxMs, p99Ms, ms, cpuMs } = await loopDelayDuring(() => src.load());
      console.log(
        `# registry load, ${SERVICES} services (${(yaml.length / 1_048_576).toFixed(2)} MiB): ${Math.round(ms)} ms in the worker; event loop max delay ${maxMs.toFixed(1)} ms, p99 ${p99Ms.toFixed(1)} ms; main thread CPU ${Math.round(cpuMs)} ms`,
      );
      assert.equal(result.length, SERVICES);
      assert.deepEqual(result, specs);
      assert.ok(maxMs < MAX_LOOP_DELAY_MS, `event loop blocked ${maxMs.toFixed(1)} ms (budget ${MAX_LOOP_DELAY_MS} ms)`);
      assert.ok(
        cpuMs < MAX_MAIN_THREAD_CPU_MS,
        `the main thread spent ${Math.round(cpuMs)} ms of CPU on the load (budget ${MAX_MAIN_THREAD_CPU_MS} ms)`,
      );
    } finally {
      src.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('long: the control plane started on it publishes every service; the snapshot build stall is printed', {
    skip: LONG ? false : 'set MCPMESH_FAULTS_LONG=1',
  }, async () => {
    const yaml = registryYaml(meshSpecs(SERVICES, 1));
    const { result: h, maxMs, ms, cpuMs } = await loopDelayDuring(() => startOnRegistry((f) => writeFileSync(f, yaml)));
    try {
      assert.equal((await h.readyz()).status, 200);
      assert.equal(await h.metric('mcpmesh_mesh_services'), SERVICES);
      const build = await h.metric('mcpmesh_snapshot_build_seconds_sum');
      console.log(
        `# control plane start on ${SERVICES} services: ${Math.round(ms)} ms to ready; snapshot build ${Math.round(build * 1000)} ms; event loop max delay ${maxMs.toFixed(1)} ms (the snapshot build, not the parse); main thread CPU ${Math.round(cpuMs)} ms`,
      );
    } finally {
      await h.stop();
    }
  });

  it('long: a real 50 MB YAML registry is refused unread and costs no memory', {
    skip: LONG ? false : 'set MCPMESH_FAULTS_LONG=1',
  }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-big-'));
    const file = path.join(dir, 'registry.yaml');
    // Written in pieces: the test itself must not hold 50 MB of YAML either.
    writeFileSync(file, '');
    const chunk = registryYaml(meshSpecs(20_000, 1)).replace(/^services:\n/, '');
    writeFileSync(file, 'services:\n');
    const { appendFileSync, statSync } = await import('node:fs');
    while (statSync(file).size < 50 * 1_048_576) appendFileSync(file, chunk);
    const size = statSync(file).size;
    globalThis.gc?.();
    const before = process.memoryUsage().rss;
    const src = new RegistryFileSource(file);
    try {
      await assert.rejects(src.load(), new RegExp(`is ${size} bytes \\(\\d+\\.\\d MiB\\), over the limit of 8388608 bytes`));
      globalThis.gc?.();
      const grownMiB = (process.memoryUsage().rss - before) / 1_048_576;
      console.log(`# 50 MB registry refused; RSS grew ${grownMiB.toFixed(1)} MiB`);
      assert.ok(grownMiB < 40, `RSS grew ${grownMiB.toFixed(1)} MiB reading a refused file`);
    } finally {
      src.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
