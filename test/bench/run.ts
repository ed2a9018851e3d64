// `npm run bench`: the figures of docs/performance.md, each next to its baseline from the same run.
//
//  1. Snapshot build, 1,000 services x 10 endpoints: full build from scratch (MeshBuilder.build + a fresh
//     SnapshotCache.setMesh: translate, validate, encode for the reference gateway), and one endpoint change
//     (same builder and cache, one endpoint's port changed). Absolute targets: 50 ms and 1 ms (docs/performance.md).
//  2. Registry change -> last of N proxies ACKed, N = 100 and 1,000, each proxy on its own HTTP/2 connection
//     in a second process (test/bench/clients.ts). The change enters through ControlPlane.apply (the registry
//     path minus the file watcher's debounce and YAML parse, reported separately) with quietMs 0.
//  3. Consul change -> last of N proxies ACKed, N = 100 and 1,000: the same mesh registered in the Consul
//     stand-in (test/consul-standin, in its own process: test/bench/consul.ts) as 10,000 service instances, the
//     control plane watching it through its Consul source, and each push one instance re-registered with a new
//     port over Consul's HTTP API (watch wake-up, source, coalescer, build and push all inside the timed window).
//  4. The push floor in the same run: a do-nothing ADS server writing one pre-encoded EDS response (1
//     ClusterLoadAssignment, 10 endpoints) to every stream, to the same client process.
//  5. RSS per connected proxy (control plane vs floor), each server in its own process.
//
// Exits non-zero only on errors; a missed target is reported, not fatal. BENCH_QUICK=1 runs a short version.
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import { parseRegistry, parseRegistryOffThread } from '../../control-plane/src/sources/registry-file.ts';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { liveApplier, meshSpecs, registryYaml, serviceName } from './mesh.ts';
import type { FromServer, HistogramDelta, MemSample, Mode, PhaseResult, ServerConfig, SetupInfo } from './server.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const QUICK = process.env['BENCH_QUICK'] === '1';

const SERVICES = 1000;
const ENDPOINTS = 10;
const BUILD = QUICK
  ? { fullWarm: 1, full: 3, oneWarm: 5, one: 10, parseWarm: 0, parse: 1 }
  : { fullWarm: 3, full: 10, oneWarm: 20, one: 60, parseWarm: 1, parse: 3 };
const PHASES = QUICK
  ? [
      { n: 100, warmup: 5, rounds: 10, fileEdits: 2 },
      { n: 1000, warmup: 5, rounds: 10 },
    ]
  : [
      { n: 100, warmup: 40, rounds: 100, fileEdits: 5 },
      { n: 1000, warmup: 30, rounds: 60 },
    ];
const GAP_MS = 20;

// ---------------------------------------------------------------------------------------------- stats

function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

function median(xs: readonly number[]): number {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * A quantile estimated from Prometheus histogram buckets as histogram_quantile() does: linear within the bucket
 * that holds the rank (the first bucket starts at 0; a rank beyond the last finite bound gives that bound).
 */
function histQuantile(h: HistogramDelta, q: number): number {
  if (h.count <= 0) return NaN;
  const rank = q * h.count;
  let lo = 0;
  let below = 0;
  for (const [le, cum] of h.buckets) {
    if (cum >= rank) return lo + (le - lo) * (cum === below ? 1 : (rank - below) / (cum - below));
    lo = le;
    below = cum;
  }
  return lo;
}

/** Nearest-rank percentile (with few samples, p99 is the worst one). */
function pct(xs: readonly number[], p: number): number {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

// ------------------------------------------------------------------------------------- 1. build times

interface BuildResult {
  full: number[];
  one: number[];
  parse: number[];
}

function buildBench(): BuildResult {
  const time = (f: () => void): number => {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  };
  const fullBuild = (specs: ReturnType<typeof meshSpecs>): void => {
    const { mesh, commit } = new MeshBuilder().build(specs);
    new SnapshotCache().setMesh(mesh);
    commit();
  };
  const full: number[] = [];
  for (let i = 0; i < BUILD.fullWarm + BUILD.full; i++) {
    const specs = meshSpecs(SERVICES, ENDPOINTS);
    gc();
    const t = time(() => fullBuild(specs));
    if (i >= BUILD.fullWarm) full.push(t);
  }

  const apply = liveApplier();
  apply(meshSpecs(SERVICES, ENDPOINTS));
  const one: number[] = [];
  for (let i = 0; i < BUILD.oneWarm + BUILD.one; i++) {
    // A different service each time, and a port never used before (no encoder cache hit on the change).
    const specs = meshSpecs(SERVICES, ENDPOINTS, { service: (i * 37) % SERVICES, port: 30_000 + i });
    const t = time(() => apply(specs));
    if (i >= BUILD.oneWarm) one.push(t);
  }

  // Informational: what a registry file edit costs before apply() (not part of the push figures).
  const specs = meshSpecs(SERVICES, ENDPOINTS);
  const yaml = registryYaml(specs);
  const parse: number[] = [];
  for (let i = 0; i < BUILD.parseWarm + BUILD.parse; i++) {
    let parsed: unknown;
    const t = time(() => {
      parsed = parseRegistry(yaml, 'bench.yaml');
    });
    if (i === 0 && !isDeepStrictEqual(parsed, specs)) throw new Error('registryYaml/parseRegistry round trip differs from meshSpecs');
    if (i >= BUILD.parseWarm) parse.push(t);
  }
  return { full, one, parse };
}

/** The registry as the control plane loads it (parsed in a worker): how long, and the event loop's longest stall meanwhile. */
async function registryLoadBench(): Promise<{ ms: number; maxStallMs: number }> {
  const yaml = registryYaml(meshSpecs(SERVICES, ENDPOINTS));
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const t0 = performance.now();
  await parseRegistryOffThread(yaml, 'bench.yaml');
  const took = performance.now() - t0;
  // A stall at the very end is recorded only when the histogram's timer runs again.
  await new Promise((r) => setTimeout(r, 20));
  h.disable();
  return { ms: took, maxStallMs: h.max / 1e6 };
}

// ----------------------------------------------------------------------------------- 2-4. push bench

interface ServerResult {
  phases: PhaseResult[];
  mem: MemSample[];
  setup: SetupInfo;
}

function runServer(mode: Mode): Promise<ServerResult> {
  const cfg: ServerConfig = { mode, services: SERVICES, endpointsPer: ENDPOINTS, phases: PHASES, gapMs: GAP_MS };
  return new Promise((resolve, reject) => {
    const child = fork(path.join(here, 'server.ts'), [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: FromServer | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${mode} benchmark did not finish within 8 minutes`));
    }, 480_000);
    child.on('message', (m: FromServer) => {
      result = m;
      // It should exit by itself once torn down; do not wait forever for a stuck handle.
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!result) reject(new Error(`${mode} benchmark process exited (${code ?? signal}) without a result`));
      else if (result.type === 'error') reject(new Error(`${mode} benchmark failed: ${result.message}`));
      else resolve({ phases: result.phases, mem: result.mem, setup: result.setup });
    });
    child.send(cfg);
  });
}

function memPerProxy(mem: readonly MemSample[]): { marginal: number; fromIdle: number; heapMarginal: number } {
  const at = (n: number): MemSample => {
    const m = mem.find((x) => x.n === n);
    if (!m) throw new Error(`no memory sample at ${n} proxies`);
    return m;
  };
  const lo = PHASES[0]?.n ?? 0;
  const hi = PHASES[PHASES.length - 1]?.n ?? 0;
  return {
    marginal: (at(hi).rss - at(lo).rss) / (hi - lo),
    fromIdle: (at(hi).rss - at(0).rss) / hi,
    heapMarginal: (at(hi).heapUsed + at(hi).external - at(lo).heapUsed - at(lo).external) / (hi - lo),
  };
}

// ------------------------------------------------------------------------------------------ report

interface Row {
  figure: string;
  value: string;
  baseline: string;
  ratio: string;
  target: string;
  verdict: string;
}

const ms = (x: number): string => `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)} ms`;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

function ratioRow(
  figure: string,
  value: number,
  baseline: number,
  limit: number,
  fmt: (x: number) => string,
  baselineLabel = fmt(baseline),
): Row {
  const r = value / baseline;
  return {
    figure,
    value: fmt(value),
    baseline: baselineLabel,
    ratio: `${r.toFixed(2)}x`,
    target: `<= ${limit}x`,
    verdict: r <= limit ? 'PASS' : 'MISS',
  };
}

function absRow(figure: string, value: number, limitMs: number): Row {
  const r = value / limitMs;
  return {
    figure,
    value: ms(value),
    baseline: `(target) ${ms(limitMs)}`,
    ratio: `${r.toFixed(2)}x`,
    target: `<= ${ms(limitMs)}`,
    verdict: value <= limitMs ? 'PASS' : 'MISS',
  };
}

function infoRow(figure: string, value: string, baseline = '', ratio = ''): Row {
  return { figure, value, baseline, ratio, target: '', verdict: 'info' };
}

function table(rows: readonly Row[]): string {
  const head: Row = { figure: 'figure', value: 'value', baseline: 'baseline', ratio: 'ratio', target: 'target', verdict: '' };
  const cols = ['figure', 'value', 'baseline', 'ratio', 'target', 'verdict'] as const;
  const width = Object.fromEntries(cols.map((c) => [c, Math.max(...[head, ...rows].map((r) => r[c].length))])) as Record<
    (typeof cols)[number],
    number
  >;
  const line = (r: Row): string => cols.map((c) => (c === 'figure' ? r[c].padEnd(width[c]) : r[c].padStart(width[c]))).join('  ');
  return [line(head), cols.map((c) => '-'.repeat(width[c])).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(
    `MCP Mesh benchmark${QUICK ? ' (BENCH_QUICK: short run, figures are rough)' : ''}: node ${process.version}, ${SERVICES} services x ${ENDPOINTS} endpoints`,
  );

  console.log('\n[1/4] snapshot build ...');
  const b = buildBench();
  console.log(
    `  full build:  median ${ms(median(b.full))}, p99 ${ms(pct(b.full, 99))} (${b.full.length} runs after ${BUILD.fullWarm} warm-up)`,
  );
  console.log(
    `  one change:  median ${ms(median(b.one))}, p99 ${ms(pct(b.one, 99))} (${b.one.length} runs after ${BUILD.oneWarm} warm-up)`,
  );
  console.log(`  registry YAML parse (informational): median ${ms(median(b.parse))}`);
  const load = await registryLoadBench();
  console.log(
    `  registry load in a worker thread (informational): ${ms(load.ms)}, event loop max stall meanwhile ${ms(load.maxStallMs)} (the parse above, inline, stalls it that long)`,
  );

  const describe = (label: string, r: ServerResult): void => {
    for (const p of r.phases) {
      console.log(
        `  ${label} N=${String(p.n).padStart(4)}: push->last ACK median ${ms(median(p.pushToAck))}, p99 ${ms(pct(p.pushToAck, 99))}; ` +
          `server CPU/push ${ms(median(p.serverCpu))}; trigger blocks ${ms(median(p.trigger))}; ${p.pushToAck.length} pushes; connect took ${(p.connectMs / 1000).toFixed(1)} s`,
      );
      if (p.fileToAck.length > 0)
        console.log(
          `  ${label} N=${String(p.n).padStart(4)}: registry file rewritten -> last ACK median ${ms(median(p.fileToAck))} (${p.fileToAck.length} edits)`,
        );
      if (p.toApply.length > 0)
        console.log(
          `  ${label} N=${String(p.n).padStart(4)}: Consul write -> apply() of the change median ${ms(median(p.toApply))}, p99 ${ms(pct(p.toApply, 99))}`,
        );
      if (p.convergence)
        console.log(
          `  ${label} N=${String(p.n).padStart(4)}: mcpmesh_convergence_seconds{source="consul"}: ${p.convergence.count} observations, mean ${ms((1000 * p.convergence.sum) / p.convergence.count)}, p50 ~${ms(1000 * histQuantile(p.convergence, 0.5))}, p99 ~${ms(1000 * histQuantile(p.convergence, 0.99))} (bucket estimates)`,
        );
    }
    const m = memPerProxy(r.mem);
    const mib = (x: number): string => `${(x / 2 ** 20).toFixed(1)} MiB`;
    for (const x of r.mem)
      console.log(
        `  ${label} ${String(x.n).padStart(4)} proxies: RSS ${mib(x.rss)}, JS heap used ${mib(x.heapUsed)} of ${mib(x.heapTotal)}, external+buffers ${mib(x.external)}`,
      );
    console.log(`  ${label} RSS per proxy: ${kib(m.marginal)} (marginal), ${kib(m.fromIdle)} (from idle)`);
  };

  console.log('\n[2/4] push floor (do-nothing ADS server, one pre-encoded EDS response) ...');
  const floor = await runServer('floor');
  describe('floor', floor);

  console.log('\n[3/4] control plane (ControlPlane.apply with one endpoint changed, quietMs 0) ...');
  const cp = await runServer('cp');
  describe('cp   ', cp);

  console.log(
    `\n[4/4] control plane with Consul as its source (Consul stand-in in its own process; one instance re-registered per push) ...`,
  );
  const consul = await runServer('consul');
  const cs = consul.setup;
  console.log(
    `  consul setup: ${cs.registrations ?? '?'} registrations (PUT /v1/agent/service/register) in ${((cs.registerMs ?? NaN) / 1000).toFixed(1)} s; ` +
      `control plane start -> first mesh from Consul ${((cs.firstMeshMs ?? NaN) / 1000).toFixed(1)} s; coalescer quietMs ${cs.quietMs}, maxDelayMs ${cs.maxDelayMs}; watch wait ${cs.consulWait}`,
  );
  describe('consul', consul);

  const rows: Row[] = [
    absRow('snapshot build, full (median)', median(b.full), 50),
    infoRow('snapshot build, full (p99)', ms(pct(b.full, 99))),
    absRow('snapshot build, one endpoint change (median)', median(b.one), 1),
    infoRow('snapshot build, one endpoint change (p99)', ms(pct(b.one, 99))),
  ];
  for (const p of cp.phases) {
    const f = floor.phases.find((x) => x.n === p.n);
    if (!f) throw new Error(`no floor phase for N=${p.n}`);
    rows.push(
      ratioRow(`edit -> last ACK, N=${p.n} (median)`, median(p.pushToAck), median(f.pushToAck), 2, ms),
      ratioRow(`edit -> last ACK, N=${p.n} (p99)`, pct(p.pushToAck, 99), pct(f.pushToAck, 99), 2, ms),
      infoRow(
        `server CPU per push, N=${p.n} (median)`,
        ms(median(p.serverCpu)),
        ms(median(f.serverCpu)),
        `${(median(p.serverCpu) / median(f.serverCpu)).toFixed(2)}x`,
      ),
    );
  }
  for (const p of consul.phases) {
    const f = floor.phases.find((x) => x.n === p.n);
    if (!f) throw new Error(`no floor phase for N=${p.n}`);
    rows.push(
      ratioRow(`Consul change -> last ACK, N=${p.n} (median)`, median(p.pushToAck), median(f.pushToAck), 2, ms),
      ratioRow(`Consul change -> last ACK, N=${p.n} (p99)`, pct(p.pushToAck, 99), pct(f.pushToAck, 99), 2, ms),
      infoRow(
        `Consul: server CPU per push, N=${p.n} (median)`,
        ms(median(p.serverCpu)),
        ms(median(f.serverCpu)),
        `${(median(p.serverCpu) / median(f.serverCpu)).toFixed(2)}x`,
      ),
      infoRow(`Consul write -> apply() of it, N=${p.n} (median)`, ms(median(p.toApply))),
    );
    if (p.convergence && p.convergence.count > 0) {
      const h = p.convergence;
      const p50 = 1000 * histQuantile(h, 0.5);
      rows.push(
        infoRow(
          `mcpmesh_convergence_seconds{consul}, N=${p.n} (p50 est.; mean)`,
          `~${ms(p50)}; ${ms((1000 * h.sum) / h.count)}`,
          ms(median(f.pushToAck)),
          `${(p50 / median(f.pushToAck)).toFixed(2)}x`,
        ),
      );
    }
  }
  const cm = memPerProxy(cp.mem);
  const fm = memPerProxy(floor.mem);
  const hi = PHASES[PHASES.length - 1]?.n ?? 0;
  const lo = PHASES[0]?.n ?? 0;
  rows.push(
    ratioRow(`RSS per proxy, ${lo}->${hi} proxies`, cm.marginal, fm.marginal, 2.5, kib),
    infoRow(`RSS per proxy, idle->${hi} proxies`, kib(cm.fromIdle), kib(fm.fromIdle), `${(cm.fromIdle / fm.fromIdle).toFixed(2)}x`),
    infoRow(
      `JS heap+external per proxy, ${lo}->${hi}`,
      kib(cm.heapMarginal),
      kib(fm.heapMarginal),
      `${(cm.heapMarginal / fm.heapMarginal).toFixed(2)}x`,
    ),
    infoRow('registry YAML parse, 1000x10 (median)', ms(median(b.parse))),
    infoRow('registry load in a worker: event loop max stall', ms(load.maxStallMs)),
  );
  for (const p of cp.phases) {
    if (p.fileToAck.length > 0)
      rows.push(
        infoRow(
          `registry file edit -> last ACK, N=${p.n} (median)`,
          ms(median(p.fileToAck)),
          ms(median(floor.phases.find((x) => x.n === p.n)?.pushToAck ?? [])),
        ),
      );
  }

  console.log(
    `\nResults (${((performance.now() - started) / 1000).toFixed(0)} s; baseline = push floor measured above, or the absolute target)\n`,
  );
  console.log(table(rows));
  console.log(`
Notes:
- edit -> last ACK: from just before ControlPlane.apply(specs) (floor: before writing the stream) until the client
  process reports its last ACK written (one IPC hop, same for both servers). Every proxy decodes the
  DiscoveryResponse and each ClusterLoadAssignment, checks the changed port and ACKs version_info + nonce.
  The next push starts only after the server has processed every ACK (cp: ProxyTracker ackedVersion) and ${GAP_MS} ms.
- The edit -> last ACK rows exclude what the registry file path adds before apply(): RegistryFileSource's 100 ms
  debounce, the coalescer's quiet window (quietMs; 0 here, default 100 ms) and the YAML parse. The "registry file
  edit" row is the whole path (atomic rewrite of the file, fs.watch, debounce, parse, apply), for a few edits.
- Consul change -> last ACK: the mesh (${SERVICES} services x ${ENDPOINTS} endpoints) is registered in the Consul stand-in
  (test/consul-standin, real blocking queries, checkUpdateIntervalMs 0) as ${consul.setup.registrations ?? '?'} instances (one per endpoint, tag
  mcp, meta region/zone/mcp-protocol, no checks: healthy); the stand-in runs in its own process, as Consul would. Each push
  re-registers instance 0 of ${serviceName(0)} with a new port through the \`consul\` client (PUT /v1/agent/service/register); the time
  runs from just before that write until the client process reports its last ACK. Inside: the stand-in's write and
  blocking-query wake-up, the source's health and catalog watches (both wake: an instance change moves the catalog's
  service list index too), specsFromConsul, the coalescer (quietMs ${consul.setup.quietMs}, maxDelayMs ${consul.setup.maxDelayMs}; the control plane's
  defaults are 100 / 1000 ms, which would add about 100 ms), the build and the push. A push ends only when both watches'
  updates went through the source. Watches use wait=${consul.setup.consulWait} (the stand-in adds no jitter; see server.ts).
  "Consul write -> apply()" is the part before ControlPlane.apply() starts on the changed mesh (same clock).
- mcpmesh_convergence_seconds{source="consul"}: the control plane's own histogram (admin /metrics) over the timed pushes
  only; it runs from the health watch's answer arriving (before specsFromConsul) to the control plane having processed the
  last ACK, which can be later than the client process reporting it (the server may still be busy, e.g. with the catalog
  watch's update). p50 is a bucket estimate (histogram_quantile; buckets 10/25/50/100/250 ms...), the mean is exact.
- p99 is nearest-rank over the pushes listed above (with under 100 samples it is the slowest one).
- RSS per proxy: (RSS at ${hi} - RSS at ${lo} connected proxies) / ${hi - lo}; RSS at N is the mean of two samples, before and
  after that phase's timed pushes, each after a forced GC; each server runs in its own process. "From idle" divides
  RSS at ${hi} minus RSS before any client connected by ${hi} (it also counts per-proxy-class state: snapshot, caches).`);
}

main().then(
  () => {
    // Both server processes (and their client processes) have exited by now, so nothing keeps us alive.
  },
  (err: unknown) => {
    console.error(`\nbenchmark failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
