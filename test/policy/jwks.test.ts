// Inline JWKS read as Envoy's jwt_authn reads it (source/common/jwt/jwks.cc, formerly jwt_verify_lib):
// which keys it can use, which it skips and with what words, and when it refuses the whole set.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { readJwk, readJwks } from '../../control-plane/src/policy/jwks.ts';
import { EC_P256_JWK, ED25519_JWK, jwksText, RSA_JWK } from './jwks-fixtures.ts';

const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' });

const reason = (jwk: Record<string, unknown>): string => {
  const v = readJwk(jwk);
  return v.ok ? 'ok' : v.reason;
};

describe('JWK keys as Envoy reads them', () => {
  it('uses RSA (RS*/PS*), EC P-256/384/521 (ES*), HMAC (HS*) and Ed25519 (EdDSA) keys, alg optional', () => {
    for (const k of [
      RSA_JWK,
      { ...RSA_JWK, alg: 'RS256' },
      { ...RSA_JWK, alg: 'PS384' },
      EC_P256_JWK,
      { ...EC_P256_JWK, alg: 'ES256' },
      { ...ec384, alg: 'ES384' },
      { kty: 'oct', k: 'c2VjcmV0', alg: 'HS256' },
      ED25519_JWK,
      { ...ED25519_JWK, alg: 'EdDSA' },
    ]) {
      assert.equal(reason(k), 'ok', JSON.stringify(k).slice(0, 80));
    }
  });

  it("refuses each malformed key with Envoy's words", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ n: RSA_JWK.n, e: 'AQAB' }, '[kty] is missing in [keys]'],
      [{ kty: 7 }, '[kty] is bad in [keys]'],
      [{ kty: 'ML-DSA' }, '[kty] is not supported in [keys]'],
      [{ ...RSA_JWK, alg: 'ES256' }, '[alg] is not started with [RS] or [PS] for an RSA key'],
      [{ kty: 'RSA', e: 'AQAB' }, '[n] field is missing for a RSA key'],
      [{ ...RSA_JWK, e: 'Aw' }, 'ok'],
      [{ ...RSA_JWK, e: 'BQ' }, 'Jwks RSA [n] or [e] field is missing or has a parse error'],
      [{ ...EC_P256_JWK, alg: 'RS256' }, '[alg] is not started with [ES] for an EC key'],
      [{ kty: 'EC', crv: 'P-256', x: EC_P256_JWK.x }, '[y] field is missing for an EC key'],
      [{ ...EC_P256_JWK, alg: 'ES384' }, '[crv] field specified is not compatible with [alg] for an EC key'],
      [{ ...EC_P256_JWK, crv: 'secp256k1' }, '[crv] or [alg] field is not supported for an EC key'],
      [{ ...EC_P256_JWK, y: EC_P256_JWK.x }, 'Jwks EC [x] and [y] fields have a parse error.'],
      [{ kty: 'oct', k: 'c2VjcmV0', alg: 'RS256' }, '[alg] does not start with [HS] for an HMAC key'],
      [{ kty: 'oct', k: '' }, 'Jwks Oct key is an invalid Base64'],
      [{ ...ED25519_JWK, crv: 'Ed448' }, '[crv] field is not supported for an OKP key'],
      [{ ...ED25519_JWK, x: 'AAAA' }, 'Jwks OKP [x] field is wrong length.'],
    ];
    for (const [jwk, want] of cases) assert.equal(reason(jwk), want, JSON.stringify(jwk).slice(0, 80));
  });
});

describe('JWKS sets as Envoy reads them', () => {
  it('keeps the usable keys, refuses a set with none (the first key\'s error, or "no valid public key")', () => {
    assert.equal(readJwks(jwksText(EC_P256_JWK)).error, undefined);
    assert.equal(readJwks(JSON.stringify({ keys: [{ kty: 'EC' }, EC_P256_JWK] })).error, undefined, 'one bad key is skipped');
    assert.equal(readJwks('{"keys":[]}').error, "Jwks doesn't have any valid public key");
    assert.equal(readJwks('{"keys":[1,"x"]}').error, "Jwks doesn't have any valid public key");
    assert.equal(readJwks(JSON.stringify({ keys: [{ kty: 'EC' }, { kty: 'RSA' }] })).error, '[x] field is missing for an EC key');
    assert.equal(readJwks('{"keys":{}}').error, '[keys] in Jwks is not an array');
    assert.equal(readJwks(JSON.stringify(EC_P256_JWK)).error, 'Jwks does not have [keys] field', 'a bare JWK is not a set');
    assert.equal(readJwks('-----BEGIN PUBLIC KEY-----').error, 'Jwks is an invalid JSON');
    assert.equal(readJwks('').error, 'Jwks is an invalid JSON');
  });
});
