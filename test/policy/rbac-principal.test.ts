// The JWT principals of header RBAC must read claims exactly as the policy engine does: the role principal as
// rolesFromClaims (a list, a single string, a space-separated string, a nested claim, a claim whose name has a
// dot), the scope principal as scopesFromClaims (`scope`, or `scp` when there is none). grpc-js-xds never
// matches metadata principals, so they are evaluated by authz/envoy-rbac.ts, which follows Envoy's source:
// - jwt_authn payload_in_metadata + normalize_payload_in_metadata.space_delimited_claims
//   (jwt_authn/authenticator.cc, setPayloadMetadata): top-level string claims only, split on ' ', empty
//   parts skipped; lists and nested claims untouched. The claims to split are read from the generated filter.
// - MetadataMatcher (common/common/matchers.cc): the path walks Struct keys; a missing value matches nothing
//   but present_match tests for it.
// - ListMatcher::match: false unless the value is a list; true if one element matches.
// - StringMatcherImpl::match(Value): false unless the value is a string; safe_regex is RE2::FullMatch.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compileRbacPerRoute,
  normalizedPayload,
  principalMatches,
  type DynamicMetadata,
} from '../../control-plane/src/authz/envoy-rbac.ts';
import { rolesFromClaims, scopesFromClaims } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { MeshSecurity } from '../../control-plane/src/model/types.ts';
import { principalForRole, principalForScope } from '../../control-plane/src/translate/rbac.ts';
import { jwtAuthnFilter } from '../../control-plane/src/translate/security.ts';
import { EC_P256_JWK, jwksText } from './jwks-fixtures.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function security(roleClaim: string): MeshSecurity {
  const policy = parsePolicy(
    `
trustDomain: mcpmesh.test
roleClaim: "${roleClaim}"
providers:
  - { name: idp, issuer: idp, audiences: [mesh], jwks: '${jwksText(EC_P256_JWK)}' }
roles: { admin: {}, "team.a": {}, "r+1": {} }
`,
    'principal.yaml',
  );
  return { policy, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } };
}

/** What the gateway would put in jwt_authn's dynamic metadata for these claims (payload_in_metadata). */
function metadataFor(sec: MeshSecurity, claims: Record<string, Json>): DynamicMetadata {
  const cfg = jwtAuthnFilter(sec)['typed_config'] as {
    providers: Record<string, { payload_in_metadata: string; normalize_payload_in_metadata: { space_delimited_claims: string[] } }>;
  };
  const p = Object.values(cfg.providers)[0] as {
    payload_in_metadata: string;
    normalize_payload_in_metadata: { space_delimited_claims: string[] };
  };
  return {
    'envoy.filters.http.jwt_authn': {
      [p.payload_in_metadata]: normalizedPayload(claims, p.normalize_payload_in_metadata.space_delimited_claims),
    },
  };
}

const SHAPES: Record<string, Array<Record<string, Json>>> = {
  roles: [
    { roles: ['admin'] },
    { roles: ['viewer', 'admin'] },
    { roles: 'admin' },
    { roles: 'viewer admin' },
    { roles: '  admin  ' },
    { roles: 'administrator' },
    { roles: 'xadmin' },
    { roles: ['admin viewer'] },
    { roles: [] },
    { roles: '' },
    { roles: 7 },
    { roles: [1, 'admin'] },
    { roles: 'team.a' },
    { roles: ['r+1'] },
    { roles: 'rr1' },
    { roles: 'admin\tviewer' },
    {},
  ],
  'realm_access.roles': [
    { realm_access: { roles: ['admin'] } },
    { realm_access: { roles: 'viewer admin' } },
    { realm_access: { roles: 'admin' } },
    { realm_access: { roles: 'adminx' } },
    { realm_access: ['admin'] },
    { realm_access: { other: 'admin' } },
    // A claim literally named "realm_access.roles" wins over the nested one, even when it lacks the role.
    { 'realm_access.roles': ['admin'] },
    { 'realm_access.roles': 'admin viewer' },
    { 'realm_access.roles': ['viewer'], realm_access: { roles: ['admin'] } },
    { 'realm_access.roles': 'team.a', realm_access: { roles: 'admin' } },
  ],
  scope: [{ scope: 'openid admin' }, { scope: 'openid' }, { scope: ['admin'] }],
};

describe('the JWT role principal of header RBAC reads the claim as the policy engine does', () => {
  for (const [claim, shapes] of Object.entries(SHAPES)) {
    it(`roleClaim ${claim}: ${shapes.length} claim shapes × 3 roles agree`, () => {
      const sec = security(claim);
      const disagreements: string[] = [];
      for (const claims of shapes) {
        for (const role of ['admin', 'team.a', 'r+1']) {
          const engine = rolesFromClaims(claims, claim).includes(role);
          const envoy = principalMatches(principalForRole(sec, role), metadataFor(sec, claims));
          if (engine !== envoy) disagreements.push(`${JSON.stringify(claims)} role ${role}: engine ${engine}, RBAC ${envoy}`);
        }
      }
      assert.deepEqual(disagreements, []);
    });
  }

  it('the evaluator sees the difference the fix is about: a list matcher alone never matches a string claim', () => {
    const sec = security('realm_access.roles');
    const listOnly = {
      metadata: {
        filter: 'envoy.filters.http.jwt_authn',
        path: [{ key: 'jwt_payload' }, { key: 'realm_access' }, { key: 'roles' }],
        value: { list_match: { one_of: { string_match: { exact: 'admin' } } } },
      },
    };
    const md = metadataFor(sec, { realm_access: { roles: 'admin' } });
    assert.equal(principalMatches(listOnly, md), false);
    assert.equal(principalMatches(principalForRole(sec, 'admin'), md), true);
  });
});

describe('the scope principal of header RBAC reads scopes as the policy engine does', () => {
  it('scope (string, list) or, only without one, scp (list, string): agree for every shape', () => {
    const sec = security('roles');
    const shapes: Array<Record<string, Json>> = [
      { scope: 'openid vault.read' },
      { scope: 'vault.read' },
      { scope: 'vault.readx' },
      { scope: ['vault.read'] },
      { scope: 'a  vault.read ' },
      { scp: ['vault.read'] },
      { scp: 'openid vault.read' },
      { scp: 'vault' },
      { scope: 'openid', scp: ['vault.read'] },
      { scope: [], scp: ['vault.read'] },
      { scope: null, scp: ['vault.read'] },
      { scope: 7 },
      { scope: '' },
      {},
      { roles: ['vault.read'] },
      { 'scope.x': 'vault.read' },
    ];
    const disagreements: string[] = [];
    for (const claims of shapes) {
      for (const scope of ['vault.read', 'openid']) {
        const engine = scopesFromClaims(claims).includes(scope);
        const envoy = principalMatches(principalForScope(scope), metadataFor(sec, claims));
        if (engine !== envoy) disagreements.push(`${JSON.stringify(claims)} scope ${scope}: engine ${engine}, RBAC ${envoy}`);
      }
    }
    assert.deepEqual(disagreements, []);
  });
});

describe('the RBAC evaluator refuses header matches grpc-js-xds cannot judge as Envoy does', () => {
  // grpc-js-xds's HeaderMatcher (build/src/matcher.js) never matches a -bin header and reads content-type as
  // "application/grpc"; an RbacRequest has no pseudo-headers. Judging those would be a guess, not Envoy.
  const perRoute = (permission: Json, principal: Json = { any: true }): { [k: string]: Json } => ({
    rbac: { rules: { action: 'DENY', policies: { p: { permissions: [permission], principals: [principal] } } } },
  });
  const header = (name: string): Json => ({ header: { name, string_match: { exact: 'x' } } });

  for (const name of ['content-type', 'trace-bin', ':authority']) {
    it(`a permission or principal on ${name} is an error naming the header`, () => {
      assert.throws(
        () => compileRbacPerRoute(perRoute({ or_rules: { rules: [header('mcp-method'), { not_rule: header(name) }] } })),
        new RegExp(`header match on "${name}"`),
      );
      assert.throws(
        () => compileRbacPerRoute(perRoute({ any: true }, { or_ids: { ids: [header(name)] } })),
        new RegExp(`header match on "${name}"`),
      );
    });
  }

  it('the headers the mesh matches on are judged', () => {
    const filter = compileRbacPerRoute(perRoute(header('mcp-method'), header('mcp-name')));
    assert.ok(filter);
    const req = (method: string) => ({
      headers: [
        ['Mcp-Method', method],
        ['mcp-name', 'x'],
      ] as const,
      path: '/mcp/a',
      metadata: {},
    });
    assert.equal(filter.evaluate(req('x')).allowed, false);
    assert.equal(filter.evaluate(req('y')).allowed, true);
  });
});
