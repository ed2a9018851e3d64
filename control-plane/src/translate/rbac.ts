// Header-based MCP authorization for 2026-07-28 services, compiled to Envoy RBAC: every POST carries
// `Mcp-Method` and, for tools/call, resources/read and prompts/get, `Mcp-Name`, so Envoy decides without
// reading the body. Two filters: DENY (explicit deny rules, and requests whose protocol version is missing
// or older than header validation) runs before ALLOW (default deny: only what a role allows passes).
// Pure functions of the policy and the service.
import type { MeshSecurity, MeshService } from '../model/types.ts';
import type { Pattern, Role, RuleTarget } from '../policy/types.ts';
import { JWT_PAYLOAD_METADATA_KEY } from './naming.ts';
import { any, type ProtoObject } from './resource.ts';

export const RBAC_DENY_FILTER = 'mcpmesh.rbac.deny';
export const RBAC_ALLOW_FILTER = 'mcpmesh.rbac.allow';
const RBAC_TYPE = 'envoy.extensions.filters.http.rbac.v3.RBAC';
const RBAC_PER_ROUTE = 'envoy.extensions.filters.http.rbac.v3.RBACPerRoute';

/** Methods whose target is named by Mcp-Name, by the kind of rule that governs them. */
const NAMED_METHODS = {
  tools: ['tools/call'],
  resources: ['resources/read', 'resources/subscribe', 'resources/unsubscribe'],
  prompts: ['prompts/get'],
  // completion/complete has no Mcp-Name: header policy can only allow it wholesale (completions: ["*"]).
  completions: ['completion/complete'],
} as const;
type Kind = keyof typeof NAMED_METHODS;

const ALL_NAMED = Object.values(NAMED_METHODS).flat();

/** Glob (`*` = any run of characters) as an anchored RE2 regex. */
export function globRegex(p: Pattern): string {
  return `^${p.split('*').map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&')).join('.*')}$`;
}

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

function nameMatches(patterns: readonly Pattern[]): ProtoObject {
  const rules = patterns.map((p) => (p === '*' ? { any: true } : header('mcp-name', { safe_regex: { regex: globRegex(p) } })));
  return rules.length === 1 ? (rules[0] as ProtoObject) : { or_rules: { rules } };
}

/** What one allow or deny rule covers, as an RBAC permission. `whole` = the rule names no items: the whole service. */
function permission(rule: RuleTarget, allowServiceMethods: boolean): ProtoObject | undefined {
  const parts: ProtoObject[] = [];
  for (const kind of Object.keys(NAMED_METHODS) as Kind[]) {
    const patterns = rule[kind];
    if (!patterns || patterns.length === 0) continue;
    if (kind === 'completions') {
      if (patterns.includes('*')) parts.push(methodIs(NAMED_METHODS.completions));
      continue;
    }
    parts.push({ and_rules: { rules: [methodIs(NAMED_METHODS[kind]), nameMatches(patterns)] } });
  }
  // Methods that name nothing (initialize, ping, tools/list, notifications...) come with access to the service.
  if (allowServiceMethods) parts.push({ not_rule: methodIs(ALL_NAMED) });
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : { or_rules: { rules: parts } };
}

/** The caller holds `role`, per any JWT provider's verified payload (jwt_authn writes it to dynamic metadata). */
function principalForRole(sec: MeshSecurity, role: string): ProtoObject {
  return {
    metadata: {
      filter: 'envoy.filters.http.jwt_authn',
      path: [{ key: JWT_PAYLOAD_METADATA_KEY }, ...sec.policy.roleClaim.split('.').map((key) => ({ key }))],
      value: { list_match: { one_of: { string_match: { exact: role } } } },
    },
  };
}

function rulesFor(role: Role, svc: MeshService, which: 'allow' | 'deny'): Array<[number, RuleTarget]> {
  return role[which].map((r, i): [number, RuleTarget] => [i, r]).filter(([, r]) => globMatches(r.service, svc.name));
}

const versionTooOld = {
  or_rules: {
    rules: [
      { not_rule: { header: { name: 'mcp-protocol-version', present_match: true } } },
      // Anything before 2026-07-28, the first revision with header/body validation.
      header('mcp-protocol-version', { safe_regex: { regex: '^(20[01][0-9]|202[0-5])-.*$|^2026-0[1-6]-.*$|^2026-07-([01][0-9]|2[0-7])$' } }),
    ],
  },
};

/** RBAC per-route configs (deny, allow) for a header-routable service. Shadow mode logs instead of enforcing. */
export function rbacPerRoute(sec: MeshSecurity, svc: MeshService): { deny: ProtoObject; allow: ProtoObject } {
  const shadow = sec.policy.services.find((s) => s.service === svc.name)?.mode === 'shadow';
  const denyPolicies: Record<string, ProtoObject> = {
    'protocol-version': { permissions: [versionTooOld], principals: [{ any: true }] },
  };
  const allowPolicies: Record<string, ProtoObject> = {};
  for (const role of sec.policy.roles) {
    for (const [i, rule] of rulesFor(role, svc, 'deny')) {
      const whole = !rule.tools && !rule.resources && !rule.prompts && !rule.completions;
      const perm = whole ? { any: true } : permission(rule, false);
      if (perm) denyPolicies[`roles.${role.name}.deny[${i}]`] = { permissions: [perm], principals: [principalForRole(sec, role.name)] };
    }
    for (const [i, rule] of rulesFor(role, svc, 'allow')) {
      const perm = permission(rule, true);
      if (perm) allowPolicies[`roles.${role.name}.allow[${i}]`] = { permissions: [perm], principals: [principalForRole(sec, role.name)] };
    }
  }
  const rbac = (action: 'ALLOW' | 'DENY', policies: Record<string, ProtoObject>): ProtoObject => {
    const rules = { action, policies };
    return any(RBAC_PER_ROUTE, { rbac: shadow ? { shadow_rules: rules, shadow_rules_stat_prefix: `${svc.name.replace(/-/g, '_')}_` } : { rules } });
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
  return [RBAC_DENY_FILTER, RBAC_ALLOW_FILTER].map((name) => ({ name, typed_config: any(RBAC_TYPE, {}) }));
}
