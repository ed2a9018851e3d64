// The policy decision engine: pure functions from (policy, caller roles, MCP request) to allow/deny with
// the deciding rule. Used by the MCP authorizer (ext_authz) on every request and by `mcpmesh policy explain`.
//
// Semantics (also in deploy/policy.example.yaml):
//  - default deny: with no matching allow rule, the request is denied (`default-deny`);
//  - a role allows a service when any of its allow rules' `service` pattern matches: that admits the methods
//    that name nothing (initialize, ping, */list, notifications, responses, GET stream, DELETE session);
//  - a tool / resource / prompt / completion needs an allow rule of a matching service that lists a matching
//    pattern under `tools` / `resources` / `prompts` / `completions` (an absent or empty list covers nothing);
//  - a deny rule denies what its lists name; a deny rule with no list at all denies the whole service;
//  - an explicit deny from ANY of the caller's roles wins over any allow from any role;
//  - a service's `requiredScopes` must all be in the token's scopes before roles are even looked at;
//  - resource URIs are matched in their normal form (uri.ts: as the server resolves them), and a name or URI
//    a server might read differently than a glob would (control characters, edge whitespace, lone
//    surrogates; an ambiguous URI) matches no rule at all: denied (`invalid-name`, `invalid-resource-uri`).
// Globs are compiled to anchored RegExps once per policy (compilePolicy); `decide` accepts a Policy too and
// compiles it once (cached per Policy object).
import { META_PROTOCOL_VERSION } from './mcp-http.ts';
import { defaultServicePolicy } from './parse.ts';
import { shown, textProblem } from './text.ts';
import { normalizeResourceUri } from './uri.ts';
import type { Decision, McpAction, Pattern, Policy, RuleTarget, ServicePolicy } from './types.ts';
import { escapeRegex } from '../model/glob.ts';

// ------------------------------------------------------------------------------------------ compilation

type ItemKind = 'tools' | 'resources' | 'prompts' | 'completions';
const ITEM_KINDS: readonly ItemKind[] = ['tools', 'resources', 'prompts', 'completions'];

export interface CompiledRule {
  /** `roles.<role>.allow[i]` / `roles.<role>.deny[i]`. */
  readonly id: string;
  readonly role: string;
  readonly effect: 'allow' | 'deny';
  readonly target: RuleTarget;
  readonly service: RegExp;
  readonly items: { readonly [K in ItemKind]?: RegExp };
  /** A rule without any item list: for a deny rule, the whole service is denied. */
  readonly serviceOnly: boolean;
}

interface CompiledRole {
  readonly name: string;
  readonly index: number;
  readonly allow: readonly CompiledRule[];
  readonly deny: readonly CompiledRule[];
}

export interface CompiledPolicy {
  readonly policy: Policy;
  readonly roles: ReadonlyMap<string, CompiledRole>;
  readonly services: ReadonlyMap<string, ServicePolicy>;
  /** Tool names written literally (no `*`) anywhere in the policy: the bounded set of metric label values. */
  readonly literalTools: ReadonlySet<string>;
  /** Service names the policy knows (services entries and literal rule service names). */
  readonly knownServices: ReadonlySet<string>;
  /** Every rule's id (`roles.<role>.allow[i]` / `deny[i]`): the bounded set of rule label values. */
  readonly ruleIds: ReadonlySet<string>;
}

/** A glob (only `*` is special; it matches any run of characters, `/` and newlines included) as an anchored RegExp. */
export function globToRegExp(patterns: readonly Pattern[]): RegExp {
  if (patterns.length === 0) return /(?!)/; // matches nothing
  const alts = patterns.map((p) => p.split('*').map(escapeRegex).join('.*'));
  return new RegExp(`^(?:${alts.join('|')})$`, 's');
}

export function globMatch(pattern: Pattern, value: string): boolean {
  return globToRegExp([pattern]).test(value);
}

export function compilePolicy(policy: Policy): CompiledPolicy {
  const roles = new Map<string, CompiledRole>();
  const literalTools = new Set<string>();
  const knownServices = new Set<string>(policy.services.map((s) => s.service));
  policy.roles.forEach((role, index) => {
    const rules = (effect: 'allow' | 'deny', targets: readonly RuleTarget[]): CompiledRule[] =>
      targets.map((t, i) => {
        const items: { [K in ItemKind]?: RegExp } = {};
        for (const k of ITEM_KINDS) {
          const list = t[k];
          if (list) items[k] = globToRegExp(list);
        }
        for (const tool of t.tools ?? []) if (!tool.includes('*')) literalTools.add(tool);
        if (!t.service.includes('*')) knownServices.add(t.service);
        return {
          id: `roles.${role.name}.${effect}[${i}]`,
          role: role.name,
          effect,
          target: t,
          service: globToRegExp([t.service]),
          items,
          serviceOnly: ITEM_KINDS.every((k) => t[k] === undefined),
        };
      });
    // A role listed twice cannot come out of the parser (YAML mapping keys are unique); keep the first.
    if (!roles.has(role.name))
      roles.set(role.name, { name: role.name, index, allow: rules('allow', role.allow), deny: rules('deny', role.deny) });
  });
  const ruleIds = new Set([...roles.values()].flatMap((r) => [...r.allow, ...r.deny].map((rule) => rule.id)));
  return { policy, roles, services: new Map(policy.services.map((s) => [s.service, s])), literalTools, knownServices, ruleIds };
}

const compiledCache = new WeakMap<Policy, CompiledPolicy>();

function compiled(p: Policy | CompiledPolicy): CompiledPolicy {
  if ('knownServices' in p) return p;
  let c = compiledCache.get(p);
  if (!c) {
    c = compilePolicy(p);
    compiledCache.set(p, c);
  }
  return c;
}

/** The options of `service`: its entry in the policy, or the defaults. */
export function servicePolicyOf(policy: Policy | CompiledPolicy, service: string): ServicePolicy {
  const c = compiled(policy);
  return c.services.get(service) ?? defaultServicePolicy(service, c.policy.trustDomain);
}

// ------------------------------------------------------------------------------------------- claims

function claimValue(claims: unknown, name: string): unknown {
  if (typeof claims !== 'object' || claims === null) return undefined;
  const obj = claims as Record<string, unknown>;
  if (Object.hasOwn(obj, name)) return obj[name];
  // Nested claims such as Keycloak's `realm_access.roles`.
  if (!name.includes('.')) return undefined;
  let cur: unknown = obj;
  for (const part of name.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function stringsOf(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string' && x !== '');
  // Space only (RFC 6749 scope syntax), as jwt_authn's space_delimited_claims splits a claim for RBAC.
  if (typeof v === 'string') return v.split(' ').filter(Boolean);
  return [];
}

/** The caller's roles: the claim as an array of strings or a space-separated string (OAuth `scope`); a dotted name walks nested objects. */
export function rolesFromClaims(claims: unknown, roleClaim: string): string[] {
  return stringsOf(claimValue(claims, roleClaim));
}

/** OAuth scopes of a token: `scope` (space-separated, RFC 8693/9068) or `scp` (array or string). */
export function scopesFromClaims(claims: unknown): string[] {
  const scope = claimValue(claims, 'scope');
  return stringsOf(scope !== undefined ? scope : claimValue(claims, 'scp'));
}

// ------------------------------------------------------------------------------------ MCP body parsing

/** One JSON-RPC message of a body, as far as policy is concerned. */
export interface McpMessage {
  readonly action: McpAction;
  /** The JSON-RPC id of a request (absent for notifications and responses). */
  readonly id?: string | number;
  /** The method, for requests and notifications. */
  readonly method?: string;
  /**
   * What a 2026-07-28 `Mcp-Name` header mirrors: params.name or params.uri exactly as the body has it (the
   * action holds the normalized URI).
   */
  readonly target?: string;
  /** params._meta["io.modelcontextprotocol/protocolVersion"], when the body carries one (2026-07-28). */
  readonly protocolVersion?: string;
}

export type ParsedBody =
  | { readonly messages: readonly McpMessage[]; readonly batch: boolean }
  | {
      readonly error: string;
      readonly id?: string | number;
      /** The body is not JSON at all (JSON-RPC's Parse error, -32700), rather than JSON that is not valid JSON-RPC. */
      readonly notJson?: boolean;
    };

/** Most messages in a batch: SDK servers refuse more (MAX_BATCH_SIZE of @modelcontextprotocol/sdk 1.x). */
export const MAX_BATCH_SIZE = 100;

const SERVICE_ACTION: McpAction = Object.freeze({ kind: 'service' });

/** Methods whose params name what policy decides on. */
const NAMING_METHODS: ReadonlySet<string> = new Set([
  'tools/call',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/get',
  'completion/complete',
]);

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `string ${shown(v)}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v).slice(0, 40)}`;
}

type Classified = McpMessage | { readonly error: string; readonly id?: string | number };

function stringParam(params: Record<string, unknown> | undefined, key: string): string | undefined {
  const v = params?.[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function classify(msg: unknown, at: string): Classified {
  if (!isObj(msg)) return { error: `${at}is not a JSON-RPC message object (got ${describeType(msg)})` };
  if (msg['jsonrpc'] !== '2.0') return { error: `${at}"jsonrpc" must be "2.0" (got ${describeType(msg['jsonrpc'])})` };
  const hasId = Object.hasOwn(msg, 'id');
  const rawId = msg['id'];
  if (!Object.hasOwn(msg, 'method')) {
    // A response carries the client's answer to a server request (sampling, elicitation, roots): no method.
    if (hasId && (Object.hasOwn(msg, 'result') || Object.hasOwn(msg, 'error'))) {
      if (rawId !== null && typeof rawId !== 'string' && typeof rawId !== 'number')
        return { error: `${at}"id" must be a string or a number (got ${describeType(rawId)})` };
      return { action: SERVICE_ACTION };
    }
    if (hasId)
      return { error: `${at}request has no "method"`, ...(typeof rawId === 'string' || typeof rawId === 'number' ? { id: rawId } : {}) };
    return { error: `${at}message has no "method" and is not a response (no "id" with "result" or "error")` };
  }
  let id: string | number | undefined;
  if (hasId) {
    if (typeof rawId !== 'string' && typeof rawId !== 'number')
      return { error: `${at}"id" must be a string or a number (got ${describeType(rawId)})` };
    id = rawId;
  }
  const withId = id !== undefined ? { id } : {};
  const method = msg['method'];
  if (typeof method !== 'string') return { error: `${at}"method" must be a string (got ${describeType(method)})`, ...withId };
  // Method names are exact (JSON-RPC is case-sensitive, and so are SDK servers): nothing is trimmed or
  // folded here. A method a lenient server might trim or fold into one that names something is refused
  // rather than judged as a service-level method it is not.
  const methodProblem = textProblem(method, `${at}"method"`);
  if (methodProblem) return { error: methodProblem, ...withId };
  if (!NAMING_METHODS.has(method) && NAMING_METHODS.has(method.toLowerCase()))
    return { error: `${at}"method" ${shown(method)} is not ${method.toLowerCase()} (method names are case-sensitive)`, ...withId };
  const rawParams = msg['params'];
  if (rawParams !== undefined && (typeof rawParams !== 'object' || rawParams === null))
    return { error: `${at}"params" of ${shown(method)} must be an object (got ${describeType(rawParams)})`, ...withId };
  const params = isObj(rawParams) ? rawParams : undefined;
  const meta = params?.['_meta'];
  const version = isObj(meta) ? meta[META_PROTOCOL_VERSION] : undefined;
  if (version !== undefined && typeof version !== 'string')
    return {
      error: `${at}"params._meta[${JSON.stringify(META_PROTOCOL_VERSION)}]" must be a string (got ${describeType(version)})`,
      ...withId,
    };
  const withVersion = version !== undefined ? { protocolVersion: version } : {};
  // What Mcp-Name mirrors, for any method that has it (the header check compares it exactly).
  const named = stringParam(params, 'name') ?? stringParam(params, 'uri');
  const withTarget = named !== undefined ? { target: named } : {};
  const checkName = (value: string, what: string): string | undefined => textProblem(value, `${at}${what} of ${method}`);
  const checkUri = (value: string, what: string): { uri: string } | { error: string } => {
    const r = normalizeResourceUri(value);
    return 'error' in r ? { error: `${at}${what} of ${method} is refused: ${r.error}` } : r;
  };
  // Notifications are classified by method like requests: a real notification names nothing (-> service),
  // and an id-less "tools/call" is still judged as the tool call a lenient server might run.
  let action: McpAction;
  switch (method) {
    case 'tools/call': {
      const name = stringParam(params, 'name');
      if (name === undefined)
        return { error: `${at}tools/call needs "params.name", a non-empty string (got ${describeType(params?.['name'])})`, ...withId };
      const problem = checkName(name, '"params.name"');
      if (problem) return { error: problem, ...withId };
      action = { kind: 'tool', name };
      return { action, method, target: name, ...withId, ...withVersion };
    }
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe': {
      const uri = stringParam(params, 'uri');
      if (uri === undefined)
        return { error: `${at}${method} needs "params.uri", a non-empty string (got ${describeType(params?.['uri'])})`, ...withId };
      const n = checkUri(uri, '"params.uri"');
      if ('error' in n) return { error: n.error, ...withId };
      action = { kind: 'resource', uri: n.uri };
      return { action, method, target: uri, ...withId, ...withVersion };
    }
    case 'prompts/get': {
      const name = stringParam(params, 'name');
      if (name === undefined)
        return { error: `${at}prompts/get needs "params.name", a non-empty string (got ${describeType(params?.['name'])})`, ...withId };
      const problem = checkName(name, '"params.name"');
      if (problem) return { error: problem, ...withId };
      action = { kind: 'prompt', name };
      return { action, method, target: name, ...withId, ...withVersion };
    }
    case 'completion/complete': {
      const ref = params?.['ref'];
      if (!isObj(ref)) return { error: `${at}completion/complete needs "params.ref", an object (got ${describeType(ref)})`, ...withId };
      if (ref['type'] === 'ref/prompt') {
        const name = stringParam(ref, 'name');
        if (name === undefined)
          return { error: `${at}completion/complete with ref/prompt needs "params.ref.name", a non-empty string`, ...withId };
        const problem = checkName(name, '"params.ref.name"');
        if (problem) return { error: problem, ...withId };
        action = { kind: 'completion', ref: name };
      } else if (ref['type'] === 'ref/resource') {
        const uri = stringParam(ref, 'uri');
        if (uri === undefined)
          return { error: `${at}completion/complete with ref/resource needs "params.ref.uri", a non-empty string`, ...withId };
        // Matched as written, not normalized: SDK servers compare it, as a string, with their URI templates.
        const problem = checkName(uri, '"params.ref.uri"');
        if (problem) return { error: problem, ...withId };
        action = { kind: 'completion', ref: uri };
      } else
        return {
          error: `${at}completion/complete "params.ref.type" must be "ref/prompt" or "ref/resource" (got ${describeType(ref['type'])})`,
          ...withId,
        };
      break;
    }
    default:
      action = SERVICE_ACTION;
  }
  return { action, method, ...withTarget, ...withId, ...withVersion };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The text of a body as the servers in front of which the mesh stands decode it: UTF-8 (the authorizer has
 * already refused any other charset), one leading byte order mark dropped (the SDK's plain transport reads
 * bodies with `new TextDecoder()`, body-parser/express.json() with iconv-lite: both drop exactly one; a
 * second one is then not JSON, for them as here). Bytes that are not UTF-8 (overlong forms, encoded
 * surrogates, stray continuation bytes) are refused: those decoders would substitute U+FFFD and a server
 * would run a name no policy wrote.
 */
export function decodeBodyText(body: string | Uint8Array): { text: string } | { error: string } {
  if (typeof body === 'string') return { text: body.charCodeAt(0) === 0xfeff ? body.slice(1) : body };
  try {
    return { text: utf8.decode(body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? body.subarray(3) : body) };
  } catch {
    return { error: 'body is not valid UTF-8' };
  }
}

/**
 * Parses a JSON-RPC body (text, bytes, or an already parsed value) into its messages. A batch (array) yields
 * every element: SDK 1.x servers still execute batches (up to MAX_BATCH_SIZE), so each element must be
 * authorized.
 *
 * The message decided is the one JSON.parse builds, which is what SDK servers (and express.json()) run: of
 * duplicate keys the LAST wins (`{"name":"get_forecast","name":"admin_reset"}` is a call of admin_reset,
 * and is judged as one).
 */
export function parseMcpBody(body: unknown): ParsedBody {
  let value: unknown = body;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const decoded = decodeBodyText(body);
    if ('error' in decoded) return { error: decoded.error };
    const text = decoded.text;
    if (text.trim() === '') return { error: 'body is empty (expected a JSON-RPC message)' };
    try {
      value = JSON.parse(text);
    } catch (err) {
      return { error: `body is not JSON: ${(err as Error).message.slice(0, 200)}`, notJson: true };
    }
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return { error: 'body is an empty JSON-RPC batch ([])' };
    if (value.length > MAX_BATCH_SIZE)
      return { error: `body is a batch of ${value.length} messages; at most ${MAX_BATCH_SIZE} are accepted (as by SDK servers)` };
    const messages: McpMessage[] = [];
    for (let i = 0; i < value.length; i++) {
      const c = classify(value[i], `batch element [${i}]: `);
      if ('error' in c) return c;
      messages.push(c);
    }
    return { messages, batch: true };
  }
  const c = classify(value, '');
  if ('error' in c) return c;
  return { messages: [c], batch: false };
}

/** The policy-relevant actions of a JSON-RPC body (single message or batch), or what is malformed. */
export function mcpActionsOf(body: unknown): { actions: McpAction[] } | { error: string } {
  const p = parseMcpBody(body);
  if ('error' in p) return { error: p.error };
  return { actions: p.messages.map((m) => m.action) };
}

// ------------------------------------------------------------------------------------------- decisions

export interface DecisionInput {
  readonly service: string;
  /** The caller's roles (from the role claim); roles the policy does not define are ignored. */
  readonly roles: readonly string[];
  readonly action: McpAction;
  /** The token's OAuth scopes, checked against the service's requiredScopes (absent = none). */
  readonly scopes?: readonly string[];
}

export interface EngineDecision extends Decision {
  /** Set when the denial is for scopes the token lacks (-> 403 insufficient_scope). */
  readonly missingScopes?: readonly string[];
}

export function describeAction(a: McpAction): string {
  switch (a.kind) {
    // shown(): quoted, and cut short, so a 1 MiB name never becomes a 1 MiB answer or log line.
    case 'tool':
      return `tool ${shown(a.name)}`;
    case 'resource':
      return `resource ${shown(a.uri)}`;
    case 'prompt':
      return `prompt ${shown(a.name)}`;
    case 'completion':
      return `completion for ${shown(a.ref)}`;
    case 'service':
      return 'service-level access (initialize, ping, lists, notifications, responses, GET stream, DELETE session)';
  }
}

function itemOf(a: McpAction): { kind: ItemKind; value: string } | undefined {
  switch (a.kind) {
    case 'tool':
      return { kind: 'tools', value: a.name };
    case 'resource':
      return { kind: 'resources', value: a.uri };
    case 'prompt':
      return { kind: 'prompts', value: a.name };
    case 'completion':
      return { kind: 'completions', value: a.ref };
    case 'service':
      return undefined;
  }
}

/** Does a rule apply to (service, action)? Allow rules need a listed item (or a service-level action); deny rules also apply when they name no item at all. */
function ruleMatches(rule: CompiledRule, service: string, item: { kind: ItemKind; value: string } | undefined): boolean {
  if (!rule.service.test(service)) return false;
  if (rule.effect === 'deny' && rule.serviceOnly) return true;
  if (item === undefined) return rule.effect === 'allow';
  const re = rule.items[item.kind];
  return re?.test(item.value) ?? false;
}

function callerRoles(c: CompiledPolicy, roles: readonly string[]): CompiledRole[] {
  const out: CompiledRole[] = [];
  for (const name of roles) {
    const r = c.roles.get(name);
    if (r && !out.includes(r)) out.push(r);
  }
  // Policy order, so the deciding rule does not depend on the order of the claim.
  if (out.length > 1) out.sort((a, b) => a.index - b.index);
  return out;
}

function missingScopes(svc: ServicePolicy, scopes: readonly string[] | undefined): string[] {
  if (svc.requiredScopes.length === 0) return [];
  return svc.requiredScopes.filter((s) => !(scopes ?? []).includes(s));
}

function listPatterns(rule: CompiledRule, kind: ItemKind | undefined): string {
  if (kind === undefined || rule.target[kind] === undefined) return `service: ${rule.target.service}`;
  return `service: ${rule.target.service}, ${kind}: [${(rule.target[kind] ?? []).join(', ')}]`;
}

function denyReason(rule: CompiledRule, service: string, action: McpAction): string {
  const what = rule.serviceOnly ? `the whole service "${service}"` : `${describeAction(action)} on service "${service}"`;
  return `role "${rule.role}" denies ${what} (${rule.id}: ${listPatterns(rule, itemOf(action)?.kind)}); an explicit deny wins over any allow`;
}

function allowReason(rule: CompiledRule, service: string, action: McpAction): string {
  return `role "${rule.role}" allows ${describeAction(action)} on service "${service}" (${rule.id}: ${listPatterns(rule, itemOf(action)?.kind)})`;
}

function defaultDenyReason(c: CompiledPolicy, input: DecisionInput, matched: readonly CompiledRole[]): string {
  if (input.roles.length === 0)
    return `default deny: the caller has no roles (claim "${c.policy.roleClaim}" is absent or empty), and nothing is allowed without a role`;
  if (matched.length === 0) return `default deny: none of the caller's roles (${input.roles.join(', ')}) is defined in the policy`;
  const names = matched.map((r) => r.name).join(', ');
  if (input.action.kind === 'service') return `default deny: no allow rule of role(s) ${names} matches service "${input.service}"`;
  const item = itemOf(input.action);
  return `default deny: no allow rule of role(s) ${names} lists ${describeAction(input.action)} under ${item?.kind ?? 'its kind'} for service "${input.service}"`;
}

/**
 * The item an action names, in the form patterns are matched against: a resource URI normalized (policy/uri.ts),
 * names as they are. Text a server might read differently than `*` would (control characters, edge
 * whitespace, lone surrogates; an ambiguous URI) matches no rule: it is denied, whatever the policy says.
 */
function checkedItem(a: McpAction): { item: { kind: ItemKind; value: string } | undefined } | { error: string; rule: string } {
  const item = itemOf(a);
  if (item === undefined) return { item };
  if (item.kind === 'resources') {
    const n = normalizeResourceUri(item.value);
    return 'error' in n
      ? { error: `resource ${shown(item.value)} is refused: ${n.error}`, rule: 'invalid-resource-uri' }
      : { item: { kind: item.kind, value: n.uri } };
  }
  const problem = textProblem(
    item.value,
    `${item.kind === 'tools' ? 'tool' : item.kind === 'prompts' ? 'prompt' : 'completion ref'} ${shown(item.value)}`,
  );
  return problem ? { error: `${problem}, so it matches no rule`, rule: 'invalid-name' } : { item };
}

/** The decision for one action. Default deny; an explicit deny from any of the caller's roles wins over any allow. */
export function decide(policy: Policy | CompiledPolicy, input: DecisionInput): EngineDecision {
  const c = compiled(policy);
  const svc = servicePolicyOf(c, input.service);
  const missing = missingScopes(svc, input.scopes);
  if (missing.length > 0) {
    return {
      allow: false,
      rule: `services.${input.service}.requiredScopes`,
      missingScopes: missing,
      reason: `the token lacks scope(s) ${missing.join(', ')} required for service "${input.service}" (services.${input.service}.requiredScopes)`,
    };
  }
  const roles = callerRoles(c, input.roles);
  const checked = checkedItem(input.action);
  if ('error' in checked) return { allow: false, rule: checked.rule, reason: checked.error };
  const item = checked.item;
  // Reasons name what was matched: the normalized URI.
  const action: McpAction =
    input.action.kind === 'resource' && item !== undefined && item.value !== input.action.uri
      ? { kind: 'resource', uri: item.value }
      : input.action;
  for (const role of roles)
    for (const rule of role.deny) {
      if (ruleMatches(rule, input.service, item)) return { allow: false, rule: rule.id, reason: denyReason(rule, input.service, action) };
    }
  for (const role of roles)
    for (const rule of role.allow) {
      // The reason is only read for logs and explain: built on demand, not on every allowed request.
      if (ruleMatches(rule, input.service, item))
        return {
          allow: true,
          rule: rule.id,
          get reason() {
            return allowReason(rule, input.service, action);
          },
        };
    }
  return { allow: false, rule: 'default-deny', reason: defaultDenyReason(c, { ...input, action }, roles) };
}

// -------------------------------------------------------------------------------------------- explain

export interface RuleTrace {
  readonly rule: string;
  readonly role: string;
  readonly effect: 'allow' | 'deny';
  readonly target: RuleTarget;
  readonly matched: boolean;
  /** Why it matched or not, in words. */
  readonly why: string;
}

export interface Explanation {
  readonly decision: EngineDecision;
  readonly action: McpAction;
  readonly service: ServicePolicy;
  /** The caller's roles the policy defines, in policy order, and the ones it does not know. */
  readonly roles: { readonly known: readonly string[]; readonly unknown: readonly string[] };
  /** Every rule of the caller's roles, deny rules first (they are checked first), in policy order. */
  readonly considered: readonly RuleTrace[];
}

function traceRule(rule: CompiledRule, service: string, action: McpAction): RuleTrace {
  const base = { rule: rule.id, role: rule.role, effect: rule.effect, target: rule.target };
  if (!rule.service.test(service))
    return { ...base, matched: false, why: `service pattern "${rule.target.service}" does not match "${service}"` };
  const svcOk = `service pattern "${rule.target.service}" matches "${service}"`;
  if (rule.effect === 'deny' && rule.serviceOnly)
    return {
      ...base,
      matched: true,
      why: `${svcOk}, and the rule lists no tools/resources/prompts/completions, so it denies the whole service`,
    };
  const checked = checkedItem(action);
  if ('error' in checked) return { ...base, matched: false, why: `${svcOk}, but ${checked.error}` };
  const item = checked.item;
  if (item === undefined) {
    return rule.effect === 'allow'
      ? { ...base, matched: true, why: `${svcOk}: any allow rule of a service admits its service-level requests` }
      : { ...base, matched: false, why: `${svcOk}, but a deny rule that lists items only denies those items, not service-level requests` };
  }
  const patterns = rule.target[item.kind];
  if (patterns === undefined)
    return { ...base, matched: false, why: `${svcOk}, but the rule has no ${item.kind} list (an absent list covers nothing)` };
  const hit = patterns.find((p) => globMatch(p, item.value));
  if (hit === undefined)
    return {
      ...base,
      matched: false,
      why: `${svcOk}, but no ${item.kind} pattern of [${patterns.join(', ')}] matches ${shown(item.value)}`,
    };
  return { ...base, matched: true, why: `${svcOk}, and ${item.kind} pattern "${hit}" matches ${shown(item.value)}` };
}

/** The decision plus every rule of the caller's roles and whether it matched (for `mcpmesh policy explain`). */
export function explain(policy: Policy | CompiledPolicy, input: DecisionInput): Explanation {
  const c = compiled(policy);
  const roles = callerRoles(c, input.roles);
  const considered: RuleTrace[] = [];
  for (const role of roles) for (const rule of role.deny) considered.push(traceRule(rule, input.service, input.action));
  for (const role of roles) for (const rule of role.allow) considered.push(traceRule(rule, input.service, input.action));
  return {
    decision: decide(c, input),
    action: input.action,
    service: servicePolicyOf(c, input.service),
    roles: { known: roles.map((r) => r.name), unknown: [...new Set(input.roles.filter((r) => !c.roles.has(r)))] },
    considered,
  };
}
