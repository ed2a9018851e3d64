// `mcpmesh policy explain`: output, exit codes (0 allow, 1 deny, 2 usage error).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { policyExplainMain } from '../../control-plane/src/policy/cli.ts';
import { unsignedJwt } from './helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.join(here, '../../deploy/policy.example.yaml');

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await policyExplainMain(argv, { out: (t) => { out += t; }, err: (t) => { err += t; } });
  return { code, out, err };
}

const toolCall = (name: string, id = 1): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name } });

describe('mcpmesh policy explain', () => {
  it('allow: exit 0, names the deciding rule and every rule considered', async () => {
    const r = await run('explain', '--policy', EXAMPLE, '--service', 'weather', '--roles', 'analyst', '--body', toolCall('get_forecast'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /request: tools\/call \(id 1\): tool "get_forecast"/);
    assert.match(r.out, /decision: ALLOW by roles\.analyst\.allow\[0\]/);
    assert.match(r.out, /- roles\.analyst\.deny\[0\] +does not match +service pattern "weather" matches "weather", but no tools pattern of \[get_secret\*\] matches "get_forecast"/);
    assert.match(r.out, /=> roles\.analyst\.allow\[0\] +matches +service pattern "weather" matches "weather", and tools pattern "get_\*" matches "get_forecast"/);
    assert.match(r.out, /- roles\.analyst\.allow\[1\] +does not match +service pattern "files" does not match "weather"/);
    assert.match(r.out, /\nresult: ALLOW\n/);
  });

  it('deny: exit 1; an explicit deny of one role beats the allow of another', async () => {
    const r = await run('--policy', EXAMPLE, '--service', 'weather', '--roles', 'admin,analyst', '--body', toolCall('get_secret_forecast'));
    assert.equal(r.code, 1);
    assert.match(r.out, /decision: DENY by roles\.analyst\.deny\[0\]/);
    assert.match(r.out, /an explicit deny wins over any allow/);
    assert.match(r.out, /\+ roles\.admin\.allow\[0\] +matches/);
  });

  it('reads roles from a token, saying it was not verified', async () => {
    const token = unsignedJwt({ iss: 'http://127.0.0.1:18001/oauth', sub: 'bob', aud: 'mcp-mesh', roles: ['intern', 'ghost'] });
    const r = await run('--policy', EXAMPLE, '--service', 'weather', '--token', token, '--body', toolCall('get_history'));
    assert.equal(r.code, 1);
    assert.match(r.out, /token payload decoded WITHOUT verifying the signature/);
    assert.match(r.out, /sub="bob" iss="http:\/\/127\.0\.0\.1:18001\/oauth" aud="mcp-mesh"/);
    assert.match(r.out, /roles from claim "roles": intern, ghost/);
    assert.match(r.out, /not defined in the policy \(ignored\): ghost/);
    assert.match(r.out, /decision: DENY by default-deny/);
    const foreign = await run('--policy', EXAMPLE, '--service', 'weather', '--token', `Bearer ${unsignedJwt({ iss: 'https://evil/', roles: ['admin'], exp: 1 })}`);
    assert.equal(foreign.code, 0);
    assert.match(foreign.out, /note: the token expired at 1970-01-01T00:00:01.000Z/);
    assert.match(foreign.out, /note: issuer "https:\/\/evil\/" is not one of the policy's providers/);
  });

  it('batches: each element explained, one denial denies all; shadow mode noted', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'explain-'));
    const bodyFile = path.join(dir, 'body.json');
    writeFileSync(bodyFile, JSON.stringify([JSON.parse(toolCall('read_file', 1)), { jsonrpc: '2.0', method: 'notifications/initialized' }, JSON.parse(toolCall('delete_file', 2))]));
    const r = await run('--policy', EXAMPLE, '--service', 'files', '--roles', 'admin', '--body-file', bodyFile);
    assert.equal(r.code, 1);
    assert.match(r.out, /request: a batch of 3; every element must be allowed/);
    assert.match(r.out, /\[0\] tools\/call \(id 1\): tool "read_file"\n {4}decision: ALLOW by roles\.admin\.allow\[0\]/);
    assert.match(r.out, /\[1\] notifications\/initialized \(notification\): names nothing, needs service-level access\n {4}decision: ALLOW/);
    assert.match(r.out, /\[2\] tools\/call \(id 2\): tool "delete_file"\n {4}decision: DENY by roles\.admin\.deny\[0\]/);
    assert.match(r.out, /result: DENY \(at least one element is denied, so the whole batch is\)/);
    assert.match(r.out, /note: service "files" is in shadow mode/);
  });

  it('no body: service-level access; malformed body: exit 1 with the problem', async () => {
    const a = await run('--policy', EXAMPLE, '--service', 'files', '--roles', 'intern');
    assert.equal(a.code, 1);
    assert.match(a.out, /no body: service-level access/);
    assert.match(a.out, /decision: DENY by roles\.intern\.deny\[0\]\n {2}role "intern" denies the whole service "files"/);
    const b = await run('--policy', EXAMPLE, '--service', 'weather', '--roles', 'analyst', '--body', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}');
    assert.equal(b.code, 1);
    assert.match(b.out, /request: malformed: tools\/call needs "params.name"/);
    assert.match(b.out, /the authorizer answers 400/);
  });

  it('usage errors exit 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--service', 'weather', '--roles', 'a'], /--policy is required/],
      [['--policy', EXAMPLE, '--roles', 'a'], /--service is required/],
      [['--policy', EXAMPLE, '--service', 'weather'], /give the caller as --token JWT or --roles a,b/],
      [['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--token', 'x.y.z'], /not both/],
      [['--policy', EXAMPLE, '--service', 'weather', '--token', 'abc'], /--token is not a JWT/],
      [['--policy', EXAMPLE, '--service', 'weather', '--token', 'a.!!!.c'], /payload \(second part\) is not base64url-encoded JSON/],
      [['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--body', '{}', '--body-file', 'x'], /--body or --body-file, not both/],
      [['--policy', '/no/such/file.yaml', '--service', 'weather', '--roles', 'a'], /cannot read policy \/no\/such\/file\.yaml/],
      [['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [argv, want] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.err, want, argv.join(' '));
      assert.match(r.err, /usage: mcpmesh policy explain/);
    }
  });

  it('an invalid policy exits 2 with every problem listed', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'explain-'));
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'trustDomain: x\nroles:\n  a: { allow: [ { service: w, tools: ["a[b]"] } ] }\n');
    const r = await run('--policy', file, '--service', 'w', '--roles', 'a');
    assert.equal(r.code, 2);
    assert.match(r.err, new RegExp(`invalid policy:\\n${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: 1 problem\\(s\\):\\n  roles\\.a\\.allow\\[0\\]\\.tools\\[0\\]: "a\\[b\\]": only "\\*" is a wildcard`));
  });

  it('--help exits 0', async () => {
    const r = await run('--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /usage: mcpmesh policy explain/);
  });
});
