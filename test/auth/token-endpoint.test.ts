// The dev issuer served by the control plane: `mcpmesh token` gets a token over the client-credentials
// grant, and a relying party verifies it with the JWKS the control plane publishes (jose's remote JWKS).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { freePort } from '../helpers/everything.ts';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/cli.ts');

/** Runs the CLI without blocking this process's event loop (the control plane under test lives here). */
function cli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env, encoding: 'utf8' }, (_err, stdout, stderr) =>
      resolve({ status: child.exitCode, stdout, stderr }),
    );
  });
}

describe('dev OAuth issuer on the admin port', () => {
  let cp: ControlPlane;
  let base: string;
  /** Stands for the policy's roles: main.ts passes `() => new Set(policy.roles.map((r) => r.name))`. */
  let policyRoles: ReadonlySet<string> = new Set(['analyst', 'admin']);
  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services: []\n');
    const devIssuer = await DevIssuer.create({
      issuer: `${base}/oauth`,
      audience: 'mcp-mesh',
      clients: { dev: { secret: 'test-secret', roles: ['*'] } },
      grantableRoles: () => policyRoles,
    });
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: port,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      devIssuer,
    }).start();
  });
  after(async () => {
    await cp?.stop();
  });

  it('publishes RFC 8414 metadata and a JWKS', async () => {
    const meta = (await (await fetch(`${base}/.well-known/oauth-authorization-server/oauth`)).json()) as Record<string, unknown>;
    assert.equal(meta['issuer'], `${base}/oauth`);
    assert.equal(meta['token_endpoint'], `${base}/oauth/token`);
    assert.deepEqual(meta['grant_types_supported'], ['client_credentials']);
    const jwks = (await (await fetch(`${base}/oauth/jwks`)).json()) as { keys: Array<{ kty: string; d?: string }> };
    assert.equal(jwks.keys[0]?.kty, 'RSA');
    assert.equal(jwks.keys[0]?.d, undefined, 'no private key material in the JWKS');
  });

  it('mcpmesh token gets a token that verifies against the published JWKS', async () => {
    const r = await cli(['token', '--role', 'analyst', '--admin', base], { ...process.env, MCPMESH_DEV_CLIENT_SECRET: 'test-secret' });
    assert.equal(r.status, 0, r.stderr);
    const token = r.stdout.trim();
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${base}/oauth/jwks`)), {
      issuer: `${base}/oauth`,
      audience: 'mcp-mesh',
      algorithms: ['RS256'],
    });
    assert.deepEqual(payload['roles'], ['analyst']);
  });

  it('mcpmesh token explains a wrong secret and a missing one', async () => {
    const bad = await cli(['token', '--role', 'analyst', '--admin', base, '--client-secret', 'nope']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /401 invalid_client: unknown client or wrong secret/);
    const none = await cli(['token', '--role', 'analyst', '--admin', base], { ...process.env, MCPMESH_DEV_CLIENT_SECRET: '' });
    assert.equal(none.status, 2);
    assert.match(none.stderr, /no client secret/);
  });

  it('the token endpoint speaks OAuth errors', async () => {
    const res = await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=password&client_id=dev&client_secret=test-secret',
    });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), {
      error: 'unsupported_grant_type',
      error_description: 'only grant_type=client_credentials is supported',
    });
    assert.equal((await fetch(`${base}/oauth/token`)).status, 405);
  });

  const post = (body: string, authorization?: string): Promise<Response> =>
    fetch(`${base}/oauth/token`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization !== undefined ? { authorization } : {}) },
    });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const malformed: Array<[label: string, body: string, authorization?: string]> = [
    ['no credentials', 'grant_type=client_credentials'],
    ['a Bearer header', 'grant_type=client_credentials', 'Bearer abc.def.ghi'],
    ['Basic, not base64', 'grant_type=client_credentials', 'Basic %%%%'],
    ['Basic, no colon', 'grant_type=client_credentials', `Basic ${b64('devtest-secret')}`],
    ['Basic, a broken %-escape', 'grant_type=client_credentials', `Basic ${b64('%zz:test-secret')}`],
    ['Basic, not UTF-8', 'grant_type=client_credentials', `Basic ${Buffer.from([0x3a, 0xc3]).toString('base64')}`],
    ['client_id=constructor', 'grant_type=client_credentials&client_id=constructor&client_secret=x'],
    ['client_id=__proto__', 'grant_type=client_credentials&client_id=__proto__&client_secret=x'],
    ['client_id without a secret', 'grant_type=client_credentials&client_id=dev'],
  ];

  it('malformed client credentials get 401 invalid_client as JSON, never a 500 or a stack trace', async () => {
    for (const [label, body, authorization] of malformed) {
      const res = await post(body, authorization);
      const text = await res.text();
      assert.equal(res.status, 401, `${label}: ${text}`);
      const answer = JSON.parse(text) as Record<string, unknown>;
      assert.deepEqual(Object.keys(answer), ['error', 'error_description'], label);
      assert.equal(answer['error'], 'invalid_client', label);
      assert.doesNotMatch(text, /\bat .*\.ts:\d+|TypeError|URIError/, `${label}: no stack trace or exception`);
    }
  });

  // The admin server sends OAuthError.headers with the error (control-plane/src/server/admin.ts).
  it('401 invalid_client carries WWW-Authenticate: Basic realm="mcpmesh" and no-store', async () => {
    for (const [label, body, authorization] of malformed) {
      const res = await post(body, authorization);
      assert.equal(res.status, 401, label);
      assert.equal(res.headers.get('www-authenticate'), 'Basic realm="mcpmesh"', label);
      assert.equal(res.headers.get('cache-control'), 'no-store', label);
    }
  });

  it('invalid_request and invalid_scope over HTTP', async () => {
    const dup = await post('grant_type=client_credentials&client_id=dev&client_id=dev&client_secret=test-secret');
    assert.equal(dup.status, 400);
    assert.equal(((await dup.json()) as Record<string, unknown>)['error'], 'invalid_request');
    const missing = await post('client_id=dev&client_secret=test-secret');
    assert.equal(missing.status, 400);
    assert.equal(((await missing.json()) as Record<string, unknown>)['error'], 'invalid_request');
    const scope = await post('grant_type=client_credentials&client_id=dev&client_secret=test-secret&scope=analyst+root');
    assert.equal(scope.status, 400);
    const answer = (await scope.json()) as Record<string, unknown>;
    assert.equal(answer['error'], 'invalid_scope');
    assert.match(String(answer['error_description']), /"root"/);
  });

  it('mcpmesh token is refused a role the policy does not define, and sees a policy reload', async () => {
    const env = { ...process.env, MCPMESH_DEV_CLIENT_SECRET: 'test-secret' };
    const root = await cli(['token', '--role', 'root', '--admin', base], env);
    assert.equal(root.status, 1);
    assert.match(root.stderr, /400 invalid_scope: client "dev" may not have role\(s\) "root"/);
    policyRoles = new Set(['analyst', 'admin', 'root']);
    try {
      const after = await cli(['token', '--role', 'root', '--admin', base], env);
      assert.equal(after.status, 0, after.stderr);
    } finally {
      policyRoles = new Set(['analyst', 'admin']);
    }
    const spaced = await cli(['token', '--role', 'analyst admin', '--admin', base], env);
    assert.equal(spaced.status, 2);
    assert.match(spaced.stderr, /one word/);
  });
});
