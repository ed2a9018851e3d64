// One side of the push benchmark, run in its own process (forked by test/bench/run.ts with --expose-gc) so
// that its RSS is its own: the real control plane fed through ControlPlane.apply ('cp') or through its Consul
// source ('consul'), or the do-nothing push floor ('floor'). It forks the client process
// (test/bench/clients.ts), connects proxies in phases (e.g. 100, then 1,000), and for each phase times pushes
// from the trigger to the client process reporting the last ACK. In 'consul' mode it also forks the Consul
// stand-in (test/bench/consul.ts) and registers the mesh there over Consul's HTTP API.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { createLogger, silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { MeshBuilder, type ServiceSpec } from '../../control-plane/src/model/mesh.ts';
import { consulClient } from '../../control-plane/src/sources/consul.ts';
import { loadAssignment } from '../../control-plane/src/translate/endpoints.ts';
import { serviceCluster, serviceEndpoints } from '../../control-plane/src/translate/naming.ts';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import type { ClientsConfig, FromClients, ToClients } from './clients.ts';
import type { FromConsul, ToConsul } from './consul.ts';
import { BENCH_REGION, BENCH_ZONE, consulRegistration, meshSpecs, registryYaml, serviceName, type ConsulRegistration } from './mesh.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

export type Mode = 'cp' | 'consul' | 'floor';

/** Coalescer settings of both control-plane modes (default 100 ms / 1000 ms): the bench measures the rest. */
const BENCH_QUIET_MS = 0;
const BENCH_MAX_DELAY_MS = 1;
/** Consul blocking-query wait of the control plane's watches ('consul' mode). The stand-in adds no jitter, so
 * with Consul's 30 s default the 1,001 watches would all time out and re-poll together in the middle of a phase;
 * 5 m keeps those re-polls out of a run. */
const BENCH_CONSUL_WAIT = '5m';
/** Concurrent registrations while the mesh is put into Consul (setup, not measured). */
const REGISTER_CONCURRENCY = 32;

export interface PhaseConfig {
  /** Proxies connected during this phase. */
  n: number;
  warmup: number;
  rounds: number;
  /** After the timed pushes: edits made by rewriting the registry file (control plane only; informational). */
  fileEdits?: number;
}

export interface ServerConfig {
  mode: Mode;
  services: number;
  endpointsPer: number;
  phases: PhaseConfig[];
  /** Quiet gap between pushes once the previous one is fully ACKed and processed. */
  gapMs: number;
}

export interface MemSample {
  n: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

export interface PhaseResult {
  n: number;
  /** Trigger -> client process reports the last ACK, ms. */
  pushToAck: number[];
  /** Server CPU (user+sys) from the trigger until every ACK was processed, ms. */
  serverCpu: number[];
  /** Time the trigger itself blocked the server (cp.apply / writing every stream), ms. */
  trigger: number[];
  /** Registry file rewritten -> client process reports the last ACK, ms (control plane only). */
  fileToAck: number[];
  /** Consul write -> start of the ControlPlane.apply() that carries the change, ms ('consul' only). */
  toApply: number[];
  /** The control plane's mcpmesh_convergence_seconds{source="consul"} over the timed pushes ('consul' only). */
  convergence?: HistogramDelta;
  connectMs: number;
}

/** A Prometheus histogram's change over an interval: cumulative counts per finite upper bound (seconds). */
export interface HistogramDelta {
  count: number;
  sum: number;
  buckets: Array<[le: number, cumulative: number]>;
}

/** What setting up the server took (informational). */
export interface SetupInfo {
  /** Coalescer settings (control-plane modes). */
  quietMs?: number;
  maxDelayMs?: number;
  /** Blocking-query wait of the Consul watches ('consul' only). */
  consulWait?: string;
  /** Consul registrations made over the HTTP API before the control plane started ('consul' only). */
  registrations?: number;
  registerMs?: number;
  /** Control plane start -> first mesh built from Consul (catalog + every service's health answered). */
  firstMeshMs?: number;
}

export type FromServer =
  | { type: 'result'; mode: Mode; phases: PhaseResult[]; mem: MemSample[]; setup: SetupInfo }
  | { type: 'error'; message: string };

const EDS_NAME = serviceCluster(serviceName(0));

type Via = 'apply' | 'file';

interface BenchServer {
  readonly address: string;
  readonly cds: boolean;
  /** The EDS name of the service the clients watch, when it is not the plain one (Consul: it carries the incarnation). */
  readonly edsName?: string;
  /**
   * Readies push `round` (unique, increasing) without doing it: the work a source does before the control plane
   * sees a change (building specs, writing YAML text) stays outside the timed window.
   */
  prepare(round: number, via: Via): void;
  /** Makes the prepared push happen; a promise when part of it is asynchronous (a Consul write). */
  trigger(): Promise<unknown> | undefined;
  /** Port the changed endpoint has after push `round`, if the push carries a change clients can check. */
  portFor(round: number): number | undefined;
  /** Whether the server has processed every ACK of the last push (so the next push starts from quiet). */
  settled(expectedVersion: string, n: number): boolean;
  /** When the last triggered change reached ControlPlane.apply() (performance.now(); 'consul' only). */
  appliedAt?(): number | undefined;
  /** The current convergence histogram ('consul' only). */
  convergence?(): Promise<HistogramDelta>;
  readonly setup: SetupInfo;
  stop(): Promise<void>;
}

/** The push floor: holds one pre-encoded EDS response and writes the same bytes to every stream. */
async function floorServer(cfg: ServerConfig): Promise<BenchServer> {
  const { mesh } = new MeshBuilder().build(meshSpecs(1, cfg.endpointsPer));
  const svc = mesh.services[0];
  if (!svc) throw new Error('no service');
  const cla = loadAssignment(svc, { region: BENCH_REGION, zone: BENCH_ZONE });
  const claType = lookupType(TYPE_URLS.endpoint);
  const respType = lookupType('envoy.service.discovery.v3.DiscoveryResponse');
  const bytes = Buffer.from(
    respType
      .encode(
        respType.fromObject({
          version_info: 'floor-1',
          resources: [{ type_url: TYPE_URLS.endpoint, value: claType.encode(claType.fromObject(cla.body)).finish() }],
          type_url: TYPE_URLS.endpoint,
          nonce: '1',
        }),
      )
      .finish(),
  );

  const streams = new Set<grpc.ServerDuplexStream<Buffer, Buffer>>();
  let acks = 0;
  const identity = (b: Buffer): Buffer => b;
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(
    {
      StreamAggregatedResources: {
        path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        requestStream: true,
        responseStream: true,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
        originalName: 'streamAggregatedResources',
      },
    },
    {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        let first = true;
        call.on('data', () => {
          if (first) {
            first = false;
            streams.add(call);
            call.write(bytes);
          } else {
            acks += 1;
          }
        });
        const gone = (): void => {
          streams.delete(call);
        };
        call.on('end', () => {
          gone();
          call.end();
        });
        call.on('cancelled', gone);
        call.on('error', gone);
        call.on('close', gone);
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let expectedAcks = 0;
  return {
    address: `127.0.0.1:${port}`,
    cds: false,
    setup: {},
    prepare() {},
    trigger(): undefined {
      expectedAcks = acks + streams.size;
      for (const s of streams) s.write(bytes);
    },
    portFor: () => undefined,
    settled: () => acks >= expectedAcks,
    async stop() {
      for (const s of streams) s.end();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      server.forceShutdown();
    },
  };
}

// Thousands of simulated proxies share one address here, which the per-peer stream limit exists to refuse.
const BENCH_ADS_LIMITS = { maxStreamsPerPeer: 1_000_000 };

/** The real control plane, fed through its registry path (ControlPlane.apply, no file watcher delay). */
async function controlPlaneServer(cfg: ServerConfig): Promise<BenchServer> {
  const tcp: TestControlPlane = await startControlPlane(registryYaml(meshSpecs(cfg.services, cfg.endpointsPer)), {
    quietMs: BENCH_QUIET_MS,
    maxDelayMs: BENCH_MAX_DELAY_MS,
    adsLimits: BENCH_ADS_LIMITS,
  });
  const cp = tcp.cp;
  const portFor = (round: number): number => 20_000 + round;
  let next: (() => void) | undefined;
  return {
    address: `127.0.0.1:${cp.xdsPort}`,
    cds: true,
    setup: { quietMs: BENCH_QUIET_MS, maxDelayMs: BENCH_MAX_DELAY_MS },
    prepare(round, via) {
      const specs = meshSpecs(cfg.services, cfg.endpointsPer, { service: 0, port: portFor(round) });
      if (via === 'apply') {
        next = () => {
          if (!cp.apply(specs, 'bench')) throw new Error('control plane refused the benchmark mesh');
        };
      } else {
        const yaml = registryYaml(specs);
        next = () => tcp.writeRegistry(yaml);
      }
    },
    trigger(): undefined {
      if (!next) throw new Error('push not prepared');
      const go = next;
      next = undefined;
      go();
    },
    portFor,
    settled(version, n) {
      const list = cp.tracker.list();
      if (list.length !== n) return false;
      return list.every((s) => s.types.endpoint?.ackedVersion === version);
    },
    async stop() {
      await tcp.stop();
      rmSync(path.dirname(tcp.registryFile), { recursive: true, force: true });
    },
  };
}

/** Parses one histogram (all buckets, _sum and _count of the series with the given labels) from Prometheus text. */
export function parseHistogram(text: string, name: string, labels: Record<string, string>): HistogramDelta {
  const out: HistogramDelta = { count: 0, sum: 0, buckets: [] };
  const want = Object.entries(labels);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m?.[1]?.startsWith(name)) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (!want.every(([k, v]) => got[k] === v)) continue;
    const value = Number(m[3]);
    if (m[1] === `${name}_count`) out.count = value;
    else if (m[1] === `${name}_sum`) out.sum = value;
    else if (m[1] === `${name}_bucket` && got['le'] !== '+Inf') out.buckets.push([Number(got['le']), value]);
  }
  out.buckets.sort((a, b) => a[0] - b[0]);
  return out;
}

function histogramDelta(after: HistogramDelta, before: HistogramDelta): HistogramDelta {
  return {
    count: after.count - before.count,
    sum: after.sum - before.sum,
    buckets: after.buckets.map(([le, c]) => [le, c - (before.buckets.find((b) => b[0] === le)?.[1] ?? 0)]),
  };
}

/**
 * The real control plane with Consul as its source. The Consul stand-in runs in its own process; the mesh is
 * registered through its HTTP API (one registration per endpoint) before the control plane starts, and each
 * push re-registers instance 0 of service 0 with a new port (a Consul registration change).
 */
async function consulServer(cfg: ServerConfig): Promise<BenchServer> {
  const kid = fork(path.join(here, 'consul.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => kid.once('exit', () => r()));
  const stopStandIn = async (): Promise<void> => {
    if (kid.exitCode === null && kid.signalCode === null) {
      try {
        kid.send({ type: 'close' } satisfies ToConsul);
      } catch {
        kid.kill('SIGKILL');
      }
      const t = setTimeout(() => kid.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
  };
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-bench-'));
  let cp: ControlPlane | undefined;
  let client: ReturnType<typeof consulClient> | undefined;
  try {
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('Consul stand-in did not start within 30 s')), 30_000);
      kid.once('message', (m: FromConsul) => {
        clearTimeout(timer);
        if (m.type === 'ready') resolve(m.address);
        else reject(new Error(`Consul stand-in: ${m.message}`));
      });
      kid.once('exit', (code, signal) => reject(new Error(`Consul stand-in exited (${code ?? signal})`)));
    });
    const consul = consulClient({ address });
    client = consul;

    // Setup: every endpoint as one Consul service instance, over PUT /v1/agent/service/register.
    const r0 = performance.now();
    const regs: ConsulRegistration[] = [];
    for (let i = 0; i < cfg.services; i++) for (let j = 0; j < cfg.endpointsPer; j++) regs.push(consulRegistration(i, j));
    let next = 0;
    await Promise.all(
      Array.from({ length: REGISTER_CONCURRENCY }, async () => {
        while (next < regs.length) await consul.agent.service.register(regs[next++] as never);
      }),
    );
    const registerMs = performance.now() - r0;

    // An unused registry file: with `consul` set the control plane does not read it.
    const unused = path.join(dir, 'unused.yaml');
    writeFileSync(unused, 'services: []\n');
    const plane = new ControlPlane({
      registryFile: unused,
      consul: { address, wait: BENCH_CONSUL_WAIT },
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      quietMs: BENCH_QUIET_MS,
      maxDelayMs: BENCH_MAX_DELAY_MS,
      log: process.env['MCPMESH_TEST_LOG'] ? createLogger({ level: 'debug' }) : silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      adsLimits: BENCH_ADS_LIMITS,
    });
    cp = plane;
    // Watch what reaches apply(): the first mesh (checked against the registry path's), then each push's change.
    let firstMesh: ((specs: readonly ServiceSpec[]) => void) | undefined;
    let expectPort: number | undefined;
    let appliedAt: number | undefined;
    const apply = plane.apply.bind(plane);
    plane.apply = (specs, source, observedAt) => {
      const at = performance.now();
      if (firstMesh) firstMesh(specs);
      else if (appliedAt === undefined && specs[0]?.endpoints[0]?.port === expectPort) appliedAt = at;
      return apply(specs, source, observedAt);
    };
    const c0 = performance.now();
    const firstP = new Promise<readonly ServiceSpec[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the control plane built no mesh from Consul within 120 s')), 120_000);
      timer.unref();
      firstMesh = (specs) => {
        clearTimeout(timer);
        firstMesh = undefined;
        resolve(specs);
      };
    });
    firstP.catch(() => {});
    await plane.start();
    const first = await firstP;
    const firstMeshMs = performance.now() - c0;
    // Consul sets each service's incarnation (its oldest instance's CreateIndex) and says its checks gave the health;
    // the rest must match the registry's.
    const comparable = (specs: readonly ServiceSpec[]): unknown =>
      specs.map(({ incarnation: _, endpoints, ...rest }) => ({ ...rest, endpoints: endpoints.map(({ healthFrom: _h, ...e }) => e) }));
    if (!isDeepStrictEqual(comparable(first), comparable(meshSpecs(cfg.services, cfg.endpointsPer))))
      throw new Error('the mesh built from Consul differs from meshSpecs()');
    // Every source update counts; a re-registration wakes the service's health watch (the catalog watch wakes
    // too, but publishes nothing while the set of MCP services is unchanged), so a push is over after one update.
    let updates = 0;
    let updatesWanted = 0;
    (plane as unknown as { source: NodeJS.EventEmitter }).source.on('update', () => void (updates += 1));

    const portFor = (round: number): number => 20_000 + round;
    let prepared: ReturnType<typeof consulRegistration> | undefined;
    return {
      address: `127.0.0.1:${plane.xdsPort}`,
      cds: true,
      edsName: serviceEndpoints(serviceName(0), first.find((sp) => sp.name === serviceName(0))?.incarnation ?? 0),
      setup: {
        registrations: regs.length,
        registerMs,
        firstMeshMs,
        quietMs: BENCH_QUIET_MS,
        maxDelayMs: BENCH_MAX_DELAY_MS,
        consulWait: BENCH_CONSUL_WAIT,
      },
      prepare(round) {
        prepared = consulRegistration(0, 0, portFor(round));
        expectPort = prepared.Port;
        appliedAt = undefined;
      },
      trigger() {
        if (!prepared) throw new Error('push not prepared');
        const reg = prepared;
        prepared = undefined;
        updatesWanted = updates + 1;
        return consul.agent.service.register(reg as never);
      },
      portFor,
      settled(version, n) {
        if (updates < updatesWanted) return false;
        const list = plane.tracker.list();
        if (list.length !== n) return false;
        return list.every((s) => s.types.endpoint?.ackedVersion === version);
      },
      appliedAt: () => appliedAt,
      async convergence() {
        const text = await (await fetch(`http://127.0.0.1:${plane.adminPort}/metrics`)).text();
        return parseHistogram(text, 'mcpmesh_convergence_seconds', { source: 'consul' });
      },
      async stop() {
        await plane.stop();
        consul.destroy();
        await stopStandIn();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await cp?.stop().catch(() => {});
    client?.destroy();
    await stopStandIn();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function gcNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function memSample(n: number): Promise<MemSample> {
  await sleep(200);
  gcNow();
  await sleep(200);
  gcNow();
  const m = process.memoryUsage();
  return { n, rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external + m.arrayBuffers };
}

/** Two samples (taken before and after a phase's timed pushes) averaged: RSS moves a few MiB between samples. */
function meanSample(a: MemSample, b: MemSample): MemSample {
  const avg = (k: 'rss' | 'heapUsed' | 'heapTotal' | 'external'): number => (a[k] + b[k]) / 2;
  return { n: a.n, rss: avg('rss'), heapUsed: avg('heapUsed'), heapTotal: avg('heapTotal'), external: avg('external') };
}

async function waitUntil(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(1);
  }
}

async function run(cfg: ServerConfig): Promise<FromServer> {
  const server =
    cfg.mode === 'cp' ? await controlPlaneServer(cfg) : cfg.mode === 'consul' ? await consulServer(cfg) : await floorServer(cfg);
  let child: ChildProcess | undefined;
  try {
    const mem: MemSample[] = [await memSample(0)];
    const clientsCfg: ClientsConfig = { address: server.address, edsName: server.edsName ?? EDS_NAME, cds: server.cds };
    const kid = fork(path.join(here, 'clients.ts'), [JSON.stringify(clientsCfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child = kid;
    // Messages from the client process, handed to whoever waits for that type.
    const waiters = new Map<string, (m: FromClients) => void>();
    let childError: Error | undefined;
    kid.on('message', (m: FromClients) => {
      if (m.type === 'error') {
        childError ??= new Error(`client process: ${m.message}`);
        for (const w of waiters.values()) w(m);
        return;
      }
      const w = waiters.get(m.type);
      waiters.delete(m.type);
      w?.(m);
    });
    kid.on('exit', (code, signal) => {
      childError ??= new Error(`client process exited (${code ?? signal})`);
      for (const w of waiters.values()) w({ type: 'error', message: childError.message });
    });
    /** Waits for the client process's next message of type `reply` (register before triggering what causes it). */
    const expectReply = <T extends FromClients['type']>(reply: T, timeoutMs: number): Promise<Extract<FromClients, { type: T }>> => {
      const p = new Promise<Extract<FromClients, { type: T }>>((resolve, reject) => {
        if (childError) {
          reject(childError);
          return;
        }
        const timer = setTimeout(() => {
          waiters.delete(reply);
          reject(new Error(`no '${reply}' from the client process within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.set(reply, (m) => {
          clearTimeout(timer);
          if (m.type === 'error') reject(childError ?? new Error(m.message));
          else resolve(m as Extract<FromClients, { type: T }>);
        });
      });
      p.catch(() => {});
      return p;
    };
    const request = <T extends FromClients['type']>(
      msg: ToClients,
      reply: T,
      timeoutMs: number,
    ): Promise<Extract<FromClients, { type: T }>> => {
      const p = expectReply(reply, timeoutMs);
      kid.send(msg);
      return p;
    };

    const phases: PhaseResult[] = [];
    let round = 0;
    let connected = 0;
    for (const phase of cfg.phases) {
      const c0 = performance.now();
      const got = await request({ type: 'connect', count: phase.n - connected }, 'connected', 240_000);
      connected = got.total;
      if (connected !== phase.n) throw new Error(`connected ${connected} proxies, wanted ${phase.n}`);
      const connectMs = performance.now() - c0;
      const result: PhaseResult = { n: phase.n, pushToAck: [], serverCpu: [], trigger: [], fileToAck: [], toApply: [], connectMs };
      /** One push, from trigger to the last ACK reported by the client process and processed by the server. */
      const push = async (via: Via): Promise<{ toAck: number; trigger: number; cpu: number; toApply: number | undefined }> => {
        round += 1;
        server.prepare(round, via);
        const port = server.portFor(round);
        await request({ type: 'expect', round, ...(port !== undefined ? { port } : {}) }, 'armed', 10_000);
        await sleep(cfg.gapMs);
        const ackedP = expectReply('acked', 60_000).then((a) => ({ acked: a, at: performance.now() }));
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const written = server.trigger();
        const t1 = performance.now();
        // A failed Consul write fails the round at once rather than after the ACK timeout.
        const [{ acked, at: t2 }] = await Promise.all([ackedP, written]);
        if (acked.round !== round) throw new Error(`round ${round}: client process reported round ${acked.round}`);
        if (acked.versions.length !== 1) throw new Error(`round ${round}: proxies ACKed different versions: ${acked.versions.join(', ')}`);
        const version = acked.versions[0] ?? '';
        await waitUntil(`the server to process every ACK of round ${round}`, () => server.settled(version, phase.n), 30_000);
        const cpu = process.cpuUsage(cpu0);
        const applied = server.appliedAt?.();
        return {
          toAck: t2 - t0,
          trigger: t1 - t0,
          cpu: (cpu.user + cpu.system) / 1000,
          toApply: applied === undefined ? undefined : applied - t0,
        };
      };
      let before: MemSample | undefined;
      let hist0: HistogramDelta | undefined;
      for (let i = 0; i < phase.warmup + phase.rounds; i++) {
        if (i === phase.warmup) {
          before = await memSample(phase.n);
          hist0 = await server.convergence?.();
        }
        const r = await push('apply');
        if (i >= phase.warmup) {
          result.pushToAck.push(r.toAck);
          result.trigger.push(r.trigger);
          result.serverCpu.push(r.cpu);
          if (r.toApply !== undefined) result.toApply.push(r.toApply);
        }
      }
      const hist1 = await server.convergence?.();
      if (hist0 && hist1) result.convergence = histogramDelta(hist1, hist0);
      const after = await memSample(phase.n);
      mem.push(before ? meanSample(before, after) : after);
      if (cfg.mode === 'cp') for (let i = 0; i < (phase.fileEdits ?? 0); i++) result.fileToAck.push((await push('file')).toAck);
      phases.push(result);
    }
    return { type: 'result', mode: cfg.mode, phases, mem, setup: server.setup };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child?.once('exit', () => r()));
      try {
        child.send({ type: 'close' } satisfies ToClients);
      } catch {
        child.kill('SIGKILL');
      }
      const t = setTimeout(() => child?.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
    await server.stop();
  }
}

process.on('message', (cfg: ServerConfig) => {
  const reply = (m: FromServer): void => {
    process.send?.(m, undefined, {}, () => process.disconnect?.());
  };
  run(cfg).then(reply, (err: unknown) => reply({ type: 'error', message: (err as Error).stack ?? String(err) }));
});
