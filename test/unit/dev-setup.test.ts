// Issue 12 findings on `npm start`'s development issuer: the dev client secret is the same after a restart
// (kept in the data dir, or given), and moving the admin port without the policy is a clear error at start.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { devClientSecret, devIssuerMismatch, devIssuerPortZeroConflict, DEV_SECRET_FILE } from '../../control-plane/src/auth/dev-setup.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { freePort } from '../helpers/everything.ts';
import { waitFor } from '../helpers/wait.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const EXAMPLE_POLICY = path.join(repo, 'deploy/policy.example.yaml');
const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-dev-setup-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `npm start` with args until it printed `until` (then SIGTERM) or exited; stdout, stderr and the exit code. */
function start(args: string[], env: NodeJS.ProcessEnv, until: RegExp): Promise<{ out: string; err: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repo, 'control-plane/src/main.ts'), '--xds-port', '0', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no ${until} within 30 s: ${out}${err}`));
    }, 30_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      if (until.test(out)) child.kill('SIGTERM');
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c;
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ out, err, code });
    });
  });
}

describe('--admin-port 0 (the port is chosen at start)', () => {
  it('the dev issuer URL is the bound port: in the banner, the metadata and the tokens it mints', async () => {
    const child = spawn(process.execPath, [path.join(repo, 'control-plane/src/main.ts'), '--xds-port', '0', '--admin-port', '0'], {
      env: { ...process.env, MCPMESH_DATA_DIR: path.join(dir, 'port-zero'), MCPMESH_DEV_CLIENT_SECRET: 'port-zero-secret-value' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c;
      });
      await waitFor('the banner', () => /client id "dev"/.test(out), 30_000);
      const admin = /admin: +(http:\/\/127\.0\.0\.1:(\d+))\//.exec(out);
      assert.ok(admin && admin[2] !== '0', out);
      const issuer = `${admin[1]}/oauth`;
      assert.match(out, new RegExp(`dev OAuth: +issuer ${issuer.replaceAll('.', '\\.')} `));
      const meta = (await (await fetch(`${admin[1]}/.well-known/oauth-authorization-server/oauth`)).json()) as {
        issuer: string;
        token_endpoint: string;
        jwks_uri: string;
      };
      assert.deepEqual([meta.issuer, meta.token_endpoint, meta.jwks_uri], [issuer, `${admin[1]}/oauth/token`, `${admin[1]}/oauth/jwks`]);
      const minted = await fetch(meta.token_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'dev', client_secret: 'port-zero-secret-value' }),
      });
      const token = ((await minted.json()) as { access_token?: string }).access_token ?? '';
      assert.equal((JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { iss: string }).iss, issuer);
      // npm start on the example registry says its endpoints are placeholders and where real ones run.
      assert.match(
        out,
        /example mesh: +the endpoints in deploy\/registry\.example\.yaml are placeholders \(nothing listens on them\); their health is\n +what the file declares, not checked\. Real MCP servers behind Envoy: npm run demo/,
      );
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('is refused with a policy that trusts the dev issuer: the policy cannot name a port not chosen yet', async () => {
    const r = await start(
      ['--policy', EXAMPLE_POLICY, '--admin-port', '0'],
      { MCPMESH_DATA_DIR: path.join(dir, 'port-zero-policy') },
      /control plane listening/,
    );
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /--admin-port 0 picks the admin port at start, so the development issuer's URL \(http:\/\/127\.0\.0\.1:<port>\/oauth\) is not known in advance, but policy provider "dev" trusts issuer http:\/\/127\.0\.0\.1:18001\/oauth: give a fixed --admin-port/,
    );
  });

  it('a policy that trusts no dev issuer does not conflict', () => {
    const policy = parsePolicy(readFileSync(EXAMPLE_POLICY, 'utf8'), EXAMPLE_POLICY);
    assert.equal(devIssuerPortZeroConflict([{ ...policy.providers[0]!, issuer: 'https://login.example.com/oauth' }]), undefined);
  });
});

describe('dev client secret', () => {
  it('is made once, kept in the data dir (0600), and read back', () => {
    const data = path.join(dir, 'a', 'state');
    const first = devClientSecret(undefined, data);
    assert.deepEqual(first.origin, { kind: 'file', file: path.join(data, DEV_SECRET_FILE), created: true });
    assert.equal(statSync(path.join(data, DEV_SECRET_FILE)).mode & 0o777, 0o600);
    const again = devClientSecret(undefined, data);
    assert.equal(again.secret, first.secret);
    assert.deepEqual(again.origin, { kind: 'file', file: path.join(data, DEV_SECRET_FILE), created: false });
    assert.equal(readFileSync(path.join(data, DEV_SECRET_FILE), 'utf8').trim(), first.secret);
  });

  it('a given secret wins; a data dir that cannot hold the file gives a secret that says it is not kept', () => {
    assert.deepEqual(devClientSecret('given-secret', path.join(dir, 'unused')), { secret: 'given-secret', origin: { kind: 'env' } });
    const notADir = path.join(dir, 'not-a-dir');
    writeFileSync(notADir, 'a file where the data dir should be');
    const s = devClientSecret(undefined, notADir);
    assert.equal(s.origin.kind, 'ephemeral');
    assert.match((s.origin as { reason: string }).reason, /not-a-dir\/dev-client-secret: ENOTDIR/);
    assert.ok(s.secret.length >= 24);
  });

  it('npm start prints the same secret after a restart, and where it is kept', async () => {
    const env = { MCPMESH_DATA_DIR: path.join(dir, 'npm-start'), MCPMESH_DEV_CLIENT_SECRET: '' };
    const secretOf = (out: string): string =>
      /client id "dev", secret (\S+) \(kept in (\S+)\)/.exec(out)?.slice(1).join(' ') ?? `none in ${out}`;
    const a = await start(['--admin-port', String(await freePort())], env, /client id "dev"/);
    const b = await start(['--admin-port', String(await freePort())], env, /client id "dev"/);
    assert.match(secretOf(a.out), new RegExp(` ${path.join(dir, 'npm-start', DEV_SECRET_FILE).replaceAll('/', '\\/')}$`));
    assert.equal(secretOf(b.out), secretOf(a.out));
  });
});

describe('the example policy and the admin port', () => {
  const policy = parsePolicy(readFileSync(EXAMPLE_POLICY, 'utf8'), EXAMPLE_POLICY);

  it('the example policy trusts the dev issuer on the default admin port', () => {
    assert.equal(devIssuerMismatch(policy.providers, 'http://127.0.0.1:18001/oauth'), undefined);
  });

  it('names the provider, both URLs and the fixes when the admin port moved', () => {
    assert.equal(
      devIssuerMismatch(policy.providers, 'http://127.0.0.1:18401/oauth'),
      'policy provider "dev" trusts issuer http://127.0.0.1:18001/oauth, but this control plane\'s development issuer is http://127.0.0.1:18401/oauth: ' +
        "tokens from `mcpmesh token` would be refused at the gateway. Make the provider's issuer http://127.0.0.1:18401/oauth and its jwksUri http://127.0.0.1:18401/oauth/jwks " +
        '(or move the admin port back with --admin-port / MCPMESH_ADMIN_PORT, or set MCPMESH_DEV_ISSUER_URL)',
    );
    assert.equal(
      devIssuerMismatch([{ ...policy.providers[0]!, issuer: 'https://login.example.com/oauth' }], 'http://127.0.0.1:18401/oauth'),
      undefined,
      'a real IdP is not the dev issuer',
    );
  });

  it('npm start refuses to start with the example policy on another admin port, saying why', async () => {
    const port = await freePort();
    const r = await start(
      ['--policy', EXAMPLE_POLICY, '--admin-port', String(port)],
      { MCPMESH_DATA_DIR: path.join(dir, 'refuse') },
      /control plane listening/,
    );
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      new RegExp(
        `policy provider "dev" trusts issuer http://127\\.0\\.0\\.1:18001/oauth, but this control plane's development issuer is http://127\\.0\\.0\\.1:${port}/oauth`,
      ),
    );
  });
});
