// `mcpmesh status` (the real CLI, as a child process) against real control planes: a real grpc-js-xds client
// that ACKs everything, a raw ADS client that NACKs, an unhealthy endpoint, a broken registry edit (source
// error), and, in a secured mesh, the CA, the control plane's certificate and a workload certificate signed
// for a join token. What the output must show is what an operator would look for.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type Consul from 'consul';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { consulControlPlaneOptions, emptyControlPlaneOptions, identityOnlySecurity } from '../helpers/control-plane.ts';
import type { MeshStatusView } from '../../control-plane/src/server/status.ts';
import { consulClient } from '../../control-plane/src/sources/consul.ts';
import { renderStatus, until, type StatusReport } from '../../control-plane/src/status-cli.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { WorkloadIdentity } from '../../sidecar/src/identity.ts';
import { node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { EchoClient, startBackend, who, type Backend, type EchoClientInstance } from '../helpers/grpc-backends.ts';
import { waitFor } from '../helpers/wait.ts';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/cli.ts');

// Asynchronous: the control planes under test live in this process and must keep answering meanwhile.
function status(admin: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'status', '--admin', admin, ...args], { encoding: 'utf8', timeout: 30_000 }, (error, out, err) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, out, err });
    });
  });
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('mcpmesh status against a control plane with real proxies', () => {
  let tcp: TestControlPlane;
  let a1: Backend;
  let a2: Backend;
  let raw: RawAdsClient;
  let nacker: AdsStream;
  let grpcClient: EchoClientInstance;
  let admin = '';
  const registry = (extra = ''): string => `services:
  - name: weather
    protocol: "2025-11-25"
    endpoints:
      - { address: 127.0.0.1, port: ${a1.port}, locality: { region: eu-west, zone: a } }
      - { address: 127.0.0.1, port: ${a2.port}, locality: { region: eu-west, zone: b } }
      - { address: 127.0.0.2, port: 7009, locality: { region: us-east, zone: c }, healthy: false }
${extra}`;

  before(async () => {
    a1 = await startBackend('a1');
    a2 = await startBackend('a2');
    tcp = await startControlPlane(registry(), {
      routing: 'services:\n  weather:\n    routing: { retries: 5 }\n    circuitBreakers: { maxRequests: 5000 }\n',
    });
    admin = `http://127.0.0.1:${tcp.cp.adminPort}`;
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${tcp.cp.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-gw-status', cluster: 'test', locality: { region: 'eu-west', zone: 'a' }, metadata: { role: 'gateway' } },
    });
    const xds = await import('@grpc/grpc-js-xds');
    xds.register();
    grpcClient = new EchoClient('xds:///weather', grpc.credentials.createInsecure()) as EchoClientInstance;
    await waitFor('a call through grpc-js-xds', () => who(grpcClient));
    raw = new RawAdsClient(`127.0.0.1:${tcp.cp.xdsPort}`);
    nacker = raw.sotw();
    nacker.send({
      type_url: TYPE_URLS.cluster,
      resource_names: [],
      node: node('envoy-nacker', { role: 'gateway' }, { region: 'us-east', zone: 'c' }),
    });
    const first = await nacker.next('cluster');
    nacker.send({
      type_url: TYPE_URLS.cluster,
      resource_names: [],
      version_info: '',
      response_nonce: first['nonce'],
      error_detail: { code: 3, message: 'cluster mcp.weather: unknown field frobnicate' },
    });
    await waitFor('NACK and ACKs recorded', async () => {
      const list = (await (await tcp.admin('/debug/proxies')).json()) as Array<{
        id: string;
        types: Record<string, { ackedVersion?: string; nacks: number }>;
      }>;
      const g = list.find((p) => p.id === 'grpc-gw-status');
      const n = list.find((p) => p.id === 'envoy-nacker');
      return n?.types['cluster']?.nacks === 1 && g && ['listener', 'route', 'cluster', 'endpoint'].every((k) => g.types[k]?.ackedVersion)
        ? true
        : undefined;
    });
  });
  after(async () => {
    grpcClient?.close();
    nacker?.close();
    raw?.close();
    await tcp?.stop();
    await a1?.stop();
    await a2?.stop();
  });

  it('shows services by locality and health, each proxy per type (synced, NACKed with its text), and no source error', async () => {
    const { code, out, err } = await status(admin);
    assert.equal(code, 0, err);
    assert.match(out, /SERVICES \(1; endpoints 2 healthy, 1 unhealthy\)/);
    assert.match(out, /weather {2}2025-11-25 streamable-http {2}2\/3 healthy/);
    assert.match(out, new RegExp(`eu-west/a +127\\.0\\.0\\.1:${a1.port} +healthy`));
    assert.match(out, new RegExp(`eu-west/b +127\\.0\\.0\\.1:${a2.port} +healthy`));
    assert.match(out, /us-east\/c +127\.0\.0\.2:7009 +UNHEALTHY \(declared in registry, not checked\)/);
    // Nothing probed these endpoints: the registry's default is shown as such, not as a check result.
    assert.match(out, new RegExp(`eu-west/a +127\\.0\\.0\\.1:${a1.port} +healthy \\(registry default, not checked\\)`));
    // The routing file's knobs, with file and YAML path; the knobs left at their built-in value are not listed.
    const routing = out.split('\n').find((l) => l.trimStart().startsWith('routing:')) ?? '';
    assert.match(routing, /routing\.retries 5 \(file \S+routing\.yaml: services\.weather\.routing\.retries\)/);
    assert.match(routing, /circuitBreakers\.maxRequests 5000 \(file \S+routing\.yaml: services\.weather\.circuitBreakers\.maxRequests\)/);
    assert.doesNotMatch(routing, /lbPolicy|built-in/);
    assert.match(out, /PROXIES \(2 connected\)/);
    const gw = out.slice(out.indexOf('grpc-gw-status'), out.indexOf('SOURCE ERRORS'));
    for (const k of ['cluster', 'endpoint', 'listener', 'route']) assert.match(gw, new RegExp(`${k} +SYNCED`), gw);
    assert.match(out, /envoy-nacker {2}gateway {2}us-east\/c {2}sotw/);
    assert.match(out, /cluster +NACKED .*\(1 NACK\)\n +last NACK: cluster mcp\.weather: unknown field frobnicate/);
    assert.match(out, /SOURCE ERRORS \(0\)\n {2}none/);
    assert.match(out, /CERTIFICATES\n {2}none: the mesh is not secured/);
  });

  it('--json carries the same facts, versions in full', async () => {
    const { code, out, err } = await status(admin, '--json');
    assert.equal(code, 0, err);
    const r = JSON.parse(out) as StatusReport;
    assert.deepEqual(
      r.mesh.services.map((s) => [
        s.name,
        s.endpoints.map((e) => `${e.region}/${e.zone} ${e.healthy} ${JSON.stringify(e.healthFrom)}`).sort(),
      ]),
      [
        [
          'weather',
          [
            'eu-west/a true {"source":"registry","declared":false}',
            'eu-west/b true {"source":"registry","declared":false}',
            'us-east/c false {"source":"registry","declared":true}',
          ],
        ],
      ],
    );
    const nack = r.proxies.find((p) => p.id === 'envoy-nacker')?.types.cluster;
    assert.equal(nack?.lastNack, 'cluster mcp.weather: unknown field frobnicate');
    const gw = r.proxies.find((p) => p.id === 'grpc-gw-status');
    const dump = (await (await tcp.admin('/debug/config_dump?node=grpc-gw-status')).json()) as { versions: Record<string, string> };
    assert.equal(gw?.types.cluster?.ackedVersion, dump.versions['cluster']);
    assert.deepEqual(r.sourceErrors, {});
    // Every knob, with where it came from and what it overrode (the /debug/routing answer).
    const knobs = r.routing?.services['weather'] ?? [];
    assert.equal(knobs.length > 20, true);
    const retries = knobs.find((k) => k.knob === 'routing.retries');
    assert.equal(retries?.value, 5);
    assert.equal(retries?.from.source, 'file');
    assert.deepEqual(
      retries?.overridden.map((o) => [o.from.source, o.value]),
      [['default', 2]],
    );
    assert.equal(knobs.find((k) => k.knob === 'routing.lbPolicy')?.from.source, 'default');
  });

  it('shows a source error while the last good mesh keeps being served', async () => {
    tcp.writeRegistry(registry('  - name: "Bad Name"\n    endpoints: []\n'));
    await waitFor('registry error recorded', async () =>
      ((await (await tcp.admin('/debug/sources')).json()) as Record<string, unknown>)['registry'] ? true : undefined,
    );
    const { code, out } = await status(admin);
    assert.equal(code, 0);
    assert.match(out, /SOURCE ERRORS \(1\)\n {2}registry: .*registry\.yaml: 2 problem\(s\):\n +services\[1\]\.name: "Bad Name"/);
    assert.match(out, /weather {2}2025-11-25 streamable-http {2}2\/3 healthy/, 'the last good mesh is still shown');
  });

  it('says how to point it elsewhere when nothing answers, and exits 1', async () => {
    const port = await closedPort();
    const { code, out, err } = await status(`http://127.0.0.1:${port}`);
    assert.equal(code, 1);
    assert.equal(out, '');
    assert.match(
      err,
      new RegExp(
        String.raw`^mcpmesh status: cannot reach the control plane's admin API at http:\/\/127\.0\.0\.1:${port} \(ECONNREFUSED\): is it running \(npm start\)\? Point at another with --admin URL or MCPMESH_ADMIN_URL\n$`,
      ),
    );
  });
});

describe(`mcpmesh status with Consul (${process.env['CONSUL_HTTP_ADDR'] ? 'real Consul' : 'Consul stand-in'}): health says it comes from Consul's checks`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-status-consul-'));
  const svc = uniqueName('tides');
  let consul: TestConsul;
  let client: Consul;
  let cp: ControlPlane;

  before(async () => {
    consul = await startConsul();
    client = consulClient({ address: consul.address, ...(consul.token ? { token: consul.token } : {}) });
    cp = await new ControlPlane(
      consulControlPlaneOptions(dir, consul, { consulExtra: { backoffFactorMs: 20, backoffMaxMs: 500 } }),
    ).start();
    const register = (n: number, status?: string): Promise<unknown> =>
      client.agent.service.register({
        name: svc,
        id: `${svc}-${n}`,
        address: `10.7.0.${n}`,
        port: 7001,
        tags: ['mcp'],
        ...(status ? { check: { checkid: `mcp:${svc}-${n}`, name: 'mcp', ttl: '30s', status, timeout: '' } as never } : {}),
      });
    await register(1, 'passing');
    await register(2, 'critical');
    await register(3);
  });
  after(async () => {
    await cp?.stop();
    for (const n of [1, 2, 3]) await client?.agent.service.deregister(`${svc}-${n}`).catch(() => undefined);
    client?.destroy();
    await consul?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows passing and critical as Consul reported them, not as a declaration', async () => {
    const admin = `http://127.0.0.1:${cp.adminPort}`;
    await waitFor(
      'three instances published',
      async () =>
        ((await (await fetch(`${admin}/debug/mesh`)).json()) as MeshStatusView).services.find((s) => s.name === svc)?.endpoints.length ===
        3,
      15_000,
    );
    const { code, out, err } = await status(admin);
    assert.equal(code, 0, err);
    assert.match(out, /10\.7\.0\.1:7001 +healthy \(consul checks: passing\)/);
    assert.match(out, /10\.7\.0\.2:7001 +UNHEALTHY \(consul checks: critical\)/);
    // No service check: healthy by Consul's rules (a real agent still reports its node's serfHealth check).
    assert.match(out, /10\.7\.0\.3:7001 +healthy \(consul(: no checks registered| checks: passing)\)/);
    assert.doesNotMatch(out, /registry/);
  });
});

describe('mcpmesh status in a secured mesh: certificate expiry', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-status-'));
  let cp: ControlPlane;
  let wl: WorkloadIdentity;

  before(async () => {
    cp = await new ControlPlane(emptyControlPlaneOptions(dir, identityOnlySecurity('mesh.test'))).start();
    const { token } = await cp.mintJoinToken('spiffe://mesh.test/mcp/weather');
    wl = new WorkloadIdentity({
      controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
      credential: { type: 'join-token', token },
      ttlSeconds: 3600,
      log: () => {},
    });
    await wl.start();
  });
  after(async () => {
    wl?.stop();
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the CA, the control plane certificate and the workload certificate it signed, with time left', async () => {
    const { code, out, err } = await status(`http://127.0.0.1:${cp.adminPort}`);
    assert.equal(code, 0, err);
    assert.match(out, /CA \(trust domain mesh\.test\) {2}expires \S+ \(in 36[45]d\)/);
    assert.match(out, /spiffe:\/\/mesh\.test\/control-plane {2}expires \S+ \(in 2[34]h\)/);
    assert.match(out, /spiffe:\/\/mesh\.test\/mcp\/weather {2}expires \S+ \(in (59m|1h)\) {2}serial [0-9a-f]+ {2}\(join-token/);
    assert.doesNotMatch(out, /BEGIN|PRIVATE/);
  });

  it('renders expiry in the past as EXPIRED', () => {
    assert.equal(until('2026-01-01T00:00:00Z', Date.parse('2026-01-01T03:00:00Z')), 'EXPIRED 3h ago');
    const r: StatusReport = {
      admin: 'x',
      proxies: [],
      sourceErrors: {},
      routing: null,
      mesh: {
        source: 's',
        publishedAt: null,
        services: [],
        certificates: {
          trustDomain: 't',
          ca: { notAfter: '2026-01-01T00:00:00Z' },
          controlPlane: { spiffeId: 'spiffe://t/control-plane', notAfter: null },
          issued: [],
        },
      },
    };
    assert.match(
      renderStatus(r, Date.parse('2026-01-03T00:00:00Z')),
      /CA \(trust domain t\) {2}expires 2026-01-01T00:00:00Z \(EXPIRED 2d ago\)/,
    );
  });
});

// grpc-js-xds keeps a process-wide xDS client: exit once results are written (as grpc-xds-client.test.ts does).
after(() => setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref());
