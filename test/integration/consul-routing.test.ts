// Routing tuned through Consul config entries (the stand-in, or real Consul when CONSUL_HTTP_ADDR is set):
// written entries change the clusters a raw ADS client receives within a generous budget (the figure is
// printed), a bad entry is refused with its kind/name and field while another service keeps updating, and a
// real grpc-js-xds client ejects a failing replica only once the entries tune outlier detection to allow it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type Consul from 'consul';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { consulControlPlaneOptions } from '../helpers/control-plane.ts';
import { consulClient } from '../../control-plane/src/sources/consul.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, node, RawAdsClient, type AdsStream, type Msg } from '../helpers/ads-client.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { EchoClient, spread, startBackend, who, type Backend, type EchoClientInstance } from '../helpers/grpc-backends.ts';
import { waitFor } from '../helpers/wait.ts';

const real = process.env['CONSUL_HTTP_ADDR'] !== undefined;

describe(`routing from Consul config entries (${real ? 'real Consul' : 'Consul stand-in'})`, () => {
  let consul: TestConsul;
  let client: Consul;
  let cp: ControlPlane;
  let ads: RawAdsClient;
  let dir: string;
  const a = uniqueName('tuned');
  const b = uniqueName('other');
  const gateway = uniqueName('gw');
  const written: Array<[string, string]> = [];
  const backends: Backend[] = [];
  const clients: EchoClientInstance[] = [];

  const putEntry = async (entry: Record<string, unknown>): Promise<void> => {
    const r = await fetch(`${consul.address}/v1/config`, {
      method: 'PUT',
      headers: consul.token ? { 'X-Consul-Token': consul.token } : {},
      body: JSON.stringify(entry),
    });
    assert.equal(r.status, 200, await r.text());
    written.push([String(entry['Kind']), String(entry['Name'])]);
  };
  const admin = (p: string): Promise<unknown> => fetch(`http://127.0.0.1:${cp.adminPort}${p}`).then((r) => r.json());

  /** Follows CDS on a stream (ACKing each response) until `want` holds for the named cluster. */
  const cdsUntil = async (s: AdsStream, name: string, want: (c: Msg) => boolean, what: string): Promise<Msg> =>
    waitFor(
      what,
      async () => {
        const r = await s.next('cluster', 500).catch(() => undefined);
        if (!r) return undefined;
        s.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: r['version_info'], response_nonce: r['nonce'] });
        const c = decodeResources(r).find((x) => x['name'] === name);
        return c && want(c) ? c : undefined;
      },
      15_000,
      0,
    );
  const lbOf = (c: Msg): string =>
    (
      (c['load_balancing_policy'] as { policies: Array<{ typed_extension_config: { name: string } }> }).policies[0]?.typed_extension_config
        .name ?? ''
    ).replace('envoy.load_balancing_policies.', '');
  const odOf = (
    c: Msg,
  ): { consecutive_5xx?: { value: number }; max_ejection_percent?: { value: number }; base_ejection_time?: { seconds: string | number } } =>
    c['outlier_detection'] as never;

  before(async () => {
    consul = await startConsul();
    client = consulClient({ address: consul.address, ...(consul.token ? { token: consul.token } : {}) });
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-consul-routing-'));
    cp = await new ControlPlane(
      consulControlPlaneOptions(dir, consul, {
        consulExtra: { backoffFactorMs: 20, backoffMaxMs: 500 },
        overrides: { consulGatewayService: gateway },
      }),
    ).start();
    ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
  });
  after(async () => {
    for (const c of clients) c.close();
    ads?.close();
    await cp?.stop();
    for (const [kind, name] of written)
      await fetch(`${consul.address}/v1/config/${kind}/${name}`, {
        method: 'DELETE',
        headers: consul.token ? { 'X-Consul-Token': consul.token } : {},
      }).catch(() => undefined);
    for (const id of [`${a}-1`, `${b}-1`, `${a}-g1`, `${a}-g2`]) await client.agent.service.deregister(id).catch(() => undefined);
    client.destroy();
    await consul?.stop();
    await Promise.all(backends.map((x) => x.stop()));
    rmSync(dir, { recursive: true, force: true });
    // grpc-js-xds's xDS client is process-wide and never closes: exit once the results are written.
    setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
  });

  it("a service-resolver and the gateway's PassiveHealthCheck change the pushed cluster quickly", async () => {
    await client.agent.service.register({ name: a, id: `${a}-1`, address: '10.2.0.1', port: 7001, tags: ['mcp'] });
    await client.agent.service.register({ name: b, id: `${b}-1`, address: '10.2.0.2', port: 7001, tags: ['mcp'] });
    const s = ads.sotw();
    s.send({ type_url: TYPE_URLS.cluster, resource_names: [], node: node('gw-routing', { role: 'gateway' }) });
    await cdsUntil(s, `mcp.${a}`, (c) => lbOf(c) === 'least_request', 'cluster with the default policy');

    const t0 = performance.now();
    await putEntry({ Kind: 'service-resolver', Name: a, LoadBalancer: { Policy: 'round_robin' } });
    await putEntry({
      Kind: 'service-defaults',
      Name: gateway,
      UpstreamConfig: {
        Overrides: [{ Name: a, PassiveHealthCheck: { Interval: '1s', MaxFailures: 2, MaxEjectionPercent: 100, BaseEjectionTime: '7s' } }],
      },
    });
    const c = await cdsUntil(s, `mcp.${a}`, (x) => lbOf(x) === 'round_robin' && odOf(x).consecutive_5xx?.value === 2, 'tuned cluster');
    const ms = performance.now() - t0;
    process.stdout.write(`# config entries -> pushed cluster: ${Math.round(ms)} ms (stand-in: ${!real})\n`);
    assert.ok(ms < 5000, `took ${Math.round(ms)} ms (target: within a second; budget 5 s on a loaded machine)`);
    assert.equal(odOf(c).max_ejection_percent?.value, 100);
    assert.equal(Number(odOf(c).base_ejection_time?.seconds), 7);

    const explain = (await admin(`/debug/routing?service=${a}`)) as {
      knobs: Array<{ knob: string; value: unknown; from: { source: string; where: string; field: string } }>;
    };
    assert.deepEqual(explain.knobs.find((k) => k.knob === 'routing.lbPolicy')?.from, {
      source: 'consul',
      where: `service-resolver/${a}`,
      field: 'LoadBalancer.Policy',
    });
    assert.deepEqual(explain.knobs.find((k) => k.knob === 'outlierDetection.consecutive5xx')?.from, {
      source: 'consul',
      where: `service-defaults/${gateway}`,
      field: 'UpstreamConfig.Overrides[0].PassiveHealthCheck.MaxFailures',
    });

    // least_request back, through the same path.
    await putEntry({ Kind: 'service-resolver', Name: a, LoadBalancer: { Policy: 'least_request' } });
    await cdsUntil(s, `mcp.${a}`, (x) => lbOf(x) === 'least_request', 'least_request again');
    s.close();
  });

  it('refuses a bad entry naming its kind/name and field, keeps its last good value, and other services keep updating', async () => {
    const s = ads.sotw();
    s.send({ type_url: TYPE_URLS.cluster, resource_names: [], node: node('gw-routing-2', { role: 'gateway' }) });
    await putEntry({ Kind: 'service-resolver', Name: a, LoadBalancer: { Policy: 'round_robin' } });
    await cdsUntil(s, `mcp.${a}`, (x) => lbOf(x) === 'round_robin', 'good value in force');
    // maglev is a Consul policy (Consul accepts the write) that the mesh does not support.
    await putEntry({ Kind: 'service-resolver', Name: a, LoadBalancer: { Policy: 'maglev' }, ConnectTimeout: '-1s' });
    await putEntry({ Kind: 'service-resolver', Name: b, ConnectTimeout: '3s' });
    const other = await cdsUntil(
      s,
      `mcp.${b}`,
      (x) => Number((x['connect_timeout'] as { seconds: string }).seconds) === 3,
      'the other service updated',
    );
    assert.ok(other);
    const sources = await waitFor('refusal reported', async () => {
      const e = (await admin('/debug/sources')) as Record<string, string | null>;
      return e['routing-consul'] ? e : undefined;
    });
    assert.match(
      sources['routing-consul'] ?? '',
      new RegExp(`service-resolver/${a}: LoadBalancer\\.Policy: "maglev" is not supported by MCP Mesh`),
    );
    assert.match(sources['routing-consul'] ?? '', new RegExp(`service-resolver/${a}: ConnectTimeout: must not be negative`));
    const dump = (await admin('/debug/config_dump?role=gateway')) as { cluster: Array<{ name: string; resource: Msg }> };
    assert.equal(lbOf(dump.cluster.find((x) => x.name === `mcp.${a}`)!.resource), 'round_robin', 'last good value kept');
    assert.match(
      await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text(),
      /mcpmesh_source_errors_total\{source="routing-consul"\} [1-9]/,
    );

    // An entry for a service Consul does not have: named, kept for when it appears. Entries of another team's
    // (non-MCP) service are none of the mesh's business, even ones the mesh would refuse; the gateway's override
    // for such a service is a mistake and is reported.
    const ghost = uniqueName('ghost');
    const plain = uniqueName('plain');
    await client.agent.service.register({ name: plain, id: `${plain}-1`, address: '10.9.0.1', port: 80, tags: ['web'] });
    await putEntry({ Kind: 'service-defaults', Name: plain, Protocol: 'tcp', UpstreamConfig: { Defaults: { ConnectTimeoutMs: 100 } } });
    await putEntry({ Kind: 'service-defaults', Name: gateway, UpstreamConfig: { Overrides: [{ Name: plain, ConnectTimeoutMs: 100 }] } });
    await putEntry({ Kind: 'service-resolver', Name: ghost, ConnectTimeout: '2s' });
    const targets = await waitFor('unknown service reported', async () => {
      const t = ((await admin('/debug/sources')) as Record<string, string | null>)['routing-targets'];
      return t?.includes(ghost) && t.includes(plain) ? t : undefined;
    });
    assert.match(targets, new RegExp(`service-resolver/${ghost}: Name: no service "${ghost}" is registered in Consul`));
    assert.match(
      targets,
      new RegExp(`service-defaults/${gateway}: UpstreamConfig\\.Overrides\\[0\\]\\.Name: "${plain}" is not an MCP service`),
    );
    assert.doesNotMatch(targets, new RegExp(`service-defaults/${plain}`), "a non-MCP service's own entry is not reported");
    assert.doesNotMatch(
      ((await admin('/debug/sources')) as Record<string, string | null>)['routing-consul'] ?? '',
      new RegExp(plain),
      'nor refused (Protocol tcp is fine for a non-MCP service)',
    );
    // (Its entry goes first: with the service gone, nothing would tell it from a misspelt MCP service's.)
    const del = (kind: string, n: string): Promise<Response> =>
      fetch(`${consul.address}/v1/config/${kind}/${n}`, {
        method: 'DELETE',
        headers: consul.token ? { 'X-Consul-Token': consul.token } : {},
      });
    await del('service-defaults', plain);
    await del('service-resolver', ghost);
    await client.agent.service.deregister(`${plain}-1`);

    // Fixing the entry clears the error and applies.
    await putEntry({ Kind: 'service-resolver', Name: a, LoadBalancer: { Policy: 'least_request' } });
    await cdsUntil(s, `mcp.${a}`, (x) => lbOf(x) === 'least_request', 'fixed entry applied');
    await waitFor('error cleared', async () => !((await admin('/debug/sources')) as Record<string, string | null>)['routing-consul']);
    s.close();
  });

  it('reports unmapped fields once (log + metric)', async () => {
    await putEntry({ Kind: 'service-resolver', Name: b, ConnectTimeout: '3s', Failover: { '*': { Datacenters: ['dc9'] } } });
    await waitFor('counted', async () =>
      /mcpmesh_consul_config_unsupported_total\{kind="service-resolver"\} [1-9]/.test(
        await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text(),
      ),
    );
  });

  it('a real grpc-js-xds client ejects a failing replica once the entries tune outlier detection', async () => {
    const [x, y] = [await startBackend('x'), await startBackend('y')];
    backends.push(x, y);
    const name = a;
    await client.agent.service.deregister(`${a}-1`);
    await client.agent.service.register({ name, id: `${a}-g1`, address: '127.0.0.1', port: x.port, tags: ['mcp'] });
    await client.agent.service.register({ name, id: `${a}-g2`, address: '127.0.0.1', port: y.port, tags: ['mcp'] });
    // Fast detection, but the default failure-percentage minimum of 3 hosts: with 2 replicas nothing can be ejected yet.
    await putEntry({
      Kind: 'service-defaults',
      Name: gateway,
      UpstreamConfig: {
        Overrides: [{ Name: a, PassiveHealthCheck: { Interval: '300ms', MaxEjectionPercent: 50, BaseEjectionTime: '30s' } }],
      },
    });
    await putEntry({ Kind: 'service-defaults', Name: a, Meta: { 'mcpmesh/failure-percentage-request-volume': '5' } });
    // (grpc-js-xds silently drops a bootstrap whose node has no locality.)
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${cp.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-routing-1', cluster: 'test', locality: { region: 'eu-west', zone: 'a' }, metadata: { role: 'gateway' } },
    });
    const xds = await import('@grpc/grpc-js-xds');
    xds.register();
    const c = new EchoClient(`xds:///${name}`, grpc.credentials.createInsecure()) as EchoClientInstance;
    clients.push(c);
    await waitFor(
      'both replicas serving',
      async () => {
        await who(c).catch(() => undefined);
        const counts = await spread(c, 20);
        return counts['x'] && counts['y'];
      },
      20_000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}; proxies: ${JSON.stringify(await admin('/debug/proxies'))}`);
    });
    y.failing = true;
    // Many detection intervals (300 ms) pass; y keeps getting calls because 2 hosts < minimum hosts 3.
    for (let i = 0; i < 6; i++) {
      const seen = y.calls;
      await spread(c, 20);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(y.calls > seen, 'not ejectable yet with the default minimum of 3 hosts');
    }
    const t0 = performance.now();
    await putEntry({
      Kind: 'service-defaults',
      Name: a,
      Meta: { 'mcpmesh/failure-percentage-request-volume': '5', 'mcpmesh/failure-percentage-minimum-hosts': '2' },
    });
    await waitFor(
      'y ejected',
      async () => {
        const seen = y.calls;
        await spread(c, 20);
        return y.calls === seen;
      },
      20_000,
      10,
    );
    process.stdout.write(
      `# minimum hosts 3 -> 2 through Consul Meta: failing replica ejected by grpc-js-xds after ${Math.round(performance.now() - t0)} ms\n`,
    );
    const before = y.calls;
    const counts = await spread(c, 30);
    assert.equal(y.calls, before, `ejected replica still got calls: ${JSON.stringify(counts)}`);
    assert.equal(counts['x'], 30, `calls: ${JSON.stringify(counts)}`);
  });
});
