// Header-based MCP authorization for 2026-07-28 services, compiled to Envoy RBAC: every POST carries
// `Mcp-Method` and, for tools/call, resources/read and prompts/get, `Mcp-Name`, so Envoy can reject before
// the body is even read. Two filters: DENY (explicit deny rules, requests whose protocol version is not a
// known header-validated revision, repeated MCP headers) runs before ALLOW (default deny: only what a role
// allows passes).
//
// This is a cheap first reject, not the decision: headers are what the client says, the body is what the
// server runs. The MCP authorizer (ext_authz, after these filters) decides on the body and refuses a request
// whose headers do not mirror it. So RBAC never needs to be stricter than the policy engine, and is not on a
// well-formed request: it decides exactly as the engine on plain names, and lets through to the authorizer
// what only the body can settle: Mcp-Name values in the =?base64?...?= form (it cannot decode them) and
// completion/complete refs (no header carries them). (A resource URI sent in another spelling than its normal
// form, or holding a ",", is refused here although the authorizer would judge it: see the README.)
// test/policy/rbac-engine.test.ts holds it to that, with the authorizer behind it.
// Pure functions of the policy and the service.
import type { MeshSecurity, MeshService } from '../model/types.ts';
import type { Pattern, Role, RuleTarget } from '../policy/types.ts';
import { globRegex, wordInListRegex } from '../model/glob.ts';
import { spiffeIdMatcher } from '../identity/sds.ts';
import { HEADER_VALIDATED_PROTOCOLS } from '../policy/mcp-http.ts';
import { JWT_PAYLOAD_METADATA_KEY, RBAC_STAT_PREFIX, rbacPolicyName } from './naming.ts';
import { any, type ProtoObject } from './resource.ts';

export const RBAC_DENY_FILTER = 'mcpmesh.rbac.deny';
export const RBAC_ALLOW_FILTER = 'mcpmesh.rbac.allow';
const RBAC_TYPE = 'envoy.extensions.filters.http.rbac.v3.RBAC';
const RBAC_PER_ROUTE = 'envoy.extensions.filters.http.rbac.v3.RBACPerRoute';
const JWT_AUTHN_FILTER = 'envoy.filters.http.jwt_authn';

/** Methods whose target is named by Mcp-Name, by the kind of rule that governs them. */
const NAMED_METHODS = {
  tools: ['tools/call'],
  resources: ['resources/read', 'resources/subscribe', 'resources/unsubscribe'],
  prompts: ['prompts/get'],
  // completion/complete has no Mcp-Name: header policy can only deny it wholesale (completions: ["*"]), and
  // lets any rule with completions through to the authorizer, which reads the ref from the body.
  completions: ['completion/complete'],
} as const;
type Kind = keyof typeof NAMED_METHODS;

const ALL_NAMED = Object.values(NAMED_METHODS).flat();

function globMatches(p: Pattern, value: string): boolean {
  return new RegExp(globRegex(p)).test(value);
}

function header(name: string, match: ProtoObject): ProtoObject {
  return { header: { name, string_match: match } };
}

function methodIs(methods: readonly string[]): ProtoObject {
  return methods.length === 1
    ? header('mcp-method', { exact: methods[0] })
    : { or_rules: { rules: methods.map((m) => header('mcp-method', { exact: m })) } };
}

/** An Mcp-Name in the =?base64?...?= form (non-ASCII names, and any a client chose to encode). */
const ENCODED_NAME: ProtoObject = { and_rules: { rules: [header('mcp-name', { prefix: '=?base64?' }), header('mcp-name', { suffix: '?=' })] } };

/**
 * Mcp-Name matches one of `patterns`. For an allow rule, an encoded name passes too: RBAC cannot decode it,
 * and the authorizer behind it decodes it, checks it against the body and decides on the name itself.
 */
function nameMatches(patterns: readonly Pattern[], forAllow: boolean): ProtoObject {
  if (patterns.includes('*')) return { any: true };
  const rules = patterns.map((p) => header('mcp-name', { safe_regex: { regex: globRegex(p) } }));
  if (forAllow) rules.push(ENCODED_NAME);
  return rules.length === 1 ? (rules[0] as ProtoObject) : { or_rules: { rules } };
}

/** What one allow or deny rule covers, as an RBAC permission. */
function permission(rule: RuleTarget, forAllow: boolean): ProtoObject | undefined {
  const parts: ProtoObject[] = [];
  for (const kind of Object.keys(NAMED_METHODS) as Kind[]) {
    const patterns = rule[kind];
    if (!patterns || patterns.length === 0) continue;
    if (kind === 'completions') {
      // The ref is in the body only: a deny can be judged here when it covers every ref, an allow never.
      if (forAllow || patterns.includes('*')) parts.push(methodIs(NAMED_METHODS.completions));
      continue;
    }
    parts.push({ and_rules: { rules: [methodIs(NAMED_METHODS[kind]), nameMatches(patterns, forAllow)] } });
  }
  // Methods that name nothing (initialize, ping, tools/list, notifications...) come with access to the service.
  if (forAllow) parts.push({ not_rule: methodIs(ALL_NAMED) });
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : { or_rules: { rules: parts } };
}

/** A MetadataMatcher on jwt_authn's verified payload at `path` (claim keys below the payload). */
function payloadAt(path: readonly string[], value: ProtoObject): ProtoObject {
  return { metadata: { filter: JWT_AUTHN_FILTER, path: [{ key: JWT_PAYLOAD_METADATA_KEY }, ...path.map((key) => ({ key }))], value } };
}

/**
 * The claim at `path` holds `role`, read as the policy engine reads it (rolesFromClaims): a list of strings,
 * or a string of space-separated roles. Envoy's ListMatcher is false for a string, and jwt_authn turns only
 * top-level claims it is told about into lists, so a string needs its own matcher.
 */
function claimHolds(path: readonly string[], role: string): ProtoObject[] {
  return [
    payloadAt(path, { list_match: { one_of: { string_match: { exact: role } } } }),
    payloadAt(path, { string_match: { safe_regex: { regex: wordInListRegex(role) } } }),
  ];
}

/**
 * The caller holds `role`, per any JWT provider's verified payload (jwt_authn writes it to dynamic metadata).
 * Like the engine's claimValue: a claim named literally `a.b` wins; only when there is none does a dotted
 * name walk nested objects (Keycloak's `realm_access.roles`).
 */
export function principalForRole(sec: MeshSecurity, role: string): ProtoObject {
  const claim = sec.policy.roleClaim;
  const literal = claimHolds([claim], role);
  if (!claim.includes('.')) return { or_ids: { ids: literal } };
  const noLiteral = { not_id: payloadAt([claim], { present_match: true }) };
  const nested = { and_ids: { ids: [noLiteral, { or_ids: { ids: claimHolds(claim.split('.'), role) } }] } };
  return { or_ids: { ids: [...literal, nested] } };
}

function rulesFor(role: Role, svc: MeshService, which: 'allow' | 'deny'): Array<[number, RuleTarget]> {
  return role[which].map((r, i): [number, RuleTarget] => [i, r]).filter(([, r]) => globMatches(r.service, svc.name));
}

/**
 * The protocol version is not one the mesh knows to carry header/body validation: absent, older, or unknown
 * (a later revision, a typo). An allow-list: headers are only worth judging for a revision that promises the
 * server checks them against the body (and the authorizer checks the same list).
 */
const versionNotValidated = {
  not_rule: versionIs(HEADER_VALIDATED_PROTOCOLS),
};

function versionIs(versions: readonly string[]): ProtoObject {
  const rules = versions.map((v) => header('mcp-protocol-version', { exact: v }));
  return rules.length === 1 ? (rules[0] as ProtoObject) : { or_rules: { rules } };
}

const repeatedMcpHeader = {
  or_rules: { rules: ['mcp-method', 'mcp-name', 'mcp-protocol-version'].map((h) => header(h, { contains: ',' })) },
};

/**
 * RBAC per-route configs (deny, allow) for a header-routable service. Shadow mode logs instead of enforcing.
 * Policy names carry the service (rbacPolicyName): per-policy counters are the per-service counts.
 */
export function rbacPerRoute(sec: MeshSecurity, svc: MeshService): { deny: ProtoObject; allow: ProtoObject } {
  const shadow = sec.policy.services.find((s) => s.service === svc.name)?.mode === 'shadow';
  const named = (...parts: string[]): string => rbacPolicyName(svc.name, ...parts);
  const denyPolicies: Record<string, ProtoObject> = {
    [named('protocol-version')]: { permissions: [versionNotValidated], principals: [{ any: true }] },
    // Envoy before 1.38 matches a header sent several times as its values joined with ",": two Mcp-Name
    // headers would be matched as one name no single request names (and a glob such as `get_*` would take both).
    [named('repeated-mcp-header')]: { permissions: [repeatedMcpHeader], principals: [{ any: true }] },
  };
  const allowPolicies: Record<string, ProtoObject> = {};
  for (const role of sec.policy.roles) {
    for (const [i, rule] of rulesFor(role, svc, 'deny')) {
      const whole = !rule.tools && !rule.resources && !rule.prompts && !rule.completions;
      const perm = whole ? { any: true } : permission(rule, false);
      if (perm) denyPolicies[named('roles', role.name, `deny[${i}]`)] = { permissions: [perm], principals: [principalForRole(sec, role.name)] };
    }
    for (const [i, rule] of rulesFor(role, svc, 'allow')) {
      const perm = permission(rule, true);
      if (perm) allowPolicies[named('roles', role.name, `allow[${i}]`)] = { permissions: [perm], principals: [principalForRole(sec, role.name)] };
    }
  }
  const rbac = (action: 'ALLOW' | 'DENY', policies: Record<string, ProtoObject>): ProtoObject => {
    const rules = { action, policies };
    // The per-route prefixes only name the metadata keys (stats use the filter's): keep them the filter's own.
    const prefix = action === 'DENY' ? RBAC_STAT_PREFIX.deny : RBAC_STAT_PREFIX.allow;
    const body = shadow ? { shadow_rules: rules, shadow_rules_stat_prefix: prefix } : { rules, rules_stat_prefix: prefix };
    return any(RBAC_PER_ROUTE, { rbac: { ...body, track_per_rule_stats: true } });
  };
  return { deny: rbac('DENY', denyPolicies), allow: rbac('ALLOW', allowPolicies) };
}

/** Per-route configs for services that are not header-routable: both filters stand aside (the authorizer decides). */
export function rbacDisabled(): { deny: ProtoObject; allow: ProtoObject } {
  const off = any(RBAC_PER_ROUTE, {});
  return { deny: off, allow: off };
}

/** The HCM-level RBAC filters: no rules here (every route sets its own), so they pass unless a route says otherwise. */
export function rbacFilters(): ProtoObject[] {
  const filter = (name: string, prefix: string): ProtoObject => ({
    name, typed_config: any(RBAC_TYPE, { rules_stat_prefix: prefix, shadow_rules_stat_prefix: prefix, track_per_rule_stats: true }),
  });
  return [filter(RBAC_DENY_FILTER, RBAC_STAT_PREFIX.deny), filter(RBAC_ALLOW_FILTER, RBAC_STAT_PREFIX.allow)];
}

/**
 * Sidecar inbound: which mTLS identities may call the service (the policy's allowedCallers). In the route
 * table, not in the listener's TLS context: a policy edit then changes RDS, which Envoy applies in place,
 * instead of the listener, whose connections (hour-long SSE streams) Envoy would drain and cut.
 */
export const RBAC_CALLERS_FILTER = 'mcpmesh.rbac.callers';

/** The HCM-level callers filter: allows nothing by itself, so a route without its own config is closed. */
export function callerRbacFilter(): ProtoObject {
  return { name: RBAC_CALLERS_FILTER, typed_config: any(RBAC_TYPE, { rules: { action: 'ALLOW' }, rules_stat_prefix: RBAC_STAT_PREFIX.callers }) };
}

/** Per route: the peer certificate's SPIFFE ID (URI SAN) must match one of `callers`. */
export function callerRbacPerRoute(service: string, callers: readonly string[]): ProtoObject {
  const principals = callers.map((p) => ({ authenticated: { principal_name: spiffeIdMatcher(p) } }));
  const policies = principals.length > 0 ? { [rbacPolicyName(service, 'allowed-callers')]: { permissions: [{ any: true }], principals } } : {};
  return any(RBAC_PER_ROUTE, { rbac: { rules: { action: 'ALLOW', policies }, rules_stat_prefix: RBAC_STAT_PREFIX.callers, track_per_rule_stats: true } });
}
