// Differential test of the header RBAC (2026-07-28 services): the permissions compiled by
// translate/rbac.ts are evaluated by a real RBAC engine (grpc-js-xds's, the same matcher semantics Envoy
// documents: header exact / safe_regex / present, and/or/not rules) and must agree with the policy engine
// the authorizer uses, request by request. Principals (roles from jwt_authn metadata) are not evaluated by
// gRPC's engine (it has no dynamic metadata), so the policies are picked by role name here.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import type { MeshSecurity, MeshService } from '../../control-plane/src/model/types.ts';
import { decide } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { McpAction } from '../../control-plane/src/policy/types.ts';
import { rbacPerRoute } from '../../control-plane/src/translate/rbac.ts';
import type { ProtoObject } from '../../control-plane/src/translate/resource.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';

interface GrpcRule { apply(info: { headers: Metadata; urlPath: string; destinationIp: string; destinationPort: number }): boolean }
const require = createRequire(import.meta.url);
// grpc-js-xds exports no RBAC API; its compiled engine is loaded from the package's build output.
const grpcRbac = require('@grpc/grpc-js-xds/build/src/rbac.js') as { parsePermission(p: unknown): GrpcRule };

const POLICY = parsePolicy(`
trustDomain: mesh.test
roles:
  analyst:
    allow:
      - service: inventory
        tools: ["get_*", list_items]
        resources: ["inv://public/*"]
        prompts: [summary]
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

const SECURITY = { policy: POLICY, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } } as MeshSecurity;
const SERVICE = { name: 'inventory', protocol: '2026-07-28' } as MeshService;

interface RbacRules { policies: Record<string, { permissions: ProtoObject[] }> }

/** The compiled per-route RBAC (our object form) -> grpc-js-xds rules, through the real proto encoding. */
function compiled(which: 'deny' | 'allow'): Map<string, GrpcRule> {
  const perRoute = rbacPerRoute(SECURITY, SERVICE)[which] as { rbac: { rules: RbacRules } };
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

const DENY = compiled('deny');
const ALLOW = compiled('allow');

function envoyAllows(role: string, headers: Record<string, string>): boolean {
  const md = new Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  const info = { headers: md, urlPath: '/mcp', destinationIp: '10.0.0.1', destinationPort: 15006 };
  // grpc-js-xds never matches a metadata principal (the JWT role): each role's policies are picked by name.
  const mine = (name: string): boolean => name.startsWith(`inventory/roles/${role}/`);
  const everyone = (name: string): boolean => name === 'inventory/protocol-version' || name === 'inventory/repeated-mcp-header';
  const denied = [...DENY].some(([name, rule]) => (everyone(name) || mine(name)) && rule.apply(info));
  return !denied && [...ALLOW].some(([name, rule]) => mine(name) && rule.apply(info));
}

const REQUESTS: Array<{ method: string; name?: string; action: McpAction }> = [
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

describe('header RBAC for 2026-07-28 services, evaluated by a real RBAC engine (grpc-js-xds)', () => {
  for (const role of ['analyst', 'viewer', 'admin', 'banned', 'nobody']) {
    it(`role ${role}: every request is decided as the policy engine decides it`, () => {
      const disagreements: string[] = [];
      for (const r of REQUESTS) {
        const headers = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': r.method, ...(r.name !== undefined ? { 'mcp-name': r.name } : {}) };
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

  it('requests without a protocol version, or older than 2026-07-28, are denied even for admin', () => {
    const call = { 'mcp-method': 'tools/call', 'mcp-name': 'get_stock' };
    assert.equal(envoyAllows('admin', { ...call, 'mcp-protocol-version': '2026-07-28' }), true);
    for (const v of ['2025-11-25', '2026-07-27', '2024-11-05']) assert.equal(envoyAllows('admin', { ...call, 'mcp-protocol-version': v }), false, v);
    assert.equal(envoyAllows('admin', call), false, 'no version header');
    assert.equal(envoyAllows('admin', { ...call, 'mcp-protocol-version': '2027-01-01' }), true, 'later revisions pass');
  });

  it('a header sent twice (joined with "," as Envoy before 1.38 matches it) is denied even where a glob would take it', () => {
    const call = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call' };
    assert.equal(envoyAllows('analyst', { ...call, 'mcp-name': 'get_stock' }), true);
    assert.equal(envoyAllows('analyst', { ...call, 'mcp-name': 'get_stock,delete_item' }), false);
    assert.equal(envoyAllows('admin', { ...call, 'mcp-name': 'get_stock,delete_item' }), false);
    assert.equal(envoyAllows('admin', { ...call, 'mcp-method': 'tools/call,tools/list', 'mcp-name': 'get_stock' }), false);
  });

  it('the engine sees a difference the test must catch (sanity: a wrong header name denies)', () => {
    assert.equal(envoyAllows('analyst', { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'get_stock' }), true);
    assert.equal(envoyAllows('analyst', { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'x-mcp-name': 'get_stock' }), false);
  });
});
