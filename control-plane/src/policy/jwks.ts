// An inline JWKS read the way Envoy's jwt_authn reads it (source/common/jwt/jwks.cc, formerly
// google/jwt_verify_lib src/jwks.cc: Jwks::createFromJwksCore and extractJwk), so a key set Envoy would
// refuse, which NACKs the whole gateway listener (jwt_authn/filter_factory.cc, validateJwtConfig:
// "Provider '<name>' in jwt_authn config has invalid local jwks: <status>"), is caught before it is pushed.
import { createPublicKey } from 'node:crypto';

/** One key of the set: usable, or why Envoy skips it (Envoy's own status text). */
export type JwkVerdict = { readonly ok: true; readonly kty: string } | { readonly ok: false; readonly reason: string };

export interface JwksReading {
  /** Envoy's verdict on the whole set: undefined = usable (at least one key), else its status text. */
  readonly error?: string;
  /** Per element of `keys` (non-objects included, which Envoy skips silently). */
  readonly keys: readonly JwkVerdict[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** absl::WebSafeBase64Unescape: base64url, padding optional. */
function base64url(v: unknown): Buffer | undefined {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(v)) return undefined;
  return Buffer.from(v.replace(/=+$/, ''), 'base64url');
}

const EC_CURVES: Readonly<Record<string, string>> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

function fail(reason: string): JwkVerdict {
  return { ok: false, reason };
}

/** Node must be able to build the public key too: Envoy checks RSA keys (RSA_check_key) and EC points. */
function loadable(jwk: Obj, reason: string): JwkVerdict | undefined {
  try {
    createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    return undefined;
  } catch {
    return fail(reason);
  }
}

function rsa(jwk: Obj, alg: string | undefined): JwkVerdict {
  if (alg !== undefined && !alg.startsWith('RS') && !alg.startsWith('PS'))
    return fail('[alg] is not started with [RS] or [PS] for an RSA key');
  if (typeof jwk['n'] !== 'string') return fail('[n] field is missing for a RSA key');
  if (typeof jwk['e'] !== 'string') return fail('[e] field is missing for a RSA key');
  const e = base64url(jwk['e']);
  const n = base64url(jwk['n']);
  const exponent = e ? BigInt(`0x${e.toString('hex') || '0'}`) : 0n;
  if (!n || n.length === 0 || (exponent !== 3n && exponent !== 65537n))
    return fail('Jwks RSA [n] or [e] field is missing or has a parse error');
  return (
    loadable({ kty: 'RSA', n: jwk['n'], e: jwk['e'] }, 'Jwks RSA [n] or [e] field is missing or has a parse error') ?? {
      ok: true,
      kty: 'RSA',
    }
  );
}

function ec(jwk: Obj, alg: string | undefined): JwkVerdict {
  if (alg !== undefined && !alg.startsWith('ES')) return fail('[alg] is not started with [ES] for an EC key');
  if (typeof jwk['x'] !== 'string') return fail('[x] field is missing for an EC key');
  if (typeof jwk['y'] !== 'string') return fail('[y] field is missing for an EC key');
  if (jwk['crv'] !== undefined && typeof jwk['crv'] !== 'string') return fail('[crv] field is not a string for an EC key');
  const crv = jwk['crv'] as string | undefined;
  let curve: string;
  if (alg !== undefined && crv !== undefined) {
    if (EC_CURVES[alg] === undefined || !Object.values(EC_CURVES).includes(crv))
      return fail('[crv] or [alg] field is not supported for an EC key');
    if (EC_CURVES[alg] !== crv) return fail('[crv] field specified is not compatible with [alg] for an EC key');
    curve = crv;
  } else if (alg !== undefined) {
    const c = EC_CURVES[alg];
    if (c === undefined) return fail('[crv] or [alg] field is not supported for an EC key');
    curve = c;
  } else if (crv !== undefined) {
    if (!Object.values(EC_CURVES).includes(crv)) return fail('[crv] or [alg] field is not supported for an EC key');
    curve = crv;
  } else curve = 'P-256';
  return (
    loadable({ kty: 'EC', crv: curve, x: jwk['x'], y: jwk['y'] }, 'Jwks EC [x] and [y] fields have a parse error.') ?? {
      ok: true,
      kty: 'EC',
    }
  );
}

function oct(jwk: Obj, alg: string | undefined): JwkVerdict {
  if (alg !== undefined && !['HS256', 'HS384', 'HS512'].includes(alg)) return fail('[alg] does not start with [HS] for an HMAC key');
  if (typeof jwk['k'] !== 'string') return fail('[k] field is missing for an HMAC key');
  const k = base64url(jwk['k']);
  return k && k.length > 0 ? { ok: true, kty: 'oct' } : fail('Jwks Oct key is an invalid Base64');
}

function okp(jwk: Obj, alg: string | undefined): JwkVerdict {
  if (alg !== undefined && alg !== 'EdDSA') return fail('[alg] is not [EdDSA] for an OKP key');
  if (typeof jwk['crv'] !== 'string') return fail('[crv] field is missing for an OKP key');
  if (jwk['crv'] !== 'Ed25519') return fail('[crv] field is not supported for an OKP key');
  if (typeof jwk['x'] !== 'string') return fail('[x] field is missing for an OKP key');
  const x = base64url(jwk['x']);
  return x && x.length === 32 ? { ok: true, kty: 'OKP' } : fail('Jwks OKP [x] field is wrong length.');
}

/** One element of `keys`, as extractJwk reads it (kid and alg optional). */
export function readJwk(jwk: Obj): JwkVerdict {
  if (!('kty' in jwk)) return fail('[kty] is missing in [keys]');
  const kty = jwk['kty'];
  if (typeof kty !== 'string') return fail('[kty] is bad in [keys]');
  if (jwk['alg'] !== undefined && typeof jwk['alg'] !== 'string') return fail('[alg] is not a string in [keys]');
  const alg = jwk['alg'] as string | undefined;
  switch (kty) {
    case 'RSA':
      return rsa(jwk, alg);
    case 'EC':
      return ec(jwk, alg);
    case 'oct':
      return oct(jwk, alg);
    case 'OKP':
      return okp(jwk, alg);
    default:
      return fail('[kty] is not supported in [keys]');
  }
}

const PEM_CERT = /^-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\s*$/;

/**
 * The set as Envoy reads it. Envoy keeps the keys it can use and skips the others; it refuses the set only
 * when none is usable, with the first key's error (or "no valid public key" when `keys` holds no object).
 */
export function readJwks(text: string): JwksReading {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { error: 'Jwks is an invalid JSON', keys: [] };
  }
  if (!isObj(doc)) return { error: 'Jwks is an invalid JSON', keys: [] };
  if (!('keys' in doc)) {
    // The other format Envoy reads: { "<kid>": "<PEM X.509 certificate>", ... }.
    const values = Object.values(doc);
    const certs = values.length > 0 && values.every((v) => typeof v === 'string' && PEM_CERT.test(v));
    return certs ? { keys: values.map(() => ({ ok: true, kty: 'RSA' })) } : { error: 'Jwks does not have [keys] field', keys: [] };
  }
  const list = doc['keys'];
  if (!Array.isArray(list)) return { error: '[keys] in Jwks is not an array', keys: [] };
  const keys = list.map((k): JwkVerdict => (isObj(k) ? readJwk(k) : fail('not a JSON object (skipped)')));
  if (keys.some((k) => k.ok)) return { keys };
  const first = list.findIndex(isObj);
  const firstVerdict = first === -1 ? undefined : keys[first];
  return { error: firstVerdict && !firstVerdict.ok ? firstVerdict.reason : "Jwks doesn't have any valid public key", keys };
}
