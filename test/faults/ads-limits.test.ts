// Limits on what one client may take from the ADS server: streams per connection and per peer, names per
// request, node size, and no cache that grows with client-chosen name lists. Each refusal is RESOURCE_EXHAUSTED
// with a message that says which limit, and is counted in mcpmesh_xds_refused_total{reason}.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';
import { LONG, metricValue, MiB, registryYaml, usedAfterGc } from './helpers.ts';

const LIMITS = { maxStreamsPerConnection: 4, maxStreamsPerPeer: 6, maxResourceNames: 50, maxNodeBytes: 2048 };

describe('ADS fault: per-client limits', () => {
  let tcp: TestControlPlane;
  const clients: RawAdsClient[] = [];
  const streams: AdsStream[] = [];
  // Its own connection each time (grpc-js would otherwise share one per target).
  const connect = (): RawAdsClient => {
    const c = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(c);
    return c;
  };
  const open = (c: RawAdsClient, id: string): AdsStream => {
    const s = c.sotw();
    s.send({ node: node(id, { role: 'gateway' }), type_url: TYPE_URLS.cluster, resource_names: [] });
    streams.push(s);
    return s;
  };
  const refused = (reason: string): Promise<number> => metricValue(tcp.cp.metrics, 'mcpmesh_xds_refused_total', { reason });
  const closeAll = async (): Promise<void> => {
    for (const s of streams.splice(0)) s.close();
    await waitFor('streams closed', () => tcp.cp.tracker.count === 0);
  };

  before(async () => {
    tcp = await startControlPlane(registryYaml(20, 0), { adsLimits: LIMITS });
  });
  after(async () => {
    for (const s of streams) s.close();
    for (const c of clients) c.close();
    await tcp.stop();
  });

  it('refuses streams past the per-connection limit, and accepts again once one closes', async () => {
    const c = connect();
    const s = Array.from({ length: 6 }, (_, i) => open(c, `conn-${i}`));
    await waitFor('four streams served', () => tcp.cp.tracker.count === 4);
    const errors = (await Promise.allSettled(s.map((x) => x.closedWithError(3000)))).flatMap((r) =>
      r.status === 'fulfilled' ? [r.value] : [],
    );
    assert.equal(errors.length, 2, 'two streams refused');
    for (const e of errors) {
      assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(e.details, /too many xDS streams on one connection \(limit 4\)/);
    }
    assert.equal(await refused('streams_per_connection'), 2);
    const served = s.filter((x) => !x.error);
    served[0]?.close();
    await waitFor('three left', () => tcp.cp.tracker.count === 3);
    const again = open(c, 'conn-again');
    await again.next('cluster');
    await closeAll();
  });

  it('refuses streams past the per-peer limit across connections', async () => {
    const s = [0, 1, 2].flatMap((k) => {
      const c = connect();
      return [open(c, `peer-${k}-a`), open(c, `peer-${k}-b`)];
    });
    await Promise.all(s.map((x) => x.next('cluster')));
    const extra = open(connect(), 'peer-extra');
    const err = await extra.closedWithError();
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /too many xDS streams from 127\.0\.0\.1 \(limit 6\)/);
    assert.equal(await refused('streams_per_peer'), 1);
    await closeAll();
  });

  it('refuses a request naming more resources than the limit (SotW and delta)', async () => {
    const names = Array.from({ length: 51 }, (_, i) => `mcp.x${i}`);
    const sotw = connect().sotw();
    streams.push(sotw);
    sotw.send({ node: node('names-sotw', { role: 'gateway' }), type_url: TYPE_URLS.endpoint, resource_names: names });
    const e1 = await sotw.closedWithError();
    assert.equal(e1.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(e1.details, /51 resource names for endpoint \(limit 50\)/);
    const delta = connect().delta();
    streams.push(delta);
    delta.send({
      node: node('names-delta', { role: 'gateway' }),
      type_url: TYPE_URLS.endpoint,
      resource_names_subscribe: names.slice(0, 30),
    });
    await delta.next('endpoint');
    // The limit is on what a stream holds, not per message: 30 + 21 more is over it.
    delta.send({ type_url: TYPE_URLS.endpoint, resource_names_subscribe: names.slice(30) });
    const e2 = await delta.closedWithError();
    assert.equal(e2.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(e2.details, /51 resource names for endpoint \(limit 50\)/);
    assert.equal(await refused('resource_names'), 2);
    await closeAll();
  });

  it('refuses a node message above the size limit', async () => {
    const s = connect().sotw();
    streams.push(s);
    s.send({ node: node('fat-node', { role: 'gateway', pad: 'x'.repeat(4096) }), type_url: TYPE_URLS.cluster, resource_names: [] });
    const err = await s.closedWithError();
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /node message is \d+ bytes \(limit 2048\)/);
    assert.equal(await refused('node_size'), 1);
    assert.equal(tcp.cp.tracker.count, 0, 'the fat node never became a proxy');
    await closeAll();
  });
});

describe('ADS fault: ever-changing resource_names lists', () => {
  const SERVICES = 150;
  const LISTS = LONG ? 3000 : 600;
  let tcp: TestControlPlane;
  let client: RawAdsClient;

  before(async () => {
    tcp = await startControlPlane(registryYaml(SERVICES, 0));
    client = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`);
  });
  after(async () => {
    client.close();
    await tcp.stop();
  });

  it(`keeps memory bounded over ${LISTS} distinct lists against one snapshot`, async () => {
    const s = client.sotw();
    const all = Array.from({ length: SERVICES }, (_, i) => `mcp.s0-${i}`);
    s.send({ node: node('lists', { role: 'gateway' }), type_url: TYPE_URLS.endpoint, resource_names: all });
    let eds = await s.next('endpoint');
    const ask = async (i: number): Promise<void> => {
      s.send({
        type_url: TYPE_URLS.endpoint,
        resource_names: [...all, `mcp.nothing-${i}`],
        version_info: eds['version_info'],
        response_nonce: eds['nonce'],
      });
      eds = await s.next('endpoint');
    };
    for (let i = 0; i < 100; i++) await ask(i);
    const base = usedAfterGc();
    for (let i = 100; i < 100 + LISTS; i++) await ask(i);
    const grown = usedAfterGc() - base;
    const bytes = (eds['resources'] as Array<{ value: Uint8Array }>).reduce((n, r) => n + r.value.length, 0);
    console.log(
      `resource_names lists: ${LISTS} distinct lists, response ${(bytes / 1024).toFixed(0)} KiB each, growth after GC ${(grown / MiB).toFixed(1)} MiB (cached per list it would be ~${((bytes * LISTS) / MiB).toFixed(0)} MiB)`,
    );
    assert.ok(grown < Math.max(4 * MiB, (bytes * LISTS) / 4), `memory grew ${(grown / MiB).toFixed(1)} MiB`);
    s.close();
  });
});
