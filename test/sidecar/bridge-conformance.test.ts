// MCP conformance suite (server scenarios) run twice against the same MCP server code: once served directly
// over its own Streamable HTTP, once as a stdio child behind the StdioBridge. The point is the comparison:
// the bridge must give the same verdict for every check of every scenario (it must not lose or add failures).
//
// Suite: `--suite all` (the active scenarios plus the two pending ones, json-schema-2020-12 and
// server-sse-polling). It is fast enough for CI on 2 cores: about 1-2 s direct and about 10 s through the
// bridge (one child process per conformance session, ~40 sessions), so no need to cut down to `active`.
// Everything runs offline: the conformance CLI talks only to the URL it is given.
//
// (a)/(b) server-everything: direct = `server-everything streamableHttp` (bound to loopback with a preload,
//     it would otherwise listen on all interfaces); bridge = `server-everything stdio` behind the bridge.
//     The direct run must match expected-failures.yml exactly (the CLI's baseline check exits 0).
// (c) fixture-server.ts: implements the suite's fixtures that make the server talk to the client mid-call
//     (logging, progress, sampling, elicitation), which server-everything lacks; so this comparison shows that
//     the bridge routes that traffic as an HTTP server would, not just that it fails the same way.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StdioBridge } from '../../sidecar/src/bridge/stdio-bridge.ts';
import { EVERYTHING_ENTRY } from './conformance/harness.ts';
import {
  compareRuns,
  countChecks,
  EXPECTED_FAILURES_FILE,
  failingScenarios,
  FIXTURE_SERVER,
  freePort,
  LOOPBACK_PRELOAD,
  readBaseline,
  runConformance,
  spawnServer,
  type ConformanceRun,
} from './conformance/run.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function outDir(name: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `bridge-conformance-${name}-`));
  cleanups.push(() => {
    if (!process.env.KEEP_CONFORMANCE_RESULTS) rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

async function startBridge(args: string[]): Promise<{ bridge: StdioBridge; url: string; errors: string[] }> {
  const errors: string[] = [];
  const bridge = new StdioBridge({
    command: process.execPath,
    args,
    // The suite opens ~40 sessions and never DELETEs them: reap idle ones quickly so children don't pile up.
    sessionIdleTimeoutMs: 2000,
    maxSessions: 64,
    log: (level, msg, fields) => {
      if (level === 'error') errors.push(`${msg} ${JSON.stringify(fields ?? {})}`);
    },
  });
  cleanups.push(() => bridge.stop());
  const { port } = await bridge.start();
  // The suite requires a localhost URL for its DNS-rebinding scenario; the bridge binds 127.0.0.1.
  return { bridge, url: `http://localhost:${port}/mcp`, errors };
}

function summary(label: string, run: ConformanceRun): string {
  const c = countChecks(run.results);
  const failing = failingScenarios(run.results);
  return `${label}: ${run.results.size} scenarios, ${run.results.size - failing.length} passing / ${failing.length} failing; checks ${c.passed} passed, ${c.failed} failed, ${c.warnings} warnings`;
}

describe('conformance: stdio bridge vs direct Streamable HTTP', { timeout: 170_000 }, () => {
  it('server-everything: direct matches the baseline, the bridge gives the same verdicts', async (t) => {
    const baseline = readBaseline();
    const port = await freePort();
    const direct = await spawnServer(
      ['--import', LOOPBACK_PRELOAD, EVERYTHING_ENTRY, 'streamableHttp'],
      { PORT: String(port) },
      /listening on port (\d+)/,
    );
    cleanups.push(direct.stop);
    const directRun = await runConformance(`http://localhost:${port}/mcp`, outDir('everything-direct'), {
      expectedFailures: EXPECTED_FAILURES_FILE,
    });
    await direct.stop();
    t.diagnostic(summary('server-everything direct', directRun));
    assert.ok(directRun.results.size >= 30, `conformance produced results: ${directRun.stdout.slice(-2000)}`);
    assert.deepEqual(failingScenarios(directRun.results), [...baseline.server].sort(), 'expected-failures.yml is exact');
    assert.equal(directRun.code, 0, `conformance baseline check: ${directRun.stdout.slice(-1500)}`);

    const { bridge, url, errors } = await startBridge([EVERYTHING_ENTRY, 'stdio']);
    const bridgeRun = await runConformance(url, outDir('everything-bridge'));
    t.diagnostic(summary('server-everything via bridge', bridgeRun));
    const diffs = compareRuns(directRun.results, bridgeRun.results, baseline.bridgeStricter);
    assert.deepEqual(diffs, [], `bridge verdicts differ from direct:\n${diffs.join('\n')}`);
    assert.deepEqual(errors, [], 'no errors logged by the bridge');
    await bridge.stop();
  });

  it('fixture server: logging, progress, sampling and elicitation mid-call relay exactly as served directly', async (t) => {
    const baseline = readBaseline();
    const direct = await spawnServer([FIXTURE_SERVER, 'http'], {}, /listening (\d+)/);
    cleanups.push(direct.stop);
    const directRun = await runConformance(`http://localhost:${direct.match[1]}/mcp`, outDir('fixture-direct'));
    await direct.stop();
    t.diagnostic(summary('fixture direct', directRun));
    // The comparison below only means something if these pass directly.
    const relayScenarios = [
      'tools-call-with-logging',
      'tools-call-with-progress',
      'tools-call-sampling',
      'tools-call-elicitation',
      'tools-call-simple-text',
      'tools-call-error',
    ];
    const failingDirect = failingScenarios(directRun.results);
    for (const s of relayScenarios) assert.ok(!failingDirect.includes(s), `${s} passes directly against the fixture`);

    const { bridge, url, errors } = await startBridge([FIXTURE_SERVER, 'stdio']);
    const bridgeRun = await runConformance(url, outDir('fixture-bridge'));
    t.diagnostic(summary('fixture via bridge', bridgeRun));
    const diffs = compareRuns(directRun.results, bridgeRun.results, baseline.bridgeStricter);
    assert.deepEqual(diffs, [], `bridge verdicts differ from direct:\n${diffs.join('\n')}`);
    const failingBridge = failingScenarios(bridgeRun.results);
    for (const s of relayScenarios) assert.ok(!failingBridge.includes(s), `${s} passes through the bridge`);
    assert.deepEqual(errors, [], 'no errors logged by the bridge');
    await bridge.stop();
  });
});
