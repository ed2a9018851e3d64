// The mesh certificate authority: issues short-lived X.509-SVIDs (workload certificates whose URI SAN is a
// SPIFFE ID) that the control plane hands to Envoy over SDS.
//
// Two ways to get one:
// - `CertificateAuthority.selfSigned({trustDomain})`: an embedded ECDSA P-256 root made in memory (1 year).
//   Fine for a single control plane or for tests; it changes on every restart unless persisted with
//   `exportPem()`, and replicas must share one CA (use `fromPem`), or their proxies will not trust each other.
// - `CertificateAuthority.fromPem({certPem, keyPem, chainPem?, trustDomain})`: a provided root, or an
//   intermediate whose chain leads to the root that becomes the trust bundle.
//
// Leaves follow the X.509-SVID profile: exactly one URI SAN (the SPIFFE ID), CA:false, key usage
// digitalSignature (critical), EKU serverAuth + clientAuth, ECDSA P-256 key, notBefore backdated by
// CLOCK_SKEW_MS, notAfter never past the CA's own.
import { createHash, createPrivateKey, createPublicKey, KeyObject, randomBytes, webcrypto, X509Certificate as NodeCert } from 'node:crypto';
import { jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { parseSpiffeId, trustDomainId, validateTrustDomain } from './spiffe.ts';
import { x509, type X509 } from './x509.ts';

type CryptoKey = webcrypto.CryptoKey;
type SignAlgorithm = { name: string; hash?: string; namedCurve?: string };

export const DEFAULT_CA_VALIDITY_MS = 365 * 24 * 3600_000;
export const DEFAULT_LEAF_TTL_MS = 24 * 3600_000;
/** Leaves (and the embedded root) start this much in the past, for proxies whose clocks run behind. */
export const CLOCK_SKEW_MS = 60_000;
/** Shortest TTL `issue` accepts: anything shorter cannot be delivered and rotated in time. */
export const MIN_LEAF_TTL_MS = 1000;

const LEAF_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const LEAF_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const DNS_NAME = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export class CaError extends Error {
  override name = 'CaError';
}

export interface IssueRequest {
  readonly spiffeId: string;
  /** Default DEFAULT_LEAF_TTL_MS (24 h); cut short at the CA's own expiry. */
  readonly ttlMs?: number;
  /** Extra DNS SANs (for peers that check host names, e.g. the gateway's public name). */
  readonly dnsNames?: readonly string[];
}

/** A certificate the CA signed for a key it never saw (a workload's CSR). */
export interface SignedCert {
  readonly spiffeId: string;
  /** The leaf certificate alone (PEM). */
  readonly certPem: string;
  /**
   * Intermediate CA certificates between the leaf and the trust bundle, PEM, issuer first; `''` when a root
   * signed the leaf directly. What a peer is sent is `certPem + chainPem` (see sds.ts).
   */
  readonly chainPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Serial number, lower-case hex. */
  readonly serial: string;
}

/** A certificate with the key the CA made for it: only for the control plane's own identity and tests. */
export interface IssuedCert extends SignedCert {
  /** The leaf's private key, PKCS#8 PEM (ECDSA P-256). */
  readonly keyPem: string;
}

export interface CsrRequest {
  /** PKCS#10 request (PEM); only its public key and its signature (proof of possession) are used. */
  readonly csrPem: string;
  readonly spiffeId: string;
  readonly ttlMs?: number;
}

export interface SelfSignedOptions {
  readonly trustDomain: string;
  /** Default DEFAULT_CA_VALIDITY_MS (1 year). */
  readonly validityMs?: number;
}

export interface FromPemOptions {
  /** The signing CA certificate (a root, or an intermediate). Further certificates after it count as chain. */
  readonly certPem: string;
  /** Its private key: PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`), unencrypted. */
  readonly keyPem: string;
  /** Certificates from the CA's issuer up to the root, in any order. */
  readonly chainPem?: string;
  /**
   * Trust bundle to publish. Default: the self-signed root the chain ends at. Needed only when the chain
   * stops short of a root, or to publish more than one root (e.g. old + new while rotating the root).
   */
  readonly bundlePem?: string;
  readonly trustDomain: string;
}

interface CaParts {
  trustDomain: string;
  cert: X509.X509Certificate;
  key: CryptoKey;
  signing: SignAlgorithm;
  intermediatesPem: string;
  bundlePem: string;
  /** Authority key id to stamp on leaves (the CA's subject key id). */
  authorityKeyId: string;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  /** Trust bundle (PEM): the root(s) a peer must trust to accept this CA's leaves. */
  readonly bundlePem: string;
  /** The signing CA certificate (PEM). */
  readonly certPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  #cert: X509.X509Certificate;
  #key: CryptoKey;
  #signing: SignAlgorithm;
  #intermediatesPem: string;
  #authorityKeyId: string;
  #issued = 0;

  private constructor(p: CaParts) {
    this.trustDomain = p.trustDomain;
    this.#cert = p.cert;
    this.#key = p.key;
    this.#signing = p.signing;
    this.#intermediatesPem = p.intermediatesPem;
    this.#authorityKeyId = p.authorityKeyId;
    this.bundlePem = p.bundlePem;
    this.certPem = normalizePem(p.cert.toString('pem'));
    this.notBefore = p.cert.notBefore;
    this.notAfter = p.cert.notAfter;
  }

  /** How many leaf certificates this CA has signed. */
  get issuedCount(): number {
    return this.#issued;
  }

  /** An in-memory ECDSA P-256 root for `trustDomain`, valid for `validityMs` (1 year). */
  static async selfSigned(opts: SelfSignedOptions): Promise<CertificateAuthority> {
    const trustDomain = validateTrustDomain(opts.trustDomain);
    const validityMs = opts.validityMs ?? DEFAULT_CA_VALIDITY_MS;
    if (!Number.isFinite(validityMs) || validityMs < MIN_LEAF_TTL_MS)
      throw new CaError(`CA validityMs must be at least ${MIN_LEAF_TTL_MS} (got ${validityMs})`);
    const keys = await webcrypto.subtle.generateKey(LEAF_KEY, true, ['sign', 'verify']);
    const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=MCP Mesh CA ${ski.keyId.slice(0, 8)}, O=MCP Mesh`,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + validityMs),
      keys,
      signingAlgorithm: LEAF_SIGN,
      extensions: [
        // pathLen 0: this root signs leaves only.
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        ski,
        // X.509-SVID: a signing certificate should carry its trust domain's SPIFFE ID.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(trustDomain) }], false),
      ],
    });
    return new CertificateAuthority({
      trustDomain,
      cert,
      key: keys.privateKey,
      signing: LEAF_SIGN,
      intermediatesPem: '',
      bundlePem: normalizePem(cert.toString('pem')),
      authorityKeyId: ski.keyId,
    });
  }

  /**
   * A CA from a provided certificate and key. Refuses, with the reason, a certificate that is not a CA
   * (basicConstraints CA:TRUE and a critical-or-not keyUsage with keyCertSign), a key that does not match
   * it, a CA or chain certificate that is expired or not yet valid, a chain that does not link up, and a
   * CA whose SPIFFE ID names another trust domain.
   */
  static async fromPem(opts: FromPemOptions): Promise<CertificateAuthority> {
    const trustDomain = validateTrustDomain(opts.trustDomain);
    const given = splitPem(opts.certPem, 'certPem');
    const [caNode, ...extra] = given;
    if (!caNode) throw new CaError('certPem contains no PEM certificate');
    const chain = [...extra, ...(opts.chainPem !== undefined && opts.chainPem.trim() !== '' ? splitPem(opts.chainPem, 'chainPem') : [])];
    const now = Date.now();
    const describe = (c: NodeCert): string => `"${c.subject.replaceAll('\n', ', ')}"`;

    checkCaCert(caNode, 'CA certificate', now);
    const peculiar = new x509.X509Certificate(caNode.raw);
    const sanIds = spiffeUris(peculiar);
    for (const id of sanIds) {
      const td = safeTrustDomain(id);
      if (td !== undefined && td !== trustDomain) {
        throw new CaError(`CA certificate ${describe(caNode)} carries SPIFFE ID ${id}, which is not in trust domain "${trustDomain}"`);
      }
    }

    const keyObject = loadPrivateKey(opts.keyPem);
    if (!caNode.checkPrivateKey(keyObject)) {
      throw new CaError(`the private key does not match the CA certificate ${describe(caNode)} (its public key is different)`);
    }
    const { signing, importAlg } = signingFor(keyObject);
    const key = await webcrypto.subtle.importKey('pkcs8', keyObject.export({ type: 'pkcs8', format: 'der' }), importAlg, true, ['sign']);

    // Walk from the CA up through the chain to a self-signed root.
    const path: NodeCert[] = [caNode];
    const unused = new Set(chain);
    let top = caNode;
    while (!isSelfSigned(top)) {
      const issuer = [...unused].find((c) => top.checkIssued(c) && top.verify(c.publicKey));
      if (!issuer) break;
      unused.delete(issuer);
      checkCaCert(issuer, 'chain certificate', now);
      path.push(issuer);
      top = issuer;
    }
    if (unused.size > 0) {
      const stray = [...unused].map(describe).join(', ');
      throw new CaError(
        `chainPem certificate(s) ${stray} are not on the path from the CA certificate to its root (expected, in any order: the CA's issuer, its issuer, and so on)`,
      );
    }
    const intermediates = path.filter((c) => !isSelfSigned(c));
    let bundlePem: string;
    if (opts.bundlePem !== undefined && opts.bundlePem.trim() !== '') {
      const bundle = splitPem(opts.bundlePem, 'bundlePem');
      const anchored = bundle.some((b) => b.fingerprint256 === top.fingerprint256 || (top.checkIssued(b) && top.verify(b.publicKey)));
      if (!anchored) throw new CaError(`bundlePem does not contain the root of the CA's chain (${describe(top)}) nor its issuer`);
      bundlePem = bundle.map((c) => normalizePem(c.toString())).join('');
    } else if (isSelfSigned(top)) {
      bundlePem = normalizePem(top.toString());
    } else {
      throw new CaError(
        `the CA certificate ${describe(caNode)} is not self-signed and its chain stops at ${describe(top)}, issued by "${top.issuer.replaceAll('\n', ', ')}": add that issuer (up to the root) to chainPem, or give the trust bundle as bundlePem`,
      );
    }
    const skiExt = peculiar.getExtension(x509.SubjectKeyIdentifierExtension);
    const authorityKeyId = skiExt?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(peculiar.publicKey, false)).keyId;
    return new CertificateAuthority({
      trustDomain,
      cert: peculiar,
      key,
      signing,
      intermediatesPem: intermediates.map((c) => normalizePem(c.toString())).join(''),
      bundlePem,
      authorityKeyId,
    });
  }

  /** Issues an X.509-SVID for `spiffeId` (which must be in this CA's trust domain) with a fresh P-256 key. */
  async issue(req: IssueRequest): Promise<IssuedCert> {
    this.#checkRequest(req.spiffeId, req.ttlMs, req.dnsNames);
    const keys = await webcrypto.subtle.generateKey(LEAF_KEY, true, ['sign', 'verify']);
    const signed = await this.#sign(keys.publicKey, req.spiffeId, req.ttlMs ?? DEFAULT_LEAF_TTL_MS, [...(req.dnsNames ?? [])]);
    return { ...signed, keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString() };
  }

  /**
   * Signs a workload's CSR for `spiffeId`: the key stays with the workload. The CSR must be signed by its own
   * key (proof of possession) and hold an ECDSA P-256/P-384 or RSA 2048-4096 key; its subject and requested
   * extensions are ignored, the CA alone decides what the certificate says. Whether the caller may have that
   * identity is the caller's business (attestation), not the CA's.
   */
  async signCsr(req: CsrRequest): Promise<SignedCert> {
    this.#checkRequest(req.spiffeId, req.ttlMs, []);
    const csr = parseCsr(req.csrPem);
    if (!(await csr.verify())) throw new CaError("the CSR's signature does not verify with its own public key (no proof of possession)");
    checkCsrKey(csr);
    return this.#sign(csr.publicKey, req.spiffeId, req.ttlMs ?? DEFAULT_LEAF_TTL_MS, []);
  }

  /** A JWT signed with the CA's key (join tokens): every replica sharing the CA can verify it. */
  async signJwt(claims: JWTPayload, typ: string): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: jwsAlg(this.#signing), typ, kid: this.#authorityKeyId }).sign(this.#key);
  }

  /** Verifies a JWT from signJwt: signature by this CA's key, `typ`, and the registered claims jose checks (exp, nbf). */
  async verifyJwt(token: string, typ: string, audience: string): Promise<JWTPayload> {
    const key = new NodeCert(this.certPem).publicKey;
    const { payload, protectedHeader } = await jwtVerify(token, key, { audience, algorithms: [jwsAlg(this.#signing)], clockTolerance: 5 });
    if (protectedHeader.typ !== typ) throw new CaError(`token type is ${JSON.stringify(protectedHeader.typ ?? null)}, not ${typ}`);
    return payload;
  }

  #checkRequest(spiffeId: string, ttlMs: number | undefined, dnsNames: readonly string[] | undefined): void {
    const { trustDomain } = parseSpiffeId(spiffeId);
    if (trustDomain !== this.trustDomain) {
      throw new CaError(`cannot issue ${spiffeId}: this CA serves trust domain "${this.trustDomain}", not "${trustDomain}"`);
    }
    const ttl = ttlMs ?? DEFAULT_LEAF_TTL_MS;
    if (!Number.isFinite(ttl) || ttl < MIN_LEAF_TTL_MS) throw new CaError(`ttlMs must be at least ${MIN_LEAF_TTL_MS} ms (got ${ttl})`);
    for (const d of dnsNames ?? []) {
      if (d.length > 253 || !DNS_NAME.test(d)) throw new CaError(`cannot issue ${spiffeId}: "${d}" is not a valid DNS name`);
    }
    if (this.notAfter.getTime() <= Date.now())
      throw new CaError(`cannot issue ${spiffeId}: the CA certificate expired at ${this.notAfter.toISOString()}`);
  }

  async #sign(publicKey: CryptoKey | X509.PublicKey, spiffeId: string, ttlMs: number, dnsNames: string[]): Promise<SignedCert> {
    const now = Date.now();
    const caNotBefore = this.notBefore.getTime();
    const caNotAfter = this.notAfter.getTime();
    // X.509 times have one-second resolution: round outwards (the CA's own times are whole seconds already),
    // so a leaf lives at least ttlMs unless the CA expires first.
    const notBefore = new Date(floorSecond(Math.max(now - CLOCK_SKEW_MS, caNotBefore)));
    const notAfter = new Date(Math.min(Math.ceil((now + ttlMs) / 1000) * 1000, caNotAfter));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: dnsNames[0] !== undefined && dnsNames[0].length <= 64 ? `CN=${dnsNames[0]}, O=MCP Mesh` : 'O=MCP Mesh',
      issuer: this.#cert.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.#key,
      signingAlgorithm: this.#signing,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension(
          [{ type: 'url', value: spiffeId }, ...dnsNames.map((value) => ({ type: 'dns' as const, value }))],
          false,
        ),
        await x509.SubjectKeyIdentifierExtension.create(publicKey, false),
        new x509.AuthorityKeyIdentifierExtension(this.#authorityKeyId, false),
      ],
    });
    this.#issued += 1;
    return {
      spiffeId,
      certPem: normalizePem(cert.toString('pem')),
      chainPem: this.#intermediatesPem,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      serial: cert.serialNumber.toLowerCase(),
    };
  }

  /** The CA certificate and key as PEM, e.g. to persist the embedded CA across restarts (store with mode 0600). */
  exportPem(): { certPem: string; keyPem: string } {
    return { certPem: this.certPem, keyPem: KeyObject.from(this.#key).export({ type: 'pkcs8', format: 'pem' }).toString() };
  }
}

function jwsAlg(signing: SignAlgorithm): string {
  if (signing.name === 'ECDSA') return signing.hash === 'SHA-384' ? 'ES384' : signing.hash === 'SHA-512' ? 'ES512' : 'ES256';
  if (signing.name === 'Ed25519') return 'EdDSA';
  return 'RS256';
}

function parseCsr(pem: string): X509.Pkcs10CertificateRequest {
  if (!/-----BEGIN CERTIFICATE REQUEST-----/.test(pem))
    throw new CaError('not a PEM certificate request ("-----BEGIN CERTIFICATE REQUEST-----")');
  try {
    return new x509.Pkcs10CertificateRequest(pem);
  } catch (e) {
    throw new CaError(`the CSR cannot be parsed: ${(e as Error).message}`);
  }
}

/** Keys Envoy and gRPC handle everywhere; anything weaker or exotic is refused with the reason. */
function checkCsrKey(csr: X509.Pkcs10CertificateRequest): void {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (e) {
    throw new CaError(`the CSR's public key cannot be read: ${(e as Error).message}`);
  }
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'secp384r1') return;
    throw new CaError(`the CSR's key uses EC curve ${curve ?? '(unknown)'}; use P-256 or P-384`);
  }
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits >= 2048 && bits <= 4096) return;
    throw new CaError(`the CSR's key is RSA-${bits}; use 2048 to 4096 bits`);
  }
  throw new CaError(`the CSR's key type ${type ?? '(unknown)'} is not supported; use ECDSA P-256/P-384 or RSA`);
}

/** SHA-256 (hex) of a CSR's SubjectPublicKeyInfo: what single-use credentials bind to. */
export function csrKeyHash(csrPem: string): string {
  return createHash('sha256')
    .update(Buffer.from(parseCsr(csrPem).publicKey.rawData))
    .digest('hex');
}

function floorSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/** 128 random bits as a positive, non-zero DER INTEGER (hex). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x01;
  return b.toString('hex');
}

function normalizePem(pem: string): string {
  const t = pem.replace(/\r\n/g, '\n').trim();
  return `${t}\n`;
}

function splitPem(text: string, what: string): NodeCert[] {
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new CaError(`${what} contains no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  return blocks.map((b, i) => {
    try {
      return new NodeCert(b);
    } catch (e) {
      throw new CaError(`${what}: certificate ${i + 1} cannot be parsed: ${(e as Error).message}`);
    }
  });
}

function isSelfSigned(c: NodeCert): boolean {
  return c.checkIssued(c) && c.verify(c.publicKey);
}

function checkCaCert(c: NodeCert, what: string, now: number): void {
  const name = `${what} "${c.subject.replaceAll('\n', ', ')}"`;
  const cert = new x509.X509Certificate(c.raw);
  // (Node's X509Certificate.ca also folds in keyUsage; look at basicConstraints itself for a precise reason.)
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca !== true)
    throw new CaError(`${name} is not a CA certificate (basicConstraints CA:TRUE is missing)`);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku)
    throw new CaError(
      `${name} has no keyUsage extension; a signing certificate must have keyUsage with keyCertSign (X.509-SVID, RFC 5280 4.2.1.3)`,
    );
  if ((ku.usages & x509.KeyUsageFlags.keyCertSign) === 0)
    throw new CaError(`${name} may not sign certificates: its keyUsage lacks keyCertSign`);
  const notAfter = new Date(c.validTo);
  const notBefore = new Date(c.validFrom);
  if (notAfter.getTime() <= now) throw new CaError(`${name} expired at ${notAfter.toISOString()}`);
  if (notBefore.getTime() > now + CLOCK_SKEW_MS) throw new CaError(`${name} is not valid until ${notBefore.toISOString()}`);
}

function spiffeUris(cert: X509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return [];
  return san.names
    .toJSON()
    .filter((n) => n.type === 'url' && n.value.toLowerCase().startsWith('spiffe://'))
    .map((n) => n.value);
}

function safeTrustDomain(id: string): string | undefined {
  try {
    return parseSpiffeId(id).trustDomain;
  } catch {
    return undefined;
  }
}

function loadPrivateKey(pem: string): KeyObject {
  if (/ENCRYPTED/.test(pem)) throw new CaError('the CA private key is encrypted; provide it decrypted (PKCS#8, SEC1 or PKCS#1 PEM)');
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new CaError(`the CA private key cannot be read (expected an unencrypted PEM private key): ${(e as Error).message}`);
  }
}

function signingFor(key: KeyObject): { signing: SignAlgorithm; importAlg: SignAlgorithm } {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const map: Record<string, [string, string]> = {
        prime256v1: ['P-256', 'SHA-256'],
        secp384r1: ['P-384', 'SHA-384'],
        secp521r1: ['P-521', 'SHA-512'],
      };
      const m = curve !== undefined ? map[curve] : undefined;
      if (!m) throw new CaError(`the CA key uses EC curve ${curve ?? '(unknown)'}; supported: P-256, P-384, P-521`);
      return { signing: { name: 'ECDSA', hash: m[1] }, importAlg: { name: 'ECDSA', namedCurve: m[0] } };
    }
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < 2048) throw new CaError(`the CA key is RSA-${bits}; at least 2048 bits are required`);
      const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
      return { signing: alg, importAlg: alg };
    }
    case 'ed25519':
      return { signing: { name: 'Ed25519' }, importAlg: { name: 'Ed25519' } };
    default:
      throw new CaError(
        `the CA key type ${key.asymmetricKeyType ?? '(unknown)'} is not supported (use ECDSA P-256/P-384/P-521, RSA >= 2048 or Ed25519)`,
      );
  }
}
