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
// what only the body can settle, so that the authorizer answers (and names the rule) as it does for every
// revision: an Mcp-Name in the =?base64?...?= form (RBAC cannot decode it), a resources/subscribe|unsubscribe
// without Mcp-Name (the revision requires it for tools/call, resources/read and prompts/get only),
// completion/complete refs (no header carries them), both for allow rules and for what a role's deny rules
// might cover; and any request of a token that lacks one of the service's requiredScopes (the authorizer
// answers 403 insufficient_scope before roles are looked at). (A resource URI sent in another spelling than
// its normal form, or holding a ",", is refused here although the authorizer would judge it: see the README.)
// test/policy/rbac-engine.test.ts and differential.test.ts hold it to that, with the authorizer behind it.
// Pure functions of the policy and the service.
import type { MeshSecurity, MeshService } from '../model/types.ts';
import type { Pattern, Role, RuleTarget } from '../policy/types.ts';
import { globRegex, wordInListRegex } from '../model/glob.ts';
import { spiffeIdMatcher } from '../identity/sds.ts';
import { HEADER_VALIDATED_PROTOCOLS, NAME_REQUIRED_METHODS } from '../policy/mcp-http.ts';
import { JWT_PAYLOAD_METADATA_KEY, RBAC_STAT_PREFIX, rbacPolicyName, rbacPolicyNameParts } from './naming.ts';
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
const ENCODED_NAME: ProtoObject = {
  and_rules: { rules: [header('mcp-name', { prefix: '=?base64?' }), header('mcp-name', { suffix: '?=' })] },
};

function orOf(rules: readonly ProtoObject[]): ProtoObject {
  return rules.length === 1 ? (rules[0] as ProtoObject) : { or_rules: { rules: [...rules] } };
}

/** Mcp-Name matches one of `patterns` (a plain name: RBAC cannot decode an encoded one). */
function nameMatches(patterns: readonly Pattern[]): ProtoObject {
  if (patterns.includes('*')) return { any: true };
  return orOf(patterns.map((p) => header('mcp-name', { safe_regex: { regex: globRegex(p) } })));
}

/**
 * The requests of a kind whose target only the body shows: an encoded Mcp-Name, no Mcp-Name where the method
 * does not require one, and every completion/complete (no header carries its ref). RBAC passes them on to
 * the authorizer, which checks the headers against the body and decides on the target itself.
 */
function bodyOnly(kind: Kind): ProtoObject {
  const methods = NAMED_METHODS[kind];
  if (kind === 'completions') return methodIs(methods);
  const optional = methods.filter((m) => !NAME_REQUIRED_METHODS.has(m));
  return orOf([
    { and_rules: { rules: [methodIs(methods), ENCODED_NAME] } },
    ...(optional.length > 0
      ? [{ and_rules: { rules: [methodIs(optional), { not_rule: { header: { name: 'mcp-name', present_match: true } } }] } }]
      : []),
  ]);
}

/** The kinds a rule lists (an absent or empty list covers nothing). */
function listedKinds(rule: RuleTarget): Kind[] {
  return (Object.keys(NAMED_METHODS) as Kind[]).filter((k) => (rule[k]?.length ?? 0) > 0);
}

/** What an allow rule covers, as an RBAC permission: its names, what only the body shows, and the methods that name nothing. */
function allowPermission(rule: RuleTarget): ProtoObject {
  const parts = listedKinds(rule).map((kind): ProtoObject => {
    const patterns = rule[kind] as readonly Pattern[];
    if (kind === 'completions') return bodyOnly(kind);
    const named = { and_rules: { rules: [methodIs(NAMED_METHODS[kind]), nameMatches(patterns)] } };
    return patterns.includes('*') ? named : orOf([named, bodyOnly(kind)]);
  });
  // Methods that name nothing (initialize, ping, tools/list, notifications...) come with access to the service.
  parts.push({ not_rule: methodIs(ALL_NAMED) });
  return orOf(parts);
}

/**
 * What a deny rule that lists items covers as far as headers show: its plain names, and every request of a
 * kind it covers whole (`*`). Undefined when headers show none of it (completion refs only).
 */
function denyPermission(rule: RuleTarget): ProtoObject | undefined {
  const parts = listedKinds(rule).flatMap((kind): ProtoObject[] => {
    const patterns = rule[kind] as readonly Pattern[];
    if (kind === 'completions') return patterns.includes('*') ? [methodIs(NAMED_METHODS[kind])] : [];
    return [{ and_rules: { rules: [methodIs(NAMED_METHODS[kind]), nameMatches(patterns)] } }];
  });
  return parts.length > 0 ? orOf(parts) : undefined;
}

/**
 * What a deny rule might cover that only the body shows (the kinds it lists without `*`): let through by the
 * ALLOW filter so that the authorizer denies it by that rule, rather than RBAC by default deny.
 */
function deniedOnBody(rule: RuleTarget): ProtoObject | undefined {
  const kinds = listedKinds(rule).filter((k) => !(rule[k] as readonly Pattern[]).includes('*'));
  return kinds.length > 0 ? orOf(kinds.map(bodyOnly)) : undefined;
}

/** A MetadataMatcher on jwt_authn's verified payload at `path` (claim keys below the payload). */
function payloadAt(path: readonly string[], value: ProtoObject): ProtoObject {
  return { metadata: { filter: JWT_AUTHN_FILTER, path: [{ key: JWT_PAYLOAD_METADATA_KEY }, ...path.map((key) => ({ key }))], value } };
}

/**
 * The claim at `path` holds `word`, read as the policy engine reads roles and scopes (stringsOf): a list of
 * strings, or a string of space-separated words. Envoy's ListMatcher is false for a string, and jwt_authn turns
 * only top-level claims it is told about into lists, so a string needs its own matcher.
 */
function claimHolds(path: readonly string[], word: string): ProtoObject[] {
  return [
    payloadAt(path, { list_match: { one_of: { string_match: { exact: word } } } }),
    payloadAt(path, { string_match: { safe_regex: { regex: wordInListRegex(word) } } }),
  ];
}

/** The claim at `primary` holds `word`, or, only when there is no such claim at all, the one at `fallback`. */
function claimOrElseHolds(primary: readonly string[], fallback: readonly string[], word: string): ProtoObject {
  const absent = { not_id: payloadAt(primary, { present_match: true }) };
  return {
    or_ids: { ids: [...claimHolds(primary, word), { and_ids: { ids: [absent, { or_ids: { ids: claimHolds(fallback, word) } }] } }] },
  };
}

/**
 * The caller holds `role`, per any JWT provider's verified payload (jwt_authn writes it to dynamic metadata).
 * Like the engine's claimValue: a claim named literally `a.b` wins; only when there is none does a dotted
 * name walk nested objects (Keycloak's `realm_access.roles`).
 */
export function principalForRole(sec: MeshSecurity, role: string): ProtoObject {
  const claim = sec.policy.roleClaim;
  if (!claim.includes('.')) return { or_ids: { ids: claimHolds([claim], role) } };
  return claimOrElseHolds([claim], claim.split('.'), role);
}

/** The token carries `scope`, read as the engine's scopesFromClaims: the `scope` claim, or `scp` when there is none. */
export function principalForScope(scope: string): ProtoObject {
  return claimOrElseHolds(['scope'], ['scp'], scope);
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
  // requiredScopes come before roles (as in the engine): a token that lacks one is the authorizer's to answer
  // (403 insufficient_scope), so role denies only apply to a token that has them all, and it passes ALLOW.
  const required = sec.policy.services.find((s) => s.service === svc.name)?.requiredScopes ?? [];
  const hasScopes: ProtoObject | undefined = required.length > 0 ? { and_ids: { ids: required.map(principalForScope) } } : undefined;
  if (hasScopes) allowPolicies[named('missing-scope')] = { permissions: [{ any: true }], principals: [{ not_id: hasScopes }] };
  for (const role of sec.policy.roles) {
    const holder = principalForRole(sec, role.name);
    const scopedHolder = hasScopes ? { and_ids: { ids: [holder, hasScopes] } } : holder;
    for (const [i, rule] of rulesFor(role, svc, 'deny')) {
      const whole = !rule.tools && !rule.resources && !rule.prompts && !rule.completions;
      const perm = whole ? { any: true } : denyPermission(rule);
      if (perm) denyPolicies[named('roles', role.name, `deny[${i}]`)] = { permissions: [perm], principals: [scopedHolder] };
      const onBody = whole ? undefined : deniedOnBody(rule);
      if (onBody) allowPolicies[named('roles', role.name, `deny[${i}]`, 'body')] = { permissions: [onBody], principals: [holder] };
    }
    for (const [i, rule] of rulesFor(role, svc, 'allow')) {
      allowPolicies[named('roles', role.name, `allow[${i}]`)] = { permissions: [allowPermission(rule)], principals: [holder] };
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

/**
 * The policy rule an RBAC policy of rbacPerRoute stands for (`weather/roles/analyst/deny[0]` ->
 * `roles.analyst.deny[0]`, the engine's rule id), or undefined for the ones that are not a policy rule.
 */
export function policyRuleOfRbacPolicy(name: string): string | undefined {
  const parts = rbacPolicyNameParts(name);
  return parts.length === 4 && parts[1] === 'roles' ? `roles.${parts[2]}.${parts[3]}` : undefined;
}

/** Per-route configs for services that are not header-routable: both filters stand aside (the authorizer decides). */
export function rbacDisabled(): { deny: ProtoObject; allow: ProtoObject } {
  const off = any(RBAC_PER_ROUTE, {});
  return { deny: off, allow: off };
}

/** The HCM-level RBAC filters: no rules here (every route sets its own), so they pass unless a route says otherwise. */
export function rbacFilters(): ProtoObject[] {
  const filter = (name: string, prefix: string): ProtoObject => ({
    name,
    typed_config: any(RBAC_TYPE, { rules_stat_prefix: prefix, shadow_rules_stat_prefix: prefix, track_per_rule_stats: true }),
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
  return {
    name: RBAC_CALLERS_FILTER,
    typed_config: any(RBAC_TYPE, { rules: { action: 'ALLOW' }, rules_stat_prefix: RBAC_STAT_PREFIX.callers }),
  };
}

/** Per route: the peer certificate's SPIFFE ID (URI SAN) must match one of `callers`. */
export function callerRbacPerRoute(service: string, callers: readonly string[]): ProtoObject {
  const principals = callers.map((p) => ({ authenticated: { principal_name: spiffeIdMatcher(p) } }));
  const policies =
    principals.length > 0 ? { [rbacPolicyName(service, 'allowed-callers')]: { permissions: [{ any: true }], principals } } : {};
  return any(RBAC_PER_ROUTE, {
    rbac: { rules: { action: 'ALLOW', policies }, rules_stat_prefix: RBAC_STAT_PREFIX.callers, track_per_rule_stats: true },
  });
}
