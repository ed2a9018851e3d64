// The dev issuer's validator refuses every classic JWT attack and mistake, and the token endpoint follows
// the client-credentials grant.
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { DevIssuer, OAuthError } from '../../control-plane/src/auth/dev-issuer.ts';

const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('dev issuer: tokens and validation', () => {
  let issuer: DevIssuer;
  let good: string;
  before(async () => {
    // `*` means "any role the policy defines": grantableRoles stands for that policy.
    issuer = await DevIssuer.create({
      issuer: 'http://127.0.0.1:18001/oauth',
      audience: 'mcp-mesh',
      grantableRoles: new Set(['analyst', 'admin', 'intern']),
      clients: { dev: { secret: 's3cret', roles: ['analyst', 'admin'] }, any: { secret: 'x', roles: ['*'] } },
    });
    good = (await issuer.sign({ subject: 'alice', roles: ['analyst'] })).token;
  });

  it('issues RS256 tokens that its validator accepts, with roles, issuer, audience and expiry', async () => {
    const p = await issuer.verify(good);
    assert.deepEqual(p['roles'], ['analyst']);
    assert.equal(p.iss, 'http://127.0.0.1:18001/oauth');
    assert.equal(p.aud, 'mcp-mesh');
    assert.equal(p.sub, 'alice');
    assert.ok(typeof p.exp === 'number' && p.exp > Date.now() / 1000);
    assert.equal(JSON.parse(Buffer.from(good.split('.')[0] ?? '', 'base64url').toString()).alg, 'RS256');
  });

  const rejects = async (token: string, re: RegExp): Promise<void> => {
    await assert.rejects(issuer.verify(token), (e: Error) => re.test(e.message) || assert.fail(`expected ${re}, got: ${e.message}`));
  };

  it('rejects alg "none"', async () => {
    const [, payload] = good.split('.');
    await rejects(`${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`, /invalid token: ERR_JOSE_ALG_NOT_ALLOWED|ERR_JWS_INVALID/);
  });

  it('rejects HS256 signed with the public key (RS/HS confusion)', async () => {
    const jwk = issuer.jwks().keys[0]!;
    const pem = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    const forged = await new SignJWT({ roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256', kid: jwk.kid! })
      .setIssuer(issuer.issuer)
      .setAudience('mcp-mesh')
      .setSubject('mallory')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(String(pem)));
    await rejects(forged, /ERR_JOSE_ALG_NOT_ALLOWED/);
  });

  it('rejects expired and not-yet-valid tokens', async () => {
    await rejects((await issuer.sign({ subject: 'a', roles: [], ttlMs: -120_000 })).token, /ERR_JWT_EXPIRED/);
    await rejects((await issuer.sign({ subject: 'a', roles: [], notBeforeInSeconds: 3600 })).token, /ERR_JWT_CLAIM_VALIDATION_FAILED.*nbf/);
  });

  it('rejects the wrong issuer and the wrong audience', async () => {
    const other = await DevIssuer.create({ issuer: 'http://evil.example/oauth', audience: 'mcp-mesh' });
    await rejects(
      (await other.sign({ subject: 'a', roles: ['admin'] })).token,
      /ERR_JWT_CLAIM_VALIDATION_FAILED.*iss|ERR_JWKS_NO_MATCHING_KEY|ERR_JWS_SIGNATURE_VERIFICATION_FAILED/,
    );
    await rejects((await issuer.sign({ subject: 'a', roles: [], audience: 'another-api' })).token, /ERR_JWT_CLAIM_VALIDATION_FAILED.*aud/);
  });

  it('rejects an unknown kid and a token signed by another key', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT({ roles: ['admin'] })
      .setProtectedHeader({ alg: 'RS256', kid: 'not-ours' })
      .setIssuer(issuer.issuer)
      .setAudience('mcp-mesh')
      .setSubject('m')
      .setExpirationTime('1h')
      .sign(privateKey);
    await rejects(token, /ERR_JWKS_NO_MATCHING_KEY/);
  });

  it('rejects a tampered payload', async () => {
    const [h, p, s] = good.split('.');
    const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
    await rejects(`${h}.${b64({ ...claims, roles: ['admin'] })}.${s}`, /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
  });

  it('client-credentials grant: right secret and roles, wrong secret, refused role, wrong grant', async () => {
    const ok = await issuer.tokenEndpoint(
      new URLSearchParams({ grant_type: 'client_credentials', client_id: 'dev', client_secret: 's3cret', scope: 'analyst' }),
    );
    assert.equal(ok['token_type'], 'Bearer');
    assert.deepEqual((await issuer.verify(String(ok['access_token'])))['roles'], ['analyst']);
    const basic = await issuer.tokenEndpoint(
      new URLSearchParams({ grant_type: 'client_credentials' }),
      `Basic ${Buffer.from('dev:s3cret').toString('base64')}`,
    );
    assert.deepEqual((await issuer.verify(String(basic['access_token'])))['roles'], ['analyst', 'admin']);
    const fail = async (form: Record<string, string>, code: string, status: number): Promise<void> => {
      await assert.rejects(
        issuer.tokenEndpoint(new URLSearchParams(form)),
        (e: unknown) => e instanceof OAuthError && e.code === code && e.status === status,
      );
    };
    await fail({ grant_type: 'client_credentials', client_id: 'dev', client_secret: 'nope' }, 'invalid_client', 401);
    await fail({ grant_type: 'client_credentials', client_id: 'dev', client_secret: 's3cret', scope: 'root' }, 'invalid_scope', 400);
    await fail({ grant_type: 'password', client_id: 'dev', client_secret: 's3cret' }, 'unsupported_grant_type', 400);
    const anyRole = await issuer.tokenEndpoint(
      new URLSearchParams({ grant_type: 'client_credentials', client_id: 'any', client_secret: 'x', scope: 'intern' }),
    );
    assert.deepEqual((await issuer.verify(String(anyRole['access_token'])))['roles'], ['intern']);
  });
});
