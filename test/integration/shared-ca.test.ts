// Two control-plane processes started the way operators start them (`npm start` flags) with the same
// provided CA: a proxy may reconnect to either, so both must hand out certificates from that CA and the
// same trust bundle. A bad CA file stops the process with the reason instead of a silent self-signed root.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, node, RawAdsClient } from '../helpers/ads-client.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/main.ts');
const POLICY = 'trustDomain: mesh.test\nroles:\n  reader:\n    allow:\n      - service: weather\n';

interface Running { child: ChildProcess; xdsPort: number }

function startMain(args: string[], dir: string): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, '--registry', path.join(dir, 'registry.yaml'), '--policy', path.join(dir, 'policy.yaml'),
      '--host', '127.0.0.1', '--xds-port', '0', '--admin-port', '0', '--authz-port', '0', ...args], { env: { ...process.env, MCPMESH_DEV_ISSUER: 'off' } });
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

async function identityOf(xdsPort: number): Promise<{ leaf: X509Certificate; bundle: string }> {
  const client = new RawAdsClient(`127.0.0.1:${xdsPort}`);
  try {
    const s = client.sotw();
    s.send({ type_url: TYPE_URLS.secret, resource_names: ['mcpmesh.identity', 'mcpmesh.trust'], node: node('sc-1', { role: 'sidecar', service: 'weather', app_port: 7001 }) });
    for (;;) {
      const resp = await s.next('secret', 15_000);
      s.send({ type_url: TYPE_URLS.secret, resource_names: ['mcpmesh.identity', 'mcpmesh.trust'], version_info: resp['version_info'], response_nonce: resp['nonce'] });
      const byName = new Map(decodeResources(resp).map((r) => [r['name'], r] as const));
      const id = byName.get('mcpmesh.identity') as { tls_certificate?: { certificate_chain: { inline_string: string } } } | undefined;
      const trust = byName.get('mcpmesh.trust') as { validation_context?: { trusted_ca: { inline_string: string } } } | undefined;
      if (id?.tls_certificate && trust?.validation_context) {
        s.close();
        return { leaf: new X509Certificate(id.tls_certificate.certificate_chain.inline_string), bundle: trust.validation_context.trusted_ca.inline_string };
      }
    }
  } finally {
    client.close();
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
    const [ia, ib] = await Promise.all([identityOf(a.xdsPort), identityOf(b.xdsPort)]);
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
