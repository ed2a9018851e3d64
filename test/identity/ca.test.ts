// The mesh CA: what a leaf looks like (X.509-SVID profile), that it chains to the CA, and that fromPem
// refuses unusable CA material with a reason.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CaError, CertificateAuthority, CLOCK_SKEW_MS, DEFAULT_LEAF_TTL_MS } from '../../control-plane/src/identity/ca.ts';
import { sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { x509 } from '../../control-plane/src/identity/x509.ts';
import { caWithValidity, OpensslPki } from './pki.ts';
import { INSTALL, skipUnless } from '../helpers/tools.ts';
import { rmSync } from 'node:fs';

// Checks against the openssl CLI (OpensslPki) skip without it; the rest runs.
const skipOpenssl = skipUnless('openssl', INSTALL.openssl);

const TD = 'mcpmesh.test';
const WEATHER = sidecarId(TD, 'weather');

function keyUsage(pem: string): number | undefined {
  return new x509.X509Certificate(pem).getExtension(x509.KeyUsagesExtension)?.usages;
}

describe('CertificateAuthority.selfSigned + issue', () => {
  let ca: CertificateAuthority;
  before(async () => {
    ca = await CertificateAuthority.selfSigned({ trustDomain: TD });
  });

  it('makes an ECDSA P-256 root CA, valid for a year, carrying the trust domain ID', () => {
    const root = new X509Certificate(ca.bundlePem);
    assert.equal(ca.certPem, ca.bundlePem);
    assert.equal(root.ca, true);
    assert.ok(root.checkIssued(root) && root.verify(root.publicKey), 'self-signed');
    assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(root.subjectAltName, `URI:spiffe://${TD}`);
    const ku = keyUsage(ca.bundlePem) ?? 0;
    assert.ok(ku & x509.KeyUsageFlags.keyCertSign && ku & x509.KeyUsageFlags.cRLSign);
    const days = (new Date(root.validTo).getTime() - Date.now()) / 86400_000;
    assert.ok(days > 364 && days <= 365, `valid for ${days} days`);
  });

  it('issues an X.509-SVID leaf that chains to the CA', async () => {
    const t0 = Date.now();
    const c = await ca.issue({ spiffeId: WEATHER });
    const leaf = new X509Certificate(c.certPem);
    const root = new X509Certificate(ca.bundlePem);

    assert.equal(c.spiffeId, WEATHER);
    assert.equal(leaf.subjectAltName, `URI:${WEATHER}`);
    assert.equal(leaf.issuer, root.subject);
    assert.ok(leaf.checkIssued(root), 'checkIssued');
    assert.ok(leaf.verify(root.publicKey), 'signature verifies with the CA key');
    assert.equal(leaf.ca, false);
    // Node's X509Certificate.keyUsage is in fact the extended key usage.
    assert.deepEqual([...(leaf.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.equal(keyUsage(c.certPem), x509.KeyUsageFlags.digitalSignature);
    const bc = new x509.X509Certificate(c.certPem).getExtension(x509.BasicConstraintsExtension);
    assert.equal(bc?.ca, false);
    assert.equal(bc?.critical, true);

    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(leaf.checkPrivateKey(createPrivateKey(c.keyPem)), 'key matches');
    assert.match(c.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(c.chainPem, '', 'a root signs directly: no intermediates');
    assert.equal(c.serial, leaf.serialNumber.toLowerCase());

    // Validity: backdated for clock skew, 24 h by default; the reported dates are the certificate's.
    assert.equal(c.notBefore.getTime(), new Date(leaf.validFrom).getTime());
    assert.equal(c.notAfter.getTime(), new Date(leaf.validTo).getTime());
    assert.ok(Math.abs(c.notBefore.getTime() - (t0 - CLOCK_SKEW_MS)) < 2000, `notBefore ${c.notBefore.toISOString()}`);
    assert.ok(Math.abs(c.notAfter.getTime() - (t0 + DEFAULT_LEAF_TTL_MS)) < 2000, `notAfter ${c.notAfter.toISOString()}`);
  });

  it('passes openssl verify -x509_strict for client and server use', { skip: skipOpenssl }, async () => {
    const pki = new OpensslPki();
    try {
      const c = await ca.issue({ spiffeId: WEATHER, ttlMs: 600_000, dnsNames: ['weather.mesh.internal'] });
      pki.write('bundle.pem', ca.bundlePem);
      pki.write('leaf.pem', c.certPem);
      for (const purpose of ['sslclient', 'sslserver']) {
        assert.match(pki.run(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', 'bundle.pem', 'leaf.pem']), /leaf.pem: OK/);
      }
      assert.equal(new X509Certificate(c.certPem).subjectAltName, `URI:${WEATHER}, DNS:weather.mesh.internal`);
    } finally {
      rmSync(pki.dir, { recursive: true, force: true });
    }
  });

  it('gives every leaf a fresh key and serial, and counts them', async () => {
    const before = ca.issuedCount;
    const [a, b] = await Promise.all([ca.issue({ spiffeId: WEATHER, ttlMs: 60_000 }), ca.issue({ spiffeId: WEATHER, ttlMs: 60_000 })]);
    assert.ok(a && b);
    assert.notEqual(a.serial, b.serial);
    assert.notEqual(a.keyPem, b.keyPem);
    assert.equal(ca.issuedCount, before + 2);
    assert.ok(a.notAfter.getTime() - Date.now() >= 58_000 && a.notAfter.getTime() - Date.now() <= 61_000);
  });

  it('refuses bad requests with the reason', async () => {
    await assert.rejects(
      ca.issue({ spiffeId: 'spiffe://other.test/mcp/weather' }),
      /this CA serves trust domain "mcpmesh.test", not "other.test"/,
    );
    await assert.rejects(ca.issue({ spiffeId: 'spiffe://mcpmesh.test/a//b' }), /invalid SPIFFE ID .*segment is empty/);
    await assert.rejects(ca.issue({ spiffeId: WEATHER, ttlMs: 10 }), /ttlMs must be at least 1000 ms \(got 10\)/);
    await assert.rejects(ca.issue({ spiffeId: WEATHER, dnsNames: ['bad_name!'] }), /"bad_name!" is not a valid DNS name/);
  });

  it('never issues past the CA expiry', async () => {
    const short = await CertificateAuthority.selfSigned({ trustDomain: TD, validityMs: 30_000 });
    const c = await short.issue({ spiffeId: WEATHER, ttlMs: 3600_000 });
    assert.equal(c.notAfter.getTime(), short.notAfter.getTime());
  });

  it('exports its key so the embedded CA can be persisted and reloaded', async () => {
    const { certPem, keyPem } = ca.exportPem();
    const again = await CertificateAuthority.fromPem({ certPem, keyPem, trustDomain: TD });
    assert.equal(again.bundlePem, ca.bundlePem);
    const c = await again.issue({ spiffeId: WEATHER });
    assert.ok(new X509Certificate(c.certPem).verify(new X509Certificate(ca.bundlePem).publicKey));
  });
});

describe('CertificateAuthority.fromPem', () => {
  const pki = new OpensslPki();
  after(() => rmSync(pki.dir, { recursive: true, force: true }));

  it('accepts an openssl-made root (EC P-384, RSA 2048, Ed25519) and issues leaves that chain to it', { skip: skipOpenssl }, async () => {
    for (const key of ['ec:P-384', 'rsa:2048', 'ed25519']) {
      const name = `root-${key.replace(':', '-')}`;
      const root = pki.root(name, { key });
      const ca = await CertificateAuthority.fromPem({ ...root, trustDomain: TD });
      const c = await ca.issue({ spiffeId: WEATHER });
      const rootCert = new X509Certificate(root.certPem);
      const leaf = new X509Certificate(c.certPem);
      assert.ok(leaf.checkIssued(rootCert) && leaf.verify(rootCert.publicKey), key);
      assert.equal(c.chainPem, '');
      assert.equal(new X509Certificate(ca.bundlePem).fingerprint256, rootCert.fingerprint256);
      pki.write('b.pem', ca.bundlePem);
      pki.write('l.pem', c.certPem);
      assert.match(pki.run(['verify', '-x509_strict', '-CAfile', 'b.pem', 'l.pem']), /OK/, key);
    }
  });

  it('accepts an intermediate with its chain: leaves carry the intermediate, the bundle is the root', { skip: skipOpenssl }, async () => {
    const root = pki.root('chain-root');
    const inter = pki.signed('chain-inter', 'chain-root');
    const ca = await CertificateAuthority.fromPem({ ...inter, chainPem: root.certPem, trustDomain: TD });
    assert.equal(new X509Certificate(ca.bundlePem).fingerprint256, new X509Certificate(root.certPem).fingerprint256);
    const c = await ca.issue({ spiffeId: WEATHER });
    assert.equal(new X509Certificate(c.chainPem).fingerprint256, new X509Certificate(inter.certPem).fingerprint256);
    const leaf = new X509Certificate(c.certPem);
    assert.ok(leaf.checkIssued(new X509Certificate(inter.certPem)) && leaf.verify(new X509Certificate(inter.certPem).publicKey));
    pki.write('b.pem', ca.bundlePem);
    pki.write('u.pem', c.chainPem);
    pki.write('l.pem', c.certPem);
    assert.match(pki.run(['verify', '-x509_strict', '-CAfile', 'b.pem', '-untrusted', 'u.pem', 'l.pem']), /OK/);
    // The same, with the chain appended to certPem instead (a "fullchain" file).
    const again = await CertificateAuthority.fromPem({ certPem: inter.certPem + root.certPem, keyPem: inter.keyPem, trustDomain: TD });
    assert.equal(again.bundlePem, ca.bundlePem);
  });

  const rejects = async (opts: Parameters<typeof CertificateAuthority.fromPem>[0], why: RegExp): Promise<void> => {
    await assert.rejects(CertificateAuthority.fromPem(opts), (e: unknown) => {
      assert.ok(e instanceof CaError, `expected CaError, got ${String(e)}`);
      assert.match(e.message, why);
      return true;
    });
  };

  it('refuses a certificate that is not a CA', { skip: skipOpenssl }, async () => {
    const ca = await CertificateAuthority.selfSigned({ trustDomain: TD });
    const leaf = await ca.issue({ spiffeId: WEATHER });
    await rejects(
      { certPem: leaf.certPem, keyPem: leaf.keyPem, trustDomain: TD },
      /CA certificate "O=MCP Mesh" is not a CA certificate \(basicConstraints CA:TRUE is missing\)/,
    );
    const server = pki.signed('plain-server', 'chain-root', {
      ext: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n',
    });
    await rejects({ ...server, trustDomain: TD }, /is not a CA certificate/);
  });

  it('refuses a CA without keyCertSign, or without keyUsage at all', { skip: skipOpenssl }, async () => {
    await rejects(
      {
        ...pki.root('no-certsign', { ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature,cRLSign'] }),
        trustDomain: TD,
      },
      /"O=Test Org, CN=no-certsign" may not sign certificates: its keyUsage lacks keyCertSign/,
    );
    await rejects(
      { ...pki.root('no-ku', { ext: ['basicConstraints=critical,CA:TRUE'] }), trustDomain: TD },
      /has no keyUsage extension; a signing certificate must have keyUsage with keyCertSign/,
    );
  });

  it('refuses a key that does not match', { skip: skipOpenssl }, async () => {
    const a = pki.root('mismatch-a');
    const b = pki.root('mismatch-b');
    await rejects(
      { certPem: a.certPem, keyPem: b.keyPem, trustDomain: TD },
      /the private key does not match the CA certificate "O=Test Org, CN=mismatch-a"/,
    );
  });

  it('refuses an expired or not yet valid CA', async () => {
    const day = 86400_000;
    const expired = await caWithValidity(new Date(Date.now() - 10 * day), new Date(Date.now() - day));
    await rejects({ ...expired, trustDomain: TD }, /CA certificate "CN=window test CA" expired at \d{4}-\d\d-\d\dT/);
    const future = await caWithValidity(new Date(Date.now() + day), new Date(Date.now() + 10 * day));
    await rejects({ ...future, trustDomain: TD }, /is not valid until/);
  });

  it('refuses broken chains, stray chain certificates and unusable input', { skip: skipOpenssl }, async () => {
    const root = pki.root('bc-root');
    const inter = pki.signed('bc-inter', 'bc-root');
    await rejects(
      { ...inter, trustDomain: TD },
      /is not self-signed and its chain stops at .*add that issuer \(up to the root\) to chainPem, or give the trust bundle as bundlePem/,
    );
    const stray = pki.root('bc-stray');
    await rejects(
      { ...inter, chainPem: root.certPem + stray.certPem, trustDomain: TD },
      /chainPem certificate\(s\) "O=Test Org, CN=bc-stray" are not on the path/,
    );
    await rejects({ certPem: 'not a pem', keyPem: root.keyPem, trustDomain: TD }, /certPem contains no PEM certificate/);
    await rejects({ certPem: root.certPem, keyPem: 'garbage', trustDomain: TD }, /the CA private key cannot be read/);
    pki.run(['pkey', '-in', 'bc-root.key', '-aes256', '-passout', 'pass:secret', '-out', 'enc.key']);
    await rejects({ certPem: root.certPem, keyPem: pki.read('enc.key'), trustDomain: TD }, /encrypted; provide it decrypted/);
    await assert.rejects(
      CertificateAuthority.fromPem({ ...root, trustDomain: 'Bad.Domain' }),
      /invalid SPIFFE trust domain: .*must be lower case/,
    );
  });

  it('takes an explicit bundle for a chain that stops short of the root', { skip: skipOpenssl }, async () => {
    const root = pki.root('eb-root');
    const inter = pki.signed('eb-inter', 'eb-root');
    const ca = await CertificateAuthority.fromPem({ ...inter, bundlePem: root.certPem, trustDomain: TD });
    assert.equal(new X509Certificate(ca.bundlePem).fingerprint256, new X509Certificate(root.certPem).fingerprint256);
    assert.equal(
      new X509Certificate((await ca.issue({ spiffeId: WEATHER })).chainPem).fingerprint256,
      new X509Certificate(inter.certPem).fingerprint256,
    );
    await rejects(
      { ...inter, bundlePem: pki.root('eb-other').certPem, trustDomain: TD },
      /bundlePem does not contain the root of the CA's chain/,
    );
  });

  it('refuses a CA whose SPIFFE ID is in another trust domain', async () => {
    const other = await CertificateAuthority.selfSigned({ trustDomain: 'other.test' });
    await rejects(
      { ...other.exportPem(), trustDomain: TD },
      /carries SPIFFE ID spiffe:\/\/other.test, which is not in trust domain "mcpmesh.test"/,
    );
  });
});
