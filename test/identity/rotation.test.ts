// CertificateManager: one current certificate per SPIFFE ID, renewed at half-life with real (short) TTLs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority, type IssuedCert, type IssueRequest } from '../../control-plane/src/identity/ca.ts';
import { CertificateManager } from '../../control-plane/src/identity/rotation.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';

const TD = 'mcpmesh.test';
const WEATHER = sidecarId(TD, 'weather');
const here = path.dirname(fileURLToPath(import.meta.url));

function nextRotation(m: CertificateManager): Promise<{ spiffeId: string; cert: IssuedCert; at: number }> {
  return new Promise((resolve) => {
    const off = m.onRotate((spiffeId, cert) => {
      off();
      resolve({ spiffeId, cert, at: Date.now() });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('CertificateManager', () => {
  let ca: CertificateAuthority;
  before(async () => {
    ca = await CertificateAuthority.selfSigned({ trustDomain: TD });
  });

  it('issues on first use, shares concurrent first requests, and keys by SPIFFE ID', async () => {
    const m = new CertificateManager({ ca, ttlMs: 3600_000 });
    const certs = await Promise.all([m.get(WEATHER), m.get(WEATHER), m.get(WEATHER)]);
    assert.equal(new Set(certs.map((c) => c.serial)).size, 1);
    assert.equal(m.issuedTotal, 1);
    assert.equal((await m.get(WEATHER)).serial, certs[0]?.serial, 'cached');
    const gw = await m.get(gatewayId(TD, 'edge'));
    assert.equal(new X509Certificate(gw.certPem).subjectAltName, `URI:${gatewayId(TD, 'edge')}`);
    assert.equal(m.issuedTotal, 2);
    assert.deepEqual(
      m.certificates().map((c) => [c.spiffeId, c.notAfter.getTime()]),
      [
        [gatewayId(TD, 'edge'), gw.notAfter.getTime()],
        [WEATHER, certs[0]?.notAfter.getTime()],
      ],
    );
    // Renewal is planned at half-life by default (plus at most 5% jitter).
    const info = m.certificates()[1];
    assert.ok(info);
    const half = info.notAfter.getTime() - 1800_000;
    assert.ok(
      info.renewAt.getTime() <= half + 1000 && info.renewAt.getTime() >= half - 0.05 * 3600_000 - 1000,
      `renewAt ${info.renewAt.toISOString()}`,
    );
    m.stop();
  });

  it('renews before expiry (2 s TTL): onRotate fires while the old certificate is still valid', async () => {
    const m = new CertificateManager({ ca, ttlMs: 2000, jitter: 0 });
    const first = await m.get(WEATHER);
    const issuedAt = Date.now();
    const rotated = await nextRotation(m);
    assert.equal(rotated.spiffeId, WEATHER);
    assert.notEqual(rotated.cert.serial, first.serial);
    // At the moment of rotation the old certificate still has about half its life left.
    const lifetime = first.notAfter.getTime() - issuedAt;
    const left = first.notAfter.getTime() - rotated.at;
    assert.ok(left > 0.25 * lifetime, `old cert had ${left} ms of ${lifetime} left at rotation`);
    assert.ok(new Date(new X509Certificate(first.certPem).validTo).getTime() > rotated.at);
    assert.ok(new X509Certificate(rotated.cert.certPem).verify(new X509Certificate(ca.bundlePem).publicKey));
    assert.equal((await m.get(WEATHER)).serial, rotated.cert.serial, 'get returns the new certificate');
    assert.equal(m.rotationsTotal, 1);
    assert.equal(m.issuedTotal, 2);
    // And it keeps going.
    const again = await nextRotation(m);
    assert.notEqual(again.cert.serial, rotated.cert.serial);
    assert.ok(again.at < rotated.cert.notAfter.getTime());
    m.stop();
  });

  it('renews on get when the timer could not run in time (stalled event loop)', async () => {
    const m = new CertificateManager({ ca, ttlMs: 2000, jitter: 0 });
    const first = await m.get(WEATHER);
    const renewAt = m.certificates()[0]?.renewAt.getTime() ?? 0;
    while (Date.now() <= renewAt) {
      /* block the event loop past the renewal time */
    }
    const rotation = nextRotation(m);
    const now = await m.get(WEATHER);
    assert.notEqual(now.serial, first.serial);
    assert.equal((await rotation).cert.serial, now.serial);
    m.stop();
  });

  it('keeps the current certificate when renewal fails, reports it, and retries with backoff', async () => {
    let calls = 0;
    const flaky = {
      issue: (req: IssueRequest): Promise<IssuedCert> => {
        calls += 1;
        return calls === 2 || calls === 3 ? Promise.reject(new Error(`CA unavailable (${calls})`)) : ca.issue(req);
      },
    };
    const errors: string[] = [];
    const m = new CertificateManager({
      ca: flaky,
      ttlMs: 2000,
      jitter: 0,
      retryMs: 100,
      onError: (id, e) => errors.push(`${id}: ${e.message}`),
    });
    const first = await m.get(WEATHER);
    const rotated = await nextRotation(m);
    assert.deepEqual(errors, [`${WEATHER}: CA unavailable (2)`, `${WEATHER}: CA unavailable (3)`]);
    assert.equal(calls, 4);
    assert.equal(m.failuresTotal, 2);
    assert.notEqual(rotated.cert.serial, first.serial);
    assert.ok(rotated.at < first.notAfter.getTime(), 'renewed before the old one expired');
    m.stop();
  });

  it('a failed first issuance rejects get and leaves nothing behind', async () => {
    const m = new CertificateManager({ ca: { issue: () => Promise.reject(new Error('no CA')) } });
    await assert.rejects(m.get(WEATHER), /no CA/);
    assert.deepEqual(m.certificates(), []);
    await assert.rejects(m.get('spiffe://Bad/x'), /invalid SPIFFE ID/);
    m.stop();
  });

  it('renew() rotates now; release() and stop() end the timers', async () => {
    const seen: string[] = [];
    const m = new CertificateManager({ ca, ttlMs: 2000, jitter: 0, onRotate: (id) => seen.push(id) });
    const a = await m.get(WEATHER);
    const b = await m.renew(WEATHER);
    assert.notEqual(a.serial, b.serial);
    assert.deepEqual(seen, [WEATHER]);
    const gw = gatewayId(TD, 'edge');
    await m.get(gw);
    assert.equal(m.release(gw), true);
    assert.equal(m.release(gw), false);
    assert.deepEqual(
      m.certificates().map((c) => c.spiffeId),
      [WEATHER],
    );
    m.stop();
    await sleep(1600); // past the renewal time of both
    assert.deepEqual(seen, [WEATHER], 'no rotation after stop/release');
    await assert.rejects(m.get(WEATHER), /stopped/);
  });

  it('a throwing listener does not stop the others', async () => {
    const errors: Error[] = [];
    const m = new CertificateManager({
      ca,
      ttlMs: 60_000,
      onError: (_id, e) => errors.push(e),
      onRotate: () => {
        throw new Error('listener broke');
      },
    });
    let called = false;
    m.onRotate(() => {
      called = true;
    });
    await m.get(WEATHER);
    await m.renew(WEATHER);
    assert.equal(called, true);
    assert.deepEqual(
      errors.map((e) => e.message),
      ['listener broke'],
    );
    m.stop();
  });

  it('validates its options', () => {
    assert.throws(() => new CertificateManager({ ca, renewBelow: 0 }), /renewBelow must be between 0 and 1/);
    assert.throws(() => new CertificateManager({ ca, renewBelow: 1 }), /renewBelow must be between 0 and 1/);
    assert.throws(() => new CertificateManager({ ca, renewBelow: 0.7, jitter: 0.5 }), /jitter must be at least 0 and below/);
    assert.throws(() => new CertificateManager({ ca, ttlMs: 0 }), /ttlMs must be a positive/);
  });

  it("its timers are unref'd: a process holding certificates can exit", async () => {
    const script = `
      import { CertificateAuthority } from ${JSON.stringify(path.resolve(here, '../../control-plane/src/identity/ca.ts'))};
      import { CertificateManager } from ${JSON.stringify(path.resolve(here, '../../control-plane/src/identity/rotation.ts'))};
      const m = new CertificateManager({ ca: await CertificateAuthority.selfSigned({ trustDomain: 'x.test' }), ttlMs: 3600000 });
      await m.get('spiffe://x.test/mcp/a');
      console.log('issued');`;
    const started = Date.now();
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 15_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    assert.equal(out.trim(), 'issued');
    assert.ok(Date.now() - started < 15_000);
  });
});
