// The JWT role principal of header RBAC must read the role claim exactly as the policy engine does
// (rolesFromClaims): a list, a single string, a space-separated string, a nested claim, a claim whose name has
// a dot. grpc-js-xds never matches metadata principals, so this evaluates them with a small stand-in for
// Envoy's matchers, each rule taken from Envoy's source:
// - jwt_authn payload_in_metadata + normalize_payload_in_metadata.space_delimited_claims
//   (jwt_authn/authenticator.cc, setPayloadMetadata): top-level string claims only, split on ' ', empty
//   parts skipped; lists and nested claims untouched.
// - MetadataMatcher (common/common/matchers.cc): the path walks Struct keys; a missing value matches nothing
//   but present_match=false.
// - ListMatcher::match: false unless the value is a list; true if one element matches.
// - StringMatcherImpl::match(Value): false unless the value is a string; safe_regex is RE2::FullMatch.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rolesFromClaims } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { MeshSecurity } from '../../control-plane/src/model/types.ts';
import { principalForRole } from '../../control-plane/src/translate/rbac.ts';
import { jwtAuthnFilter } from '../../control-plane/src/translate/security.ts';
import { EC_P256_JWK, jwksText } from './jwks-fixtures.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = Record<string, unknown>;

function normalize(payload: Record<string, Json>, claims: readonly string[]): Record<string, Json> {
  const out = { ...payload };
  for (const c of claims) {
    const v = payload[c];
    if (typeof v === 'string') {
      const parts = v.split(' ').filter((p) => p !== '');
      if (parts.length > 0) out[c] = parts;
    }
  }
  return out;
}

function at(md: Record<string, Json>, path: readonly string[]): Json | undefined {
  let cur: Json | undefined = md;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, Json>)[key];
  }
  return cur;
}

function stringMatch(m: Obj, v: Json | undefined): boolean {
  if (typeof v !== 'string') return false;
  if (typeof m['exact'] === 'string') return v === m['exact'];
  const re = (m['safe_regex'] as { regex?: string } | undefined)?.regex;
  if (re !== undefined) return new RegExp(`^(?:${re})$`).test(v);
  throw new Error(`stand-in does not know string matcher ${JSON.stringify(m)}`);
}

function valueMatch(m: Obj, v: Json | undefined): boolean {
  if (m['present_match'] !== undefined) return (v !== undefined) === m['present_match'];
  if (m['list_match']) {
    const one = (m['list_match'] as { one_of: Obj }).one_of;
    return Array.isArray(v) && v.some((e) => valueMatch(one, e));
  }
  if (m['string_match']) return stringMatch(m['string_match'] as Obj, v);
  throw new Error(`stand-in does not know value matcher ${JSON.stringify(m)}`);
}

/** Envoy's Principal evaluation for the kinds the role principal uses. */
function principalMatches(p: Obj, dynamicMetadata: Record<string, Record<string, Json>>): boolean {
  if (p['or_ids']) return (p['or_ids'] as { ids: Obj[] }).ids.some((x) => principalMatches(x, dynamicMetadata));
  if (p['and_ids']) return (p['and_ids'] as { ids: Obj[] }).ids.every((x) => principalMatches(x, dynamicMetadata));
  if (p['not_id']) return !principalMatches(p['not_id'] as Obj, dynamicMetadata);
  if (p['metadata']) {
    const m = p['metadata'] as { filter: string; path: Array<{ key: string }>; value: Obj };
    const ns = dynamicMetadata[m.filter] ?? {};
    return valueMatch(m.value, at(ns, m.path.map((s) => s.key)));
  }
  throw new Error(`stand-in does not know principal ${JSON.stringify(p)}`);
}

function security(roleClaim: string): MeshSecurity {
  const policy = parsePolicy(`
trustDomain: mcpmesh.test
roleClaim: "${roleClaim}"
providers:
  - { name: idp, issuer: idp, audiences: [mesh], jwks: '${jwksText(EC_P256_JWK)}' }
roles: { admin: {}, "team.a": {}, "r+1": {} }
`, 'principal.yaml');
  return { policy, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } };
}

/** What the gateway would put in jwt_authn's dynamic metadata for these claims (payload_in_metadata). */
function metadataFor(sec: MeshSecurity, claims: Record<string, Json>): Record<string, Record<string, Json>> {
  const cfg = jwtAuthnFilter(sec)['typed_config'] as { providers: Record<string, { payload_in_metadata: string; normalize_payload_in_metadata: { space_delimited_claims: string[] } }> };
  const p = Object.values(cfg.providers)[0] as { payload_in_metadata: string; normalize_payload_in_metadata: { space_delimited_claims: string[] } };
  return { 'envoy.filters.http.jwt_authn': { [p.payload_in_metadata]: normalize(claims, p.normalize_payload_in_metadata.space_delimited_claims) } };
}

const SHAPES: Record<string, Array<Record<string, Json>>> = {
  roles: [
    { roles: ['admin'] }, { roles: ['viewer', 'admin'] }, { roles: 'admin' }, { roles: 'viewer admin' }, { roles: '  admin  ' },
    { roles: 'administrator' }, { roles: 'xadmin' }, { roles: ['admin viewer'] }, { roles: [] }, { roles: '' }, { roles: 7 },
    { roles: [1, 'admin'] }, { roles: 'team.a' }, { roles: ['r+1'] }, { roles: 'rr1' }, { roles: 'admin\tviewer' }, {},
  ],
  'realm_access.roles': [
    { realm_access: { roles: ['admin'] } }, { realm_access: { roles: 'viewer admin' } }, { realm_access: { roles: 'admin' } },
    { realm_access: { roles: 'adminx' } }, { realm_access: ['admin'] }, { realm_access: { other: 'admin' } },
    // A claim literally named "realm_access.roles" wins over the nested one, even when it lacks the role.
    { 'realm_access.roles': ['admin'] }, { 'realm_access.roles': 'admin viewer' },
    { 'realm_access.roles': ['viewer'], realm_access: { roles: ['admin'] } }, { 'realm_access.roles': 'team.a', realm_access: { roles: 'admin' } },
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
          const envoy = principalMatches(principalForRole(sec, role) as Obj, metadataFor(sec, claims));
          if (engine !== envoy) disagreements.push(`${JSON.stringify(claims)} role ${role}: engine ${engine}, RBAC ${envoy}`);
        }
      }
      assert.deepEqual(disagreements, []);
    });
  }

  it('the stand-in sees the difference the fix is about: a list matcher alone never matches a string claim', () => {
    const sec = security('realm_access.roles');
    const listOnly = { metadata: { filter: 'envoy.filters.http.jwt_authn', path: [{ key: 'jwt_payload' }, { key: 'realm_access' }, { key: 'roles' }], value: { list_match: { one_of: { string_match: { exact: 'admin' } } } } } };
    const md = metadataFor(sec, { realm_access: { roles: 'admin' } });
    assert.equal(principalMatches(listOnly, md), false);
    assert.equal(principalMatches(principalForRole(sec, 'admin') as Obj, md), true);
  });
});
