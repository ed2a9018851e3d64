// Responses larger than a client accepts: a state-of-the-world response over the client's limit is not sent
// (the client would kill the stream and reconnect in a loop) but refused, logged, counted and shown in
// /debug/proxies, and the next config that fits goes out; delta xDS sends the same update in parts that fit.
// Short version: small limits on a 150-service mesh. Long version: the real limits (4 MiB for proxyless gRPC)
// on a mesh whose CDS response is larger than that.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { GRPC_DEFAULT_MAX_RECEIVE_BYTES } from '../../control-plane/src/server/xds-limits.ts';
import { node, RawAdsClient, resourceNames, type AdsStream, type Msg } from '../helpers/ads-client.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';
import { LONG, metricValue, registryYaml } from './helpers.ts';

const SERVICES = LONG ? 6000 : 150;
const LIMITS = LONG ? {} : { envoyMaxResponseBytes: 48 * 1024, proxylessMaxResponseBytes: 24 * 1024 };
const PROXYLESS_LIMIT = LONG ? GRPC_DEFAULT_MAX_RECEIVE_BYTES : 24 * 1024;
const deltaResponse = lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse');

describe(`ADS fault: responses larger than the client accepts (${SERVICES} services)`, () => {
  let tcp: TestControlPlane;
  let client: RawAdsClient;
  const streams: AdsStream[] = [];
  const proxylessNode = (id: string): Msg => ({ ...node(id, { role: 'gateway' }), user_agent_name: 'gRPC Node' });

  before(async () => {
    tcp = await startControlPlane(registryYaml(SERVICES, 0), { adsLimits: LIMITS });
    // A gRPC client with the default 4 MiB receive limit, like every proxyless xDS client.
    client = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`);
  });
  after(async () => {
    for (const s of streams) s.close();
    client.close();
    await tcp.stop();
  });

  it("refuses a SotW response over the client's limit (counted, shown), and sends the next one that fits", async () => {
    const s = client.sotw();
    streams.push(s);
    s.send({ node: proxylessNode('big-sotw'), type_url: TYPE_URLS.cluster, resource_names: [] });
    await waitFor(
      'refusal counted',
      async () => (await metricValue(tcp.cp.metrics, 'mcpmesh_xds_refused_total', { reason: 'response_size' })) === 1,
      30_000,
    );
    assert.equal(s.pending(), 0, 'nothing was sent');
    assert.equal(s.error, undefined, 'the stream stays up (the client keeps its config)');
    const shown = (await (await tcp.admin('/debug/proxies')).json()) as Array<{ id: string; types: { cluster?: { lastError?: string } } }>;
    const err = shown.find((p) => p.id === 'big-sotw')?.types.cluster?.lastError ?? '';
    assert.match(
      err,
      new RegExp(`the cluster response \\(${SERVICES} resources\\) is \\d+ bytes, over the ${PROXYLESS_LIMIT} bytes this client accepts`),
    );
    tcp.writeRegistry(registryYaml(10, 1));
    const cds = await s.next('cluster', 30_000);
    assert.equal(resourceNames(cds).length, 10, 'a response that fits goes out');
    s.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: cds['version_info'], response_nonce: cds['nonce'] });
    await waitFor('lastError cleared', async () => {
      const now = (await (await tcp.admin('/debug/proxies')).json()) as Array<{
        id: string;
        types: { cluster?: { lastError?: string; ackedVersion?: string } };
      }>;
      const t = now.find((p) => p.id === 'big-sotw')?.types.cluster;
      return t?.lastError === undefined && t?.ackedVersion === cds['version_info'];
    });
    tcp.writeRegistry(registryYaml(SERVICES, 0));
    await waitFor('mesh back to full size', () => tcp.cp.cache.currentMesh?.services.length === SERVICES, 30_000);
    s.close();
  });

  it('splits a delta update into parts that each fit, and the client gets every resource', async () => {
    const s = client.delta();
    streams.push(s);
    s.send({ node: proxylessNode('big-delta'), type_url: TYPE_URLS.cluster });
    const got = new Set<string>();
    let parts = 0;
    let last: Msg | undefined;
    while (got.size < SERVICES) {
      const m = await s.next('cluster', 30_000);
      parts += 1;
      last = m;
      const size = deltaResponse.encode(deltaResponse.fromObject(m)).finish().length;
      assert.ok(size <= PROXYLESS_LIMIT, `part ${parts} is ${size} bytes, over ${PROXYLESS_LIMIT}`);
      for (const r of m['resources'] as Array<{ name: string }>) got.add(r.name);
    }
    assert.ok(parts > 1, 'the update came in parts');
    assert.equal(s.error, undefined, 'no RESOURCE_EXHAUSTED on the client side');
    s.send({ type_url: TYPE_URLS.cluster, response_nonce: last?.['nonce'] });
    await waitFor('the last part ACKed', () => {
      const t = tcp.cp.tracker.byNodeId('big-delta')?.types.cluster;
      return t?.ackedVersion !== undefined && t.ackedVersion === t.sentVersion;
    });
    console.log(`oversize: ${SERVICES} clusters over delta in ${parts} parts of at most ${PROXYLESS_LIMIT} bytes`);
  });
});
