// Helpers to run the MCP conformance CLI (server scenarios) and compare two result sets check by check.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CONFORMANCE_BIN = path.resolve(here, '../../../node_modules/@modelcontextprotocol/conformance/dist/index.js');
export const EXPECTED_FAILURES_FILE = path.join(here, 'expected-failures.yml');
export const LOOPBACK_PRELOAD = path.join(here, '../../../demo/loopback-preload.ts');
export const FIXTURE_SERVER = path.join(here, 'fixture-server.ts');

export interface Check {
  id: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO' | string;
  description?: string;
  errorMessage?: string;
}

export interface ConformanceRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** scenario name -> its checks.json */
  results: Map<string, Check[]>;
}

export function readBaseline(file = EXPECTED_FAILURES_FILE): { server: string[]; bridgeStricter: string[] } {
  const doc = parseYaml(readFileSync(file, 'utf8')) as { server?: string[]; 'bridge-stricter'?: string[] };
  return { server: doc.server ?? [], bridgeStricter: doc['bridge-stricter'] ?? [] };
}

export { freePort } from '../../helpers/everything.ts';

/** Spawns `node <args>` (pinned Node) and waits until its output matches `ready`. */
export async function spawnServer(
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
  timeoutMs = 20_000,
): Promise<{ child: ChildProcess; match: RegExpMatchArray; output: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not get ready in ${timeoutMs} ms: ${output}`)), timeoutMs);
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = output.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before it was ready: ${output}`));
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  return { child, match, output: () => output, stop };
}

export function runConformance(
  url: string,
  outDir: string,
  opts: { suite?: 'active' | 'all'; expectedFailures?: string; timeoutMs?: number } = {},
): Promise<ConformanceRun> {
  const args = [CONFORMANCE_BIN, 'server', '--url', url, '--suite', opts.suite ?? 'all', '-o', outDir];
  if (opts.expectedFailures) args.push('--expected-failures', opts.expectedFailures);
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: opts.timeoutMs ?? 150_000, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr, results: loadResults(outDir) });
    });
  });
}

export function loadResults(outDir: string): Map<string, Check[]> {
  const results = new Map<string, Check[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync(outDir);
  } catch {
    return results;
  }
  for (const dir of entries) {
    const m = dir.match(/^server-(.+)-\d{4}-\d{2}-\d{2}T/);
    if (!m) continue;
    results.set(m[1]!, JSON.parse(readFileSync(path.join(outDir, dir, 'checks.json'), 'utf8')) as Check[]);
  }
  return results;
}

/** A scenario fails if any check is FAILURE or WARNING (the CLI's own rule for baselines). */
export function failingScenarios(results: Map<string, Check[]>): string[] {
  return [...results]
    .filter(([, checks]) => checks.some((c) => c.status === 'FAILURE' || c.status === 'WARNING'))
    .map(([name]) => name)
    .sort();
}

export function countChecks(results: Map<string, Check[]>): { passed: number; failed: number; warnings: number } {
  let passed = 0;
  let failed = 0;
  let warnings = 0;
  for (const checks of results.values()) {
    for (const c of checks) {
      if (c.status === 'SUCCESS') passed++;
      else if (c.status === 'FAILURE') failed++;
      else if (c.status === 'WARNING') warnings++;
    }
  }
  return { passed, failed, warnings };
}

/**
 * The verdict checks of a scenario, normalized for comparison. INFO checks are traces of the HTTP exchange
 * (requests sent, SSE events seen, with event ids and timestamps) and legitimately differ between two
 * servers; the verdicts (SUCCESS / FAILURE / WARNING / SKIPPED, with their messages) must not.
 */
export function verdicts(checks: Check[]): string[] {
  return checks
    .filter((c) => c.status !== 'INFO')
    .map((c) =>
      `${c.id} ${c.status}${c.errorMessage ? ` ${c.errorMessage}` : ''}`
        .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<uuid>')
        .replace(/(localhost|127\.0\.0\.1|\[::1\]):\d+/g, '$1:<port>'),
    );
}

/**
 * Differences between a direct run and a bridge run. `stricter` scenarios may differ, but then only in the
 * bridge's favour: every verdict check of theirs must be SUCCESS on the bridge.
 */
export function compareRuns(direct: Map<string, Check[]>, bridge: Map<string, Check[]>, stricter: string[] = []): string[] {
  const diffs: string[] = [];
  const names = new Set([...direct.keys(), ...bridge.keys()]);
  for (const name of [...names].sort()) {
    const d = direct.get(name);
    const b = bridge.get(name);
    if (!d || !b) {
      diffs.push(`${name}: only in ${d ? 'direct' : 'bridge'} run`);
      continue;
    }
    if (stricter.includes(name)) {
      const notPassing = b.filter((c) => c.status !== 'INFO' && c.status !== 'SUCCESS');
      if (notPassing.length > 0) diffs.push(`${name}: bridge is expected to pass, got ${verdicts(notPassing).join('; ')}`);
      continue;
    }
    const vd = verdicts(d).join('\n');
    const vb = verdicts(b).join('\n');
    if (vd !== vb) diffs.push(`${name}:\n  direct: ${vd.replace(/\n/g, '\n          ')}\n  bridge: ${vb.replace(/\n/g, '\n          ')}`);
  }
  return diffs;
}
