// Issue 15 (big inputs): a registry file that cannot be loaded at start (too big, broken YAML, invalid, missing)
// never keeps the control plane from listening and reporting it, and the fixed file is picked up live.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { ConfigError } from '../../control-plane/src/model/reader.ts';
import { parseRegistryOffThread } from '../../control-plane/src/sources/registry-file.ts';
import { resourceNames, type AdsStream } from '../helpers/ads-client.ts';
import { waitFor } from '../helpers/wait.ts';
import { meshSpecs, registryYaml } from '../bench/mesh.ts';
import { smallRegistry, startOnRegistry, type RegistryHarness } from './registry-harness.ts';

const MiB = 1_048_576;

/** Started on a file that cannot be loaded: alive, listening, unready with `reason`; then fixed and ready. */
async function assertUpUnreadyThenFixed(h: RegistryHarness, reason: RegExp): Promise<void> {
  assert.equal(await h.healthz(), 200, '/healthz: the process is alive');
  const ready = await h.readyz();
  assert.equal(ready.status, 503, '/readyz: no mesh yet');
  const [headline, errors] = ready.body.split('\n');
  assert.match(headline ?? '', /^not ready/);
  assert.match((JSON.parse(errors ?? '{}') as Record<string, string>)['registry'] ?? '', reason, '/readyz says why');
  assert.match((await h.sources())['registry'] ?? '', reason);
  assert.ok((await h.metric('mcpmesh_source_errors_total{source="registry"}')) >= 1, 'counted');
  // ADS listens and accepts a stream; it has nothing to send until a mesh exists.
  const cds: AdsStream = h.gatewayCds();
  await assert.rejects(cds.next('cluster', 300), /no cluster response within/);
  assert.equal(cds.error, undefined);
  h.replace(smallRegistry(2));
  const res = await cds.next('cluster', 10_000);
  assert.deepEqual(resourceNames(res).filter((n) => n.includes('svc-')).length, 2, 'the fixed file is served');
  await waitFor('/readyz 200', async () => (await h.readyz()).status === 200);
  assert.equal((await h.sources())['registry'], undefined, 'the error is cleared once the file loads');
}

describe('registry file that cannot be loaded at start', () => {
  it('50 MB: refused unread by the size limit (file, size and limit named), process up and reporting, fixed file served', async () => {
    // Sparse: 50 MB by stat, nothing written. The limit is checked before any byte is read.
    const h = await startOnRegistry((f) => {
      writeFileSync(f, '');
      truncateSync(f, 50 * MiB);
    });
    try {
      const sizeError = new RegExp(
        `${h.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 1 problem\\(s\\):\\n  \\(root\\): is 52428800 bytes \\(50\\.0 MiB\\), over the limit of 8388608 bytes \\(8\\.0 MiB\\); not read \\(raise the limit with --registry-max-bytes or MCPMESH_REGISTRY_MAX_BYTES\\)`,
      );
      await assertUpUnreadyThenFixed(h, sizeError);
    } finally {
      await h.stop();
    }
  });

  for (const [what, setup, reason] of [
    ['broken YAML', (f: string) => writeFileSync(f, 'services:\n  - name: a\n   protocol: x\n'), /line \d+, column \d+: /],
    [
      'invalid (a port out of range)',
      (f: string) =>
        writeFileSync(f, 'services: [ { name: a, protocol: "2025-11-25", endpoints: [ { address: 10.0.0.1, port: 70000 } ] } ]\n'),
      /services\[0\]\.endpoints\[0\]\.port: must be an integer from 1 to 65535 \(got 70000\)/,
    ],
    ['missing', (_f: string) => undefined, /cannot read: ENOENT/],
    // A volume still mounting: the directory is not there either, so it cannot be watched yet (retried every second).
    [
      'in a directory that does not exist yet',
      (f: string) => path.join(path.dirname(f), 'not-mounted-yet', 'registry.yaml'),
      /cannot (read: ENOENT|watch .*not-mounted-yet)/,
    ],
  ] as const) {
    it(`${what}: process up, unready with the reason, fixed file served`, async () => {
      const h = await startOnRegistry(setup);
      try {
        await assertUpUnreadyThenFixed(h, reason);
      } finally {
        await h.stop();
      }
    });
  }

  it('an edit over the limit keeps the last good mesh and says why; restoring the same file clears the error', async () => {
    const good = smallRegistry(3);
    const h = await startOnRegistry((f) => writeFileSync(f, good), { registryMaxBytes: 4096 });
    try {
      assert.equal((await h.readyz()).status, 200);
      const cds = h.gatewayCds();
      const first = await cds.next('cluster');
      const big = smallRegistry(40);
      assert.ok(big.length > 4096);
      h.replace(big);
      const err = await waitFor('size error', async () => (await h.sources())['registry']);
      assert.match(err, new RegExp(`is ${big.length} bytes, over the limit of 4096 bytes; not read`));
      assert.equal((await h.readyz()).status, 200, 'the last good mesh is still served');
      await assert.rejects(cds.next('cluster', 300), /no cluster response within/, 'nothing pushed for the refused file');
      h.replace(good);
      await waitFor('error cleared after the identical file is back', async () => (await h.sources())['registry'] === undefined);
      await assert.rejects(cds.next('cluster', 300), /no cluster response within/, 'proxies never saw a change');
      assert.equal(resourceNames(first).filter((n) => n.includes('svc-')).length, 3);
    } finally {
      await h.stop();
    }
  });

  it('stop() while the first version is still parsed ends the parse and leaves no file watcher behind', async () => {
    const watchers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'FSEventWrap').length;
    const before = watchers();
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-faults-'));
    const file = path.join(dir, 'registry.yaml');
    writeFileSync(file, registryYaml(meshSpecs(10_000, 1)));
    const cp = new ControlPlane({
      registryFile: file,
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
    });
    try {
      const starting = cp.start();
      // Both ports listen before the file is read: /readyz already answers, and says what it waits for.
      const ready = await waitFor('/readyz while loading', async () => {
        if (cp.adminPort === 0) return undefined;
        const r = await fetch(`http://127.0.0.1:${cp.adminPort}/readyz`);
        return { status: r.status, body: await r.text() };
      });
      assert.equal(ready.status, 503);
      assert.match(ready.body, /loading .*registry\.yaml/);
      await cp.stop();
      await starting;
      assert.equal(cp.cache.ready, false);
      assert.equal(watchers(), before);
    } finally {
      await cp.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a parse that runs out of its worker heap is reported as the file's error; the control plane is untouched", async () => {
    const text = registryYaml(meshSpecs(2000, 1));
    const err = await parseRegistryOffThread(text, 'huge.yaml', { heapMb: 4 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.match(err.message, /^huge\.yaml: 1 problem\(s\):\n {2}\(root\): could not be parsed: .*(memory|heap)/i);
  });
});

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/main.ts');

/** `npm start` as an operator runs it, on ephemeral ports; resolves with the admin port once it says it listens. */
function startMain(
  registry: string,
  extra: string[] = [],
): { child: ChildProcess; admin: Promise<number>; exited: Promise<{ code: number | null; out: string }> } {
  const child = spawn(
    process.execPath,
    [MAIN, '--registry', registry, '--host', '127.0.0.1', '--xds-port', '0', '--admin-port', '0', ...extra],
    { env: { ...process.env, MCPMESH_DEV_ISSUER: 'off' } },
  );
  let out = '';
  const admin = new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /admin: +http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`control plane exited ${code}:\n${out}`)));
  });
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; out: string }>((resolve) => child.on('exit', (code) => resolve({ code, out })));
  return { child, admin, exited };
}

describe('the control plane process (main.ts) on a registry it cannot load', () => {
  it('a 50 MB registry: the process listens, /healthz 200, /readyz 503 naming the size and limit; SIGTERM ends it cleanly', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-faults-main-'));
    const registry = path.join(dir, 'registry.yaml');
    writeFileSync(registry, '');
    truncateSync(registry, 50 * MiB);
    const p = startMain(registry, ['--registry-max-bytes', '16MiB']);
    try {
      const port = await p.admin;
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(await ready.text(), /is 52428800 bytes \(50\.0 MiB\), over the limit of 16777216 bytes \(16\.0 MiB\); not read/);
      p.child.kill('SIGTERM');
      assert.equal((await p.exited).code, 0);
    } finally {
      p.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a malformed --registry-max-bytes is refused at start with what is expected', async () => {
    const p = startMain('/nonexistent/registry.yaml', ['--registry-max-bytes', 'lots']);
    p.admin.catch(() => undefined);
    const { code, out } = await p.exited;
    assert.equal(code, 1);
    assert.match(out, /--registry-max-bytes \(MCPMESH_REGISTRY_MAX_BYTES\) must be a size such as 8388608, 8MiB or 512KiB/);
  });
});
