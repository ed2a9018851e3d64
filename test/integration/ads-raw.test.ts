// The ADS server spoken to directly, the way Envoy speaks to it: wildcard LDS/CDS, named RDS/EDS,
// ACK/NACK with nonces, delta xDS, bad nodes, and refused snapshots.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  DEFAULT_HEALTH_CHECK,
  DEFAULT_OUTLIER_DETECTION,
  DEFAULT_CIRCUIT_BREAKERS,
  DEFAULT_ROUTING,
} from '../../control-plane/src/model/defaults.ts';
import type { ServiceSpec } from '../../control-plane/src/model/mesh.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, node, RawAdsClient, resourceNames, type AdsStream, type Msg } from '../helpers/ads-client.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';

const REGISTRY = `
services:
  - name: weather
    protocol: "2025-11-25"
    endpoints:
      - { address: 10.0.0.1, port: 7001, locality: { region: eu-west, zone: a } }
      - { address: 10.0.0.2, port: 7001, locality: { region: eu-west, zone: b } }
      - { address: 10.0.0.3, port: 7001, locality: { region: us-east, zone: a } }
  - name: files
    protocol: "2026-07-28"
    endpoints:
      - { address: 10.0.1.1, port: 8000, locality: { region: eu-west, zone: a } }
`;

function sotwRequest(kind: keyof typeof TYPE_URLS, names: string[], ack?: Msg, nodeMsg?: Msg): Msg {
  return {
    type_url: TYPE_URLS[kind],
    resource_names: names,
    ...(ack ? { version_info: ack['version_info'], response_nonce: ack['nonce'] } : {}),
    ...(nodeMsg ? { node: nodeMsg } : {}),
  };
}

async function noResponse(s: AdsStream, kind: keyof typeof TYPE_URLS, ms = 300): Promise<void> {
  await assert.rejects(s.next(kind, ms), /no .* response within/);
}

describe('ADS server with a raw xDS client', () => {
  let tcp: TestControlPlane;
  let client: RawAdsClient;
  const streams: AdsStream[] = [];
  const open = (delta = false): AdsStream => {
    const s = delta ? client.delta() : client.sotw();
    streams.push(s);
    return s;
  };

  before(async () => {
    tcp = await startControlPlane(REGISTRY);
    client = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`);
  });
  after(async () => {
    for (const s of streams) s.close();
    client.close();
    await tcp.stop();
  });

  it('gives an Envoy gateway its listener, routes, clusters and locality-prioritised endpoints', async () => {
    const s = open();
    const n = node('envoy-gw-1', { role: 'gateway', listener_port: 8443 }, { region: 'eu-west', zone: 'a' });
    s.send(sotwRequest('cluster', [], undefined, n));
    const cds = await s.next('cluster');
    assert.deepEqual(resourceNames(cds).sort(), ['mcp.files', 'mcp.weather']);
    s.send(sotwRequest('cluster', [], cds));
    s.send(sotwRequest('listener', []));
    const lds = await s.next('listener');
    assert.deepEqual(resourceNames(lds), ['gateway.http'], 'wildcard LDS must not carry API listeners meant for proxyless gRPC');
    const [listener] = decodeResources(lds);
    assert.equal((listener?.['address'] as { socket_address: { port_value: number } } | undefined)?.socket_address.port_value, 8443);
    s.send(sotwRequest('route', ['gateway.routes']));
    const rds = await s.next('route');
    const [routes] = decodeResources(rds);
    const vhosts = routes?.['virtual_hosts'] as Array<{ name: string; domains: string[]; routes: Array<{ match: Msg; route: Msg }> }>;
    assert.deepEqual(
      vhosts.map((v) => v.name),
      ['mcp_files', 'mcp_weather', 'gateway_paths'],
    );
    const byPath = vhosts[2]!.routes.find((r) => r.match['path'] === '/mcp/weather');
    assert.equal(byPath?.route['cluster'], 'mcp.weather');
    assert.equal(byPath?.route['prefix_rewrite'], '/mcp');
    assert.deepEqual(byPath?.route['timeout'], {}, 'route timeout must be 0 (disabled) for long tool calls and SSE');
    s.send(sotwRequest('endpoint', ['mcp.weather']));
    const eds = await s.next('endpoint');
    const [cla] = decodeResources(eds);
    const prio = (cla?.['endpoints'] as Array<{ locality: { region: string; zone: string }; priority?: number }> | undefined)?.map(
      (l) => `${l.locality.region}/${l.locality.zone}=${l.priority ?? 0}`,
    );
    assert.deepEqual(prio, ['eu-west/a=0', 'eu-west/b=1', 'us-east/a=2']);
  });

  it('counts a NACK, keeps serving, does not resend the rejected version, and pushes the next change', async () => {
    const s = open();
    s.send(sotwRequest('cluster', [], undefined, node('envoy-nack', { role: 'gateway' })));
    const first = await s.next('cluster');
    s.send({
      ...sotwRequest('cluster', [], { version_info: '', nonce: first['nonce'] }),
      error_detail: { code: 3, message: 'cluster mcp.weather: unknown field frobnicate' },
    });
    const status = await waitFor('NACK recorded', async () => {
      const list = (await (await tcp.admin('/debug/proxies')).json()) as Array<{
        id: string;
        types: { cluster?: { nacks: number; lastNack?: string; nackedVersion?: string } };
      }>;
      const p = list.find((x) => x.id === 'envoy-nack');
      return p?.types.cluster?.nacks === 1 ? p : undefined;
    });
    assert.equal(status.types.cluster?.lastNack, 'cluster mcp.weather: unknown field frobnicate');
    assert.equal(status.types.cluster?.nackedVersion, first['version_info']);
    const metrics = await (await tcp.admin('/metrics')).text();
    assert.match(metrics, /mcpmesh_xds_nacks_total\{type="cluster",role="gateway"\} 1/);
    assert.match(metrics, /mcpmesh_xds_proxy_nacked\{proxy="envoy-nack",type="cluster"\} 1/);
    await noResponse(s, 'cluster');
    tcp.writeRegistry(REGISTRY.replace('protocol: "2026-07-28"', 'protocol: "2026-07-28"\n    routing: { connectTimeout: 2s }'));
    const next = await s.next('cluster');
    assert.notEqual(next['version_info'], first['version_info']);
    const files = decodeResources(next).find((c) => c['name'] === 'mcp.files');
    assert.deepEqual(files?.['connect_timeout'], { seconds: '2' });
    s.send(sotwRequest('cluster', [], { version_info: next['version_info'], nonce: next['nonce'] }));
    await waitFor(
      'the NACK gauge clears once the proxy ACKs',
      async () => !(await (await tcp.admin('/metrics')).text()).includes('mcpmesh_xds_proxy_nacked{proxy="envoy-nack"'),
    );
    tcp.writeRegistry(REGISTRY);
    await s.next('cluster');
  });

  it('ignores a request carrying a stale nonce', async () => {
    const s = open();
    s.send(sotwRequest('endpoint', ['mcp.weather'], undefined, node('envoy-stale', { role: 'gateway' })));
    const eds = await s.next('endpoint');
    s.send(sotwRequest('endpoint', ['mcp.weather', 'mcp.files'], { version_info: 'x', nonce: 'not-a-nonce-we-sent' }));
    await noResponse(s, 'endpoint');
    s.send(sotwRequest('endpoint', ['mcp.weather', 'mcp.files'], eds));
    assert.deepEqual(resourceNames(await s.next('endpoint')).sort(), ['mcp.files', 'mcp.weather']);
  });

  it('serves a sidecar its inbound listener and the local MCP server cluster', async () => {
    const s = open();
    s.send(
      sotwRequest(
        'cluster',
        [],
        undefined,
        node('sidecar-weather-1', { role: 'sidecar', service: 'weather', inbound_port: 15006, app_port: 7001 }),
      ),
    );
    const [cluster] = decodeResources(await s.next('cluster'));
    assert.equal(cluster?.['name'], 'local.weather');
    const addr = (
      cluster?.['load_assignment'] as
        | { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: Msg } } }> }> }
        | undefined
    )?.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address;
    assert.deepEqual(addr, { address: '127.0.0.1', port_value: 7001 });
    s.send(sotwRequest('listener', []));
    const [listener] = decodeResources(await s.next('listener'));
    assert.equal(listener?.['name'], 'sidecar.inbound');
  });

  it('closes the stream of a node that does not say what it is, naming the field', async () => {
    const s = open();
    s.send(sotwRequest('cluster', [], undefined, node('sidecar-nameless', { role: 'sidecar' })));
    const err = await s.closedWithError();
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /xDS node "sidecar-nameless": node\.metadata\.service: a sidecar must name the MCP service/);
    const t = open();
    t.send(sotwRequest('cluster', [], undefined, node('odd', { role: 'waypoint' })));
    assert.match((await t.closedWithError()).details, /node\.metadata\.role: must be "gateway" or "sidecar" \(got "waypoint"\)/);
  });

  it('refuses a mesh whose generated config is invalid: named error, no push, last good config kept', async () => {
    const s = open();
    s.send(sotwRequest('cluster', [], undefined, node('envoy-guard', { role: 'gateway' })));
    const cds = await s.next('cluster');
    s.send(sotwRequest('cluster', [], cds));
    const bad: ServiceSpec = {
      name: 'broken',
      protocol: '2025-11-25',
      transport: 'streamable-http',
      sidecar: false,
      routing: DEFAULT_ROUTING,
      outlierDetection: DEFAULT_OUTLIER_DETECTION,
      circuitBreakers: DEFAULT_CIRCUIT_BREAKERS,
      healthCheck: { ...DEFAULT_HEALTH_CHECK, intervalMs: 0 },
      endpoints: [{ address: '10.9.9.9', port: 70000, locality: { region: 'r', zone: 'z' }, weight: 1, healthy: true }],
    };
    assert.equal(tcp.cp.apply([bad], 'test'), false);
    await noResponse(s, 'cluster');
    const err = ((await (await tcp.admin('/debug/sources')).json()) as Record<string, string>)['test'] ?? '';
    assert.match(err, /cluster "mcp\.broken": health_checks\[0\]\.interval: duration\.gt: must be greater than 0s/);
    assert.match(
      err,
      /endpoint "mcp\.broken": endpoints\[0\]\.lb_endpoints\[0\]\.endpoint\.address\.socket_address\.port_value: uint32\.lte: must be at most 65535 \(got 70000\)/,
    );
    assert.match(await (await tcp.admin('/metrics')).text(), /mcpmesh_snapshot_rejected_total 1/);
    const dump = (await (await tcp.admin('/debug/config_dump?node=envoy-guard')).json()) as { cluster: Array<{ name: string }> };
    assert.deepEqual(dump.cluster.map((c) => c.name).sort(), ['mcp.files', 'mcp.weather']);
  });

  it('speaks delta xDS: wildcard, named subscriptions, per-resource versions and removals', async () => {
    const s = open(true);
    s.send({ type_url: TYPE_URLS.cluster, node: node('envoy-delta', { role: 'gateway' }, { region: 'eu-west', zone: 'a' }) });
    const cds = await s.next('cluster');
    const got = cds['resources'] as Array<{ name: string; version: string }>;
    assert.deepEqual(got.map((r) => r.name).sort(), ['mcp.files', 'mcp.weather']);
    assert.ok(got.every((r) => r.version.length > 0));
    s.send({ type_url: TYPE_URLS.cluster, response_nonce: cds['nonce'] });
    s.send({ type_url: TYPE_URLS.endpoint, resource_names_subscribe: ['mcp.weather'] });
    const eds = await s.next('endpoint');
    assert.deepEqual(
      (eds['resources'] as Array<{ name: string }>).map((r) => r.name),
      ['mcp.weather'],
    );
    s.send({ type_url: TYPE_URLS.endpoint, response_nonce: eds['nonce'] });
    // Only the service whose endpoints changed is sent; the removed service is named in removed_resources.
    tcp.writeRegistry(REGISTRY.replace('10.0.0.3', '10.0.0.4').replace(/ {2}- name: files[\s\S]*$/, ''));
    const cds2 = await s.next('cluster');
    assert.deepEqual(cds2['removed_resources'], ['mcp.files']);
    assert.deepEqual(cds2['resources'], []);
    const eds2 = await s.next('endpoint');
    assert.deepEqual(
      (eds2['resources'] as Array<{ name: string }>).map((r) => r.name),
      ['mcp.weather'],
    );
    s.send({ type_url: TYPE_URLS.endpoint, resource_names_unsubscribe: ['mcp.weather'], response_nonce: eds2['nonce'] });
    tcp.writeRegistry(REGISTRY);
    const cds3 = await s.next('cluster');
    assert.deepEqual(
      (cds3['resources'] as Array<{ name: string }>).map((r) => r.name),
      ['mcp.files'],
    );
    await noResponse(s, 'endpoint');
  });

  it('delta: a reconnecting client that already holds the current versions gets nothing resent', async () => {
    const first = open(true);
    first.send({ type_url: TYPE_URLS.cluster, node: node('envoy-delta-2', { role: 'gateway' }) });
    const cds = await first.next('cluster');
    const versions = Object.fromEntries((cds['resources'] as Array<{ name: string; version: string }>).map((r) => [r.name, r.version]));
    first.close();
    const again = open(true);
    again.send({ type_url: TYPE_URLS.cluster, node: node('envoy-delta-2', { role: 'gateway' }), initial_resource_versions: versions });
    const resp = await again.next('cluster');
    assert.deepEqual(resp['resources'], [], 'nothing changed, so nothing is resent');
    assert.deepEqual(resp['removed_resources'], []);
  });
});
