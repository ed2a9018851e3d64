// Consul answering through a fault proxy (test/faults/fault-proxy.ts) while a real grpc-js-xds client calls
// the service through the mesh and a raw ADS client follows CDS/EDS like a gateway. For every Consul fault of
// issue 15: no config is lost (the cluster and its endpoints stay, calls keep succeeding), the error is counted
// (mcpmesh_consul_watch_errors_total, mcpmesh_source_errors_total) and shown (/debug/sources, mcpmesh_source_up
// 0), and once Consul answers properly again a change made meanwhile reaches the proxies within a budget and the
// error is cleared. The recovery time of each case is printed. MCPMESH_FAULTS_LONG=1 (npm run faults) repeats
// every case and checks the heap stays bounded after a forced GC.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { node, RawAdsClient } from '../helpers/ads-client.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { EchoClient, spread, startBackend, who, type Backend, type EchoClientInstance } from '../helpers/grpc-backends.ts';
import { MeshFollower } from '../helpers/mesh-follower.ts';
import { waitFor } from '../helpers/wait.ts';
import { FaultProxy, type Fault } from './fault-proxy.ts';

const LONG = process.env['MCPMESH_FAULTS_LONG'] === '1';
const ROUNDS = LONG ? 5 : 1;
const SVC = uniqueName('weather');
const CLUSTER = `mcp.${SVC}`;
/** Blocking wait of the watches: every recovery below must beat it by far (it is what a stuck watch costs). */
const WAIT = '5s';
/** From "Consul answers properly again" to the change at the proxies: backoff cap 2 s + coalescing + push. */
const RECOVERY_BUDGET_MS = 4000;

describe(`Consul faults (${process.env['CONSUL_HTTP_ADDR'] ? 'real Consul' : 'Consul stand-in'} through a fault proxy; grpc-js-xds and a raw ADS client connected)`, () => {
  let consul: TestConsul;
  let proxy: FaultProxy;
  let cp: ControlPlane;
  let ads: RawAdsClient;
  let f: MeshFollower;
  let client: EchoClientInstance;
  let dir: string;
  const backends: Backend[] = [];
  const recoveries: Array<[string, number]> = [];
  /** How much lower than Consul's the indexes the control plane sees are (FaultProxy.shiftIndex). */
  let shift = 0n;

  const admin = async (p: string): Promise<string> => (await fetch(`http://127.0.0.1:${cp.adminPort}${p}`)).text();
  const metric = async (re: RegExp): Promise<number> => Number(re.exec(await admin('/metrics'))?.[1] ?? 0);
  const watchErrors = async (): Promise<number> =>
    [...(await admin('/metrics')).matchAll(/^mcpmesh_consul_watch_errors_total\{watch="[a-z]+"\} (\d+)$/gm)].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
  const sourceError = async (): Promise<string | undefined> =>
    (JSON.parse(await admin('/debug/sources')) as Record<string, string>)['consul'];
  const sourceUp = (): Promise<number> => metric(/^mcpmesh_source_up\{source="consul"\} (\d+)$/m);
  const auth = (): Record<string, string> => (consul.token ? { 'X-Consul-Token': consul.token } : {});
  const register = (i: number): Promise<unknown> =>
    fetch(`${consul.address}/v1/agent/service/register`, {
      method: 'PUT',
      headers: auth(),
      body: JSON.stringify({
        Name: SVC,
        ID: `${SVC}-${i}`,
        Address: '127.0.0.1',
        Port: backends[i]?.port,
        Tags: ['mcp'],
        Meta: { region: 'eu-west', zone: 'a' },
      }),
    });
  const deregister = (i: number): Promise<unknown> =>
    fetch(`${consul.address}/v1/agent/service/deregister/${SVC}-${i}`, { method: 'PUT', headers: auth() });
  const endpointCount = (): number => f.endpoints(CLUSTER)?.length ?? 0;

  /** What must hold throughout a fault: the cluster and its endpoints are still served, and calls still work. */
  async function nothingLost(want: number): Promise<void> {
    assert.deepEqual(f.clusters(), [CLUSTER], 'the cluster is still served');
    assert.equal(endpointCount(), want, 'its endpoints are still served');
    const calls = await spread(client, 4);
    assert.equal(Object.keys(calls).filter((k) => k.startsWith('error')).length, 0, `calls during the fault: ${JSON.stringify(calls)}`);
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-faults-'));
    consul = await startConsul();
    for (const id of ['b0', 'b1', 'b2']) backends.push(await startBackend(id));
    await register(0);
    await register(1);
    proxy = new FaultProxy(consul.address);
    await proxy.start();
    const unused = path.join(dir, 'unused.yaml');
    writeFileSync(unused, 'services: []\n');
    // Default backoff (100 ms doubling to 2 s): what recovery costs in production.
    cp = await new ControlPlane({
      registryFile: unused,
      consul: { address: proxy.address, ...(consul.token ? { token: consul.token } : {}), wait: WAIT, timeoutMarginMs: 1000 },
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      quietMs: 20,
      maxDelayMs: 200,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
    }).start();
    ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
    f = new MeshFollower(ads.sotw(), node('gw-faults', { role: 'gateway' }, { region: 'eu-west', zone: 'a' }));
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${cp.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-faults-1', cluster: 'test', locality: { region: 'eu-west', zone: 'a' }, metadata: { role: 'gateway' } },
    });
    const xds = await import('@grpc/grpc-js-xds');
    xds.register();
    client = new EchoClient(`xds:///${SVC}`, grpc.credentials.createInsecure()) as EchoClientInstance;
    await waitFor('first call through xDS from Consul', () => who(client), 20_000);
    await waitFor('two endpoints at the raw client', () => endpointCount() === 2, 10_000);
  });

  after(async () => {
    client?.close();
    f?.close();
    ads?.close();
    await cp?.stop();
    await proxy?.stop();
    for (const i of [0, 1, 2]) await deregister(i).catch(() => undefined);
    await consul?.stop();
    await Promise.all(backends.map((b) => b.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
    const by = new Map<string, number[]>();
    for (const [k, ms] of recoveries) by.set(k, [...(by.get(k) ?? []), ms]);
    console.log(
      `recovery (Consul healthy again -> change at the raw ADS client), max of ${ROUNDS}: ${[...by].map(([k, v]) => `${k} ${Math.max(...v)} ms`).join('; ')}`,
    );
    // grpc-js-xds's xDS client is process-wide and never closes: exit once the results are written.
    setTimeout(() => process.exit(process.exitCode ?? 0), 1000);
  });

  /**
   * One fault: set it, see it counted and (when it lasts) shown with nothing lost, make a change in Consul
   * meanwhile, heal, and time the change reaching the proxies and the error clearing.
   */
  async function faultCase(label: string, fault: Fault, lasting: boolean): Promise<void> {
    const before = await watchErrors();
    const has2 = endpointCount() === 2;
    proxy.set(fault);
    await waitFor(`${label}: error counted`, async () => (await watchErrors()) > before, 15_000);
    if (lasting) {
      const shown = await waitFor(`${label}: error shown`, sourceError, 5000);
      assert.match(shown, /^consul (catalog|health) watch/, `${label}: /debug/sources names the watch: ${shown}`);
      assert.equal(await sourceUp(), 0, `${label}: mcpmesh_source_up{source="consul"} is 0 while failing`);
      assert.match(await admin('/metrics'), /^mcpmesh_source_errors_total\{source="consul"\} [1-9]/m);
      const watches = JSON.parse(await admin('/debug/sources?watches')) as Array<{
        name: string;
        healthy: boolean;
        lastError?: string;
        consecutiveFailures: number;
      }>;
      assert.ok(
        watches.some((w) => !w.healthy && w.consecutiveFailures > 0 && w.lastError),
        `${label}: a failing watch in /debug/sources?watches: ${JSON.stringify(watches)}`,
      );
    }
    await nothingLost(has2 ? 2 : 3);
    // A change while Consul is "down" (or lying): it must arrive once Consul answers properly again.
    await (has2 ? register(2) : deregister(2));
    // With only the catalog failing, the service's own health watch still carries the change: fine.
    if (lasting && fault.on !== 'catalog') {
      await new Promise((r) => setTimeout(r, 300));
      await nothingLost(has2 ? 2 : 3);
    }
    const healedAt = performance.now();
    proxy.heal();
    await waitFor(`${label}: change applied after recovery`, () => endpointCount() === (has2 ? 3 : 2), RECOVERY_BUDGET_MS, 10);
    const ms = Math.round(performance.now() - healedAt);
    recoveries.push([label, ms]);
    await waitFor(`${label}: error cleared in /debug/sources`, async () => (await sourceError()) === undefined, 5000);
    await waitFor(
      `${label}: every watch healthy`,
      async () => (JSON.parse(await admin('/debug/sources?watches')) as Array<{ healthy: boolean }>).every((w) => w.healthy),
      5000,
    );
    assert.equal(await sourceUp(), 1, `${label}: mcpmesh_source_up back to 1`);
  }

  const cases: Array<[string, Fault, boolean]> = [
    ['one answer without X-Consul-Index (catalog)', { kind: 'no-index', on: 'catalog', times: 1 }, false],
    ['one answer without X-Consul-Index (health)', { kind: 'no-index', on: 'health', times: 1 }, false],
    ['one HTTP 400 (catalog)', { kind: 'status', status: 400, on: 'catalog', times: 1 }, false],
    ['one HTTP 400 (health)', { kind: 'status', status: 400, on: 'health', times: 1 }, false],
    ['HTTP 500s until healed', { kind: 'status', status: 500 }, true],
    ['catalog answers [] (wrong shape)', { kind: 'shape', on: 'catalog' }, true],
    ['health answers {} (wrong shape)', { kind: 'shape', on: 'health' }, true],
    ['bodies that are not JSON', { kind: 'garbage' }, true],
    ['connections reset', { kind: 'reset' }, true],
    ['answers that never come (hang)', { kind: 'hang' }, true],
  ];
  for (const [label, fault, lasting] of cases) {
    it(`survives ${label}`, async () => {
      for (let round = 0; round < ROUNDS; round++) await faultCase(label, fault, lasting);
    });
  }

  it('applies a change made while Consul was down when it comes back with the same index', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      // The last write touches the catalog and the service: both watches hold the same index.
      if (endpointCount() === 3) {
        await deregister(2);
        await waitFor('back to two endpoints', () => endpointCount() === 2, RECOVERY_BUDGET_MS);
      }
      await register(2);
      await waitFor('three endpoints', () => endpointCount() === 3, RECOVERY_BUDGET_MS);
      const before = await watchErrors();
      proxy.set({ kind: 'reset' });
      await waitFor('outage seen', async () => (await watchErrors()) > before, 15_000);
      // While "down": b2 leaves (one write), and the restarted agent comes back at the index the watches hold.
      await deregister(2);
      shift += 1n;
      proxy.shiftIndex(shift);
      const healedAt = performance.now();
      proxy.heal();
      await waitFor('deregistered instance withdrawn', () => endpointCount() === 2, RECOVERY_BUDGET_MS, 10);
      recoveries.push(['same index after a restart', Math.round(performance.now() - healedAt)]);
      await waitFor('no call reaches the deregistered instance', async () => (await spread(client, 6))['b2'] === undefined, 5000);
      await waitFor('error cleared', async () => (await sourceError()) === undefined, 5000);
    }
  });

  it('reads a restarted agent at once when it comes back with a lower index', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const want = endpointCount() === 2 ? 3 : 2;
      const before = await watchErrors();
      proxy.set({ kind: 'reset' });
      await waitFor('outage seen', async () => (await watchErrors()) > before, 15_000);
      await (want === 3 ? register(2) : deregister(2));
      // The agent comes back restored from an older snapshot: every index is lower than the watches hold.
      shift += 10n;
      proxy.shiftIndex(shift);
      const healedAt = performance.now();
      proxy.heal();
      // A watch that kept its old, higher index would block the full 5 s wait on the restarted agent.
      await waitFor('change after the restart', () => endpointCount() === want, RECOVERY_BUDGET_MS, 10);
      recoveries.push(['lower index after a restart', Math.round(performance.now() - healedAt)]);
      await waitFor('error cleared', async () => (await sourceError()) === undefined, 5000);
    }
  });

  it('re-reads at once when the index goes backwards without an outage (snapshot restore in the stand-in)', {
    skip: process.env['CONSUL_HTTP_ADDR'] ? 'stand-in only' : false,
  }, async () => {
    const want = endpointCount() === 2 ? 3 : 2;
    shift = 0n;
    proxy.shiftIndex(shift);
    await new Promise((r) => setTimeout(r, 100));
    // ConsulStandIn.resetIndex: the index drops inside "Consul" and waiting queries are answered at once.
    consul.standin?.resetIndex(2n);
    await new Promise((r) => setTimeout(r, 50));
    const at = performance.now();
    await (want === 3 ? register(2) : deregister(2));
    await waitFor('change after the restore', () => endpointCount() === want, 2000, 10);
    recoveries.push(['lower index, no outage', Math.round(performance.now() - at)]);
  });

  it('keeps the heap bounded over the faults (after a forced GC)', {
    skip: LONG ? false : 'long version only (MCPMESH_FAULTS_LONG=1)',
  }, async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = (): number => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const start = heap();
    for (let round = 0; round < 10; round++) await faultCase('HTTP 500s (heap rounds)', { kind: 'status', status: 500 }, true);
    const growth = heap() - start;
    console.log(`heap growth over 10 more fault cycles: ${(growth / 1048576).toFixed(1)} MiB`);
    assert.ok(growth < 16 * 1048576, `heap grew ${(growth / 1048576).toFixed(1)} MiB`);
  });
});
