// Consul as the source: the control plane watches Consul (the stand-in, or real Consul when
// CONSUL_HTTP_ADDR is set) and a raw ADS client sees the endpoints follow registrations and health.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type Consul from 'consul';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { consulClient, type ConsulSourceOptions } from '../../control-plane/src/sources/consul.ts';
import { node, RawAdsClient, type Msg } from '../helpers/ads-client.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { makeTestPki } from '../helpers/tls.ts';
import { INSTALL, skipUnless } from '../helpers/tools.ts';
import { MeshFollower } from '../helpers/mesh-follower.ts';
import { waitFor } from '../helpers/wait.ts';

// The mutual-TLS test makes its certificates with the openssl CLI; it skips without it.
const skipOpenssl = skipUnless('openssl', INSTALL.openssl);

const TOKEN = 'mesh-secret';

async function startCp(consul: TestConsul, token = consul.token, extra: Partial<ConsulSourceOptions> = {}): Promise<ControlPlane> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
  const unused = path.join(dir, 'unused.yaml');
  writeFileSync(unused, 'services: []\n');
  const cp = new ControlPlane({
    registryFile: unused,
    consul: { address: consul.address, ...(token ? { token } : {}), wait: '5s', backoffFactorMs: 20, backoffMaxMs: 500, ...extra },
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    quietMs: 10,
    maxDelayMs: 100,
    log: silentLogger,
    metrics: new Metrics({ processMetrics: false }),
  });
  return cp.start();
}

function endpointsOf(cla: Msg | undefined): string[] {
  const out: string[] = [];
  for (const l of (cla?.['endpoints'] as Array<{
    lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } }; health_status?: string }>;
  }>) ?? []) {
    for (const e of l.lb_endpoints)
      out.push(
        `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}=${e.health_status ?? 'UNKNOWN'}`,
      );
  }
  return out.sort();
}

describe(`Consul source (${process.env['CONSUL_HTTP_ADDR'] ? 'real Consul' : 'Consul stand-in'})`, () => {
  let consul: TestConsul;
  let client: Consul;
  let cp: ControlPlane;
  let ads: RawAdsClient;
  const svc = uniqueName('weather');

  before(async () => {
    consul = await startConsul({ aclToken: TOKEN });
    client = consulClient({ address: consul.address, ...(consul.token ? { token: consul.token } : {}) });
    cp = await startCp(consul);
    ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
  });
  after(async () => {
    ads?.close();
    await cp?.stop();
    await client.agent.service.deregister(`${svc}-1`).catch(() => undefined);
    await client.agent.service.deregister(`${svc}-2`).catch(() => undefined);
    await client.agent.service.deregister(`${svc}-bad`).catch(() => undefined);
    client.destroy();
    await consul?.stop();
  });

  it('follows registration, health and deregistration of an MCP service', async () => {
    await client.agent.service.register({
      name: svc,
      id: `${svc}-1`,
      address: '10.1.0.1',
      port: 7001,
      tags: ['mcp'],
      meta: { region: 'eu-west', zone: 'a', 'mcp-protocol': '2026-07-28', 'mcp-path': '/rpc' },
      check: { checkid: `mcp:${svc}-1`, name: 'mcp', ttl: '30s', status: 'passing', timeout: '' } as never,
    });
    await client.agent.service.register({
      name: uniqueName('not-mcp'),
      id: uniqueName('not-mcp'),
      address: '10.9.9.9',
      port: 1,
      tags: ['web'],
    });
    // Like Envoy: CDS, then EDS for the names the clusters point at (a Consul service's EDS name carries its
    // incarnation, the CreateIndex of its oldest instance, so it follows that instance leaving).
    const f = new MeshFollower(ads.sotw(), node('gw-consul', { role: 'gateway' }, { region: 'eu-west', zone: 'a' }));
    const edsUntil = (want: (eps: string[]) => boolean, what: string): Promise<string[]> =>
      waitFor(
        what,
        () => {
          const e = f.endpoints(`mcp.${svc}`);
          return e && want(e) ? e : undefined;
        },
        15_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last endpoints ${JSON.stringify(f.endpoints(`mcp.${svc}`))}`);
      });
    await waitFor('cluster for the service', () => f.clusters().includes(`mcp.${svc}`), 15_000);
    assert.deepEqual(f.clusters(), [`mcp.${svc}`], 'services without the mcp tag are not in the mesh');
    const cluster = f.cds.decoded.get(`mcp.${svc}`);
    assert.equal(
      (cluster?.['health_checks'] as Array<{ http_health_check: { path: string } }> | undefined)?.[0]?.http_health_check.path,
      '/rpc',
      'mcp-path meta is used',
    );
    await edsUntil((e) => e.join() === '10.1.0.1:7001=HEALTHY', 'healthy endpoint');
    const firstEds = f.edsName(`mcp.${svc}`);
    assert.match(firstEds ?? '', new RegExp(`^mcp\\.${svc}~[1-9][0-9]*$`), 'EDS name carries the CreateIndex of the oldest instance');

    await client.agent.check.fail({ id: `mcp:${svc}-1`, note: 'MCP ping timed out' });
    await edsUntil((e) => e.join() === '10.1.0.1:7001=UNHEALTHY', 'endpoint marked unhealthy after the check went critical');

    await client.agent.service.register({
      name: svc,
      id: `${svc}-2`,
      address: '10.1.0.2',
      port: 7001,
      tags: ['mcp'],
      meta: { 'mcp-protocol': '2026-07-28', 'mcp-path': '/rpc' },
    });
    await edsUntil((e) => e.length === 2, "second instance (no check: healthy by Consul's rules)");
    assert.equal(f.edsName(`mcp.${svc}`), firstEds, 'a newer instance does not rename the EDS resource');

    await client.agent.service.deregister(`${svc}-1`);
    await edsUntil((e) => e.join() === '10.1.0.2:7001=HEALTHY', 'deregistered instance gone');

    const metrics = await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text();
    assert.match(metrics, /mcpmesh_convergence_seconds_count\{source="consul"\} [1-9]/, 'convergence observed for consul changes');
    // The catalog watch answered recently: at most one blocking wait ago (5 s here) plus scheduling slack.
    const lag = Number(/^mcpmesh_consul_watch_lag_seconds (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(lag >= 0 && lag < 8, `lag ${lag}`);
    f.close();
  });

  it('skips a malformed instance with a counted, logged reason and keeps the good one', async () => {
    await client.agent.service.register({
      name: svc,
      id: `${svc}-bad`,
      address: 'not-an-ip.internal',
      port: 7002,
      tags: ['mcp'],
      meta: { 'mcp-protocol': '2026-07-28', 'mcp-path': '/rpc' },
    });
    await waitFor('skip counted', async () =>
      /mcpmesh_consul_instances_skipped_total\{service="[^"]+"\} [1-9]/.test(
        await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text(),
      ),
    );
    const dump = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?role=gateway`)).json()) as {
      cluster: Array<{ name: string; resource: Msg }>;
      endpoint: Array<{ name: string; resource: Msg }>;
    };
    const eds = (dump.cluster.find((c) => c.name === `mcp.${svc}`)?.resource['eds_cluster_config'] as { service_name?: string } | undefined)
      ?.service_name;
    const cla = dump.endpoint.find((e) => e.name === eds);
    assert.deepEqual(endpointsOf(cla?.resource), ['10.1.0.2:7001=HEALTHY']);
  });

  it('two control-plane replicas watching the same Consul serve identical config', async () => {
    const second = await startCp(consul);
    try {
      const dump = async (c: ControlPlane): Promise<unknown> =>
        (
          (await (await fetch(`http://127.0.0.1:${c.adminPort}/debug/config_dump?role=gateway&region=eu-west&zone=a`)).json()) as {
            versions: unknown;
          }
        ).versions;
      await waitFor('replicas agree', async () => JSON.stringify(await dump(cp)) === JSON.stringify(await dump(second)));
    } finally {
      await second.stop();
    }
  });

  it('reports a missing ACL token as a source error and stays unready without data', {
    skip: process.env['CONSUL_HTTP_ADDR'] ? 'real Consul: ACL setup unknown' : false,
  }, async () => {
    const noToken = await startCp(consul, '');
    try {
      const err = await waitFor(
        'source error',
        async () =>
          ((await (await fetch(`http://127.0.0.1:${noToken.adminPort}/debug/sources`)).json()) as Record<string, string>)['consul'],
      );
      assert.match(err, /consul catalog watch .*: .*(Permission denied|403)/i);
      assert.equal((await fetch(`http://127.0.0.1:${noToken.adminPort}/readyz`)).status, 503);
      assert.match(
        await (await fetch(`http://127.0.0.1:${noToken.adminPort}/metrics`)).text(),
        /mcpmesh_consul_watch_errors_total\{watch="catalog"\} [1-9]/,
      );
    } finally {
      await noToken.stop();
    }
  });

  it('names a datacenter Consul cannot reach', {
    skip: process.env['CONSUL_HTTP_ADDR'] ? 'real Consul: datacenters unknown' : false,
  }, async () => {
    const other = await startCp(consul, consul.token, { datacenter: 'dc-elsewhere' });
    try {
      const err = await waitFor(
        'source error',
        async () => ((await (await fetch(`http://127.0.0.1:${other.adminPort}/debug/sources`)).json()) as Record<string, string>)['consul'],
      );
      assert.match(err, /No path to datacenter/);
    } finally {
      await other.stop();
    }
  });

  it('talks TLS to Consul with a CA and a client certificate (mutual TLS)', {
    skip: skipOpenssl || (process.env['CONSUL_HTTP_ADDR'] ? 'real Consul: TLS setup unknown' : false),
  }, async () => {
    const pki = makeTestPki();
    // A TLS front for the stand-in that, like Consul with verify_incoming, demands a client certificate.
    const upstream = new URL(consul.address);
    const front = https.createServer(
      {
        cert: readFileSync(pki.serverCert),
        key: readFileSync(pki.serverKey),
        ca: readFileSync(pki.caFile),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const up = http.request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
          (r) => {
            res.writeHead(r.statusCode ?? 502, r.headers);
            r.pipe(res);
          },
        );
        // A long poll cut when the stand-in stops must not become an uncaught 'error' of the proxy.
        up.on('error', () => res.destroy());
        req.pipe(up);
      },
    );
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
    const address = `https://127.0.0.1:${(front.address() as AddressInfo).port}`;
    const tlsConsul: TestConsul = { ...consul, address };
    const good = await startCp(tlsConsul, consul.token, { tls: { caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.clientKey } });
    const noCert = await startCp(tlsConsul, consul.token, { tls: { caFile: pki.caFile } });
    try {
      await waitFor(
        'mesh from Consul over mutual TLS',
        async () => (await fetch(`http://127.0.0.1:${good.adminPort}/readyz`)).status === 200,
      );
      const dump = (await (await fetch(`http://127.0.0.1:${good.adminPort}/debug/config_dump?role=gateway`)).json()) as {
        cluster: Array<{ name: string }>;
      };
      assert.ok(dump.cluster.some((c) => c.name === `mcp.${svc}`));
      const err = await waitFor(
        'TLS error without a client certificate',
        async () =>
          ((await (await fetch(`http://127.0.0.1:${noCert.adminPort}/debug/sources`)).json()) as Record<string, string>)['consul'],
      );
      assert.match(err, /certificate|handshake|socket hang up|ECONNRESET/i);
    } finally {
      await good.stop();
      await noCert.stop();
      front.closeAllConnections();
      front.close();
    }
  });
});
