// The web console in a real browser (headless Chromium): a secured control plane on the example registry and
// policy, proxies connected over real xDS (raw ADS clients as Envoy speaks it, one of them NACKing, and a
// grpc-js-xds proxyless client), a real authorizer decision; the page must show the services, localities and
// priorities, the NACK text, a denied cell with its rule and its explain, pick up a registry edit without a
// reload, and no response the console uses may carry key material.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Browser, Page } from 'playwright-core';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { newKeyAndCsr } from '../../sidecar/src/identity.ts';
import { node, RawAdsClient, type AdsStream, type Msg } from '../helpers/ads-client.ts';
import { artifactPath, launchChromium, skipWithoutChromium } from '../helpers/browser.ts';
import { waitFor } from '../helpers/wait.ts';
import { decodeCheckResponse, encodeCheckRequest } from '../policy/helpers.ts';

const ROOT = path.join(import.meta.dirname, '..', '..');
const POLICY_FILE = path.join(ROOT, 'deploy/policy.example.yaml');
const NACK_TEXT = 'cluster mcp.weather: unknown field frobnicate (console test)';
const DEV_SECRET = 'console-test-client-secret-value-1234';
const WEATHER_ID = 'spiffe://mcpmesh.local/mcp/weather';

const skip = skipWithoutChromium();

/** Everything the browser fetched from the admin port, for the key-material scan. */
interface Seen {
  url: string;
  type: string;
  body: string;
}

describe('web console (headless Chromium)', { skip }, () => {
  let dir = '';
  let registryFile = '';
  let cp: ControlPlane;
  let ca: CertificateAuthority;
  let base = '';
  let browser: Browser;
  let page: Page;
  let ads: RawAdsClient;
  let authz: grpc.Client;
  let proxyless: ChildProcess | undefined;
  const streams: AdsStream[] = [];
  const ack = (s: AdsStream, m: Msg): void =>
    s.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: m['version_info'], response_nonce: m['nonce'] });
  const seen: Seen[] = [];
  const secrets: string[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-console-'));
    registryFile = path.join(dir, 'registry.yaml');
    copyFileSync(path.join(ROOT, 'deploy/registry.example.yaml'), registryFile);
    writeFileSync(path.join(dir, 'routing.yaml'), 'services:\n  weather:\n    routing: { retries: 5 }\n');
    ca = await CertificateAuthority.selfSigned({ trustDomain: 'mcpmesh.local' });
    const devIssuer = await DevIssuer.create({
      issuer: 'http://127.0.0.1/oauth',
      audience: 'mcp-mesh',
      clients: { dev: { secret: DEV_SECRET, roles: ['*'] } },
      grantableRoles: () => new Set(['analyst', 'admin', 'intern']),
    });
    const text = readFileSync(POLICY_FILE, 'utf8');
    cp = new ControlPlane({
      registryFile,
      routingFile: path.join(dir, 'routing.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzPort: 0,
      xdsInsecure: true,
      quietMs: 20,
      maxDelayMs: 200,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      ca,
      devIssuer,
      security: { policy: parsePolicy(text, POLICY_FILE), publicUrl: 'https://gateway.example', authz: { host: '127.0.0.1', port: 18002 } },
    });
    await cp.start();
    base = `http://127.0.0.1:${cp.adminPort}`;
    // Secrets that exist in this control plane and must never reach the console.
    const joinToken = (await cp.mintJoinToken(WEATHER_ID)).token;
    secrets.push(ca.exportPem().keyPem, DEV_SECRET, joinToken);
    // The weather sidecar's agent joins: its own key, a CSR, the join token; the CA signs (the console lists the expiry).
    const agent = await newKeyAndCsr(WEATHER_ID);
    secrets.push(
      agent.keyPem
        .split('\n')
        .filter((l) => l && !l.startsWith('-----'))
        .join('')
        .slice(0, 64),
    );
    const reqT = lookupType('mcpmesh.identity.v1.SignRequest');
    const signer = new grpc.Client(`127.0.0.1:${cp.xdsPort}`, grpc.credentials.createInsecure());
    await new Promise<void>((resolve, reject) =>
      signer.makeUnaryRequest(
        '/mcpmesh.identity.v1.Identity/Sign',
        (v: object) => Buffer.from(reqT.encode(reqT.fromObject(v)).finish()),
        (b: Buffer) => b,
        { csr_pem: agent.csrPem, spiffe_id: WEATHER_ID, credential_type: 'join-token', credential: joinToken },
        (err) => {
          signer.close();
          if (err) reject(err);
          else resolve();
        },
      ),
    );
    const tokenResp = await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'dev', client_secret: DEV_SECRET, scope: 'analyst' }),
    });
    const minted = (await tokenResp.json()) as { access_token?: string };
    if (minted.access_token) secrets.push(minted.access_token);

    // Proxies. Raw ADS streams speak as Envoy does: a gateway that ACKs, one that NACKs, a sidecar.
    ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
    const cds = (nodeMsg: Msg): AdsStream => {
      const s = ads.sotw();
      streams.push(s);
      s.send({ type_url: TYPE_URLS.cluster, resource_names: [], node: nodeMsg });
      return s;
    };
    const gw = cds(node('envoy-gw-eu-a', { role: 'gateway', gateway_name: 'edge' }, { region: 'eu-west', zone: 'a' }));
    ack(gw, await gw.next('cluster'));
    const bad = cds(node('envoy-nack', { role: 'gateway' }, { region: 'us-east', zone: 'a' }));
    const first = await bad.next('cluster');
    bad.send({
      type_url: TYPE_URLS.cluster,
      resource_names: [],
      version_info: '',
      response_nonce: first['nonce'],
      error_detail: { code: 3, message: NACK_TEXT },
    });
    const sc = cds(node('weather-sidecar-1', { role: 'sidecar', service: 'weather', app_port: 7001 }, { region: 'eu-west', zone: 'b' }));
    ack(sc, await sc.next('cluster'));

    // A proxyless gRPC client (grpc-js-xds) resolving xds:///weather through the same ADS server. In a child
    // process: its xDS client is process-wide, never closes its stream, and would hold the ADS server's shutdown.
    const bootstrap = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${cp.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-proxyless-1', cluster: 'test', locality: { region: 'eu-west', zone: 'b' }, metadata: { role: 'gateway' } },
    });
    proxyless = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      const grpc = await import('@grpc/grpc-js');
      (await import('@grpc/grpc-js-xds')).register();
      const c = new grpc.Client('xds:///weather', grpc.credentials.createInsecure());
      c.waitForReady(Date.now() + 600000, () => undefined);
      setInterval(() => undefined, 1000);`,
      ],
      { cwd: ROOT, env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: bootstrap }, stdio: 'ignore' },
    );

    // One real decision by the authorizer (ext_authz Check), so the decisions table has something to show.
    authz = new grpc.Client(`127.0.0.1:${cp.authzPort}`, grpc.credentials.createInsecure());
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_secret_forecast' } };
    const code = await new Promise<number>((resolve, reject) =>
      authz.makeUnaryRequest(
        '/envoy.service.auth.v3.Authorization/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        encodeCheckRequest({ service: 'weather', method: 'POST', body, metadataClaims: { sub: 'u', roles: ['analyst'] } }),
        (err, res) => (err ? reject(err) : resolve(decodeCheckResponse(res as Buffer).status?.code ?? 0)),
      ),
    );
    assert.notEqual(code, 0, 'the authorizer denies analyst get_secret_forecast');

    await waitFor(
      'every proxy is tracked',
      async () => {
        const list = (await (await fetch(`${base}/debug/proxies`)).json()) as Array<{ id: string }>;
        return ['envoy-gw-eu-a', 'envoy-nack', 'weather-sidecar-1', 'grpc-proxyless-1'].every((id) => list.some((p) => p.id === id));
      },
      30_000,
    );

    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('response', async (r) => {
      if (!r.url().startsWith(base) || r.url().includes('/ui/api/events')) return;
      try {
        seen.push({ url: r.url(), type: r.headers()['content-type'] ?? '', body: await r.text() });
      } catch {
        // A response the page dropped (a navigation) has no body to read.
      }
    });
  });

  after(async () => {
    await browser?.close();
    for (const s of streams) s.close();
    ads?.close();
    authz?.close();
    proxyless?.kill('SIGKILL');
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the services, their localities and priorities from a gateway zone, and who fronts them', async () => {
    await page.goto(`${base}/ui`);
    await page.waitForSelector('body[data-ready]', { timeout: 30_000 });
    const weather = page.locator('[data-service="weather"]');
    const inventory = page.locator('[data-service="inventory"]');
    assert.match(await weather.innerText(), /MCP 2025-11-25/);
    assert.match(await inventory.innerText(), /MCP 2026-07-28/);
    // From the first gateway's zone (eu-west/a): own zone first, the rest of the region next, then elsewhere.
    assert.equal(await page.locator('select').inputValue(), 'eu-west/a');
    assert.match(await weather.locator('[data-locality="eu-west/a"]').innerText(), /P0\s+eu-west\/a\s+127\.0\.0\.1:7001/);
    assert.match(await weather.locator('[data-locality="eu-west/b"]').innerText(), /P1/);
    assert.match(await inventory.locator('[data-locality="us-east/a"]').innerText(), /P1\s+us-east\/a\s+127\.0\.0\.1:7102/);
    // Nothing probes the example endpoints: the page says their health is the registry's default, unchecked.
    assert.equal(await weather.locator('[data-health-from="weather"]').innerText(), 'health: registry default, not checked');
    assert.match(await weather.innerText(), /envoy-gw-eu-a/);
    assert.match(await weather.innerText(), /sidecars weather-sidecar-1/);
    // Seen from us-east/a the order flips: the page asks the translator again.
    await page.locator('select').selectOption('us-east/a');
    await waitFor('priorities from us-east/a', async () =>
      /P0\s+us-east\/a/.test(await inventory.locator('[data-locality="us-east/a"]').innerText()),
    );
    assert.match(await inventory.locator('[data-locality="eu-west/a"]').innerText(), /P1/);
    await page.locator('select').selectOption('eu-west/a');
    // Control-plane health: the source, and certificate expiry for the CA, the control plane and the joined sidecar.
    const health = await page.locator('#health').innerText();
    assert.match(health, /ready/);
    assert.match(health, /source registry\s+no error/);
    assert.match(health, /CA: expires \d{4}-/);
    assert.match(health, /spiffe:\/\/mcpmesh\.local\/control-plane: 2\d\.\d h left/);
    assert.match(health, /spiffe:\/\/mcpmesh\.local\/mcp\/weather: 2\d\.\d h left/);
    await page.screenshot({ path: artifactPath('console-topology.png'), fullPage: true });
  });

  it('shows the routing knobs a routing file changed, with their source, and every knob on demand', async () => {
    const weather = page.locator('[data-routing="weather"]');
    // Compact: only what differs from the built-in defaults, with file and YAML path.
    assert.match(
      await weather.locator('[data-knob="routing.retries"]').innerText(),
      /routing\.retries 5 \(file \S+routing\.yaml: services\.weather\.routing\.retries\)/,
    );
    assert.equal(await weather.locator('[data-knob="routing.lbPolicy"]').count(), 0);
    // The registry's own knobs say so, with the entry's path.
    assert.match(
      await page.locator('[data-routing="inventory"] [data-knob="outlierDetection.consecutive5xx"]').innerText(),
      /consecutive5xx 3 \(registry \S+registry\.yaml: services\[1\]\.outlierDetection\.consecutive5xx\)/,
    );
    // Expanded: the /debug/routing answer, every knob with its source and what it overrode.
    await weather.locator('button.rall').click();
    await page.waitForSelector('[data-knobs="weather"] tr[data-knob="routing.lbPolicy"]', { timeout: 30_000 });
    assert.match(
      await weather.locator('tr[data-knob="routing.retries"]').innerText(),
      /routing\.retries\s+5\s+file \S+routing\.yaml: services\.weather\.routing\.retries/,
    );
    assert.match(await weather.locator('tr[data-knob="routing.lbPolicy"]').innerText(), /"least_request"\s+built-in default/);
    const debug = (await (await fetch(`${base}/debug/routing?service=weather`)).json()) as { knobs: unknown[] };
    assert.equal(await weather.locator('[data-knobs="weather"] tbody tr').count(), debug.knobs.length);
    await weather.screenshot({ path: artifactPath('console-routing.png') });
    await weather.locator('button.rall').click();
  });

  it('shows each proxy with role, locality, identity and versions, and a NACK with its text', async () => {
    const nack = page.locator('[data-proxy="envoy-nack"]');
    await waitFor('NACK row', async () => /nacked/.test(await nack.innerText()));
    const row = await nack.innerText();
    assert.ok(row.includes(NACK_TEXT), row);
    assert.match(row, /us-east\/a/);
    const gw = await page.locator('[data-proxy="envoy-gw-eu-a"]').innerText();
    assert.match(gw, /converged/);
    assert.match(gw, /spiffe:\/\/mcpmesh\.local\/gateway\/edge/);
    assert.match(gw, /cluster/);
    const sc = await page.locator('[data-proxy="weather-sidecar-1"]').innerText();
    assert.match(sc, /sidecar/);
    assert.match(sc, /spiffe:\/\/mcpmesh\.local\/mcp\/weather/);
    assert.match(await page.locator('[data-proxy="grpc-proxyless-1"]').innerText(), /proxyless gRPC/);
  });

  it('shows the policy matrix with a denied cell and its rule, and explains it on click', async () => {
    const cell = page.locator('[data-cell="analyst|weather|tool|get_secret*"]');
    assert.match(await cell.innerText(), /deny\s+roles\.analyst\.deny\[0\]/);
    assert.match(await page.locator('[data-cell="analyst|weather|tool|get_forecast"]').innerText(), /allow\s+roles\.analyst\.allow\[0\]/);
    assert.match(
      await page.locator('[data-cell="intern|files|service|(connect, list)"]').innerText(),
      /shadow\s+roles\.intern\.deny\[0\]/,
      'files is in shadow mode',
    );
    await cell.click();
    await waitFor('explain output', async () => /result: DENY/.test(await page.locator('#explain-text').innerText()));
    const text = await page.locator('#explain-text').innerText();
    assert.match(text, /decision: DENY by roles\.analyst\.deny\[0\]/);
    assert.match(text, /=> roles\.analyst\.deny\[0\]/);
    // inventory speaks 2026-07-28: the explain goes through header RBAC first, as the gateway would.
    await page.locator('[data-cell="intern|inventory|tool|*"]').click();
    await waitFor('explain for a 2026-07-28 service', async () =>
      /header RBAC \(MCP 2026-07-28/.test(await page.locator('#explain-text').innerText()),
    );
    assert.match(await page.locator('[data-decisions="rule"]').innerText(), /weather\s+roles\.analyst\.deny\[0\]\s+deny\s+1\s+1/);
    assert.match(await page.locator('[data-decisions="tool"]').innerText(), /weather\s+other\s+deny\s+1\s+1/);
    await page.locator('#policy').screenshot({ path: artifactPath('console-policy.png') });
  });

  it('picks up a registry edit without a reload, and charts the change converging', async () => {
    await page.evaluate(() => Object.assign(globalThis, { consoleTestMarker: 'same page' }));
    const yaml = `${readFileSync(registryFile, 'utf8')}  - name: tides
    protocol: "2026-07-28"
    endpoints:
      - { address: 127.0.0.1, port: 7201, locality: { region: ap-south, zone: c } }
      - { address: 127.0.0.1, port: 7202, locality: { region: ap-south, zone: c }, healthy: false }
`;
    writeFileSync(path.join(dir, '.next.tmp'), yaml);
    renameSync(path.join(dir, '.next.tmp'), registryFile);
    // Both raw gateways take the new clusters (the one that NACKed before too), so the change converges; the
    // sidecar's clusters do not change with another service.
    for (const st of streams.slice(0, 2)) ack(st, await st.next('cluster', 30_000));
    await page.waitForSelector('[data-service="tides"]', { timeout: 30_000 });
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as { consoleTestMarker?: string }).consoleTestMarker),
      'same page',
      'the page was not reloaded',
    );
    const tides = await page.locator('[data-service="tides"]').innerText();
    assert.match(tides, /1 healthy, 1 unhealthy/);
    assert.match(tides, /127\.0\.0\.1:7202 unhealthy \(declared in registry, not checked\)/);
    assert.match(tides, /health: declared in registry, not checked; registry default, not checked/);
    assert.match(tides, /P\d\s+ap-south\/c/);
    // The chart's figures come from samples of mcpmesh_convergence_seconds (every 5 s); the page hears of them live.
    await waitFor(
      'a converged change in the chart',
      async () => /[1-9] change\(s\)/.test(await page.locator('.chart figcaption').innerText()),
      30_000,
    );
    assert.equal((await page.locator('.chart rect').count()) > 0, true);
    // The whole page in one viewport (a full-page capture scrolls, and the sticky header lands mid-image).
    await page.setViewportSize({ width: 1400, height: await page.evaluate<number>('document.documentElement.scrollHeight') });
    await page.screenshot({ path: artifactPath('console-full.png') });
    await page.setViewportSize({ width: 1400, height: 1000 });
  });

  it('never serves key material: no private keys, join or bearer tokens, client secrets, or secret-named fields', async () => {
    // Every matrix cell's explain, besides what the page loaded itself.
    const state = (await (await fetch(`${base}/ui/api/state`)).json()) as {
      policy: { roles: string[]; groups: Array<{ services: string[]; columns: Array<{ kind: string; name: string }> }> };
    };
    for (const g of state.policy.groups)
      for (const service of g.services)
        for (const role of state.policy.roles)
          for (const c of g.columns) {
            const url = `${base}/ui/api/explain?${new URLSearchParams({ role, service, kind: c.kind, name: c.kind === 'service' ? '' : c.name })}`;
            const r = await fetch(url);
            assert.equal(r.status, 200, url);
            seen.push({ url, type: r.headers.get('content-type') ?? '', body: await r.text() });
          }
    const urls = new Set(seen.map((s) => new URL(s.url).pathname));
    for (const p of ['/ui', '/ui/app.js', '/ui/vendor/preact.mjs', '/ui/api/state', '/ui/api/explain'])
      assert.ok(urls.has(p), `scanned ${p}`);
    const keyBody = secrets[0]!
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join('');
    for (const s of seen) {
      assert.doesNotMatch(s.body, /-----BEGIN [A-Z ]*PRIVATE KEY-----/, s.url);
      assert.doesNotMatch(s.body, /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+/, `${s.url}: JWT-like string`);
      assert.doesNotMatch(s.body, /client_secret/i, s.url);
      assert.ok(!s.body.replace(/\\n|\n/g, '').includes(keyBody.slice(0, 64)), `${s.url}: CA key bytes`);
      for (const secret of secrets.slice(1))
        assert.ok(!s.body.replace(/\\n|\n/g, '').includes(secret), `${s.url}: a token, client secret or agent key`);
      if (s.type.startsWith('application/json')) {
        // "secret" is a word the example policy uses in tool names (get_secret*): what must never appear is a
        // field that holds one.
        const walk = (v: unknown, at: string): void => {
          if (Array.isArray(v))
            v.forEach((x, i) => {
              walk(x, `${at}[${i}]`);
            });
          else if (v && typeof v === 'object')
            for (const [k, x] of Object.entries(v)) {
              assert.doesNotMatch(k, /secret|private|password|token|credential|key_?pem/i, `${s.url}: field ${at}.${k}`);
              walk(x, `${at}.${k}`);
            }
        };
        walk(JSON.parse(s.body), '$');
      }
    }
  });
});
