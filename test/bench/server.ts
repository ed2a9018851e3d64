// One side of the push benchmark, run in its own process (forked by test/bench/run.ts with --expose-gc) so
// that its RSS is its own: either the real control plane ('cp') or the do-nothing push floor ('floor'). It
// forks the client process (test/bench/clients.ts), connects proxies in phases (e.g. 100, then 1,000),
// and for each phase times pushes from the trigger to the client process reporting the last ACK.
import { fork, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import { loadAssignment } from '../../control-plane/src/translate/endpoints.ts';
import { serviceCluster } from '../../control-plane/src/translate/naming.ts';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import type { ClientsConfig, FromClients, ToClients } from './clients.ts';
import { BENCH_REGION, BENCH_ZONE, meshSpecs, registryYaml, serviceName } from './mesh.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

export type Mode = 'cp' | 'floor';

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
  connectMs: number;
}

export type FromServer =
  | { type: 'result'; mode: Mode; phases: PhaseResult[]; mem: MemSample[] }
  | { type: 'error'; message: string };

const EDS_NAME = serviceCluster(serviceName(0));

type Via = 'apply' | 'file';

interface BenchServer {
  readonly address: string;
  readonly cds: boolean;
  /**
   * Readies push `round` (unique, increasing) without doing it: the work a source does before the control plane
   * sees a change (building specs, writing YAML text) stays outside the timed window.
   */
  prepare(round: number, via: Via): void;
  /** Makes the prepared push happen. */
  trigger(): void;
  /** Port the changed endpoint has after push `round`, if the push carries a change clients can check. */
  portFor(round: number): number | undefined;
  /** Whether the server has processed every ACK of the last push (so the next push starts from quiet). */
  settled(expectedVersion: string, n: number): boolean;
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
  const bytes = Buffer.from(respType.encode(respType.fromObject({
    version_info: 'floor-1',
    resources: [{ type_url: TYPE_URLS.endpoint, value: claType.encode(claType.fromObject(cla.body)).finish() }],
    type_url: TYPE_URLS.endpoint,
    nonce: '1',
  })).finish());

  const streams = new Set<grpc.ServerDuplexStream<Buffer, Buffer>>();
  let acks = 0;
  const identity = (b: Buffer): Buffer => b;
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService({
    StreamAggregatedResources: {
      path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
      requestStream: true, responseStream: true,
      requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity,
      originalName: 'streamAggregatedResources',
    },
  }, {
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
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let expectedAcks = 0;
  return {
    address: `127.0.0.1:${port}`,
    cds: false,
    prepare() {},
    trigger() {
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

/** The real control plane, fed through its registry path (ControlPlane.apply, no file watcher delay). */
async function controlPlaneServer(cfg: ServerConfig): Promise<BenchServer> {
  const tcp: TestControlPlane = await startControlPlane(registryYaml(meshSpecs(cfg.services, cfg.endpointsPer)), { quietMs: 0, maxDelayMs: 1 });
  const cp = tcp.cp;
  const portFor = (round: number): number => 20_000 + round;
  let next: (() => void) | undefined;
  return {
    address: `127.0.0.1:${cp.xdsPort}`,
    cds: true,
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
    trigger() {
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
  const server = cfg.mode === 'cp' ? await controlPlaneServer(cfg) : await floorServer(cfg);
  let child: ChildProcess | undefined;
  try {
    const mem: MemSample[] = [await memSample(0)];
    const clientsCfg: ClientsConfig = { address: server.address, edsName: EDS_NAME, cds: server.cds };
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
    const request = <T extends FromClients['type']>(msg: ToClients, reply: T, timeoutMs: number): Promise<Extract<FromClients, { type: T }>> => {
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
      const result: PhaseResult = { n: phase.n, pushToAck: [], serverCpu: [], trigger: [], fileToAck: [], connectMs };
      /** One push, from trigger to the last ACK reported by the client process and processed by the server. */
      const push = async (via: Via): Promise<{ toAck: number; trigger: number; cpu: number }> => {
        round += 1;
        server.prepare(round, via);
        const port = server.portFor(round);
        await request({ type: 'expect', round, ...(port !== undefined ? { port } : {}) }, 'armed', 10_000);
        await sleep(cfg.gapMs);
        const ackedP = expectReply('acked', 60_000);
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        server.trigger();
        const t1 = performance.now();
        const acked = await ackedP;
        const t2 = performance.now();
        if (acked.round !== round) throw new Error(`round ${round}: client process reported round ${acked.round}`);
        if (acked.versions.length !== 1) throw new Error(`round ${round}: proxies ACKed different versions: ${acked.versions.join(', ')}`);
        const version = acked.versions[0] ?? '';
        await waitUntil(`the server to process every ACK of round ${round}`, () => server.settled(version, phase.n), 30_000);
        const cpu = process.cpuUsage(cpu0);
        return { toAck: t2 - t0, trigger: t1 - t0, cpu: (cpu.user + cpu.system) / 1000 };
      };
      let before: MemSample | undefined;
      for (let i = 0; i < phase.warmup + phase.rounds; i++) {
        if (i === phase.warmup) before = await memSample(phase.n);
        const r = await push('apply');
        if (i >= phase.warmup) {
          result.pushToAck.push(r.toAck);
          result.trigger.push(r.trigger);
          result.serverCpu.push(r.cpu);
        }
      }
      const after = await memSample(phase.n);
      mem.push(before ? meanSample(before, after) : after);
      if (cfg.mode === 'cp') for (let i = 0; i < (phase.fileEdits ?? 0); i++) result.fileToAck.push((await push('file')).toAck);
      phases.push(result);
    }
    return { type: 'result', mode: cfg.mode, phases, mem };
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
