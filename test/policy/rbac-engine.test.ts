// Differential test of the header RBAC (2026-07-28 services): the permissions compiled by
// translate/rbac.ts are evaluated by a real RBAC engine (grpc-js-xds's, the same matcher semantics Envoy
// documents: header exact / prefix / suffix / safe_regex / present, and/or/not rules) and must agree with the
// policy engine the authorizer uses, request by request. Principals (roles from jwt_authn metadata) are not
// evaluated by gRPC's engine (it has no dynamic metadata), so the policies are picked by role name here.
//
// Header RBAC is a cheap first reject in front of the MCP authorizer, which decides on the body and refuses
// headers that do not mirror it. So two properties are checked: on plain names RBAC alone decides exactly as
// the engine; and the whole gateway chain as the generated config wires it (RBAC deny, RBAC allow, then
// ext_authz unless the route disables it) decides exactly as the engine on every request whose headers mirror
// its body, and refuses every request whose headers do not.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { authorize, type CheckInput } from '../../control-plane/src/authz/check.ts';
import type { MeshSecurity, MeshService } from '../../control-plane/src/model/types.ts';
import { compilePolicy, decide, type CompiledPolicy } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { McpAction } from '../../control-plane/src/policy/types.ts';
import { rbacPerRoute } from '../../control-plane/src/translate/rbac.ts';
import type { ProtoObject } from '../../control-plane/src/translate/resource.ts';
import { extAuthzPerRoute, gatewayResource } from '../../control-plane/src/translate/security.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';

interface GrpcRule { apply(info: { headers: Metadata; urlPath: string; destinationIp: string; destinationPort: number }): boolean }
const require = createRequire(import.meta.url);
// grpc-js-xds exports no RBAC API; its compiled engine is loaded from the package's build output.
const grpcRbac = require('@grpc/grpc-js-xds/build/src/rbac.js') as { parsePermission(p: unknown): GrpcRule };

const POLICY = parsePolicy(`
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
`, 'test-policy.yaml');

const COMPILED = compilePolicy(POLICY);
const V = '2026-07-28';
const SECURITY = { policy: POLICY, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } } as MeshSecurity;
const svc = (name: string): MeshService => ({ name, protocol: V }) as MeshService;

interface RbacRules { policies: Record<string, { permissions: ProtoObject[] }> }

/** The compiled per-route RBAC (our object form) -> grpc-js-xds rules, through the real proto encoding. */
function compiled(service: MeshService, which: 'deny' | 'allow'): Map<string, GrpcRule> {
  const perRoute = rbacPerRoute(SECURITY, service)[which] as { rbac: { rules: RbacRules } };
  const Permission = lookupType('envoy.config.rbac.v3.Permission');
  const out = new Map<string, GrpcRule>();
  for (const [name, p] of Object.entries(perRoute.rbac.rules.policies)) {
    const rules = p.permissions.map((perm) => {
      // Encode and decode like an xDS client does, into the shape proto-loader gives grpc-js-xds.
      const decoded = Permission.toObject(Permission.decode(Permission.encode(Permission.fromObject(perm)).finish()), { enums: String, longs: String, defaults: true, oneofs: true });
      return grpcRbac.parsePermission(decoded);
    });
    out.set(name, { apply: (info) => rules.some((r) => r.apply(info)) });
  }
  return out;
}

const RULES = new Map(['inventory', 'vault'].map((s) => [s, { deny: compiled(svc(s), 'deny'), allow: compiled(svc(s), 'allow') }]));

/** Envoy's RBAC filters on the route of `service`: DENY then ALLOW. Headers as [name, value] (repeats allowed). */
function rbacAllows(service: string, role: string, headers: ReadonlyArray<readonly [string, string]>): boolean {
  const md = new Metadata();
  for (const [k, v] of headers) md.add(k, v);
  const info = { headers: md, urlPath: '/mcp', destinationIp: '10.0.0.1', destinationPort: 15006 };
  const { deny, allow } = RULES.get(service) as { deny: Map<string, GrpcRule>; allow: Map<string, GrpcRule> };
  // grpc-js-xds never matches a metadata principal (the JWT role): each role's policies are picked by name.
  const mine = (name: string): boolean => name.startsWith(`${service}/roles/${role}/`);
  const everyone = (name: string): boolean => name === `${service}/protocol-version` || name === `${service}/repeated-mcp-header`;
  const denied = [...deny].some(([name, rule]) => (everyone(name) || mine(name)) && rule.apply(info));
  return !denied && [...allow].some(([name, rule]) => mine(name) && rule.apply(info));
}

const envoyAllows = (role: string, headers: Record<string, string>): boolean => rbacAllows('inventory', role, Object.entries(headers));

/** The ext_authz hop as the generated route config wires it: disabled -> passes; else the authorizer decides. */
function authorizerAllows(policy: CompiledPolicy, service: string, claims: Record<string, unknown>, headers: ReadonlyArray<readonly [string, string]>, body: unknown): boolean {
  const perRoute = JSON.parse(JSON.stringify(extAuthzPerRoute(svc(service), gatewayResource(SECURITY, svc(service))))) as { disabled?: boolean; check_settings?: { context_extensions?: Record<string, string> } };
  if (perRoute.disabled) return true;
  const joined = new Map<string, string>();
  const counts = new Map<string, number>();
  for (const [k, v] of [['content-type', 'application/json'] as const, ...headers]) {
    joined.set(k, joined.has(k) ? `${joined.get(k)},${v}` : v);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const input: CheckInput = {
    method: 'POST', body: JSON.stringify(body), size: JSON.stringify(body).length, metadataClaims: claims,
    contextExtensions: perRoute.check_settings?.context_extensions ?? {},
    header: (name) => joined.get(name), headerCount: (name) => counts.get(name) ?? 0,
  };
  return authorize(policy, input).verdict === 'allow';
}

/** The gateway chain for one POST: RBAC deny + allow, then the authorizer (when the route enables it). */
function gatewayAllows(service: string, claims: { roles: string[]; scope?: string }, headers: ReadonlyArray<readonly [string, string]>, body: unknown): boolean {
  const role = claims.roles[0] as string;
  return rbacAllows(service, role, headers) && authorizerAllows(COMPILED, service, claims, headers, body);
}

interface Req { method: string; name?: string; action: McpAction; params?: Record<string, unknown> }

const REQUESTS: Req[] = [
  { method: 'initialize', action: { kind: 'service' } },
  { method: 'tools/list', action: { kind: 'service' } },
  { method: 'ping', action: { kind: 'service' } },
  ...['get_stock', 'get_secret_prices', 'list_items', 'list_items_all', 'delete_item', 'Get_stock', 'get_', 'xget_stock'].map((name) => ({ method: 'tools/call', name, action: { kind: 'tool', name } as McpAction })),
  ...['inv://public/a', 'inv://public/hr/salaries', 'inv://private/a', 'inv://public'].map((uri) => ({ method: 'resources/read', name: uri, action: { kind: 'resource', uri } as McpAction })),
  { method: 'resources/subscribe', name: 'inv://public/a', action: { kind: 'resource', uri: 'inv://public/a' } },
  ...['summary', 'summary2', 'other'].map((name) => ({ method: 'prompts/get', name, action: { kind: 'prompt', name } as McpAction })),
  // Regex metacharacters in a name must be literal in the compiled regexes.
  { method: 'tools/call', name: 'get_a.b(c)*', action: { kind: 'tool', name: 'get_a.b(c)*' } },
  { method: 'tools/call', name: 'list.items', action: { kind: 'tool', name: 'list.items' } },
];

/** The JSON-RPC body a request's headers mirror. */
function bodyOf(r: Req, name = r.name): Record<string, unknown> {
  const params = r.method === 'tools/call' || r.method === 'prompts/get' ? { name } : r.method.startsWith('resources/') ? { uri: name } : r.params;
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
        if (actual !== expected) disagreements.push(`${r.method} ${r.name ?? ''}: engine ${expected ? 'allows' : 'denies'}, RBAC ${actual ? 'allows' : 'denies'}`);
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
  const headersOf = (r: Req, name = r.name): Array<[string, string]> => [['mcp-protocol-version', V], ['mcp-method', r.method], ...(name !== undefined ? [['mcp-name', name] as [string, string]] : [])];

  it('headers that mirror the body: the chain decides exactly as the policy engine', () => {
    const disagreements: string[] = [];
    for (const role of ROLES) for (const r of REQUESTS) {
      const expected = decide(POLICY, { service: 'inventory', roles: [role], action: r.action }).allow;
      const actual = gatewayAllows('inventory', { roles: [role] }, headersOf(r), bodyOf(r));
      if (actual !== expected) disagreements.push(`${role}: ${r.method} ${r.name ?? ''}: engine ${expected ? 'allows' : 'denies'}, chain ${actual ? 'allows' : 'denies'}`);
    }
    assert.deepEqual(disagreements, []);
  });

  it('what only the body can settle: encoded names and completion refs pass RBAC and are decided by the authorizer as the engine decides', () => {
    const cases: Array<{ r: Req; headers: Array<[string, string]> }> = [
      ...['get_stöck', 'get_secret_ü', 'delete_ïtem', 'get_stock'].map((name) => ({ r: { method: 'tools/call', name, action: { kind: 'tool', name } as McpAction }, headers: headersOf({ method: 'tools/call', action: { kind: 'service' } }, b64(name)) })),
      ...['summary', 'other'].map((name) => {
        const r: Req = { method: 'completion/complete', action: { kind: 'completion', ref: name }, params: { ref: { type: 'ref/prompt', name }, argument: { name: 'a', value: 'b' } } };
        return { r, headers: headersOf(r) };
      }),
    ];
    const disagreements: string[] = [];
    let passedRbac = 0;
    for (const role of ROLES) for (const { r, headers } of cases) {
      const expected = decide(POLICY, { service: 'inventory', roles: [role], action: r.action }).allow;
      if (expected && !rbacAllows('inventory', role, headers)) disagreements.push(`${role}: RBAC rejects ${r.method} ${JSON.stringify(r.action)} the engine allows`);
      if (rbacAllows('inventory', role, headers)) passedRbac += 1;
      const actual = gatewayAllows('inventory', { roles: [role] }, headers, bodyOf(r));
      if (actual !== expected) disagreements.push(`${role}: ${r.method} ${JSON.stringify(r.action)}: engine ${expected ? 'allows' : 'denies'}, chain ${actual ? 'allows' : 'denies'}`);
    }
    assert.deepEqual(disagreements, []);
    assert.ok(passedRbac > 0);
  });

  it('headers that do not mirror the body are refused, even where RBAC and the engine would both allow what each saw', () => {
    const cases: Array<[string, Array<[string, string]>, unknown]> = [
      // RBAC sees get_stock (allowed); the body deletes.
      ['admin', headersOf({ method: 'tools/call', action: { kind: 'service' } }, 'get_stock'), bodyOf(REQUESTS[3] as Req, 'delete_item')],
      ['analyst', headersOf({ method: 'tools/call', action: { kind: 'service' } }, 'get_stock'), bodyOf(REQUESTS[3] as Req, 'get_secret_prices')],
      // RBAC sees a service-level method; the body calls a tool.
      ['viewer', headersOf({ method: 'tools/list', action: { kind: 'service' } }), bodyOf(REQUESTS[3] as Req, 'delete_item')],
      // Two Mcp-Name copies (Envoy >= 1.38 RBAC matches each on its own).
      ['analyst', [...headersOf({ method: 'tools/call', action: { kind: 'service' } }, 'get_stock'), ['mcp-name', 'delete_item']], bodyOf(REQUESTS[3] as Req, 'delete_item')],
    ];
    for (const [role, headers, body] of cases) assert.equal(gatewayAllows('inventory', { roles: [role] }, headers, body), false, JSON.stringify([role, headers, body]));
  });

  it('requiredScopes: a token without the scope is refused on a 2026-07-28 service (RBAC alone ignores scopes)', () => {
    const r: Req = { method: 'tools/call', name: 'read_secret', action: { kind: 'tool', name: 'read_secret' } };
    assert.equal(rbacAllows('vault', 'analyst', headersOf(r)), true, 'header RBAC has no notion of scopes');
    assert.equal(gatewayAllows('vault', { roles: ['analyst'], scope: 'openid' }, headersOf(r), bodyOf(r)), false);
    assert.equal(gatewayAllows('vault', { roles: ['analyst'], scope: 'openid vault.read' }, headersOf(r), bodyOf(r)), true);
  });
});
