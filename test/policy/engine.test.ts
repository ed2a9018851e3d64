// The policy decision engine: table tests of (roles x request -> allow/deny + deciding rule), body parsing,
// role claims and explain().
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compilePolicy,
  decide,
  explain,
  globToRegExp,
  mcpActionsOf,
  parseMcpBody,
  rolesFromClaims,
  scopesFromClaims,
} from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { McpAction } from '../../control-plane/src/policy/types.ts';

const POLICY = parsePolicy(
  `
trustDomain: mcpmesh.local
services:
  weather: {}
  files: { mode: shadow }
  vault: { requiredScopes: [vault.read] }
roles:
  analyst:
    allow:
      - service: weather
        tools: ["get_*"]
        resources: ["weather://*"]
        prompts: ["forecast-*"]
        completions: ["forecast-*", "weather://*"]
      - { service: files, tools: [read_file], resources: ["file:///reports/*"] }
    deny:
      - { service: weather, tools: ["get_secret*"], resources: ["weather://secret/*"] }
  admin:
    allow:
      - { service: "*", tools: ["*"], resources: ["*"], prompts: ["*"], completions: ["*"] }
    deny:
      - { service: files, tools: [delete_file] }
  intern:
    allow:
      - { service: weather, tools: [get_forecast] }
    deny:
      - service: files
  lister:
    allow:
      - service: weather
  vaulter:
    allow:
      - { service: vault, tools: ["*"] }
  empty: {}
`,
  'engine-test.yaml',
);
const CP = compilePolicy(POLICY);

const tool = (name: string): McpAction => ({ kind: 'tool', name });
const resource = (uri: string): McpAction => ({ kind: 'resource', uri });
const prompt = (name: string): McpAction => ({ kind: 'prompt', name });
const completion = (ref: string): McpAction => ({ kind: 'completion', ref });
const SERVICE: McpAction = { kind: 'service' };

interface Row {
  name: string;
  roles: string[];
  service: string;
  action: McpAction;
  allow: boolean;
  rule: string;
  reason?: RegExp;
  scopes?: string[];
}

const TABLE: Row[] = [
  // default deny
  { name: 'no roles', roles: [], service: 'weather', action: SERVICE, allow: false, rule: 'default-deny', reason: /has no roles/ },
  {
    name: 'unknown role only',
    roles: ['ghost'],
    service: 'weather',
    action: tool('get_forecast'),
    allow: false,
    rule: 'default-deny',
    reason: /none of the caller's roles \(ghost\) is defined/,
  },
  { name: 'role with no rules', roles: ['empty'], service: 'weather', action: SERVICE, allow: false, rule: 'default-deny' },
  {
    name: 'service not covered',
    roles: ['analyst'],
    service: 'billing',
    action: SERVICE,
    allow: false,
    rule: 'default-deny',
    reason: /no allow rule of role\(s\) analyst matches service "billing"/,
  },
  {
    name: 'tool not listed',
    roles: ['analyst'],
    service: 'weather',
    action: tool('set_alert'),
    allow: false,
    rule: 'default-deny',
    reason: /lists tool "set_alert" under tools/,
  },
  {
    name: 'service-only allow does not cover tools',
    roles: ['lister'],
    service: 'weather',
    action: tool('get_forecast'),
    allow: false,
    rule: 'default-deny',
  },
  {
    name: 'absent prompts list covers no prompt',
    roles: ['intern'],
    service: 'weather',
    action: prompt('forecast-daily'),
    allow: false,
    rule: 'default-deny',
  },
  // allow by glob
  { name: 'service-level by any rule', roles: ['lister'], service: 'weather', action: SERVICE, allow: true, rule: 'roles.lister.allow[0]' },
  {
    name: 'tool glob',
    roles: ['analyst'],
    service: 'weather',
    action: tool('get_forecast'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
    reason: /role "analyst" allows tool "get_forecast" on service "weather"/,
  },
  { name: 'glob is anchored', roles: ['analyst'], service: 'weather', action: tool('xget_forecast'), allow: false, rule: 'default-deny' },
  { name: 'literal tool', roles: ['intern'], service: 'weather', action: tool('get_forecast'), allow: true, rule: 'roles.intern.allow[0]' },
  {
    name: 'literal tool is exact',
    roles: ['intern'],
    service: 'weather',
    action: tool('get_forecast2'),
    allow: false,
    rule: 'default-deny',
  },
  {
    name: 'service glob *',
    roles: ['admin'],
    service: 'anything-at-all',
    action: tool('whatever'),
    allow: true,
    rule: 'roles.admin.allow[0]',
  },
  {
    name: 'regex metacharacters are literal',
    roles: ['analyst'],
    service: 'weather',
    action: tool('get_.+'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  // resources: * crosses '/'
  {
    name: 'resource glob across /',
    roles: ['analyst'],
    service: 'weather',
    action: resource('weather://eu/paris/today'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  {
    name: 'resource other scheme',
    roles: ['analyst'],
    service: 'weather',
    action: resource('file:///etc/passwd'),
    allow: false,
    rule: 'default-deny',
  },
  {
    name: 'resource prefix glob',
    roles: ['analyst'],
    service: 'files',
    action: resource('file:///reports/2026/q1.pdf'),
    allow: true,
    rule: 'roles.analyst.allow[1]',
  },
  {
    name: 'resource outside prefix',
    roles: ['analyst'],
    service: 'files',
    action: resource('file:///reports-old/x'),
    allow: false,
    rule: 'default-deny',
  },
  {
    name: 'resource deny across /',
    roles: ['analyst'],
    service: 'weather',
    action: resource('weather://secret/a/b'),
    allow: false,
    rule: 'roles.analyst.deny[0]',
  },
  // prompts and completions
  {
    name: 'prompt glob',
    roles: ['analyst'],
    service: 'weather',
    action: prompt('forecast-weekly'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  {
    name: 'prompt not matching',
    roles: ['analyst'],
    service: 'weather',
    action: prompt('admin-report'),
    allow: false,
    rule: 'default-deny',
  },
  {
    name: 'completion of a prompt ref',
    roles: ['analyst'],
    service: 'weather',
    action: completion('forecast-daily'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  {
    name: 'completion of a resource ref',
    roles: ['analyst'],
    service: 'weather',
    action: completion('weather://{city}'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  {
    name: 'completion not listed',
    roles: ['intern'],
    service: 'weather',
    action: completion('forecast-daily'),
    allow: false,
    rule: 'default-deny',
  },
  // explicit deny beats allow, across roles
  {
    name: 'deny beats own allow',
    roles: ['analyst'],
    service: 'weather',
    action: tool('get_secret_plans'),
    allow: false,
    rule: 'roles.analyst.deny[0]',
    reason: /explicit deny wins/,
  },
  {
    name: 'deny of one role beats allow of another',
    roles: ['admin', 'analyst'],
    service: 'weather',
    action: tool('get_secret_plans'),
    allow: false,
    rule: 'roles.analyst.deny[0]',
  },
  {
    name: 'claim order does not matter',
    roles: ['analyst', 'admin'],
    service: 'weather',
    action: tool('get_secret_plans'),
    allow: false,
    rule: 'roles.analyst.deny[0]',
  },
  {
    name: 'admin deny of one tool',
    roles: ['admin'],
    service: 'files',
    action: tool('delete_file'),
    allow: false,
    rule: 'roles.admin.deny[0]',
  },
  {
    name: 'admin other tools fine',
    roles: ['admin'],
    service: 'files',
    action: tool('read_file'),
    allow: true,
    rule: 'roles.admin.allow[0]',
  },
  {
    name: 'deny without lists denies the whole service (service-level)',
    roles: ['intern', 'admin'],
    service: 'files',
    action: SERVICE,
    allow: false,
    rule: 'roles.intern.deny[0]',
    reason: /the whole service "files"/,
  },
  {
    name: 'deny without lists denies the whole service (tools)',
    roles: ['analyst', 'intern'],
    service: 'files',
    action: tool('read_file'),
    allow: false,
    rule: 'roles.intern.deny[0]',
  },
  {
    name: 'item deny does not deny service-level',
    roles: ['analyst'],
    service: 'weather',
    action: SERVICE,
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  {
    name: 'first allowing role in policy order',
    roles: ['intern', 'analyst'],
    service: 'weather',
    action: tool('get_forecast'),
    allow: true,
    rule: 'roles.analyst.allow[0]',
  },
  // text a server might read differently than "*" would: matches no rule (issue 11)
  {
    name: 'a control character matches no glob',
    roles: ['admin'],
    service: 'weather',
    action: tool('get_forecast\u0000x'),
    allow: false,
    rule: 'invalid-name',
    reason: /control character U\+0000/,
  },
  {
    name: 'a newline matches no glob',
    roles: ['analyst'],
    service: 'weather',
    action: tool('get_forecast\nadmin'),
    allow: false,
    rule: 'invalid-name',
  },
  {
    name: 'edge whitespace does not slip past an exact deny through "*"',
    roles: ['admin'],
    service: 'files',
    action: tool('delete_file '),
    allow: false,
    rule: 'invalid-name',
    reason: /whitespace/,
  },
  {
    name: 'a lone surrogate matches no glob',
    roles: ['analyst'],
    service: 'weather',
    action: tool('get_\ud800'),
    allow: false,
    rule: 'invalid-name',
  },
  { name: 'a C1 control in a prompt', roles: ['admin'], service: 'weather', action: prompt('x\u0085'), allow: false, rule: 'invalid-name' },
  // resource URIs are normalized before matching
  {
    name: 'dot segments resolved: out of the allowed prefix',
    roles: ['analyst'],
    service: 'files',
    action: resource('file:///reports/../etc/passwd'),
    allow: false,
    rule: 'default-deny',
    reason: /resource "file:\/\/\/etc\/passwd"/,
  },
  {
    name: 'encoded dot segments resolved',
    roles: ['analyst'],
    service: 'files',
    action: resource('file:///reports/%2e%2E/etc/passwd'),
    allow: false,
    rule: 'default-deny',
  },
  {
    name: 'dot segments resolved: into the allowed prefix',
    roles: ['analyst'],
    service: 'files',
    action: resource('file:///etc/../reports/q1.pdf'),
    allow: true,
    rule: 'roles.analyst.allow[1]',
  },
  {
    name: 'host case does not slip past a deny',
    roles: ['analyst'],
    service: 'weather',
    action: resource('weather://SECRET/a'),
    allow: false,
    rule: 'roles.analyst.deny[0]',
  },
  {
    name: 'unreserved escapes decoded before a deny',
    roles: ['analyst'],
    service: 'weather',
    action: resource('weather://%73ecret/a'),
    allow: false,
    rule: 'roles.analyst.deny[0]',
  },
  {
    name: 'an encoded slash is ambiguous',
    roles: ['admin'],
    service: 'files',
    action: resource('file:///reports%2F..%2Fetc'),
    allow: false,
    rule: 'invalid-resource-uri',
    reason: /encoded "\/"/,
  },
  {
    name: 'a backslash is ambiguous',
    roles: ['admin'],
    service: 'files',
    action: resource('file:///reports\\..\\etc'),
    allow: false,
    rule: 'invalid-resource-uri',
  },
  // required scopes
  {
    name: 'required scope missing',
    roles: ['vaulter'],
    service: 'vault',
    action: tool('read'),
    allow: false,
    rule: 'services.vault.requiredScopes',
    reason: /lacks scope\(s\) vault.read/,
  },
  {
    name: 'required scope present',
    roles: ['vaulter'],
    service: 'vault',
    action: tool('read'),
    scopes: ['openid', 'vault.read'],
    allow: true,
    rule: 'roles.vaulter.allow[0]',
  },
];

describe('decide', () => {
  for (const row of TABLE) {
    it(`${row.allow ? 'allows' : 'denies'}: ${row.name}`, () => {
      const d = decide(CP, { service: row.service, roles: row.roles, action: row.action, ...(row.scopes ? { scopes: row.scopes } : {}) });
      assert.equal(d.allow, row.allow, d.reason);
      assert.equal(d.rule, row.rule, d.reason);
      if (row.reason) assert.match(d.reason, row.reason);
    });
  }

  it('accepts an uncompiled Policy (compiled once, cached)', () => {
    const d = decide(POLICY, { service: 'weather', roles: ['analyst'], action: tool('get_forecast') });
    assert.deepEqual([d.allow, d.rule], [true, 'roles.analyst.allow[0]']);
  });

  it('decides fast enough for the hot path', () => {
    const input = { service: 'weather', roles: ['admin', 'analyst', 'intern'], action: tool('get_forecast') };
    const n = 50_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) decide(CP, input);
    const us = ((performance.now() - t0) * 1000) / n;
    assert.ok(us < 20, `decide took ${us.toFixed(2)} µs`);
  });
});

describe('globToRegExp', () => {
  it('only * is special, anchored, matches newlines', () => {
    const re = globToRegExp(['a*c', 'x.y']);
    assert.ok(re.test('abbbc'));
    assert.ok(re.test('ac'));
    assert.ok(re.test('a/b\nc'));
    assert.ok(re.test('x.y'));
    assert.ok(!re.test('xzy'));
    assert.ok(!re.test('zac'));
    assert.ok(!globToRegExp([]).test(''));
  });
});

describe('mcpActionsOf', () => {
  const req = (method: string, params?: unknown, id: number | string = 1): Record<string, unknown> => ({
    jsonrpc: '2.0',
    id,
    method,
    ...(params !== undefined ? { params } : {}),
  });
  const CASES: Array<[string, unknown, McpAction[]]> = [
    ['tools/call', req('tools/call', { name: 'echo', arguments: { message: 'hi' } }), [tool('echo')]],
    ['resources/read', req('resources/read', { uri: 'weather://paris' }), [resource('weather://paris')]],
    ['resources/subscribe', req('resources/subscribe', { uri: 'a://b' }), [resource('a://b')]],
    ['resources/unsubscribe', req('resources/unsubscribe', { uri: 'a://b' }), [resource('a://b')]],
    ['prompts/get', req('prompts/get', { name: 'p1' }), [prompt('p1')]],
    [
      'completion ref/prompt',
      req('completion/complete', { ref: { type: 'ref/prompt', name: 'p1' }, argument: { name: 'a', value: 'b' } }),
      [completion('p1')],
    ],
    [
      'completion ref/resource',
      req('completion/complete', { ref: { type: 'ref/resource', uri: 'file:///{path}' }, argument: { name: 'path', value: 'x' } }),
      [completion('file:///{path}')],
    ],
    [
      'initialize',
      req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } }),
      [SERVICE],
    ],
    ['tools/list', req('tools/list'), [SERVICE]],
    ['ping', req('ping'), [SERVICE]],
    ['notification', { jsonrpc: '2.0', method: 'notifications/initialized' }, [SERVICE]],
    ['response (sampling answer)', { jsonrpc: '2.0', id: 'srv-1', result: { content: { type: 'text', text: 'x' } } }, [SERVICE]],
    ['error response', { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'x' } }, [SERVICE]],
    [
      'batch: every element',
      [
        req('ping'),
        req('tools/call', { name: 'a' }, 2),
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } },
        req('resources/read', { uri: 'u://x' }, 3),
      ],
      [SERVICE, tool('a'), SERVICE, resource('u://x')],
    ],
    [
      'id-less tools/call is still judged as a tool call',
      { jsonrpc: '2.0', method: 'tools/call', params: { name: 'sneaky' } },
      [tool('sneaky')],
    ],
    ['resource URIs normalized', req('resources/read', { uri: 'FILE:///reports/./a/../%62.txt' }), [resource('file:///reports/b.txt')]],
    [
      'completion ref/resource URIs as written (SDK servers compare them as strings with their templates)',
      req('completion/complete', { ref: { type: 'ref/resource', uri: 'file:///x/../{path}' }, argument: { name: 'path', value: 'x' } }),
      [completion('file:///x/../{path}')],
    ],
    ['a method that names nothing is exact, not folded', req('Tools/List'), [SERVICE]],
    ['a batch of 100', Array.from({ length: 100 }, (_, i) => req('ping', undefined, i)), Array.from({ length: 100 }, () => SERVICE)],
  ];
  for (const [name, body, want] of CASES) {
    it(name, () => {
      assert.deepEqual(mcpActionsOf(body), { actions: want });
      assert.deepEqual(mcpActionsOf(JSON.stringify(body)), { actions: want }, 'as text');
      assert.deepEqual(mcpActionsOf(Buffer.from(JSON.stringify(body))), { actions: want }, 'as bytes');
    });
  }

  const BAD: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{"jsonrpc": "2.0", "method": ', /^body is not JSON/],
    ['empty body', '', /body is empty/],
    ['empty batch', [], /empty JSON-RPC batch/],
    ['a number', 42, /not a JSON-RPC message object \(got number 42\)/],
    ['no jsonrpc', { id: 1, method: 'ping' }, /"jsonrpc" must be "2.0" \(got nothing\)/],
    ['request without method', { jsonrpc: '2.0', id: 1, params: {} }, /request has no "method"/],
    ['neither request nor response', { jsonrpc: '2.0', params: {} }, /no "method" and is not a response/],
    ['method not a string', { jsonrpc: '2.0', id: 1, method: 7 }, /"method" must be a string \(got number 7\)/],
    ['id not string/number', { jsonrpc: '2.0', id: { a: 1 }, method: 'ping' }, /"id" must be a string or a number/],
    ['params not an object', { jsonrpc: '2.0', id: 1, method: 'ping', params: 'x' }, /"params" of "ping" must be an object/],
    [
      'tools/call without name',
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { arguments: {} } },
      /tools\/call needs "params.name", a non-empty string \(got nothing\)/,
    ],
    [
      'tools/call with a number name',
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 5 } },
      /tools\/call needs "params.name".*got number 5/,
    ],
    ['tools/call with no params', { jsonrpc: '2.0', id: 1, method: 'tools/call' }, /tools\/call needs "params.name"/],
    ['resources/read without uri', { jsonrpc: '2.0', id: 1, method: 'resources/read', params: {} }, /resources\/read needs "params.uri"/],
    [
      'prompts/get with empty name',
      { jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: '' } },
      /prompts\/get needs "params.name"/,
    ],
    ['completion without ref', { jsonrpc: '2.0', id: 1, method: 'completion/complete', params: {} }, /needs "params.ref", an object/],
    [
      'completion with a bad ref type',
      { jsonrpc: '2.0', id: 1, method: 'completion/complete', params: { ref: { type: 'ref/tool', name: 'x' } } },
      /"params.ref.type" must be "ref\/prompt" or "ref\/resource"/,
    ],
    [
      'completion ref/prompt without name',
      { jsonrpc: '2.0', id: 1, method: 'completion/complete', params: { ref: { type: 'ref/prompt' } } },
      /ref\/prompt needs "params.ref.name"/,
    ],
    [
      'batch with one bad element',
      [
        { jsonrpc: '2.0', id: 1, method: 'ping' },
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: {} },
      ],
      /^batch element \[1\]: tools\/call needs/,
    ],
    [
      'a batch over the SDK cap',
      Array.from({ length: 101 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'ping' })),
      /batch of 101 messages; at most 100/,
    ],
    [
      'a control character in a name',
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_x\u0000y' } },
      /"params.name" of tools\/call contains the control character U\+0000/,
    ],
    [
      'edge whitespace in a name',
      { jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: 'p1 ' } },
      /has leading or trailing whitespace/,
    ],
    ['a control character in a method', { jsonrpc: '2.0', id: 1, method: 'tools/call\u0000' }, /"method" contains the control character/],
    [
      'a naming method in another case',
      { jsonrpc: '2.0', id: 1, method: 'Tools/Call', params: { name: 'x' } },
      /is not tools\/call \(method names are case-sensitive\)/,
    ],
    [
      'an ambiguous URI',
      { jsonrpc: '2.0', id: 1, method: 'resources/read', params: { uri: 'file:///a/%2e%2e%2fb' } },
      /"params.uri" of resources\/read is refused: the URI has an encoded "\/"/,
    ],
    [
      'a non-string _meta protocol version',
      { jsonrpc: '2.0', id: 1, method: 'ping', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': 7 } } },
      /must be a string/,
    ],
  ];
  for (const [name, body, want] of BAD) {
    it(`malformed: ${name}`, () => {
      const r = mcpActionsOf(typeof body === 'string' ? body : JSON.stringify(body));
      assert.ok('error' in r, `expected an error, got ${JSON.stringify(r)}`);
      assert.match(r.error, want);
    });
  }

  it('bytes: one leading BOM dropped (as servers do), anything but UTF-8 refused', () => {
    const body = Buffer.from(JSON.stringify(req('tools/call', { name: 'echo' })));
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    assert.deepEqual(mcpActionsOf(Buffer.concat([bom, body])), { actions: [tool('echo')] });
    assert.deepEqual(mcpActionsOf(`\ufeff${body.toString()}`), { actions: [tool('echo')] });
    assert.match((mcpActionsOf(Buffer.concat([bom, bom, body])) as { error: string }).error, /^body is not JSON/);
    assert.deepEqual(mcpActionsOf(Buffer.from([0x7b, 0xc0, 0xaf, 0x7d])), { error: 'body is not valid UTF-8' });
  });

  it('a huge value is not repeated whole in the error', () => {
    const r = mcpActionsOf(JSON.stringify({ jsonrpc: 'x'.repeat(100_000), id: 1, method: 'ping' }));
    assert.ok('error' in r && r.error.length < 300, JSON.stringify(r).slice(0, 400));
  });

  it('keeps what the header check needs: the raw Mcp-Name target and the _meta protocol version', () => {
    const p = parseMcpBody({
      jsonrpc: '2.0',
      id: 1,
      method: 'resources/read',
      params: { uri: 'file:///a/../b', _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } },
    });
    assert.ok('messages' in p);
    assert.deepEqual(p.messages[0], {
      action: resource('file:///b'),
      method: 'resources/read',
      target: 'file:///a/../b',
      id: 1,
      protocolVersion: '2026-07-28',
    });
  });

  it('keeps the id of a malformed request', () => {
    assert.deepEqual(parseMcpBody({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: {} }), {
      error: 'tools/call needs "params.name", a non-empty string (got nothing)',
      id: 9,
    });
  });
});

describe('batches through decide', () => {
  it('one denied element denies the request', () => {
    const r = mcpActionsOf([
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_forecast' } },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'get_secret' } },
    ]);
    assert.ok('actions' in r);
    const ds = r.actions.map((action) => decide(CP, { service: 'weather', roles: ['analyst'], action }));
    assert.deepEqual(
      ds.map((d) => [d.allow, d.rule]),
      [
        [true, 'roles.analyst.allow[0]'],
        [false, 'roles.analyst.deny[0]'],
      ],
    );
  });
});

describe('rolesFromClaims / scopesFromClaims', () => {
  it('reads arrays, space-separated strings and nested claims', () => {
    assert.deepEqual(rolesFromClaims({ roles: ['a', 'b', 3, ''] }, 'roles'), ['a', 'b']);
    assert.deepEqual(rolesFromClaims({ scope: 'openid  analyst admin' }, 'scope'), ['openid', 'analyst', 'admin']);
    assert.deepEqual(rolesFromClaims({ realm_access: { roles: ['x'] } }, 'realm_access.roles'), ['x']);
    assert.deepEqual(rolesFromClaims({ 'a.b': 'lit' }, 'a.b'), ['lit']);
    assert.deepEqual(rolesFromClaims({}, 'roles'), []);
    assert.deepEqual(rolesFromClaims({ roles: { admin: true } }, 'roles'), []);
    assert.deepEqual(rolesFromClaims(null, 'roles'), []);
    assert.deepEqual(rolesFromClaims({ roles: 'x' }, '__proto__'), []);
    assert.deepEqual(scopesFromClaims({ scope: 'a b' }), ['a', 'b']);
    assert.deepEqual(scopesFromClaims({ scp: ['c'] }), ['c']);
  });
});

describe('explain', () => {
  it("returns the decision and every rule of the caller's roles with whether it matched", () => {
    const e = explain(CP, { service: 'weather', roles: ['intern', 'analyst', 'nobody'], action: tool('get_secret_x') });
    assert.equal(e.decision.allow, false);
    assert.equal(e.decision.rule, 'roles.analyst.deny[0]');
    assert.deepEqual(e.roles, { known: ['analyst', 'intern'], unknown: ['nobody'] });
    assert.deepEqual(
      e.considered.map((t) => [t.rule, t.matched]),
      [
        ['roles.analyst.deny[0]', true],
        ['roles.intern.deny[0]', false],
        ['roles.analyst.allow[0]', true],
        ['roles.analyst.allow[1]', false],
        ['roles.intern.allow[0]', false],
      ],
    );
    const byRule = new Map(e.considered.map((t) => [t.rule, t.why]));
    assert.match(byRule.get('roles.analyst.deny[0]') ?? '', /tools pattern "get_secret\*" matches "get_secret_x"/);
    assert.match(byRule.get('roles.intern.deny[0]') ?? '', /service pattern "files" does not match "weather"/);
    assert.match(byRule.get('roles.intern.allow[0]') ?? '', /no tools pattern of \[get_forecast\] matches "get_secret_x"/);
  });

  it('agrees with decide on every table row', () => {
    for (const row of TABLE) {
      const input = { service: row.service, roles: row.roles, action: row.action, ...(row.scopes ? { scopes: row.scopes } : {}) };
      const e = explain(CP, input);
      assert.deepEqual(e.decision, decide(CP, input), row.name);
      const matchedDeny = e.considered.find((t) => t.effect === 'deny' && t.matched);
      const matchedAllow = e.considered.find((t) => t.effect === 'allow' && t.matched);
      if (!e.decision.rule.startsWith('services.') && !e.decision.rule.startsWith('invalid-')) {
        // The trace alone tells the same story: a matching deny decides, else a matching allow, else default deny.
        assert.equal(matchedDeny?.rule ?? matchedAllow?.rule ?? 'default-deny', e.decision.rule, row.name);
      }
    }
  });
});
