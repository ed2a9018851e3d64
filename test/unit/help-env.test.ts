// Every environment variable a command's code reads is listed by its --help (issue 12: `--help` omitted
// eight). The variables are found in the source, not written down here: for each command, the files its
// entry module imports (transitively, within the repo) are scanned for env['X'] / env.X reads.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Read by every process, never configuration of ours. */
const NOT_OURS = new Set(['PATH']);

function sources(entry: string, seen = new Set<string>()): Set<string> {
  if (seen.has(entry)) return seen;
  seen.add(entry);
  for (const m of readFileSync(entry, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+\.ts)'/g))
    sources(path.resolve(path.dirname(entry), m[1] as string), seen);
  return seen;
}

function envReads(entry: string): string[] {
  const names = new Set<string>();
  for (const f of sources(path.join(repo, entry))) {
    for (const m of readFileSync(f, 'utf8').matchAll(/\benv(?:\[['"]|\.)([A-Z][A-Z0-9_]+)/g))
      if (!NOT_OURS.has(m[1] as string)) names.add(m[1] as string);
  }
  return [...names].sort();
}

const COMMANDS: Array<{ name: string; entry: string; help: string[] }> = [
  { name: 'npm start (control plane)', entry: 'control-plane/src/main.ts', help: ['control-plane/src/main.ts', '--help'] },
  { name: 'mcpmesh sidecar', entry: 'sidecar/src/cli.ts', help: ['control-plane/src/cli.ts', 'sidecar', '--help'] },
  { name: 'mcpmesh gateway', entry: 'sidecar/src/gateway-cli.ts', help: ['control-plane/src/cli.ts', 'gateway', '--help'] },
  { name: 'mcpmesh token', entry: 'control-plane/src/auth/token-cli.ts', help: ['control-plane/src/cli.ts', 'token', '--help'] },
  {
    name: 'mcpmesh join-token',
    entry: 'control-plane/src/identity/join-token-cli.ts',
    help: ['control-plane/src/cli.ts', 'join-token', '--help'],
  },
  { name: 'mcpmesh status', entry: 'control-plane/src/status-cli.ts', help: ['control-plane/src/cli.ts', 'status', '--help'] },
];

for (const c of COMMANDS) {
  test(`${c.name} --help lists every environment variable its code reads`, () => {
    const reads = envReads(c.entry);
    assert.ok(reads.length > 0, `no env reads found from ${c.entry}: the scan is broken`);
    const help = execFileSync(
      process.execPath,
      c.help.map((a, i) => (i === 0 ? path.join(repo, a) : a)),
      { encoding: 'utf8', timeout: 30_000 },
    );
    const missing = reads.filter((n) => !new RegExp(`\\b${n}\\b`).test(help));
    assert.deepEqual(missing, [], `${c.name} --help does not mention ${missing.join(', ')}`);
  });
}

test('the scan sees reads through helpers in other files (Consul settings read by sources/consul.ts)', () => {
  assert.ok(envReads('sidecar/src/cli.ts').includes('CONSUL_CACERT'));
  assert.ok(envReads('control-plane/src/main.ts').includes('KUBERNETES_SERVICE_HOST'));
});
