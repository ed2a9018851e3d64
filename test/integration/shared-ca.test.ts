// Two control-plane processes started the way operators start them (`npm start` flags) with the same
// provided CA: an agent may reach either, so both must sign with that CA, accept a join token minted from it
// (here offline, from the CA files, as `mcpmesh join-token --ca-cert` does), and serve the same trust bundle. A bad CA file stops the process with the reason instead of a silent self-signed root.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { JoinTokens } from '../../control-plane/src/identity/join-token.ts';
import { WorkloadIdentity } from '../../sidecar/src/identity.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/main.ts');
const POLICY = 'trustDomain: mesh.test\nroles:\n  reader:\n    allow:\n      - service: weather\n';

interface Running {
  child: ChildProcess;
  xdsPort: number;
}

function startMain(args: string[], dir: string): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        MAIN,
        '--registry',
        path.join(dir, 'registry.yaml'),
        '--policy',
        path.join(dir, 'policy.yaml'),
        '--host',
        '127.0.0.1',
        '--xds-port',
        '0',
        '--admin-port',
        '0',
        '--authz-port',
        '0',
        ...args,
      ],
      { env: { ...process.env, MCPMESH_DEV_ISSUER: 'off' } },
    );
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /xDS \(ADS, gRPC\): 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve({ child, xdsPort: Number(m[1]) });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`control plane exited ${code}:\n${out}`)));
  });
}

/** What an agent gets from a replica: a certificate signed for its own key (join token minted from the shared CA files). */
async function identityOf(xdsPort: number, ca: CertificateAuthority): Promise<{ leaf: X509Certificate; bundle: string }> {
  const { token } = await new JoinTokens(ca).mint('spiffe://mesh.test/mcp/weather');
  const agent = new WorkloadIdentity({
    controlPlane: { host: '127.0.0.1', port: xdsPort },
    credential: { type: 'join-token', token },
    log: () => {},
  });
  try {
    const held = await agent.start();
    return { leaf: new X509Certificate(held.certChainPem), bundle: held.bundlePem };
  } finally {
    agent.stop();
  }
}

describe('control plane replicas with a provided CA (--ca-cert / --ca-key)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-ca-'));
  const running: ChildProcess[] = [];
  let ca: CertificateAuthority;
  before(async () => {
    ca = await CertificateAuthority.selfSigned({ trustDomain: 'mesh.test' });
    const { certPem, keyPem } = ca.exportPem();
    writeFileSync(path.join(dir, 'ca.crt'), certPem);
    writeFileSync(path.join(dir, 'ca.key'), keyPem);
    writeFileSync(path.join(dir, 'registry.yaml'), 'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n');
    writeFileSync(path.join(dir, 'policy.yaml'), POLICY);
  });
  after(() => {
    for (const c of running) c.kill('SIGKILL');
  });

  it('both replicas issue from the same CA and publish the same trust bundle', async () => {
    const caArgs = ['--ca-cert', path.join(dir, 'ca.crt'), '--ca-key', path.join(dir, 'ca.key')];
    const [a, b] = await Promise.all([startMain(caArgs, dir), startMain(caArgs, dir)]);
    running.push(a.child, b.child);
    const [ia, ib] = await Promise.all([identityOf(a.xdsPort, ca), identityOf(b.xdsPort, ca)]);
    const root = new X509Certificate(ca.certPem);
    for (const i of [ia, ib]) {
      assert.ok(i.leaf.checkIssued(root) && i.leaf.verify(root.publicKey), 'the leaf is signed by the provided CA');
      assert.equal(new X509Certificate(i.bundle).fingerprint256, root.fingerprint256, 'the trust bundle is the provided CA');
    }
    assert.notEqual(ia.leaf.serialNumber, ib.leaf.serialNumber, 'each replica issues its own leaf');
  });

  it('refuses to start with half a CA or a key that does not match', async () => {
    await assert.rejects(startMain(['--ca-cert', path.join(dir, 'ca.crt')], dir), /CA rejected.*give both --ca-cert and --ca-key/s);
    const other = (await CertificateAuthority.selfSigned({ trustDomain: 'mesh.test' })).exportPem();
    writeFileSync(path.join(dir, 'other.key'), other.keyPem);
    await assert.rejects(startMain(['--ca-cert', path.join(dir, 'ca.crt'), '--ca-key', path.join(dir, 'other.key')], dir), /CA rejected/);
  });
});
