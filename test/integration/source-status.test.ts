// Source status tells the truth: /debug/sources and mcpmesh_source_up clear an error as soon as the source reads
// fine again, whether or not the mesh changed (a registry file deleted and put back identical; a Consul that
// refused and then answers with the same data), and log lines name the source and only claim a last good mesh
// when there is one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { createLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { startConsul } from '../helpers/consul.ts';
import { startControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';
import { FaultProxy } from '../faults/fault-proxy.ts';

const REGISTRY = `services:
  - name: weather
    protocol: "2025-11-25"
    endpoints:
      - { address: 10.0.0.1, port: 8080 }
`;

/** A logger that keeps its JSON lines. */
function capture(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, log: createLogger({ level: 'info', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) }) };
}

describe('source status', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('clears a registry error when the same file is put back', async () => {
    const { log, lines } = capture();
    const t = await startControlPlane(REGISTRY, { log, quietMs: 10, maxDelayMs: 50 });
    cleanups.push(() => t.stop());
    const sources = async (): Promise<Record<string, string>> => (await (await t.admin('/debug/sources')).json()) as Record<string, string>;
    const up = async (): Promise<string | undefined> =>
      /^mcpmesh_source_up\{source="registry"\} (\d)$/m.exec(await (await t.admin('/metrics')).text())?.[1];
    await waitFor('ready', async () => (await t.admin('/readyz')).status === 200);

    unlinkSync(t.registryFile);
    const err = await waitFor('error shown', async () => (await sources())['registry'], 5000);
    assert.match(err, /cannot read/);
    assert.equal(await up(), '0');
    const line = lines.find((l) => l['msg'] === 'registry update rejected; serving the last good mesh');
    assert.ok(line, `logged with the source's name: ${JSON.stringify(lines.filter((l) => l['level'] === 'error'))}`);
    assert.equal(line['source'], 'registry');

    // Identical content: the mesh does not change, the error must still go.
    t.writeRegistry(REGISTRY);
    await waitFor('error cleared', async () => (await sources())['registry'] === undefined, 5000);
    assert.equal(await up(), '1');

    // A bad edit, then the good file back.
    t.writeRegistry('services: [{ name: "Bad Name" }]\n');
    await waitFor('parse error shown', async () => (await sources())['registry'], 5000);
    t.writeRegistry(REGISTRY);
    await waitFor('error cleared again', async () => (await sources())['registry'] === undefined, 5000);
  });

  it('logs Consul errors as Consul, without a last good mesh it does not have, and clears them on recovery', async () => {
    const consul = await startConsul();
    cleanups.push(() => consul.stop());
    const proxy = new FaultProxy(consul.address);
    await proxy.start();
    cleanups.push(() => proxy.stop());
    proxy.set({ kind: 'status', status: 500 });
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-status-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, 'unused.yaml'), 'services: []\n');
    const { log, lines } = capture();
    const cp = await new ControlPlane({
      registryFile: path.join(dir, 'unused.yaml'),
      consul: { address: proxy.address, wait: '2s' },
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      quietMs: 10,
      maxDelayMs: 50,
      log,
      metrics: new Metrics({ processMetrics: false }),
    }).start();
    cleanups.push(() => cp.stop());
    const admin = (p: string): Promise<Response> => fetch(`http://127.0.0.1:${cp.adminPort}${p}`);
    const err = await waitFor(
      'error shown',
      async () => ((await (await admin('/debug/sources')).json()) as Record<string, string>)['consul'],
      5000,
    );
    assert.match(err, /^consul catalog watch .*HTTP 500/);
    const first = lines.find((l) => l['level'] === 'error');
    assert.equal(first?.['source'], 'consul');
    assert.equal(first?.['msg'], 'consul watch failed, retrying; no mesh yet, not ready');
    assert.ok(
      !lines.some((l) => String(l['msg']).includes('registry') || String(l['msg']).includes('last good mesh')),
      'no claim of a mesh that does not exist',
    );
    assert.equal((await admin('/readyz')).status, 503);

    proxy.heal();
    await waitFor('ready once Consul answers', async () => (await admin('/readyz')).status === 200, 5000);
    await waitFor(
      'error cleared',
      async () => ((await (await admin('/debug/sources')).json()) as Record<string, string>)['consul'] === undefined,
      5000,
    );
    assert.match(await (await admin('/metrics')).text(), /^mcpmesh_source_up\{source="consul"\} 1$/m);

    // Consul refuses again, then answers with exactly the same data: nothing to publish, the error still goes.
    const mark = lines.length;
    proxy.set({ kind: 'status', status: 500 });
    await waitFor(
      'error shown again',
      async () => ((await (await admin('/debug/sources')).json()) as Record<string, string>)['consul'],
      5000,
    );
    assert.ok(lines.some((l) => l['msg'] === 'consul watch failed, retrying; serving the last good mesh'));
    proxy.heal();
    await waitFor(
      'error cleared without a mesh change',
      async () => ((await (await admin('/debug/sources')).json()) as Record<string, string>)['consul'] === undefined,
      5000,
    );
    assert.match(await (await admin('/metrics')).text(), /^mcpmesh_source_up\{source="consul"\} 1$/m);
    assert.equal(
      lines.slice(mark).filter((l) => l['msg'] === 'mesh published' && l['snapshots_changed'] !== 0).length,
      0,
      'the mesh did not change',
    );
  });
});
