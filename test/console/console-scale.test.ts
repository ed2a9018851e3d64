// The console at 1,000 services x 10 endpoints in headless Chromium: the whole topology renders (every service,
// every endpoint), and the time from navigation to the first full view is measured and reported (target: under a
// second; asserted only against a generous budget, because this box is shared by several test runs).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { artifactPath, launchChromium, skipWithoutChromium } from '../helpers/browser.ts';

const SERVICES = 1000;
const ENDPOINTS = 10;
const TARGET_MS = 1000;
// What fails the test: a loaded 2-core machine must not turn a slow run into a red build; the figure is reported.
const BUDGET_MS = 5000;
const ZONES = [
  ['eu-west', 'a'],
  ['eu-west', 'b'],
  ['eu-west', 'c'],
  ['us-east', 'a'],
  ['us-east', 'b'],
] as const;

function registry(): string {
  const lines = ['services:'];
  for (let i = 0; i < SERVICES; i++) {
    lines.push(
      `  - name: svc-${String(i).padStart(4, '0')}`,
      `    protocol: "${i % 4 === 0 ? '2026-07-28' : '2025-11-25'}"`,
      '    endpoints:',
    );
    for (let j = 0; j < ENDPOINTS; j++) {
      const [region, zone] = ZONES[(i + j) % ZONES.length]!;
      lines.push(
        `      - { address: 10.${(i >> 8) & 255}.${i & 255}.${j + 1}, port: 8000, locality: { region: ${region}, zone: ${zone} }${(i + j) % 37 === 0 ? ', healthy: false' : ''} }`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

describe('web console at 1,000 services x 10 endpoints', { skip: skipWithoutChromium() }, () => {
  let dir = '';
  let cp: ControlPlane;
  let browser: Browser;
  let ads: RawAdsClient;
  const streams: AdsStream[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-console-scale-'));
    const registryFile = path.join(dir, 'registry.yaml');
    writeFileSync(registryFile, registry());
    const policyFile = path.join(import.meta.dirname, '..', '..', 'deploy/policy.example.yaml');
    cp = new ControlPlane({
      registryFile,
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzPort: 0,
      xdsInsecure: true,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      security: {
        policy: parsePolicy(readFileSync(policyFile, 'utf8'), policyFile),
        publicUrl: 'https://gateway.example',
        authz: { host: '127.0.0.1', port: 18002 },
      },
    });
    await cp.start();
    ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
    for (const [i, [region, zone]] of ZONES.entries()) {
      const s = ads.sotw();
      streams.push(s);
      s.send({ type_url: TYPE_URLS.cluster, resource_names: [], node: node(`gw-${i}`, { role: 'gateway' }, { region, zone }) });
      const m = await s.next('cluster', 30_000);
      s.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: m['version_info'], response_nonce: m['nonce'] });
    }
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    for (const s of streams) s.close();
    ads?.close();
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`renders every service and endpoint; first full view within ${BUDGET_MS} ms (target ${TARGET_MS} ms)`, async (t) => {
    const url = `http://127.0.0.1:${cp.adminPort}/ui`;
    // The state document on its own: what the server spends and sends per page load.
    const t0 = performance.now();
    const body = await (await fetch(`${url}/api/state`)).text();
    const stateMs = performance.now() - t0;
    const loads: number[] = [];
    const fetched: number[] = [];
    // A warm-up load, then measured ones: the first load also pays Chromium's start and the JIT.
    for (let i = 0; i < 4; i++) {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      await page.goto(url);
      await page.waitForSelector('body[data-ready]', { timeout: 60_000 });
      // data-ready: performance.now() in the page when the first full view was rendered, i.e. ms since navigation.
      const ready = Number(await page.getAttribute('body', 'data-ready'));
      if (i > 0) loads.push(ready);
      if (i > 0) fetched.push(Number(await page.getAttribute('body', 'data-fetched')));
      if (i === 3) {
        assert.equal(await page.locator('.service').count(), SERVICES);
        // Healthy endpoints of a locality share one text node; unhealthy ones stand alone.
        const shown = await page
          .locator('.ep')
          .evaluateAll((els) =>
            els.reduce(
              (n, e) => n + (e.textContent ?? '').split(/\s+/).filter((w: string) => /^\d+\.\d+\.\d+\.\d+:\d+$/.test(w)).length,
              0,
            ),
          );
        assert.equal(shown, SERVICES * ENDPOINTS);
        assert.equal(await page.locator('.ep.bad').count(), [...registry().matchAll(/healthy: false/g)].length);
        assert.equal(await page.locator('[data-proxy]').count(), ZONES.length);
        assert.ok((await page.locator('[data-policy-service]').count()) > 0, 'the policy matrix renders (the first services)');
        await page.screenshot({ path: artifactPath('console-scale.png') });
      }
      await page.close();
    }
    loads.sort((a, b) => a - b);
    fetched.sort((a, b) => a - b);
    const median = loads[Math.floor(loads.length / 2)] as number;
    const report =
      `console, ${SERVICES} services x ${ENDPOINTS} endpoints: navigation -> full view median ${median} ms (runs ${loads.join(', ')} ms; target ${TARGET_MS} ms; ` +
      `state in the page at ${fetched[Math.floor(fetched.length / 2)]} ms); /ui/api/state ${(body.length / 1024).toFixed(0)} KiB, first build ${stateMs.toFixed(0)} ms`;
    t.diagnostic(report);
    process.stderr.write(`${report}\n`);
    assert.ok(median < BUDGET_MS, report);
  });
});
