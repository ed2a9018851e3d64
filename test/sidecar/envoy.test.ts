// Envoy supervision. No Envoy binary exists on these machines: the supervisor is exercised with a
// clearly named stand-in script; with ENVOY_BIN set, the generated bootstrap is also checked by real
// Envoy (`--mode validate`).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { renderBootstrap } from '../../sidecar/src/bootstrap.ts';
import { EnvoySupervisor, findEnvoy } from '../../sidecar/src/envoy.ts';
import { waitFor } from '../helpers/wait.ts';

const standin = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/envoy-standin.mjs');

function records(log: string): Array<{ pid: number; args?: string[]; sigterm?: boolean }> {
  return existsSync(log)
    ? readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { pid: number })
    : [];
}

describe('Envoy supervisor (with an Envoy stand-in script)', () => {
  it('finds Envoy from ENVOY_BIN or PATH, and reports none when absent', () => {
    assert.equal(findEnvoy({ ENVOY_BIN: '/opt/envoy/bin/envoy' }), '/opt/envoy/bin/envoy');
    assert.equal(findEnvoy({ PATH: path.dirname(standin) }), undefined, 'a file not named envoy is not Envoy');
    assert.equal(findEnvoy({ PATH: '' }), undefined);
  });

  it('restarts a crashing Envoy with growing backoff, and stops it with SIGTERM', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-envoy-'));
    const log = path.join(dir, 'runs.log');
    process.env['ENVOY_STANDIN_LOG'] = log;
    process.env['ENVOY_STANDIN_MODE'] = 'crash';
    // The delays the supervisor schedules, from its log: wall-clock gaps between runs also hold each crashing
    // stand-in's start-up time, which a loaded machine stretches at random.
    const delays: number[] = [];
    const capture = (_level: string, _msg: string, fields?: Record<string, unknown>): void => {
      if (typeof fields?.['restart_in_ms'] === 'number') delays.push(fields['restart_in_ms']);
    };
    const sup = new EnvoySupervisor({
      bin: standin,
      bootstrapPath: path.join(dir, 'bootstrap.json'),
      backoffInitialMs: 100,
      backoffMaxMs: 400,
      drainSeconds: 1,
      log: capture,
    });
    try {
      sup.start();
      await waitFor('four starts', () => records(log).length >= 4, 15_000);
      const runs = records(log);
      assert.deepEqual(runs[0]?.args, ['-c', path.join(dir, 'bootstrap.json'), '--drain-time-s', '1', '--disable-hot-restart']);
      assert.deepEqual(delays.slice(0, 3), [100, 200, 400], 'backoff doubles up to its maximum');
      const at = runs.map((r) => (r as unknown as { at: number }).at);
      for (let i = 1; i < 3; i++)
        assert.ok(
          at[i]! - at[i - 1]! >= (delays[i - 1] as number) - 20,
          `run ${i} waited its backoff (${at[i]! - at[i - 1]!} ms >= ${delays[i - 1]} ms)`,
        );
      process.env['ENVOY_STANDIN_MODE'] = 'run';
      await waitFor('a run that stays up', () => sup.running && records(log).some((r) => (r as { mode?: string }).mode === 'run'), 10_000);
    } finally {
      await sup.stop();
    }
    assert.ok(
      records(log).some((r) => r.sigterm),
      'Envoy got SIGTERM',
    );
    assert.equal(sup.running, false);
    const before = records(log).length;
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(records(log).length, before, 'no restart after stop');
  });
});

describe('generated bootstrap accepted by real Envoy', {
  skip: process.env['ENVOY_BIN'] ? false : 'ENVOY_BIN not set: no Envoy binary on this machine',
}, () => {
  it('envoy --mode validate accepts the sidecar bootstrap', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-envoy-'));
    const file = path.join(dir, 'bootstrap.json');
    writeFileSync(
      file,
      renderBootstrap({
        nodeId: 'n1',
        service: 'weather',
        inboundPort: 15006,
        appPort: 7001,
        controlPlane: { host: '127.0.0.1', port: 18000 },
      }),
    );
    execFileSync(process.env['ENVOY_BIN'] as string, ['--mode', 'validate', '-c', file], { stdio: 'pipe' });
  });
});
