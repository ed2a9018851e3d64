// `npm run demo` (demo/demo.ts over demo/mesh.ts), run as a user runs it. Here, without Envoy: the no-Envoy
// path explains itself and exits at once; --no-envoy runs the rest of the mesh (control plane secured,
// server-everything x2, the stdio bridge, workload certificates, dev tokens) and stops every process it
// started, after the tour (--once) or on Ctrl-C. With ENVOY_BIN (the same switch as the other real-Envoy
// tests) the whole narrated tour runs through real Envoys.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { envoySkip, findEnvoyBinary } from '../envoy/envoy-bin.ts';
import { chooseEnvoy, ENVOY_IMAGE } from '../../demo/mesh.ts';

const DEMO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../demo/demo.ts');
const emptyPath = mkdtempSync(path.join(tmpdir(), 'mcpmesh-demo-path-'));
after(() => rmSync(emptyPath, { recursive: true, force: true }));

interface Run {
  code: number | null;
  out: string;
  err: string;
  ms: number;
}

/** Runs the demo; `onOutput` may act on the output so far (e.g. send SIGINT). */
function demo(
  args: string[],
  env: NodeJS.ProcessEnv,
  onOutput?: (out: string, kill: (s: NodeJS.Signals) => void) => void,
  timeoutMs = 240_000,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [DEMO, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`demo did not exit within ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      onOutput?.(out, (s) => child.kill(s));
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c;
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, ms: Date.now() - started });
    });
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The pids the demo says it started, and its folder: all gone once it exited. */
function assertCleanedUp(out: string): void {
  const pids = [...out.matchAll(/started .*: pid (\d+)/g)].map((m) => Number(m[1]));
  assert.ok(pids.length >= 2, `the demo names what it started:\n${out}`);
  assert.deepEqual(pids.filter(alive), [], 'every process the demo started is gone');
  const dir = /Starting the mesh in (\S+):/.exec(out)?.[1];
  assert.ok(dir && !existsSync(dir), `its folder ${dir} is removed`);
}

const noEnvoyEnv = (): NodeJS.ProcessEnv => ({ ...process.env, ENVOY_BIN: '', PATH: emptyPath });

describe('npm run demo without Envoy', () => {
  it('says how to get Envoy and exits non-zero within seconds, starting nothing', async () => {
    // PATH without envoy and without docker (the pinned node is run by absolute path).
    const r = await demo([], noEnvoyEnv());
    assert.equal(r.code, 2);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
    assert.equal(r.out, '');
    for (const way of [
      /ENVOY_BIN=\/path\/to\/envoy npm run demo/,
      /`envoy` on PATH/,
      /Docker: with a running Docker engine the demo runs envoyproxy\/envoy:v\d/,
      /npm run demo -- --no-envoy/,
    ])
      assert.match(r.err, way);
  });

  it('--no-envoy --once: control plane, servers, bridge, certificates and tokens, then everything stopped', async () => {
    const r = await demo(['--no-envoy', '--once'], noEnvoyEnv());
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /everything {2}2025-11-25 streamable-http {2}2\/2 healthy\n +local\/zone-a .*\n +local\/zone-b /);
    assert.match(r.out, /notes {2}2025-11-25 streamable-http {2}1\/1 healthy/);
    assert.match(r.out, /spiffe:\/\/mcpmesh\.local\/mcp\/everything {2}expires/);
    assert.match(r.out, /notes-a: stdio bridge on 127\.0\.0\.1:\d+, workload certificate spiffe:\/\/mcpmesh\.local\/mcp\/notes/);
    assert.match(r.out, /dev token \(viewer\): eyJ/);
    assertCleanedUp(r.out);
  });

  it('Ctrl-C stops everything it started', async () => {
    let sent = false;
    const r = await demo(['--no-envoy'], noEnvoyEnv(), (out, kill) => {
      if (!sent && out.includes('Ctrl-C stops everything')) {
        sent = true;
        kill('SIGINT');
      }
    });
    assert.ok(sent, r.out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /SIGINT: stopping everything the demo started/);
    assertCleanedUp(r.out);
  });
});

describe('where the demo gets Envoy', () => {
  it('ENVOY_BIN, then envoy on PATH, then Docker when `docker info` answers (a stand-in docker script), else nothing', () => {
    const bin = path.join(emptyPath, 'choose');
    mkdirSync(bin, { recursive: true });
    const stub = (name: string, body: string): void => {
      writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`);
      chmodSync(path.join(bin, name), 0o755);
    };
    assert.deepEqual(chooseEnvoy({ ENVOY_BIN: '/opt/envoy', PATH: bin }, emptyPath), { bin: '/opt/envoy', how: 'ENVOY_BIN (/opt/envoy)' });
    assert.ok('missing' in chooseEnvoy({ PATH: bin }, emptyPath));
    // A stand-in for the docker CLI whose engine answers: the demo runs the official image through a wrapper.
    stub('docker', 'test "$1" = info && echo 28.0.1');
    const viaDocker = chooseEnvoy({ PATH: bin }, emptyPath);
    assert.ok('bin' in viaDocker && viaDocker.how === `Docker (${ENVOY_IMAGE}, --network host)`, JSON.stringify(viaDocker));
    const wrapper = readFileSync(viaDocker.bin, 'utf8');
    assert.match(
      wrapper,
      new RegExp(
        `docker run --rm --init --network host --label 'mcpmesh\\.demo=${emptyPath}' .* -v '${emptyPath}:${emptyPath}' ${ENVOY_IMAGE.replaceAll('.', '\\.')} envoy "\\$@"`,
      ),
    );
    // An engine that does not answer is no Envoy.
    stub('docker', 'echo "Cannot connect to the Docker daemon" >&2; exit 1');
    assert.ok('missing' in chooseEnvoy({ PATH: bin }, emptyPath));
    stub('envoy', 'exit 0');
    assert.deepEqual(chooseEnvoy({ PATH: bin }, emptyPath), {
      bin: path.join(bin, 'envoy'),
      how: `envoy on PATH (${path.join(bin, 'envoy')})`,
    });
  });
});

const lookup = findEnvoyBinary();
describe('npm run demo with a real Envoy', () => {
  it('narrates a call through the gateway, a denial with its rule, tools/list per role, a replica killed, metrics', {
    skip: envoySkip(lookup, [1, 35]),
  }, async () => {
    const r = await demo(['--once'], { ...process.env, ENVOY_BIN: lookup.envoy?.path ?? '' });
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    assert.match(r.out, /everything\/echo -> Echo: hello, mesh/);
    assert.match(r.out, /notes\/echo \(a stdio server behind the bridge\) -> Echo: hello, stdio/);
    assert.match(r.out, /HTTP 403 {2}x-mcpmesh-decision: deny; rule=roles\.viewer\.deny\[0\]/);
    const viewer = /viewer +\d+ tools: (.*)/.exec(r.out)?.[1] ?? '';
    const admin = /admin +\d+ tools: (.*)/.exec(r.out)?.[1] ?? '';
    assert.ok(admin.includes('get-env') && !viewer.includes('get-env') && viewer.includes('echo'), `${viewer} / ${admin}`);
    assert.match(r.out, /then answered by: b \(zone-b\)(, b \(zone-b\)){4}/);
    assert.match(r.out, /5\. Metrics that moved[\s\S]*-> \d+/);
    assertCleanedUp(r.out);
  });
});
