// `mcpmesh join-token` as an operator runs it: against a running control plane's admin port (loopback), and
// offline with the CA files. The token names the identity asked for, pins the CA, and the CA verifies it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { bundleHash, JOIN_TOKEN_AUDIENCE, JOIN_TOKEN_TYP, readJoinToken } from '../../control-plane/src/identity/join-token.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/cli.ts');
/** The CLI as a child process (asynchronously: the control plane it talks to runs in this process). */
const run = (args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, 'join-token', ...args],
      { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '', ...env }, timeout: 20_000 },
      (err, stdout, stderr) => {
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });

describe('mcpmesh join-token', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-jt-'));
  let ca: CertificateAuthority;
  let cp: ControlPlane;
  before(async () => {
    ca = await CertificateAuthority.selfSigned({ trustDomain: 'mesh.test' });
    writeFileSync(path.join(dir, 'ca.crt'), ca.exportPem().certPem);
    writeFileSync(path.join(dir, 'ca.key'), ca.exportPem().keyPem);
    writeFileSync(path.join(dir, 'r.yaml'), 'services: []\n');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      ca,
      security: {
        publicUrl: 'https://x',
        authz: { host: '127.0.0.1', port: 1 },
        policy: { trustDomain: 'mesh.test', roleClaim: 'roles', providers: [], roles: [], services: [] },
      },
    }).start();
  });
  after(() => cp?.stop());

  it('asks a running control plane for a gateway token, which its CA verifies and which pins its bundle', async () => {
    const r = await run(['--gateway', 'edge', '--ttl', '10m', '--json'], { MCPMESH_ADMIN_URL: `http://127.0.0.1:${cp.adminPort}` });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { token: string; spiffeId: string; expiresAt: string };
    assert.equal(out.spiffeId, 'spiffe://mesh.test/gateway/edge');
    const claims = readJoinToken(out.token);
    assert.equal(claims.bundleHash, bundleHash(ca.bundlePem));
    assert.ok(Math.abs(claims.expiresAt.getTime() - Date.now() - 600_000) < 5_000, `expires ${claims.expiresAt.toISOString()}`);
    assert.equal((await ca.verifyJwt(out.token, JOIN_TOKEN_TYP, JOIN_TOKEN_AUDIENCE))['sub'], 'spiffe://mesh.test/gateway/edge');
  });

  it('signs offline with the CA files (valid for every replica sharing the CA)', async () => {
    const r = await run([
      '--service',
      'weather',
      '--ca-cert',
      path.join(dir, 'ca.crt'),
      '--ca-key',
      path.join(dir, 'ca.key'),
      '--trust-domain',
      'mesh.test',
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /join token for spiffe:\/\/mesh\.test\/mcp\/weather, valid until .*, single-use/);
    assert.equal((await ca.verifyJwt(r.stdout.trim(), JOIN_TOKEN_TYP, JOIN_TOKEN_AUDIENCE))['sub'], 'spiffe://mesh.test/mcp/weather');
  });

  it('says what is wrong: no identity, both, a bad ttl, a refused name, an unreachable control plane', async () => {
    assert.match((await run([])).stderr, /give exactly one of --service NAME and --gateway NAME/);
    assert.match((await run(['--service', 'a', '--gateway', 'b'])).stderr, /exactly one/);
    assert.match((await run(['--service', 'a', '--ttl', 'soon'])).stderr, /--ttl "soon": use a duration such as 30m or 1h/);
    const bad = await run(['--service', 'Not_A_Name'], { MCPMESH_ADMIN_URL: `http://127.0.0.1:${cp.adminPort}` });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /refused \(HTTP 400\): "Not_A_Name" is not a service or gateway name/);
    assert.match(
      (await run(['--service', 'a'], { MCPMESH_ADMIN_URL: 'http://127.0.0.1:1' })).stderr,
      /cannot reach the control plane at http:\/\/127\.0\.0\.1:1/,
    );
  });
});
