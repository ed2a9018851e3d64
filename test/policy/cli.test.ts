// `mcpmesh policy explain`: output, exit codes (0 allow, 1 deny, 2 usage error); the decision the mesh takes, for
// 2026-07-28 services too (header RBAC on the Mcp-* headers, then the authorizer on the body).
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
  const code = await policyExplainMain(argv, {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  });
  return { code, out, err };
}

const toolCall = (name: string, id = 1): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name } });

describe('mcpmesh policy explain', () => {
  it('allow: exit 0, names the deciding rule and every rule considered', async () => {
    const r = await run('explain', '--policy', EXAMPLE, '--service', 'weather', '--roles', 'analyst', '--body', toolCall('get_forecast'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /service: weather \(MCP 2025-11-25; mode enforce\)/);
    assert.match(r.out, /header RBAC: off for MCP 2025-11-25 \(the authorizer decides on the body\)/);
    assert.match(r.out, /message: tools\/call \(id 1\): tool "get_forecast"/);
    assert.match(r.out, /decision: ALLOW by roles\.analyst\.allow\[0\]/);
    assert.match(
      r.out,
      /- roles\.analyst\.deny\[0\] +does not match +service pattern "weather" matches "weather", but no tools pattern of \[get_secret\*\] matches "get_forecast"/,
    );
    assert.match(
      r.out,
      /=> roles\.analyst\.allow\[0\] +matches +service pattern "weather" matches "weather", and tools pattern "get_\*" matches "get_forecast"/,
    );
    assert.match(r.out, /- roles\.analyst\.allow\[1\] +does not match +service pattern "files" does not match "weather"/);
    assert.match(r.out, /\nresult: ALLOW\n {2}forwarded to the server with x-mcpmesh-decision: allow; rule=roles\.analyst\.allow\[0\]\n/);
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
    const foreign = await run(
      '--policy',
      EXAMPLE,
      '--service',
      'weather',
      '--token',
      `Bearer ${unsignedJwt({ iss: 'https://evil/', roles: ['admin'], exp: 1 })}`,
    );
    assert.equal(foreign.code, 0);
    assert.match(foreign.out, /note: the token expired at 1970-01-01T00:00:01.000Z/);
    assert.match(foreign.out, /note: issuer "https:\/\/evil\/" is not one of the policy's providers/);
  });

  it('batches: each element explained, one denial denies all; shadow mode noted', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'explain-'));
    const bodyFile = path.join(dir, 'body.json');
    writeFileSync(
      bodyFile,
      JSON.stringify([
        JSON.parse(toolCall('read_file', 1)),
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        JSON.parse(toolCall('delete_file', 2)),
      ]),
    );
    const r = await run('--policy', EXAMPLE, '--service', 'files', '--roles', 'admin', '--body-file', bodyFile);
    assert.equal(r.code, 1);
    assert.match(r.out, /\na batch of 3; every element must be allowed\n/);
    assert.match(r.out, /\[0\] tools\/call \(id 1\): tool "read_file"\n {4}decision: ALLOW by roles\.admin\.allow\[0\]/);
    assert.match(
      r.out,
      /\[1\] notifications\/initialized \(notification\): names nothing, needs service-level access\n {4}decision: ALLOW/,
    );
    assert.match(r.out, /\[2\] tools\/call \(id 2\): tool "delete_file"\n {4}decision: DENY by roles\.admin\.deny\[0\]/);
    assert.match(r.out, /result: DENY \(at least one element is denied, so the whole batch is\)/);
    assert.match(r.out, /note: service "files" is in shadow mode/);
  });

  it('no body: service-level access; malformed body: exit 1 with the problem', async () => {
    const a = await run('--policy', EXAMPLE, '--service', 'files', '--roles', 'intern');
    assert.equal(a.code, 1);
    assert.match(a.out, /no body: service-level access/);
    assert.match(a.out, /decision: DENY by roles\.intern\.deny\[0\]\n {2}role "intern" denies the whole service "files"/);
    const b = await run(
      '--policy',
      EXAMPLE,
      '--service',
      'weather',
      '--roles',
      'analyst',
      '--body',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}',
    );
    assert.equal(b.code, 1);
    assert.match(b.out, /decision: DENY by malformed-request\n {2}tools\/call needs "params.name"/);
    assert.match(b.out, /the authorizer answers 400 with JSON-RPC error -32600: Invalid Request: tools\/call needs "params.name"/);
  });

  it('usage errors exit 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--service', 'weather', '--roles', 'a'], /--policy is required/],
      [['--policy', EXAMPLE, '--roles', 'a'], /--service is required/],
      [['--policy', EXAMPLE, '--service', 'weather'], /give the caller as --token JWT or --roles a,b/],
      [['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--token', 'x.y.z'], /not both/],
      [['--policy', EXAMPLE, '--service', 'weather', '--token', 'abc'], /--token is not a JWT/],
      [['--policy', EXAMPLE, '--service', 'weather', '--token', 'a.!!!.c'], /payload \(second part\) is not base64url-encoded JSON/],
      [
        ['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--body', '{}', '--body-file', 'x'],
        /--body or --body-file, not both/,
      ],
      [['--policy', '/no/such/file.yaml', '--service', 'weather', '--roles', 'a'], /cannot read policy \/no\/such\/file\.yaml/],
      [['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--bogus'], /Unknown option '--bogus'/],
      [
        ['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--protocol', '2026-07-29'],
        /--protocol "2026-07-29" is not an MCP revision the mesh knows/,
      ],
      [
        ['--policy', EXAMPLE, '--service', 'weather', '--roles', 'a', '--header', 'Mcp-Method tools/call'],
        /--header "Mcp-Method tools\/call": expected 'Name: value'/,
      ],
      [
        [
          '--policy',
          EXAMPLE,
          '--service',
          'weather',
          '--roles',
          'a',
          '--protocol',
          '2026-07-28',
          '--header',
          'Mcp-Method: completion/complete',
        ],
        /no header carries a completion\/complete ref: give the request with --body/,
      ],
      [
        [
          '--policy',
          EXAMPLE,
          '--service',
          'weather',
          '--roles',
          'a',
          '--protocol',
          '2026-07-28',
          '--header',
          'Mcp-Method: tools/call',
          '--header',
          'Mcp-Name: =?base64?%%%?=',
        ],
        /Mcp-Name "=\?base64\?%%%\?=" is not valid Base64/,
      ],
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
    assert.match(
      r.err,
      new RegExp(
        `invalid policy:\\n${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: 1 problem\\(s\\):\\n  roles\\.a\\.allow\\[0\\]\\.tools\\[0\\]: "a\\[b\\]": only "\\*" is a wildcard`,
      ),
    );
  });

  it('--help exits 0', async () => {
    const r = await run('--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /usage: mcpmesh policy explain/);
  });
});

describe('mcpmesh policy explain: the decision the mesh takes for 2026-07-28 services', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'explain-2026-'));
  const POLICY = path.join(dir, 'policy.yaml');
  writeFileSync(
    POLICY,
    `
trustDomain: mesh.test
services:
  tides: { requiredScopes: [tides.read] }
  lab: { mode: shadow }
roles:
  analyst:
    allow:
      - { service: tides, tools: ["get_*"], prompts: [summary], completions: [summary, "tides://*"] }
      - { service: lab, tools: ["get_*"] }
    deny:
      - { service: tides, tools: ["get_secret*"], completions: ["tides://private/*"] }
      - { service: lab, tools: ["get_secret*"] }
`,
  );
  const V = '2026-07-28';
  const explain2026 = (...argv: string[]): Promise<{ code: number; out: string; err: string }> =>
    run('--policy', POLICY, '--protocol', V, '--roles', 'analyst', '--scopes', 'tides.read', ...argv);
  const tide = ['--service', 'tides', '--header', 'Mcp-Method: tools/call', '--header', 'Mcp-Name: get_tide'];

  it('headers only: header RBAC, then the authorizer on the body the headers describe; ALLOW', async () => {
    const r = await explain2026(...tide);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /service: tides \(MCP 2026-07-28; mode enforce; requiredScopes tides\.read\)/);
    assert.match(r.out, /scopes: tides\.read/);
    assert.match(
      r.out,
      /request: POST \{"jsonrpc":"2\.0","id":1,"method":"tools\/call","params":\{"name":"get_tide"\}\}\n {9}\(no --body: the message the Mcp-\* headers describe\)\n {9}content-type: application\/json\n {9}mcp-protocol-version: 2026-07-28\n {9}mcp-method: tools\/call\n {9}mcp-name: get_tide\n/,
    );
    assert.match(
      r.out,
      /mcpmesh\.rbac\.deny {3}passes: no deny policy matches\n {2}mcpmesh\.rbac\.allow {2}passes by policy tides\/roles\/analyst\/allow\[0\] \(policy rule roles\.analyst\.allow\[0\]\)\n/,
    );
    assert.match(
      r.out,
      /authorizer \(ext_authz, on the body, after checking that the Mcp-\* headers mirror it\):\nheaders mirror the body\nmessage: tools\/call \(id 1\): tool "get_tide"\ndecision: ALLOW by roles\.analyst\.allow\[0\]/,
    );
    assert.match(r.out, /\nresult: ALLOW\n {2}forwarded to the server with x-mcpmesh-decision: allow; rule=roles\.analyst\.allow\[0\]\n$/);
  });

  it('header/body agreement: headers that say get_tide over a body that calls admin_x get 400, JSON-RPC -32020', async () => {
    const r = await explain2026(
      ...tide,
      '--body',
      JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'admin_x' } }),
    );
    assert.equal(r.code, 1);
    assert.match(r.out, /mcpmesh\.rbac\.allow {2}passes by policy tides\/roles\/analyst\/allow\[0\]/, 'header RBAC sees only get_tide');
    assert.match(r.out, /decision: DENY by header-mismatch\n {2}header mcp-name "get_tide" does not match the body's "admin_x"\n/);
    assert.match(
      r.out,
      /the authorizer answers 400 with JSON-RPC error -32020: Header mismatch: header mcp-name "get_tide" does not match the body's "admin_x"/,
    );
    assert.doesNotMatch(r.out, /hint:/);
    // A body given without the headers a 2026-07-28 client sends: refused, and the hint says which.
    const bare = await explain2026(
      '--service',
      'tides',
      '--body',
      JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'get_tïde' } }),
    );
    assert.equal(bare.code, 1);
    assert.match(bare.out, /JSON-RPC error -32020: Header mismatch: header mcp-method is missing/);
    assert.match(
      bare.out,
      /hint: a 2026-07-28 client sends the headers that mirror this body: --header 'Mcp-Method: tools\/call' --header 'Mcp-Name: =\?base64\?Z2V0X3TDr2Rl\?='\n$/,
    );
    const hinted = await explain2026(
      '--service',
      'tides',
      '--header',
      'Mcp-Method: tools/call',
      '--header',
      'Mcp-Name: =?base64?Z2V0X3TDr2Rl?=',
      '--body',
      JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'get_tïde' } }),
    );
    assert.equal(hinted.code, 0, hinted.out);
  });

  it('the version allow-list: another MCP-Protocol-Version, or a header sent twice, is refused by header RBAC', async () => {
    for (const v of ['2025-11-25', '2027-01-01', '']) {
      const r = await explain2026(...tide, '--header', `MCP-Protocol-Version: ${v}`);
      assert.equal(r.code, 1, v);
      assert.match(
        r.out,
        /mcpmesh\.rbac\.deny {3}DENY by policy tides\/protocol-version \(MCP-Protocol-Version absent, or not one of 2026-07-28\)\n/,
        v,
      );
      assert.match(r.out, /authorizer: not asked \(header RBAC answered first\)/);
      assert.match(
        r.out,
        /result: DENY by RBAC policy tides\/protocol-version .*\n {2}Envoy's RBAC filter mcpmesh\.rbac\.deny answers 403 "RBAC: access denied"\n/,
      );
    }
    const twice = await explain2026(...tide, '--header', 'Mcp-Name: admin_x');
    assert.equal(twice.code, 1);
    assert.match(
      twice.out,
      /DENY by policy tides\/repeated-mcp-header \(an Mcp-Method, Mcp-Name or MCP-Protocol-Version value holds a ",": a header sent more than once\)/,
    );
  });

  it("requiredScopes: a token without them passes header RBAC and gets the authorizer's 403 insufficient_scope", async () => {
    const r = await run('--policy', POLICY, '--protocol', V, '--roles', 'analyst', ...tide, '--public-url', 'https://mcp.example.com');
    assert.equal(r.code, 1);
    assert.match(r.out, /scopes: \(none\)/);
    assert.match(
      r.out,
      /mcpmesh\.rbac\.allow {2}passes by policy tides\/missing-scope \(the token lacks a required scope: the authorizer answers\); also tides\/roles\/analyst\/allow\[0\]\n/,
    );
    assert.match(
      r.out,
      /decision: DENY by services\.tides\.requiredScopes\n {2}the token lacks scope\(s\) tides\.read required for service "tides"/,
    );
    assert.match(
      r.out,
      /the authorizer answers 403 with JSON-RPC error -32003: Forbidden: the token lacks scope\(s\) tides\.read required for service "tides"\n {2}www-authenticate: Bearer error="insufficient_scope", scope="tides\.read", resource_metadata="https:\/\/mcp\.example\.com\/\.well-known\/oauth-protected-resource\/mcp\/tides"\n/,
    );
    // The same whatever the role says: scopes come first, as for every revision.
    const secret = await run(
      '--policy',
      POLICY,
      '--protocol',
      V,
      '--roles',
      'analyst',
      '--service',
      'tides',
      '--header',
      'Mcp-Method: tools/call',
      '--header',
      'Mcp-Name: get_secret_tide',
    );
    assert.match(secret.out, /decision: DENY by services\.tides\.requiredScopes/);
  });

  it('an explicit deny: header RBAC refuses it, naming the policy rule the authorizer names for 2025-11-25', async () => {
    const secret = ['--service', 'tides', '--header', 'Mcp-Method: tools/call', '--header', 'Mcp-Name: get_secret_tide'];
    const r = await explain2026(...secret);
    assert.equal(r.code, 1);
    assert.match(
      r.out,
      /mcpmesh\.rbac\.deny {3}DENY by policy tides\/roles\/analyst\/deny\[0\] \(policy rule roles\.analyst\.deny\[0\]\)\n/,
    );
    assert.match(r.out, /result: DENY by RBAC policy tides\/roles\/analyst\/deny\[0\] \(policy rule roles\.analyst\.deny\[0\]\)/);
    const old = await run(
      '--policy',
      POLICY,
      '--protocol',
      '2025-11-25',
      '--roles',
      'analyst',
      '--scopes',
      'tides.read',
      '--service',
      'tides',
      '--body',
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_secret_tide' } }),
    );
    assert.equal(old.code, 1);
    assert.match(old.out, /decision: DENY by roles\.analyst\.deny\[0\]/);
    assert.match(
      old.out,
      /the authorizer answers 403 with JSON-RPC error -32003: Forbidden: tool "get_secret_tide" on service "tides" is denied by policy rule roles\.analyst\.deny\[0\]/,
    );
  });

  it('completions: no header carries the ref, so header RBAC passes them and the authorizer decides on the body', async () => {
    const complete = (uri: string): string =>
      JSON.stringify({
        jsonrpc: '2.0',
        id: 4,
        method: 'completion/complete',
        params: { ref: { type: 'ref/resource', uri }, argument: { name: 'q', value: '' } },
      });
    const ok = await explain2026(
      '--service',
      'tides',
      '--header',
      'Mcp-Method: completion/complete',
      '--body',
      complete('tides://public/today'),
    );
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /decision: ALLOW by roles\.analyst\.allow\[0\]/);
    const denied = await explain2026(
      '--service',
      'tides',
      '--header',
      'Mcp-Method: completion/complete',
      '--body',
      complete('tides://private/log'),
    );
    assert.equal(denied.code, 1);
    assert.match(denied.out, /mcpmesh\.rbac\.deny {3}passes: no deny policy matches\n {2}mcpmesh\.rbac\.allow {2}passes by /);
    assert.match(
      denied.out,
      /decision: DENY by roles\.analyst\.deny\[0\]\n {2}role "analyst" denies completion for "tides:\/\/private\/log"/,
    );
  });

  it("shadow mode: RBAC's shadow rules and the authorizer would deny; the request goes through, logged and counted", async () => {
    const r = await explain2026('--service', 'lab', '--header', 'Mcp-Method: tools/call', '--header', 'Mcp-Name: get_secret_x');
    assert.equal(r.code, 1);
    assert.match(
      r.out,
      /mcpmesh\.rbac\.deny {3}shadow rules, logged and not enforced: would DENY by policy lab\/roles\/analyst\/deny\[1\] \(policy rule roles\.analyst\.deny\[1\]\)\n/,
    );
    assert.match(r.out, /decision: DENY by roles\.analyst\.deny\[1\]/);
    assert.match(
      r.out,
      /note: service "lab" is in shadow mode: the authorizer logs and counts this denial \(x-mcpmesh-shadow-deny: roles\.analyst\.deny\[1\]\) but lets the request through/,
    );
  });
});
