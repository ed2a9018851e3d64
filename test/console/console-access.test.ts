// Who may open the console: it shows what /debug shows, so it is guarded like /debug (loopback with a loopback
// Host, or the admin token beyond loopback; 403 when no token is configured there), it is read-only, and an
// unsecured mesh (plain `npm start`) still gets a page. No browser needed.
import assert from 'node:assert/strict';
import http from 'node:http';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { ConsoleServer } from '../../control-plane/src/console/server.ts';
import type { ConsoleState } from '../../control-plane/src/console/state.ts';
import { AdminServer } from '../../control-plane/src/server/admin.ts';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';

const TOKEN = 'console-access-token-0123456789abcdef';

function get(
  host: string,
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers['content-type'] ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

function networkAddress(): string | undefined {
  const all = Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .filter((a) => !a.internal);
  return (all.find((a) => a.family === 'IPv4') ?? all.find((a) => a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80')))
    ?.address;
}

const PAGES = [
  '/ui',
  '/ui/',
  '/ui/app.js',
  '/ui/app.css',
  '/ui/vendor/preact.mjs',
  '/ui/vendor/hooks.mjs',
  '/ui/vendor/htm.mjs',
  '/ui/api/state',
];

describe('console access', () => {
  let tcp: TestControlPlane;
  before(async () => {
    tcp = await startControlPlane(
      'services:\n  - name: weather\n    protocol: "2025-11-25"\n    endpoints:\n      - { address: 10.0.0.1, port: 7001, locality: { region: eu-west, zone: a } }\n',
    );
  });
  after(async () => {
    await tcp?.stop();
  });

  it('serves the page, its modules and the state on loopback, without a policy (plain npm start)', async () => {
    const port = tcp.cp.adminPort;
    for (const p of PAGES) assert.equal((await get('127.0.0.1', port, p)).status, 200, p);
    const page = await get('127.0.0.1', port, '/ui');
    assert.match(page.type, /text\/html/);
    assert.match(page.body, /<script type="importmap">/);
    assert.doesNotMatch(page.body, /https?:\/\/(?!www\.w3\.org)/, 'nothing loads from another origin (no CDN)');
    const state = JSON.parse((await get('127.0.0.1', port, '/ui/api/state')).body) as ConsoleState;
    assert.deepEqual(
      state.services.map((s) => s.name),
      ['weather'],
    );
    assert.equal(state.policy, null);
    assert.equal(state.health.ready, true);
    const explain = await get('127.0.0.1', port, '/ui/api/explain?role=a&service=weather&kind=service');
    assert.equal(explain.status, 404);
    assert.match(explain.body, /not secured/);
  });

  it('is read-only and answers unknown console paths with 404', async () => {
    const port = tcp.cp.adminPort;
    assert.equal((await get('127.0.0.1', port, '/ui/api/state', {}, 'POST')).status, 405);
    assert.equal((await get('127.0.0.1', port, '/ui/nope')).status, 404);
  });

  it('refuses a page whose Host is not a loopback name (DNS rebinding), like /debug', async () => {
    const r = await get('127.0.0.1', tcp.cp.adminPort, '/ui/api/state', { host: 'attacker.example' });
    assert.equal(r.status, 403);
    assert.match(r.body, /not a loopback name/);
  });

  const address = networkAddress();
  describe('beyond loopback', {
    skip: address ? false : 'this machine has no non-loopback address to bind (os.networkInterfaces())',
  }, () => {
    let withToken: AdminServer;
    let withoutToken: AdminServer;
    let consoleServer: ConsoleServer;
    const ports: number[] = [];
    before(async () => {
      const cp = tcp.cp;
      consoleServer = new ConsoleServer({
        cache: cp.cache,
        tracker: cp.tracker,
        metrics: cp.metrics,
        sourceErrors: () => ({}),
        sourceDescription: () => 'test',
        policy: () => undefined,
      });
      const common = {
        cache: cp.cache,
        tracker: cp.tracker,
        metrics: cp.metrics,
        sourceErrors: () => ({}),
        host: address as string,
        console: consoleServer,
      };
      withToken = new AdminServer({ ...common, debugToken: TOKEN });
      withoutToken = new AdminServer(common);
      ports.push(await withToken.listen(), await withoutToken.listen());
    });
    after(async () => {
      consoleServer?.close();
      await withToken?.close();
      await withoutToken?.close();
    });

    it('needs the admin token, and is off (403) without one configured', async () => {
      for (const p of PAGES) {
        assert.equal((await get(address as string, ports[0] as number, p)).status, 401, `${p} without the token`);
        assert.equal(
          (await get(address as string, ports[0] as number, p, { authorization: `Bearer ${TOKEN}` })).status,
          200,
          `${p} with the token`,
        );
        const off = await get(address as string, ports[1] as number, p, { authorization: `Bearer ${TOKEN}` });
        assert.equal(off.status, 403, p);
        assert.match(off.body, /MCPMESH_ADMIN_TOKEN/);
      }
    });
  });
});
