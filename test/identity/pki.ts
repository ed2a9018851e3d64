// Externally made CA material for the identity tests: the openssl CLI (what an operator would use) for
// roots and intermediates, and @peculiar/x509 for validity windows openssl 3.0 cannot set (expired, future).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { webcrypto } from 'node:crypto';
import { x509 } from '../../control-plane/src/identity/x509.ts';

export class OpensslPki {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-identity-'));

  run(args: string[]): string {
    return execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  }

  read(file: string): string {
    return readFileSync(path.join(this.dir, file), 'utf8');
  }

  write(file: string, text: string): string {
    const p = path.join(this.dir, file);
    writeFileSync(p, text);
    return p;
  }

  /** `-newkey` arguments for a key spec: `ec:P-256`, `ec:P-384`, `rsa:2048`, `ed25519`. */
  private newkey(spec: string): string[] {
    const [kind, param] = spec.split(':');
    if (kind === 'ed25519') return ['-newkey', 'ed25519'];
    return kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${param}`] : ['-newkey', `rsa:${param}`];
  }

  /** A self-signed root. `ext` are -addext values; default: a proper CA. */
  root(name: string, opts: { key?: string; ext?: string[] } = {}): { certPem: string; keyPem: string } {
    const ext = opts.ext ?? ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];
    // -config /dev/null... is not portable; an empty config file keeps openssl.cnf's v3_ca defaults out.
    this.write('empty.cnf', '[req]\ndistinguished_name=dn\n[dn]\n');
    this.run([
      'req',
      '-config',
      'empty.cnf',
      '-x509',
      ...this.newkey(opts.key ?? 'ec:P-256'),
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '30',
      '-subj',
      `/O=Test Org/CN=${name}`,
      ...ext.flatMap((e) => ['-addext', e]),
    ]);
    return { certPem: this.read(`${name}.pem`), keyPem: this.read(`${name}.key`) };
  }

  /** A certificate for a new key, signed by `issuer` (a name given to root() or signed() before). */
  signed(name: string, issuer: string, opts: { key?: string; ext?: string } = {}): { certPem: string; keyPem: string } {
    const ext =
      opts.ext ??
      'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n';
    this.write('empty.cnf', '[req]\ndistinguished_name=dn\n[dn]\n');
    this.run([
      'req',
      '-config',
      'empty.cnf',
      ...this.newkey(opts.key ?? 'ec:P-256'),
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/O=Test Org/CN=${name}`,
    ]);
    this.write(`${name}.ext`, ext);
    this.run([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${issuer}.pem`,
      '-CAkey',
      `${issuer}.key`,
      '-set_serial',
      String(Date.now()),
      '-out',
      `${name}.pem`,
      '-days',
      '30',
      '-extfile',
      `${name}.ext`,
    ]);
    return { certPem: this.read(`${name}.pem`), keyPem: this.read(`${name}.key`) };
  }
}

/** A self-signed CA (proper extensions) with the given validity window, made with @peculiar/x509. */
export async function caWithValidity(notBefore: Date, notAfter: Date): Promise<{ certPem: string; keyPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=window test CA',
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return {
    certPem: cert.toString('pem'),
    keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join('\n')}\n-----END PRIVATE KEY-----\n`,
  };
}
