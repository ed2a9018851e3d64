// Differential test of the header RBAC (2026-07-28 services): the per-route configs compiled by
// translate/rbac.ts are evaluated by a real RBAC engine (grpc-js-xds's, the same matcher semantics Envoy
// documents: header exact / prefix / suffix / safe_regex / present, and/or/not rules; authz/envoy-rbac.ts,
// which also evaluates the role principals on jwt_authn's metadata) and must agree with the policy engine the
// authorizer uses, request by request.
//
// Header RBAC is a cheap first reject in front of the MCP authorizer, which decides on the body and refuses
// headers that do not mirror it. So two properties are checked: on plain names RBAC alone decides exactly as
// the engine; and the whole gateway chain as the generated config wires it (RBAC deny, RBAC allow, then
// ext_authz unless the route disables it) decides exactly as the engine on every request whose headers mirror
// its body, and refuses every request whose headers do not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extAuthzCheck, gatewayRoute, runRbac, serviceOf, type GatewayRoute } from '../../control-plane/src/authz/chain.ts';
import { authorize } from '../../control-plane/src/authz/check.ts';
import type { MeshSecurity } from '../../control-plane/src/model/types.ts';
import { compilePolicy, decide, type CompiledPolicy } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { McpAction } from '../../control-plane/src/policy/types.ts';

const POLICY = parsePolicy(
  `
trustDomain: mesh.test
services:
  inventory: {}
  vault: { requiredScopes: [vault.read] }
roles:
  analyst:
    allow:
      - service: inventory
        tools: ["get_*", list_items]
        resources: ["inv://public/*"]
        prompts: [summary]
        completions: [summary]
      - { service: vault, tools: ["*"] }
    deny:
      - service: inventory
        tools: ["get_secret*"]
        resources: ["inv://public/hr/*"]
  viewer:
    allow:
      - service: "inv*"
  admin:
    allow:
      - service: "*"
        tools: ["*"]
        resources: ["*"]
        prompts: ["*"]
        completions: ["*"]
  banned:
    allow:
      - service: inventory
        tools: ["*"]
    deny:
      - service: inventory
`,
  'test-policy.yaml',
);

const COMPILED = compilePolicy(POLICY);
const V = '2026-07-28';
const SECURITY: MeshSecurity = { policy: POLICY, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } };
/** The gateway's routes to the services, as routes.ts generates them (header RBAC, then ext_authz). */
const ROUTES = new Map<string, GatewayRoute>(['inventory', 'vault'].map((s) => [s, gatewayRoute(SECURITY, serviceOf(s, V))]));
const routeOf = (service: string): GatewayRoute => ROUTES.get(service) as GatewayRoute;

/** Envoy's RBAC filters on the route of `service`: DENY then ALLOW. Headers as [name, value] (repeats allowed). */
function rbacAllows(
  service: string,
  role: string,
  headers: ReadonlyArray<readonly [string, string]>,
  claims: Record<string, unknown> = {},
): boolean {
  return runRbac(routeOf(service), { method: 'POST', headers, body: '', claims: { roles: [role], ...claims } }).denied === undefined;
}

const envoyAllows = (role: string, headers: Record<string, string>): boolean => rbacAllows('inventory', role, Object.entries(headers));

/** The ext_authz hop as the route wires it: the authorizer decides on what ext_authz sends it. */
function authorizerAllows(
  policy: CompiledPolicy,
  service: string,
  claims: Record<string, unknown>,
  headers: ReadonlyArray<readonly [string, string]>,
  body: unknown,
): boolean {
  const req = { method: 'POST', headers: [['content-type', 'application/json'] as const, ...headers], body: JSON.stringify(body), claims };
  return authorize(policy, extAuthzCheck(routeOf(service), req)).verdict === 'allow';
}

/** The gateway chain for one POST: RBAC deny + allow, then the authorizer (when the route enables it). */
function gatewayAllows(
  service: string,
  claims: { roles: string[]; scope?: string },
  headers: ReadonlyArray<readonly [string, string]>,
  body: unknown,
): boolean {
  const role = claims.roles[0] as string;
  return rbacAllows(service, role, headers) && authorizerAllows(COMPILED, service, claims, headers, body);
}

interface Req {
  method: string;
  name?: string;
  action: McpAction;
  params?: Record<string, unknown>;
}

const REQUESTS: Req[] = [
  { method: 'initialize', action: { kind: 'service' } },
  { method: 'tools/list', action: { kind: 'service' } },
  { method: 'ping', action: { kind: 'service' } },
  ...['get_stock', 'get_secret_prices', 'list_items', 'list_items_all', 'delete_item', 'Get_stock', 'get_', 'xget_stock'].map((name) => ({
    method: 'tools/call',
    name,
    action: { kind: 'tool', name } as McpAction,
  })),
  ...['inv://public/a', 'inv://public/hr/salaries', 'inv://private/a', 'inv://public'].map((uri) => ({
    method: 'resources/read',
    name: uri,
    action: { kind: 'resource', uri } as McpAction,
  })),
  { method: 'resources/subscribe', name: 'inv://public/a', action: { kind: 'resource', uri: 'inv://public/a' } },
  ...['summary', 'summary2', 'other'].map((name) => ({ method: 'prompts/get', name, action: { kind: 'prompt', name } as McpAction })),
  // Regex metacharacters in a name must be literal in the compiled regexes.
  { method: 'tools/call', name: 'get_a.b(c)*', action: { kind: 'tool', name: 'get_a.b(c)*' } },
  { method: 'tools/call', name: 'list.items', action: { kind: 'tool', name: 'list.items' } },
];

/** The JSON-RPC body a request's headers mirror. */
function bodyOf(r: Req, name = r.name): Record<string, unknown> {
  const params =
    r.method === 'tools/call' || r.method === 'prompts/get' ? { name } : r.method.startsWith('resources/') ? { uri: name } : r.params;
  return { jsonrpc: '2.0', id: 1, method: r.method, ...(params ? { params } : {}) };
}

const b64 = (s: string): string => `=?base64?${Buffer.from(s).toString('base64')}?=`;

describe('header RBAC for 2026-07-28 services, evaluated by a real RBAC engine (grpc-js-xds)', () => {
  for (const role of ['analyst', 'viewer', 'admin', 'banned', 'nobody']) {
    it(`role ${role}: every request is decided as the policy engine decides it`, () => {
      const disagreements: string[] = [];
      for (const r of REQUESTS) {
        const headers = { 'mcp-protocol-version': V, 'mcp-method': r.method, ...(r.name !== undefined ? { 'mcp-name': r.name } : {}) };
        const expected = decide(POLICY, { service: 'inventory', roles: [role], action: r.action }).allow;
        const actual = envoyAllows(role, headers);
        if (actual !== expected)
          disagreements.push(`${r.method} ${r.name ?? ''}: engine ${expected ? 'allows' : 'denies'}, RBAC ${actual ? 'allows' : 'denies'}`);
      }
      assert.deepEqual(disagreements, []);
      const allowed = REQUESTS.filter((r) => decide(POLICY, { service: 'inventory', roles: [role], action: r.action }).allow).length;
      const expectedAllowed = { analyst: 10, viewer: 3, admin: REQUESTS.length, banned: 0, nobody: 0 }[role];
      assert.equal(allowed, expectedAllowed, 'the table exercises both outcomes as intended');
    });
  }

  it('the protocol version must be a known header-validated revision: an allow-list, not a deny-list', () => {
    const call = { 'mcp-method': 'tools/call', 'mcp-name': 'get_stock' };
    assert.equal(envoyAllows('admin', { ...call, 'mcp-protocol-version': V }), true);
    for (const v of ['2025-11-25', '2026-07-27', '2024-11-05', '2027-01-01', '2026-07-28x', ' 2026-07-28', 'garbage', '']) {
      assert.equal(envoyAllows('admin', { ...call, 'mcp-protocol-version': v }), false, JSON.stringify(v));
    }
    assert.equal(envoyAllows('admin', call), false, 'no version header');
  });

  it('a header sent twice (joined with "," as Envoy before 1.38 matches it) is denied even where a glob would take it', () => {
    const call = { 'mcp-protocol-version': V, 'mcp-method': 'tools/call' };
    assert.equal(envoyAllows('analyst', { ...call, 'mcp-name': 'get_stock' }), true);
    assert.equal(envoyAllows('analyst', { ...call, 'mcp-name': 'get_stock,delete_item' }), false);
    assert.equal(envoyAllows('admin', { ...call, 'mcp-name': 'get_stock,delete_item' }), false);
    assert.equal(envoyAllows('admin', { ...call, 'mcp-method': 'tools/call,tools/list', 'mcp-name': 'get_stock' }), false);
    assert.equal(envoyAllows('admin', { ...call, 'mcp-protocol-version': `${V},${V}`, 'mcp-name': 'get_stock' }), false);
  });

  it('the engine sees a difference the test must catch (sanity: a wrong header name denies)', () => {
    assert.equal(envoyAllows('analyst', { 'mcp-protocol-version': V, 'mcp-method': 'tools/call', 'mcp-name': 'get_stock' }), true);
    assert.equal(envoyAllows('analyst', { 'mcp-protocol-version': V, 'mcp-method': 'tools/call', 'x-mcp-name': 'get_stock' }), false);
  });
});

describe('the gateway chain (header RBAC, then the authorizer on the body) for 2026-07-28 services', () => {
  const ROLES = ['analyst', 'viewer', 'admin', 'banned', 'nobody'];
  const headersOf = (r: Req, name = r.name): Array<[string, string]> => [
    ['mcp-protocol-version', V],
    ['mcp-method', r.method],
    ...(name !== undefined ? [['mcp-name', name] as [string, string]] : []),
  ];

  it('headers that mirror the body: the chain decides exactly as the policy engine', () => {
    const disagreements: string[] = [];
    for (const role of ROLES)
      for (const r of REQUESTS) {
        const expected = decide(POLICY, { service: 'inventory', roles: [role], action: r.action }).allow;
        const actual = gatewayAllows('inventory', { roles: [role] }, headersOf(r), bodyOf(r));
        if (actual !== expected)
          disagreements.push(
            `${role}: ${r.method} ${r.name ?? ''}: engine ${expected ? 'allows' : 'denies'}, chain ${actual ? 'allows' : 'denies'}`,
          );
      }
    assert.deepEqual(disagreements, []);
  });

  it('what only the body can settle: encoded names and completion refs pass RBAC and are decided by the authorizer as the engine decides', () => {
    const cases: Array<{ r: Req; headers: Array<[string, string]> }> = [
      ...['get_stöck', 'get_secret_ü', 'delete_ïtem', 'get_stock'].map((name) => ({
        r: { method: 'tools/call', name, action: { kind: 'tool', name } as McpAction },
        headers: headersOf({ method: 'tools/call', action: { kind: 'service' } }, b64(name)),
      })),
      ...['summary', 'other'].map((name) => {
        const r: Req = {
          method: 'completion/complete',
          action: { kind: 'completion', ref: name },
          params: { ref: { type: 'ref/prompt', name }, argument: { name: 'a', value: 'b' } },
        };
        return { r, headers: headersOf(r) };
      }),
    ];
    const disagreements: string[] = [];
    let passedRbac = 0;
    for (const role of ROLES)
      for (const { r, headers } of cases) {
        const expected = decide(POLICY, { service: 'inventory', roles: [role], action: r.action }).allow;
        if (expected && !rbacAllows('inventory', role, headers))
          disagreements.push(`${role}: RBAC rejects ${r.method} ${JSON.stringify(r.action)} the engine allows`);
        if (rbacAllows('inventory', role, headers)) passedRbac += 1;
        const actual = gatewayAllows('inventory', { roles: [role] }, headers, bodyOf(r));
        if (actual !== expected)
          disagreements.push(
            `${role}: ${r.method} ${JSON.stringify(r.action)}: engine ${expected ? 'allows' : 'denies'}, chain ${actual ? 'allows' : 'denies'}`,
          );
      }
    assert.deepEqual(disagreements, []);
    assert.ok(passedRbac > 0);
  });

  it('headers that do not mirror the body are refused, even where RBAC and the engine would both allow what each saw', () => {
    const cases: Array<[string, Array<[string, string]>, unknown]> = [
      // RBAC sees get_stock (allowed); the body deletes.
      ['admin', headersOf({ method: 'tools/call', action: { kind: 'service' } }, 'get_stock'), bodyOf(REQUESTS[3] as Req, 'delete_item')],
      [
        'analyst',
        headersOf({ method: 'tools/call', action: { kind: 'service' } }, 'get_stock'),
        bodyOf(REQUESTS[3] as Req, 'get_secret_prices'),
      ],
      // RBAC sees a service-level method; the body calls a tool.
      ['viewer', headersOf({ method: 'tools/list', action: { kind: 'service' } }), bodyOf(REQUESTS[3] as Req, 'delete_item')],
      // Two Mcp-Name copies (Envoy >= 1.38 RBAC matches each on its own).
      [
        'analyst',
        [...headersOf({ method: 'tools/call', action: { kind: 'service' } }, 'get_stock'), ['mcp-name', 'delete_item']],
        bodyOf(REQUESTS[3] as Req, 'delete_item'),
      ],
    ];
    for (const [role, headers, body] of cases)
      assert.equal(gatewayAllows('inventory', { roles: [role] }, headers, body), false, JSON.stringify([role, headers, body]));
  });

  it('requiredScopes: a token without the scope passes header RBAC whatever its roles, and the authorizer refuses it', () => {
    const r: Req = { method: 'tools/call', name: 'read_secret', action: { kind: 'tool', name: 'read_secret' } };
    // Scopes come before roles: the authorizer answers 403 insufficient_scope, as for every revision.
    for (const role of ['analyst', 'nobody']) assert.equal(rbacAllows('vault', role, headersOf(r), { scope: 'openid' }), true, role);
    assert.equal(
      rbacAllows('vault', 'nobody', headersOf(r), { scope: 'openid vault.read' }),
      false,
      'with the scope, roles decide in RBAC',
    );
    assert.equal(rbacAllows('vault', 'nobody', headersOf(r), { scp: ['vault.read'] }), false, 'scp counts when there is no scope claim');
    assert.equal(gatewayAllows('vault', { roles: ['analyst'], scope: 'openid' }, headersOf(r), bodyOf(r)), false);
    assert.equal(gatewayAllows('vault', { roles: ['analyst'], scope: 'openid vault.read' }, headersOf(r), bodyOf(r)), true);
  });
});
