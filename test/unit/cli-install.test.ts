// The `mcpmesh` bin as npm lays it out, and the CLIs through symlinked paths (issue 12).
//  - installed: the packed tarball extracted under a temp node_modules (a real copy, as npm installs it; deps
//    linked from this checkout, since no registry is reachable here) with node_modules/.bin/mcpmesh a symlink,
//    as npm makes it. Node refuses to strip types under node_modules; the launcher's hook must make it work.
//  - older Node: the launcher's version check, and Node 20 (the system node here, when present) gets one line.
//  - symlinks: every CLI run through a symlinked folder still runs (macOS temp folders, npm links).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { supported, ENGINES } from '../../bin/node-floor.js';
import { findTool } from '../helpers/tools.ts';
import { isEntryPoint } from '../../control-plane/src/entry.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const node = process.execPath;
const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-bin-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, env });

test('engines in package.json is the launcher floor, and the floor is where type stripping is on by default', () => {
  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
    engines: { node: string };
    bin: Record<string, string>;
  };
  assert.equal(pkg.engines.node, ENGINES);
  assert.equal(pkg.bin['mcpmesh'], 'bin/mcpmesh.js');
  // 22.18.0 and 23.6.0 unflagged --experimental-strip-types (Node's changelogs); 22.12 fails with ERR_UNKNOWN_FILE_EXTENSION.
  for (const v of ['22.18.0', '22.20.1', '23.6.0', '24.0.0', '26.1.0']) assert.equal(supported(v), true, v);
  for (const v of ['20.19.0', '22.12.0', '22.17.1', '23.5.0', '18.20.0']) assert.equal(supported(v), false, v);
  assert.equal(supported(process.versions.node), true, 'the pinned Node runs the code');
});

test('installed from the packed tarball: node_modules/.bin/mcpmesh (a symlink) runs the TypeScript CLI', () => {
  const packed =
    execFileSync('npm', ['pack', '--silent', '--pack-destination', dir, repo], { encoding: 'utf8', timeout: 60_000 })
      .trim()
      .split('\n')
      .pop() ?? '';
  const nm = path.join(dir, 'node_modules');
  const pkg = path.join(nm, 'mcp-mesh');
  mkdirSync(pkg, { recursive: true });
  execFileSync('tar', ['xzf', path.join(dir, packed), '-C', pkg, '--strip-components=1']);
  for (const name of readdirSync(path.join(repo, 'node_modules'))) {
    if (name === '.bin' || name.startsWith('.')) continue;
    symlinkSync(path.join(repo, 'node_modules', name), path.join(nm, name));
  }
  mkdirSync(path.join(nm, '.bin'));
  symlinkSync('../mcp-mesh/bin/mcpmesh.js', path.join(nm, '.bin', 'mcpmesh'));

  // Without the launcher Node refuses: this is what the launcher is for.
  const direct = run(node, [path.join(pkg, 'control-plane/src/cli.ts'), '--help']);
  assert.notEqual(direct.status, 0);
  assert.match(direct.stderr, /ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING/);

  const viaBin = run(node, [path.join(nm, '.bin', 'mcpmesh'), '--help']);
  assert.equal(viaBin.status, 0, viaBin.stderr);
  assert.match(viaBin.stdout, /usage: mcpmesh <command>/);
  assert.match(viaBin.stdout, /^ {2}status /m);
  assert.equal(viaBin.stderr, '', 'no warning on the way');
  // A subcommand that parses a policy (imports deep in the package) runs too.
  const explain = run(node, [path.join(nm, '.bin', 'mcpmesh'), 'policy', 'explain', '--help']);
  assert.equal(explain.status, 0, explain.stderr);
});

const oldNode = ['/usr/bin/node', '/usr/local/bin/node', findTool('nodejs')].find((p) => {
  if (!p) return false;
  const r = spawnSync(p, ['--version'], { encoding: 'utf8' });
  return r.status === 0 && !supported(r.stdout.trim());
});

test('an older Node gets one line naming the Node it needs', {
  skip: oldNode === undefined ? 'no Node older than 22.18 on this machine' : false,
}, () => {
  // A copy of the launcher with no pinned Node beside it (as installed), so it cannot re-run itself.
  const alone = path.join(dir, 'alone');
  mkdirSync(alone, { recursive: true });
  execFileSync('cp', ['-r', path.join(repo, 'bin'), alone]);
  const launcher = path.join(alone, 'bin', 'mcpmesh.js');
  execFileSync('cp', [path.join(repo, 'package.json'), path.join(dir, 'alone', 'package.json')]);
  const r = run(oldNode as string, [launcher, '--help']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /needs Node \^22\.18\.0 \|\| >=23\.6\.0 .*this is Node 2?\d\./);
  // From a checkout the same launcher re-runs itself with the pinned Node 24 (what `npx mcpmesh` does here).
  const checkout = run(oldNode as string, [path.join(repo, 'bin/mcpmesh.js'), '--help']);
  assert.equal(checkout.status, 0, checkout.stderr);
  assert.match(checkout.stdout, /usage: mcpmesh/);
});

test('CLIs run through a symlinked folder (the main-module check compares real paths)', () => {
  const link = path.join(dir, 'linked-repo');
  symlinkSync(repo, link);
  for (const [file, args, expect] of [
    ['control-plane/src/cli.ts', ['--help'], /usage: mcpmesh <command>/],
    ['sidecar/src/cli.ts', ['sidecar', '--help'], /usage: mcpmesh sidecar/],
    ['deploy/compose/join-token.ts', ['--help'], /join-token|usage/],
    ['deploy/compose/call-tool.ts', ['--help'], /call-tool|usage/],
  ] as const) {
    const r = run(node, [path.join(link, file), ...args]);
    assert.match(r.stdout + r.stderr, expect, `${file} through ${link}: ${r.stderr}`);
  }
  assert.equal(isEntryPoint(new URL('file:///nowhere/a.ts').href, '/nowhere/b.ts'), false);
  assert.equal(isEntryPoint(import.meta.url, path.join(link, 'test/unit/cli-install.test.ts')), true);
});
