// Client-chosen localities must not multiply the snapshots rebuilt on every edit: a proxy claiming a zone or
// region no endpoint is in shares a class, and still gets the endpoint priorities its claim implies; when an
// edit brings endpoints to its zone it moves to a class of its own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, node, RawAdsClient, type AdsStream, type Msg } from '../helpers/ads-client.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { LONG, metricValue } from './helpers.ts';

const registry = (extra = ''): string => `services:
  - name: weather
    protocol: "2025-11-25"
    endpoints:
      - { address: 10.0.0.1, port: 7001, locality: { region: eu-west, zone: a } }
      - { address: 10.0.0.2, port: 7001, locality: { region: eu-west, zone: b } }
      - { address: 10.0.0.3, port: 7001, locality: { region: us-east, zone: a } }
${extra}`;

const ZZ = '      - { address: 10.0.0.4, port: 7001, locality: { region: eu-west, zone: zz } }\n';

/** Endpoint addresses by priority, e.g. [['10.0.0.1'], ['10.0.0.2'], ['10.0.0.3']]. */
function byPriority(eds: Msg): string[][] {
  const [cla] = decodeResources(eds);
  const out: string[][] = [];
  for (const l of (cla?.['endpoints'] ?? []) as Array<{
    priority?: number;
    lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string } } } }>;
  }>) {
    (out[l.priority ?? 0] ??= []).push(...l.lb_endpoints.map((e) => e.endpoint.address.socket_address.address));
  }
  return out.map((p) => p.sort());
}

describe('ADS fault: localities the mesh does not know', () => {
  const STREAMS = LONG ? 2000 : 300;
  let tcp: TestControlPlane;
  let client: RawAdsClient;
  const streams: AdsStream[] = [];

  before(async () => {
    tcp = await startControlPlane(registry(), { adsLimits: { maxStreamsPerConnection: STREAMS + 10, maxStreamsPerPeer: STREAMS + 10 } });
    client = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`);
  });
  after(async () => {
    for (const s of streams) s.close();
    client.close();
    await tcp.stop();
  });

  const gateway = (id: string, region: string, zone: string, names = ['mcp.weather']): AdsStream => {
    const s = client.sotw();
    streams.push(s);
    s.send({
      node: node(id, { role: 'gateway', listener_port: 8443 }, { region, zone }),
      type_url: TYPE_URLS.endpoint,
      resource_names: names,
    });
    return s;
  };

  it('ranks endpoints for an unknown zone (region first) and an unknown region (no preference), and regroups when the zone appears', async () => {
    const zz = gateway('gw-zz', 'eu-west', 'zz');
    const mars = gateway('gw-mars', 'mars', 'crater');
    const a = gateway('gw-a', 'eu-west', 'a');
    assert.deepEqual(byPriority(await zz.next('endpoint')), [['10.0.0.1', '10.0.0.2'], ['10.0.0.3']]);
    assert.deepEqual(byPriority(await mars.next('endpoint')), [['10.0.0.1', '10.0.0.2', '10.0.0.3']]);
    assert.deepEqual(byPriority(await a.next('endpoint')), [['10.0.0.1'], ['10.0.0.2'], ['10.0.0.3']]);
    tcp.writeRegistry(registry(ZZ));
    assert.deepEqual(
      byPriority(await zz.next('endpoint')),
      [['10.0.0.4'], ['10.0.0.1', '10.0.0.2'], ['10.0.0.3']],
      'zone zz is known now: its own endpoint first',
    );
    tcp.writeRegistry(registry());
    assert.deepEqual(byPriority(await zz.next('endpoint')), [['10.0.0.1', '10.0.0.2'], ['10.0.0.3']], 'and back when it leaves');
    for (const s of streams.splice(0)) s.close();
    await waitFor('streams closed', () => tcp.cp.tracker.count === 0);
  });

  it(`${STREAMS} streams with distinct invented zones share a few snapshot classes`, async () => {
    const before = tcp.cp.cache.size;
    for (let i = 0; i < STREAMS; i++) {
      // Half invent a zone in a known region, half a region too.
      gateway(`bogus-${i}`, i % 2 ? 'eu-west' : `region-${i}`, `zone-${i}`);
    }
    await Promise.all(streams.map((s) => s.next('endpoint', 30_000)));
    const classes = tcp.cp.cache.size;
    assert.ok(classes <= before + 2, `${STREAMS} invented localities made ${classes - before} classes`);
    const started = performance.now();
    assert.ok(tcp.cp.apply(parseRegistry(registry(ZZ), 'edit'), 'registry'));
    const applyMs = performance.now() - started;
    await Promise.all(streams.map((s) => s.next('endpoint', 60_000)));
    const editToAll = performance.now() - started;
    assert.ok(tcp.cp.cache.size <= before + 2);
    assert.equal(await metricValue(tcp.cp.metrics, 'mcpmesh_snapshot_keys'), tcp.cp.cache.size);
    console.log(
      `invented localities: ${STREAMS} streams -> ${classes - before} classes; edit built and pushed in ${applyMs.toFixed(0)} ms, reached every stream in ${Math.round(editToAll)} ms`,
    );
  });
});
