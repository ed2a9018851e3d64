// Proof with a real, independent xDS client: @grpc/grpc-js-xds resolves xds:///<service> through our
// ADS server (LDS -> RDS -> CDS -> EDS), ACKs what it accepts, and load-balances real gRPC calls.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { EchoClient, spread, startBackend, who, type Backend, type EchoClientInstance } from '../helpers/grpc-backends.ts';
import { waitFor } from '../helpers/wait.ts';

interface Ep {
  b: Backend;
  region?: string;
  zone?: string;
  healthy?: boolean;
}

function registry(services: Record<string, Ep[]>, extra = ''): string {
  const lines = ['services:'];
  for (const [name, eps] of Object.entries(services)) {
    lines.push(
      `  - name: ${name}`,
      '    protocol: "2025-11-25"',
      '    outlierDetection:',
      '      interval: 300ms',
      '      baseEjectionTime: 30s',
      '      maxEjectionPercent: 50',
      '      failurePercentageThreshold: 50',
      '      failurePercentageMinimumHosts: 2',
      '      failurePercentageRequestVolume: 5',
      '    endpoints:',
    );
    for (const e of eps) {
      lines.push(
        `      - { address: 127.0.0.1, port: ${e.b.port}, locality: { region: ${e.region ?? 'eu-west'}, zone: ${e.zone ?? 'a'} }, healthy: ${e.healthy ?? true} }`,
      );
    }
  }
  return `${lines.join('\n')}\n${extra}`;
}

describe('grpc-js-xds (real xDS client) against the ADS server', () => {
  let tcp: TestControlPlane;
  const backends: Record<string, Backend> = {};
  const clients: EchoClientInstance[] = [];
  const client = (target: string): EchoClientInstance => {
    const c = new EchoClient(target, grpc.credentials.createInsecure()) as EchoClientInstance;
    clients.push(c);
    return c;
  };

  before(async () => {
    for (const id of ['a1', 'a2', 'b1', 'far']) backends[id] = await startBackend(id);
    tcp = await startControlPlane(registry({ weather: [{ b: backends['a1']! }, { b: backends['a2']! }] }));
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${tcp.cp.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-gateway-1', cluster: 'test', locality: { region: 'eu-west', zone: 'a' }, metadata: { role: 'gateway' } },
    });
    const xds = await import('@grpc/grpc-js-xds');
    xds.register();
  });

  after(async () => {
    for (const c of clients) c.close();
    await tcp?.stop();
    await Promise.all(Object.values(backends).map((b) => b.stop()));
    // grpc-js-xds's xDS client is process-wide and has no close(): it keeps reconnecting forever. Exit once the
    // results are written (npm test does not force-exit test files: that can cut their reports short).
    setTimeout(() => process.exit(process.exitCode ?? 0), 1000);
  });

  it('resolves xds:///weather and spreads calls over both endpoints', async () => {
    const c = client('xds:///weather');
    await waitFor('first call through xDS', () => who(c));
    const counts = await spread(c, 40);
    assert.deepEqual(Object.keys(counts).sort(), ['a1', 'a2'], `calls went to ${JSON.stringify(counts)}`);
  });

  it('records the ACKs of the client in /debug/proxies and counts pushes', async () => {
    const proxies = await waitFor('proxy with all four types ACKed', async () => {
      const list = (await (await tcp.admin('/debug/proxies')).json()) as Array<{
        id: string;
        types: Record<string, { ackedVersion?: string; nacks: number }>;
      }>;
      const p = list.find((x) => x.id === 'grpc-gateway-1');
      return p && ['listener', 'route', 'cluster', 'endpoint'].every((k) => p.types[k]?.ackedVersion) ? p : undefined;
    });
    for (const k of ['listener', 'route', 'cluster', 'endpoint']) assert.equal(proxies.types[k]?.nacks, 0, `${k} was NACKed`);
    const metrics = await (await tcp.admin('/metrics')).text();
    assert.match(metrics, /mcpmesh_xds_connected_proxies\{role="gateway",mode="sotw"\} 1/);
    assert.match(metrics, /mcpmesh_xds_pushes_total\{type="endpoint",mode="sotw"\} [1-9]/);
  });

  it('moves traffic when the registry file is edited', async () => {
    const c = client('xds:///weather');
    tcp.writeRegistry(registry({ weather: [{ b: backends['b1']! }] }));
    await waitFor('traffic on b1 only', async () => {
      const counts = await spread(c, 5);
      return counts['b1'] === 5;
    });
  });

  it('keeps traffic flowing when a registry edit is invalid, and reports the error', async () => {
    const c = client('xds:///weather');
    tcp.writeRegistry(
      'services:\n  - name: weather\n    protocol: "2025-11-25"\n    endpoints:\n      - { address: 127.0.0.1, port: 99999 }\n',
    );
    const err = await waitFor('source error reported', async () => {
      const s = (await (await tcp.admin('/debug/sources')).json()) as Record<string, string | undefined>;
      return s['registry'];
    });
    assert.match(err, /services\[0\]\.endpoints\[0\]\.port: must be an integer from 1 to 65535 \(got 99999\)/);
    assert.match(err, /registry\.yaml/);
    const counts = await spread(c, 10);
    assert.deepEqual(counts, { b1: 10 });
    assert.equal((await tcp.admin('/readyz')).status, 200);
    assert.match(await (await tcp.admin('/metrics')).text(), /mcpmesh_source_errors_total\{source="registry"\} 1/);
  });

  it('fails over by priority: own zone first, far region only when the local endpoint is unhealthy', async () => {
    const c = client('xds:///weather');
    const b1 = backends['b1']!,
      far = backends['far']!;
    tcp.writeRegistry(registry({ weather: [{ b: b1 }, { b: far, region: 'us-east', zone: 'c' }] }));
    await waitFor(
      'registry accepted again',
      async () => ((await (await tcp.admin('/debug/sources')).json()) as Record<string, unknown>)['registry'] === undefined,
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await spread(c, 10), { b1: 10 }, 'the same-zone endpoint (priority 0) takes all traffic');
    tcp.writeRegistry(
      registry({
        weather: [
          { b: b1, healthy: false },
          { b: far, region: 'us-east', zone: 'c' },
        ],
      }),
    );
    await waitFor('traffic fails over to the far region', async () => (await spread(c, 5))['far'] === 5);
    tcp.writeRegistry(registry({ weather: [{ b: b1 }, { b: far, region: 'us-east', zone: 'c' }] }));
    await waitFor('traffic comes back to the local zone', async () => (await spread(c, 5))['b1'] === 5);
  });

  it('fails over when the local endpoint goes down without anyone marking it', async () => {
    const c = client('xds:///weather');
    const local = await startBackend('local-doomed');
    const far = backends['far']!;
    tcp.writeRegistry(registry({ weather: [{ b: local }, { b: far, region: 'us-east', zone: 'c' }] }));
    await waitFor('local endpoint serving', async () => (await spread(c, 3))['local-doomed'] === 3);
    await local.stop();
    await waitFor('calls reach the far region', async () => (await spread(c, 5))['far'] === 5, 15_000);
  });

  it('ejects an endpoint that keeps failing (outlier detection)', async () => {
    const c = client('xds:///weather');
    const [x, y, z] = [await startBackend('x'), await startBackend('y'), await startBackend('z')];
    try {
      tcp.writeRegistry(registry({ weather: [{ b: x }, { b: y }, { b: z }] }));
      await waitFor('all three serving', async () => Object.keys(await spread(c, 30)).filter((k) => !k.startsWith('error')).length === 3);
      y.failing = true;
      // Retries (unavailable) hide y's failures from callers, so watch y itself: once outlier detection
      // has ejected it, a batch of calls no longer reaches it at all.
      await waitFor(
        'y ejected',
        async () => {
          const seen = y.calls;
          await spread(c, 20);
          return y.calls === seen;
        },
        15_000,
        10,
      );
      const before = y.calls;
      const counts = await spread(c, 30);
      assert.equal(y.calls, before, `ejected endpoint still got calls: ${JSON.stringify(counts)}`);
      assert.equal((counts['x'] ?? 0) + (counts['z'] ?? 0), 30, `callers saw failures: ${JSON.stringify(counts)}`);
    } finally {
      await Promise.all([x.stop(), y.stop(), z.stop()]);
    }
  });

  it('serves a service that was removed and then re-added (client caches removed resources)', async () => {
    const c = client('xds:///weather');
    const b1 = backends['b1']!;
    tcp.writeRegistry(registry({ weather: [{ b: b1 }] }));
    await waitFor('weather on b1', async () => (await spread(c, 3))['b1'] === 3);
    tcp.writeRegistry(registry({ other: [{ b: backends['a1']! }] }));
    await waitFor('weather gone', async () => (await spread(c, 3))['b1'] === undefined);
    tcp.writeRegistry(registry({ weather: [{ b: b1 }] }));
    await waitFor('weather back on b1', async () => (await spread(c, 3))['b1'] === 3);
  });
});
