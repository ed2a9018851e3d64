// Stuck readers: ADS clients that stop reading must cost the control plane a bounded amount of memory however
// many edits happen, must not delay other proxies, and are closed (counted) once they stay unread too long.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { node, RawAdsClient, type AdsStream, type Msg } from '../helpers/ads-client.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';
import { LONG, metricValue, MiB, registryYaml, specs, usedAfterGc } from './helpers.ts';

const STUCK_CLIENTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'stuck-clients.ts');
const SERVICES = 150;
const STUCK = LONG ? 20 : 8;
const EDITS = LONG ? 150 : 30;

function gatewayNode(id: string): Msg {
  return node(id, { role: 'gateway', listener_port: 8443 }, { region: 'eu-west', zone: 'a' });
}

/** A stream that asks for every cluster and endpoint, then stops reading (its grpc-js call is paused). */
function stuckStream(client: RawAdsClient, id: string, delta: boolean): AdsStream {
  const s = delta ? client.delta() : client.sotw();
  if (delta) {
    s.send({ node: gatewayNode(id), type_url: TYPE_URLS.cluster });
    s.send({ type_url: TYPE_URLS.endpoint, resource_names_subscribe: ['*'] });
  } else {
    s.send({ node: gatewayNode(id), type_url: TYPE_URLS.cluster, resource_names: [] });
    s.send({ type_url: TYPE_URLS.endpoint, resource_names: ['*'] });
  }
  s.call.pause();
  return s;
}

describe('ADS fault: clients that stop reading', () => {
  let tcp: TestControlPlane;
  const clients: RawAdsClient[] = [];
  const streams: AdsStream[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    tcp = await startControlPlane(registryYaml(SERVICES, 0), { adsLimits: { stallTimeoutMs: 600_000 } });
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const s of streams) s.close();
    for (const c of clients) c.close();
    await tcp.stop();
  });

  it(`keeps memory bounded with ${STUCK} stuck streams over ${EDITS} edits, and a reading proxy still converges`, async () => {
    // The stuck clients live in another process: this one's memory is then the server's (plus one reader).
    const child = spawn(process.execPath, [STUCK_CLIENTS, `127.0.0.1:${tcp.cp.xdsPort}`, String(STUCK)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : undefined));
      child.on('exit', (code) => reject(new Error(`stuck clients exited ${code}`)));
    });
    const healthyClient = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(healthyClient);
    const healthy = healthyClient.sotw();
    streams.push(healthy);
    healthy.send({ node: gatewayNode('healthy'), type_url: TYPE_URLS.cluster, resource_names: [] });
    let cds = await healthy.next('cluster');
    healthy.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: cds['version_info'], response_nonce: cds['nonce'] });
    await waitFor('stuck streams connected', () => tcp.cp.tracker.count === STUCK + 1);

    const edit = (g: number): void => {
      assert.ok(tcp.cp.apply(specs(SERVICES, g), 'registry'));
    };
    // Warm up past the point where the stuck streams' flow-control windows are full, then take the baseline.
    for (let g = 1; g <= 5; g++) edit(g);
    await new Promise((r) => setTimeout(r, 300));
    const base = usedAfterGc();
    const oneCds = (cds['resources'] as unknown[]).length;
    for (let g = 6; g < 6 + EDITS; g++) {
      edit(g);
      // Let the writes go out as they would between real edits.
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 300));
    const grown = usedAfterGc() - base;
    const last = 5 + EDITS;
    // Drain the healthy stream up to the last edit's clusters: it must get them despite the stuck ones.
    const latest = tcp.cp.cache.peek({ id: 'x', role: 'gateway', listenerPort: 8443, locality: { region: 'eu-west', zone: 'a' } })?.versions
      .cluster;
    await waitFor(
      'the reading proxy has the latest clusters',
      async () => {
        if (tcp.cp.tracker.byNodeId('healthy')?.types.cluster?.ackedVersion === latest) return true;
        cds = await healthy.next('cluster', 1000);
        assert.equal((cds['resources'] as unknown[]).length, oneCds);
        healthy.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: cds['version_info'], response_nonce: cds['nonce'] });
        return false;
      },
      30_000,
      0,
    );
    const coalesced = await metricValue(tcp.cp.metrics, 'mcpmesh_xds_coalesced_pushes_total');
    // Unbounded queues held every response: ~SERVICES*~0.7 KiB of CDS plus EDS per edit per stream (> 100 MiB here).
    const perEditPerStream = 2 * SERVICES * 700;
    console.log(
      `stuck readers: ${STUCK} streams, ${EDITS} edits (last generation ${last}), growth after GC ${(grown / MiB).toFixed(1)} MiB (queueing every response: an estimated ~${((perEditPerStream * STUCK * EDITS) / MiB).toFixed(0)} MiB), coalesced pushes ${coalesced}`,
    );
    // Bounded: per stuck stream at most maxBufferedBytes (256 KiB) plus one response, whatever the number of edits.
    const budget = 8 * MiB + STUCK * 0.5 * MiB;
    assert.ok(grown < budget, `memory grew ${(grown / MiB).toFixed(1)} MiB with stuck readers (budget ${(budget / MiB).toFixed(0)} MiB)`);
    assert.ok(coalesced > 0, 'pushes to stuck streams must be coalesced');
    assert.equal(tcp.cp.tracker.count, STUCK + 1, 'stuck streams are still open (the stall limit is far away)');
  });
});

describe('ADS fault: a stream unread past the stall limit', () => {
  let tcp: TestControlPlane;
  const clients: RawAdsClient[] = [];
  const connect = (): RawAdsClient => {
    const c = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(c);
    return c;
  };

  before(async () => {
    tcp = await startControlPlane(registryYaml(SERVICES, 0), { adsLimits: { stallTimeoutMs: 400 } });
  });
  after(async () => {
    for (const c of clients) c.close();
    await tcp.stop();
  });

  it('is closed with RESOURCE_EXHAUSTED, counted, while a reading stream stays', async () => {
    const stuck = [stuckStream(connect(), 'stuck-sotw', false), stuckStream(connect(), 'stuck-delta', true)];
    const ok = connect().sotw();
    ok.send({ node: gatewayNode('reader'), type_url: TYPE_URLS.cluster, resource_names: [] });
    await ok.next('cluster');
    await waitFor('three streams', () => tcp.cp.tracker.count === 3);
    // Edits keep coming, as they would: each stuck stream fills its window, then waits past the limit.
    let g = 0;
    await waitFor(
      'stuck streams closed',
      async () => {
        tcp.cp.apply(specs(SERVICES, ++g), 'registry');
        return (await metricValue(tcp.cp.metrics, 'mcpmesh_xds_stalled_streams_closed_total')) === 2;
      },
      20_000,
      100,
    );
    await waitFor(
      'only the reader is left',
      () =>
        tcp.cp.tracker
          .list()
          .map((s) => s.proxy.id)
          .join() === 'reader',
      5000,
    );
    for (const s of stuck) {
      s.call.resume();
      const err = await s.closedWithError(5000);
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, `stuck stream ended with ${err.code}: ${err.details}`);
    }
    ok.close();
  });
});

describe('ADS fault: a stuck reader that resumes', () => {
  let tcp: TestControlPlane;
  let client: RawAdsClient;

  before(async () => {
    tcp = await startControlPlane(registryYaml(SERVICES, 0));
    client = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
  });
  after(async () => {
    client.close();
    await tcp.stop();
  });

  it('catches up to the newest config with far fewer responses than edits', async () => {
    const s = stuckStream(client, 'resumer', false);
    await waitFor('connected', () => tcp.cp.tracker.count === 1);
    const edits = LONG ? 100 : 24;
    for (let g = 1; g <= edits; g++) {
      tcp.cp.apply(specs(SERVICES, g), 'registry');
      await new Promise((r) => setImmediate(r));
    }
    const latest = tcp.cp.cache.peek({ id: 'x', role: 'gateway', listenerPort: 8443, locality: { region: 'eu-west', zone: 'a' } });
    assert.ok(latest);
    s.call.resume();
    let responses = 0;
    const acked = (kind: 'cluster' | 'endpoint'): boolean =>
      tcp.cp.tracker.byNodeId('resumer')?.types[kind]?.ackedVersion === latest.versions[kind];
    await waitFor(
      'the newest clusters and endpoints ACKed',
      async () => {
        if (acked('cluster') && acked('endpoint')) return true;
        for (const kind of ['cluster', 'endpoint'] as const) {
          const m = await s.next(kind, 50).catch(() => undefined);
          if (!m) continue;
          responses += 1;
          s.send({
            type_url: TYPE_URLS[kind],
            resource_names: kind === 'endpoint' ? ['*'] : [],
            version_info: m['version_info'],
            response_nonce: m['nonce'],
          });
        }
        return false;
      },
      30_000,
      0,
    );
    console.log(`resumed reader: ${responses} responses for ${edits} edits of 2 types`);
    // Without coalescing every edit's two responses would arrive, one after the other.
    assert.ok(responses < edits, `${responses} responses for ${edits} edits of 2 types: pushes were not coalesced`);
    assert.equal(s.error, undefined);
    s.close();
  });
});
