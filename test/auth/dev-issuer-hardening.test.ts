// The dev issuer probed as an attacker would: tokens are typed RFC 9068 access tokens and its validator
// takes nothing else signed by the same key; every malformed client authentication is an RFC 6749 §5.2
// error (never an exception that the admin server would turn into a 500); secrets are compared in constant
// time; and a client gets only the roles the control plane lets it request.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { before, describe, it, mock } from 'node:test';
import { decodeProtectedHeader, SignJWT, type CryptoKey } from 'jose';
import { DevIssuer, OAuthError, type GrantableRoles } from '../../control-plane/src/auth/dev-issuer.ts';

const ISSUER = 'http://127.0.0.1:18001/oauth';
const basic = (s: string | Buffer): string => `Basic ${Buffer.from(s).toString('base64')}`;
const form = (o: Record<string, string> | Array<[string, string]>): URLSearchParams => new URLSearchParams(o);

/** Asserts `p` rejects with an OAuthError of this status and code, and returns it. */
async function oauthError(p: Promise<unknown>, status: number, code: string, label: string): Promise<OAuthError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof OAuthError,
    `${label}: expected OAuthError ${status} ${code}, got ${caught instanceof Error ? `${caught.constructor.name}: ${caught.message}` : 'success'}`,
  );
  assert.equal(caught.status, status, `${label}: status (${caught.message})`);
  assert.equal(caught.code, code, `${label}: code (${caught.message})`);
  assert.ok(caught.message.length > 0 && caught.message.length < 1000, `${label}: a short description`);
  return caught;
}

describe('dev issuer: RFC 9068 typed access tokens', () => {
  let issuer: DevIssuer;
  /** The issuer's own signing key: what an ID token or any other JWT from this issuer would be signed with. */
  let key: CryptoKey;
  let kid: string;
  before(async () => {
    issuer = await DevIssuer.create({ issuer: ISSUER, audience: 'mcp-mesh', clients: { agent: { secret: 's3cret', roles: ['analyst'] } } });
    // Bracket access reaches the private key on purpose: the test needs a same-key JWT that is not an access token.
    key = issuer['privateKey'];
    kid = issuer.jwks().keys[0]?.kid ?? '';
  });

  it('issues tokens with typ at+jwt and every claim RFC 9068 §2.2 requires', async () => {
    const answer = await issuer.tokenEndpoint(
      form({ grant_type: 'client_credentials', client_id: 'agent', client_secret: 's3cret', scope: 'analyst' }),
    );
    const token = String(answer['access_token']);
    assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
    for (const c of ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'])
      assert.ok(c in claims, `claim ${c} missing from ${JSON.stringify(claims)}`);
    assert.equal(claims['client_id'], 'agent');
    assert.equal(claims['sub'], 'agent', 'client-credentials grant: the client is the subject (RFC 9068 §2.2)');
    assert.equal(typeof claims['iat'], 'number');
    assert.equal(typeof claims['jti'], 'string');
    // sign() (used by tests to mint tokens for a subject) issues complete access tokens too.
    const direct = (await issuer.sign({ subject: 'alice', roles: [] })).token;
    assert.equal((await issuer.verify(direct))['client_id'], 'alice');
    assert.equal(
      (await issuer.verify((await issuer.sign({ subject: 'alice', clientId: 'inspector', roles: [] })).token))['client_id'],
      'inspector',
    );
  });

  const sameKey = (typ: string | undefined, claims: Record<string, unknown> = { client_id: 'agent' }): Promise<string> => {
    const jwt = new SignJWT({ roles: ['admin'], ...claims })
      .setProtectedHeader({ alg: 'RS256', kid, ...(typ !== undefined ? { typ } : {}) })
      .setIssuer(ISSUER)
      .setAudience('mcp-mesh')
      .setSubject('mallory')
      .setIssuedAt()
      .setExpirationTime('1h');
    return (claims['jti'] === null ? jwt : jwt.setJti('j1')).sign(key);
  };

  it('verify() refuses a JWT signed by the same key that is not typed as an access token (ID token, plain JWT, no typ)', async () => {
    for (const typ of ['JWT', 'id_token+jwt', 'logout+jwt', undefined]) {
      const token = await sameKey(typ);
      await assert.rejects(issuer.verify(token), (e: Error) => {
        assert.match(e.message, /^invalid token: .*not an access token.*typ .*"at\+jwt"/, `typ ${String(typ)}`);
        assert.match(e.message, typ === undefined ? /typ is missing/ : new RegExp(`typ is "${typ.replace('+', '\\+')}"`));
        return true;
      });
    }
  });

  it('verify() accepts the long form application/at+jwt (RFC 9068 §2.1) and refuses an access token missing an RFC 9068 claim', async () => {
    assert.equal((await issuer.verify(await sameKey('application/at+jwt'))).sub, 'mallory');
    await assert.rejects(
      issuer.verify(await sameKey('at+jwt', {})),
      /invalid token: ERR_JWT_CLAIM_VALIDATION_FAILED: missing required "client_id" claim/,
    );
    await assert.rejects(issuer.verify(await sameKey('at+jwt', { client_id: 'agent', jti: null })), /invalid token: .*"jti"/);
    await assert.rejects(issuer.verify(await sameKey('at+jwt', { client_id: 42 })), /invalid token: .*"client_id" claim must be a string/);
  });
});

describe('dev issuer: malformed client credentials on the token endpoint', () => {
  let issuer: DevIssuer;
  before(async () => {
    issuer = await DevIssuer.create({
      issuer: ISSUER,
      audience: 'mcp-mesh',
      grantableRoles: new Set(['analyst']),
      clients: { dev: { secret: 's3cret', roles: ['*'] }, 'odd:id': { secret: 'p+w ö', roles: ['analyst'] } },
    });
  });
  const grant = { grant_type: 'client_credentials' };

  it('answers 401 invalid_client with WWW-Authenticate: Basic realm="mcpmesh", never another exception', async () => {
    const cases: Array<[label: string, body: Record<string, string>, authorization?: string]> = [
      ['no credentials at all', grant],
      ['empty Authorization header, no form credentials', grant, ''],
      ['a Bearer header', grant, 'Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig'],
      ['a Bearer header next to valid form credentials', { ...grant, client_id: 'dev', client_secret: 's3cret' }, 'Bearer abc'],
      ['a Digest header', grant, 'Digest username="dev"'],
      ['"Basic" without credentials', grant, 'Basic'],
      ['"Basic " and spaces', grant, 'Basic    '],
      ['Basic with junk that is not base64', grant, 'Basic !!!not*base64$$'],
      ['Basic with base64url instead of base64', grant, `Basic ${Buffer.from('dev:s3cret??>>').toString('base64url')}`],
      ['Basic with a bad base64 length', grant, 'Basic ZGV2OnMzY3JldA=x'],
      ['Basic with two tokens', grant, `${basic('dev:s3cret')} ${basic('dev:s3cret').slice(6)}`],
      ['colon-less Basic credentials', grant, basic('devs3cret')],
      ['Basic credentials that are not UTF-8', grant, basic(Buffer.from([0x64, 0x65, 0x76, 0x3a, 0xff, 0xfe]))],
      ['Basic client_id with a broken %-escape', grant, basic('%zz:s3cret')],
      ['Basic client_secret with a broken %-escape', grant, basic('dev:%E0%A4%A')],
      ['Basic with an empty client_id', grant, basic(':s3cret')],
      ['Basic with an unknown client', grant, basic('nobody:s3cret')],
      ['Basic with a wrong secret', grant, basic('dev:s3cre')],
      ['Basic with an empty secret', grant, basic('dev:')],
      ['client_id "constructor" (an Object.prototype member)', { ...grant, client_id: 'constructor', client_secret: 'x' }],
      ['client_id "__proto__"', { ...grant, client_id: '__proto__', client_secret: 'x' }],
      ['Basic client_id "toString"', grant, basic('toString:x')],
      ['client_id without client_secret', { ...grant, client_id: 'dev' }],
      ['client_secret without client_id', { ...grant, client_secret: 's3cret' }],
      ['an empty client_id', { ...grant, client_id: '', client_secret: 's3cret' }],
      ['an empty client_secret', { ...grant, client_id: 'dev', client_secret: '' }],
      ['a wrong secret of another length', { ...grant, client_id: 'dev', client_secret: 's3cret-and-more' }],
    ];
    for (const [label, body, authorization] of cases) {
      const e = await oauthError(issuer.tokenEndpoint(form(body), authorization), 401, 'invalid_client', label);
      assert.equal(e.headers['www-authenticate'], 'Basic realm="mcpmesh"', label);
      assert.equal(e.headers['cache-control'], 'no-store', label);
      assert.deepEqual(Object.keys(e.body()), ['error', 'error_description'], label);
      assert.doesNotMatch(e.message, /s3cret|eyJ|abc/, `${label}: the description echoes no credential`);
    }
  });

  it('accepts Basic as RFC 6749 §2.3.1 sends it: any scheme case, form-urlencoded id and secret', async () => {
    const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
    for (const auth of [
      basic('dev:s3cret'),
      `basic ${Buffer.from('dev:s3cret').toString('base64')}`,
      `BASIC  ${Buffer.from('dev:s3cret').toString('base64')}`,
      basic(`${enc('odd:id')}:${enc('p+w ö')}`),
    ]) {
      const ok = await issuer.tokenEndpoint(form(grant), auth);
      assert.equal(ok['token_type'], 'Bearer', auth);
    }
    // The form client_id may repeat the Basic one.
    assert.equal((await issuer.tokenEndpoint(form({ ...grant, client_id: 'dev' }), basic('dev:s3cret')))['token_type'], 'Bearer');
  });

  it('answers 400 invalid_request and unsupported_grant_type where RFC 6749 says so', async () => {
    const creds = { client_id: 'dev', client_secret: 's3cret' };
    await oauthError(issuer.tokenEndpoint(form(creds)), 400, 'invalid_request', 'no grant_type');
    await oauthError(issuer.tokenEndpoint(form({ ...creds, grant_type: '' })), 400, 'invalid_request', 'empty grant_type');
    await oauthError(
      issuer.tokenEndpoint(
        form([
          ['grant_type', 'client_credentials'],
          ['grant_type', 'password'],
          ['client_id', 'dev'],
          ['client_secret', 's3cret'],
        ]),
      ),
      400,
      'invalid_request',
      'repeated grant_type',
    );
    await oauthError(
      issuer.tokenEndpoint(
        form([
          ['grant_type', 'client_credentials'],
          ['client_id', 'dev'],
          ['client_id', 'other'],
          ['client_secret', 's3cret'],
        ]),
      ),
      400,
      'invalid_request',
      'repeated client_id',
    );
    await oauthError(
      issuer.tokenEndpoint(
        form([
          ['grant_type', 'client_credentials'],
          ['client_id', 'dev'],
          ['client_secret', 's3cret'],
          ['scope', 'analyst'],
          ['scope', 'admin'],
        ]),
      ),
      400,
      'invalid_request',
      'repeated scope',
    );
    await oauthError(
      issuer.tokenEndpoint(form({ ...grant, client_secret: 's3cret' }), basic('dev:s3cret')),
      400,
      'invalid_request',
      'Basic and client_secret both',
    );
    await oauthError(
      issuer.tokenEndpoint(form({ ...grant, client_id: 'other' }), basic('dev:s3cret')),
      400,
      'invalid_request',
      'Basic and another client_id',
    );
    await oauthError(
      issuer.tokenEndpoint(form({ ...grant, ...creds }), undefined, 'application/json'),
      400,
      'invalid_request',
      'a JSON body',
    );
    assert.equal(
      (await issuer.tokenEndpoint(form({ ...grant, ...creds }), undefined, 'application/x-www-form-urlencoded; charset=UTF-8'))[
        'token_type'
      ],
      'Bearer',
    );
    for (const g of ['password', 'authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'CLIENT_CREDENTIALS']) {
      await oauthError(issuer.tokenEndpoint(form({ ...creds, grant_type: g })), 400, 'unsupported_grant_type', g);
    }
  });

  it('compares secrets in constant time, also for a secret of another length and for an unknown client', async () => {
    const spy = mock.method(crypto, 'timingSafeEqual');
    syncBuiltinESMExports(); // the issuer's `import { timingSafeEqual }` binding now sees the spy
    try {
      for (const [id, secret] of [
        ['dev', 'x'],
        ['dev', 's3cret-but-longer'],
        ['nobody', 's3cret'],
        ['constructor', 's3cret'],
      ] as const) {
        const before = spy.mock.callCount();
        await oauthError(
          issuer.tokenEndpoint(form({ ...grant, client_id: id, client_secret: secret })),
          401,
          'invalid_client',
          `${id}:${secret}`,
        );
        assert.equal(spy.mock.callCount(), before + 1, `${id}:${secret}: the secret went through timingSafeEqual`);
        const [a, b] = spy.mock.calls.at(-1)?.arguments ?? [];
        assert.ok(ArrayBuffer.isView(a) && ArrayBuffer.isView(b) && a.byteLength === b.byteLength, 'compared at a fixed length');
      }
    } finally {
      spy.mock.restore();
      syncBuiltinESMExports();
    }
  });
});

describe('dev issuer: only the roles the control plane lets the dev client request', () => {
  const client = (grantableRoles?: GrantableRoles): Promise<DevIssuer> =>
    DevIssuer.create({
      issuer: ISSUER,
      audience: 'mcp-mesh',
      clients: { dev: { secret: 's', roles: ['*'] }, named: { secret: 'n', roles: ['analyst', 'ops'] } },
      ...(grantableRoles ? { grantableRoles } : {}),
    });
  const ask = (
    issuer: DevIssuer,
    scope: string | undefined,
    id = 'dev',
    secret = id === 'dev' ? 's' : 'n',
  ): Promise<Record<string, unknown>> =>
    issuer.tokenEndpoint(
      form({ grant_type: 'client_credentials', client_id: id, client_secret: secret, ...(scope !== undefined ? { scope } : {}) }),
    );
  const rolesOf = async (issuer: DevIssuer, answer: Record<string, unknown>): Promise<unknown> =>
    (await issuer.verify(String(answer['access_token'])))['roles'];

  it('with no policy (no grantableRoles), the "*" dev client gets no role at all', async () => {
    const issuer = await client();
    const e = await oauthError(ask(issuer, 'admin'), 400, 'invalid_scope', 'admin without a policy');
    assert.match(e.message, /"admin"/);
    assert.match(e.message, /no role/);
    const none = await ask(issuer, undefined);
    assert.deepEqual(await rolesOf(issuer, none), []);
    assert.equal(none['scope'], '');
    assert.deepEqual(issuer.metadata('t', 'j')['scopes_supported'], []);
  });

  it('grants roles the policy defines, refuses the others with 400 invalid_scope naming them', async () => {
    const issuer = await client(new Set(['analyst', 'admin']));
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, 'analyst')), ['analyst']);
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, 'analyst admin analyst')), ['analyst', 'admin'], 'deduplicated');
    const e = await oauthError(ask(issuer, 'analyst root  superuser'), 400, 'invalid_scope', 'root');
    assert.match(e.message, /"root", "superuser"/);
    assert.doesNotMatch(e.message, /may not have role\(s\) "analyst"/);
    assert.match(e.message, /may be granted: "admin", "analyst"/);
    // Asking for nothing never yields every role "*" could reach.
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, undefined)), []);
    assert.deepEqual(issuer.metadata('t', 'j')['scopes_supported'], ['admin', 'analyst']);
  });

  it('a client registered with named roles gets only those the policy also defines', async () => {
    const issuer = await client(new Set(['analyst', 'admin']));
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, 'analyst', 'named')), ['analyst']);
    assert.match((await oauthError(ask(issuer, 'ops', 'named'), 400, 'invalid_scope', 'ops')).message, /"ops"/);
    assert.match((await oauthError(ask(issuer, 'admin', 'named'), 400, 'invalid_scope', 'admin')).message, /"admin"/);
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, undefined, 'named')), ['analyst'], 'its default roles, within the policy');
  });

  it('reads a grantableRoles function at every request, so a policy reload is seen', async () => {
    let roles: ReadonlySet<string> = new Set(['analyst']);
    const issuer = await client(() => roles);
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, 'analyst')), ['analyst']);
    await oauthError(ask(issuer, 'auditor'), 400, 'invalid_scope', 'before the reload');
    roles = new Set(['auditor']);
    assert.deepEqual(await rolesOf(issuer, await ask(issuer, 'auditor')), ['auditor']);
    await oauthError(ask(issuer, 'analyst'), 400, 'invalid_scope', 'after the reload');
  });

  it('keeps the invalid_scope description short whatever is asked for', async () => {
    const issuer = await client(new Set(['analyst']));
    const many = Array.from({ length: 2000 }, (_, i) => `role-${i}-${'x'.repeat(200)}`).join(' ');
    const e = await oauthError(ask(issuer, many), 400, 'invalid_scope', 'many roles');
    assert.match(e.message, /and 1990 more/);
  });
});
