// The policy file: who may call which MCP service, tool, resource, prompt and completion (see
// deploy/policy.example.yaml). Parsed and checked like the registry: every problem is collected with its
// exact path, and one ConfigError names the file, each path and the reason.
import { parseDocument } from 'yaml';
import { ConfigError, isNode, join, Reader, type Node } from '../model/reader.ts';
import { globRegex, wordInListRegex } from '../model/glob.ts';
import { RE2_MAX_PROGRAM_SIZE, re2ProgramSize } from '../xds/re2-size.ts';
import { readJwks } from './jwks.ts';
import { resourcePatternProblem } from './uri.ts';
import type { EnforcementMode, JwtProvider, Pattern, Policy, Role, RuleTarget, ServicePolicy } from './types.ts';

export const DEFAULT_ROLE_CLAIM = 'roles';
export const DEFAULT_JWKS_CACHE_MS = 5 * 60_000;

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SERVICE_PATTERN = /^[a-z0-9*-]{1,63}$/;
/** SPIFFE trust domain: lower-case letters, digits, ".", "-", "_". */
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$/;
const PROVIDER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/**
 * Role names come from JWT claims; a space-separated `scope` claim cannot carry whitespace. No control
 * characters either: a role name ends up in the authorizer's x-mcpmesh-decision header (via the rule id).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: role names must reject C0/C1 control characters, which would end up in the x-mcpmesh-decision header.
const ROLE_NAME = /^[^\s\x00-\x1f\x7f-\x9f]{1,256}$/;
const SCOPE = /^[\x21\x23-\x5B\x5D-\x7E]+$/; // RFC 6749 scope-token
const DAY_MS = 86_400_000;

/** The service options a service gets when the policy does not list it (or leaves a field out). */
export function defaultServicePolicy(service: string, trustDomain: string): ServicePolicy {
  return { service, mode: 'enforce', requiredScopes: [], forwardToken: false, allowedCallers: [`spiffe://${trustDomain}/gateway/*`] };
}

export type PatternKind = 'service' | 'tool' | 'prompt' | 'resource' | 'completion' | 'caller';

/**
 * Why Envoy would refuse the RE2 regex that `regex` is (program size over 100, source/common/common/regex.cc),
 * or undefined. Checked where the policy is read, so an edit that would NACK a whole route table or listener
 * is refused with the policy path instead.
 */
function re2Problem(regex: string, what: string, hint = 'shorten the text after the first "*", or use fewer "*"'): string | undefined {
  let size: number;
  try {
    size = re2ProgramSize(regex);
  } catch (err) {
    return `${what} compiles to a regex RE2 refuses: ${(err as Error).message}`;
  }
  if (size <= RE2_MAX_PROGRAM_SIZE) return undefined;
  const shown = Number.isFinite(size) ? `program size ${size}` : 'a program too large to size';
  return `${what} compiles to the RE2 regex ${JSON.stringify(regex)} of ${shown}; Envoy refuses regexes over ${RE2_MAX_PROGRAM_SIZE}: ${hint}`;
}

/**
 * Why `pattern` is not a valid glob of this kind, or undefined when it is. Only `*` is a wildcard (it
 * matches any run of characters, `/` included); other glob syntax is refused rather than matched literally,
 * so `get_[a-z]*` cannot silently mean something else than its author thought.
 */
export function patternProblem(pattern: unknown, kind: PatternKind): string | undefined {
  if (typeof pattern !== 'string') return `must be a string pattern (got ${JSON.stringify(pattern)})`;
  if (pattern === '') return 'must not be empty (use "*" to match everything)';
  const q = JSON.stringify(pattern);
  if (pattern.includes('**')) return `${q}: "**" is not supported; a single "*" already matches any run of characters, "/" included`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: policy patterns must reject whitespace and control characters; this regex detects them.
  if (/[\s\x00-\x1f\x7f]/.test(pattern)) return `${q}: must not contain whitespace or control characters`;
  switch (kind) {
    case 'service':
      if (!SERVICE_PATTERN.test(pattern))
        return `${q}: a service pattern is a service name (lower-case letters, digits, "-") with optional "*" wildcards`;
      return undefined;
    case 'tool':
    case 'prompt':
      if (/[?[\]{}]/.test(pattern)) return `${q}: only "*" is a wildcard ("?", "[...]" and "{...}" are not supported)`;
      return pattern === '*' ? undefined : re2Problem(globRegex(pattern), q);
    case 'resource':
    case 'completion': {
      if (/[{}]/.test(pattern)) return `${q}: "{...}" (URI template variables) is not supported; use "*" instead, e.g. "weather://*"`;
      // Resource URIs are matched in their normal form (policy/uri.ts): a pattern in another form would never match.
      const uriProblem = kind === 'resource' ? resourcePatternProblem(pattern) : undefined;
      if (uriProblem) return `${q}: ${uriProblem}`;
      return pattern === '*' ? undefined : re2Problem(globRegex(pattern), q);
    }
    case 'caller':
      if (!pattern.startsWith('spiffe://') || pattern.length <= 'spiffe://'.length)
        return `${q}: must be a SPIFFE ID pattern such as "spiffe://mcpmesh.local/gateway/*"`;
      if (/[?[\]{}]/.test(pattern)) return `${q}: only "*" is a wildcard`;
      // Exact and trailing-"*" patterns match without a regex (identity/sds.ts, spiffeIdMatcher).
      return pattern.indexOf('*') === -1 || pattern.indexOf('*') === pattern.length - 1 ? undefined : re2Problem(globRegex(pattern), q);
  }
}

function readPatterns(r: Reader, node: Node, key: string, path: string, kind: PatternKind): Pattern[] | undefined {
  const list = r.list(node, key, path);
  if (!list) return undefined;
  const out: Pattern[] = [];
  list.forEach((p, i) => {
    const problem = patternProblem(p, kind);
    if (problem) r.fail(join(join(path, key), i), problem);
    else out.push(p as string);
  });
  return out;
}

function readRule(r: Reader, raw: unknown, path: string): RuleTarget | undefined {
  if (!isNode(raw)) {
    r.fail(path, 'must be a mapping such as { service: weather, tools: ["get_*"] }');
    return undefined;
  }
  r.onlyKeys(raw, path, ['service', 'tools', 'resources', 'prompts', 'completions']);
  let service: string | undefined;
  if (raw['service'] === undefined || raw['service'] === null)
    r.fail(join(path, 'service'), 'is required (a service name or pattern, "*" for all)');
  else {
    const problem = patternProblem(raw['service'], 'service');
    if (problem) r.fail(join(path, 'service'), problem);
    else service = raw['service'] as string;
  }
  const tools = readPatterns(r, raw, 'tools', path, 'tool');
  const resources = readPatterns(r, raw, 'resources', path, 'resource');
  const prompts = readPatterns(r, raw, 'prompts', path, 'prompt');
  const completions = readPatterns(r, raw, 'completions', path, 'completion');
  if (service === undefined) return undefined;
  return {
    service,
    ...(tools ? { tools } : {}),
    ...(resources ? { resources } : {}),
    ...(prompts ? { prompts } : {}),
    ...(completions ? { completions } : {}),
  };
}

function checkUrl(r: Reader, value: string, path: string): boolean {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    r.fail(path, `${JSON.stringify(value)} is not a URL`);
    return false;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    r.fail(path, `${JSON.stringify(value)} must be an http:// or https:// URL`);
    return false;
  }
  if (!u.hostname) {
    r.fail(path, `${JSON.stringify(value)} has no host`);
    return false;
  }
  return true;
}

function readProvider(r: Reader, raw: unknown, path: string, seen: Map<string, string>): JwtProvider | undefined {
  if (!isNode(raw)) {
    r.fail(path, 'must be a mapping with name, issuer, audiences and jwksUri or jwks');
    return undefined;
  }
  r.onlyKeys(raw, path, ['name', 'issuer', 'audiences', 'jwksUri', 'jwks', 'jwksCache', 'jwksCaFile']);
  const name = r.string(raw, 'name', path, {
    required: true,
    pattern: PROVIDER_NAME,
    hint: 'must be 1-64 letters, digits, ".", "_" or "-"',
  });
  if (name !== undefined) {
    const prev = seen.get(name);
    if (prev) r.fail(join(path, 'name'), `duplicate provider name "${name}" (also at ${prev})`);
    else seen.set(name, path);
  }
  const issuer = r.string(raw, 'issuer', path, { required: true });
  if (issuer === '') r.fail(join(path, 'issuer'), 'must not be empty');
  else if (issuer?.includes('://')) checkUrl(r, issuer, join(path, 'issuer'));
  const audList = r.list(raw, 'audiences', path);
  const audiences: string[] = [];
  if (!audList)
    r.fail(join(path, 'audiences'), 'is required: tokens must have been issued for this mesh (its audience / resource indicator)');
  else if (audList.length === 0) r.fail(join(path, 'audiences'), 'must list at least one audience');
  audList?.forEach((a, i) => {
    if (typeof a === 'string' && a !== '') audiences.push(a);
    else r.fail(join(join(path, 'audiences'), i), `must be a non-empty string (got ${JSON.stringify(a)})`);
  });
  const hasUri = raw['jwksUri'] !== undefined && raw['jwksUri'] !== null;
  const hasInline = raw['jwks'] !== undefined && raw['jwks'] !== null;
  if (hasUri && hasInline) r.fail(path, 'set exactly one of jwksUri and jwks (both are set)');
  if (!hasUri && !hasInline) r.fail(path, 'set exactly one of jwksUri (remote JWKS) and jwks (inline JWKS JSON); neither is set');
  let jwksUri: string | undefined;
  if (hasUri) {
    const u = r.string(raw, 'jwksUri', path);
    if (u !== undefined && checkUrl(r, u, join(path, 'jwksUri'))) jwksUri = u;
  }
  let jwks: string | undefined;
  if (hasInline) {
    const v = raw['jwks'];
    const p = join(path, 'jwks');
    let parsed: unknown;
    let text: string | undefined;
    if (typeof v === 'string') {
      try {
        parsed = JSON.parse(v);
        text = v;
      } catch (err) {
        r.fail(p, `is not JSON: ${(err as Error).message}`);
      }
    } else if (isNode(v)) {
      parsed = v;
      text = JSON.stringify(v);
    } else r.fail(p, 'must be a JWKS as JSON text (or a mapping) with a "keys" list');
    if (text !== undefined) {
      if (!isNode(parsed) || !Array.isArray(parsed['keys'])) r.fail(p, 'must be a JWKS: an object with a "keys" list');
      else if (parsed['keys'].length === 0) r.fail(p, 'has no keys');
      else {
        // Envoy would skip a key it cannot use and refuse the set only when none is left: refuse any such key
        // here, so no key an operator listed is silently ignored.
        const reading = readJwks(text);
        const bad = reading.keys.flatMap((k, i) => (k.ok ? [] : [[i, k.reason] as const]));
        for (const [i, reason] of bad) r.fail(`${p}.keys[${i}]`, `Envoy's jwt_authn cannot use this key: ${reason}`);
        if (bad.length === 0 && reading.error) r.fail(p, `Envoy's jwt_authn refuses it: ${reading.error}`);
        if (bad.length === 0 && !reading.error) jwks = text;
      }
    }
  }
  const cache = r.duration(raw, 'jwksCache', path, 1000, DAY_MS);
  if (cache !== undefined && hasInline && !hasUri) r.fail(join(path, 'jwksCache'), 'only applies to a remote JWKS (jwksUri)');
  const caFile = r.string(raw, 'jwksCaFile', path, {
    pattern: /^\/\S+$/,
    hint: 'must be an absolute path (on the gateway) to a PEM CA bundle',
  });
  if (caFile !== undefined && !(jwksUri?.startsWith('https:') ?? false))
    r.fail(join(path, 'jwksCaFile'), 'only applies to an https:// jwksUri');
  if (name === undefined || issuer === undefined || issuer === '') return undefined;
  return {
    name,
    issuer,
    audiences,
    ...(jwksUri !== undefined ? { jwksUri } : {}),
    jwksCacheMs: cache ?? DEFAULT_JWKS_CACHE_MS,
    ...(jwks !== undefined ? { jwks } : {}),
    ...(caFile !== undefined ? { jwksCaFile: caFile } : {}),
  };
}

function readService(r: Reader, name: string, raw: unknown, path: string, trustDomain: string): ServicePolicy | undefined {
  if (!SERVICE_NAME.test(name))
    r.fail(path, `${JSON.stringify(name)} is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)`);
  const base = defaultServicePolicy(name, trustDomain);
  if (raw === null || raw === undefined) return base;
  if (!isNode(raw)) {
    r.fail(path, 'must be a mapping (mode, requiredScopes, forwardToken, allowedCallers)');
    return undefined;
  }
  r.onlyKeys(raw, path, ['mode', 'requiredScopes', 'forwardToken', 'allowedCallers']);
  const mode = r.oneOf<EnforcementMode>(raw, 'mode', path, ['enforce', 'shadow']) ?? base.mode;
  const scopeList = r.list(raw, 'requiredScopes', path);
  const requiredScopes: string[] = [];
  scopeList?.forEach((s, i) => {
    if (typeof s === 'string' && SCOPE.test(s)) requiredScopes.push(s);
    else
      r.fail(
        join(join(path, 'requiredScopes'), i),
        `${JSON.stringify(s)} is not an OAuth scope (printable, no spaces, quotes or backslashes)`,
      );
  });
  const forwardToken = r.boolean(raw, 'forwardToken', path) ?? base.forwardToken;
  const allowedCallers = readPatterns(r, raw, 'allowedCallers', path, 'caller') ?? base.allowedCallers;
  return { service: name, mode, requiredScopes: scopeList ? requiredScopes : base.requiredScopes, forwardToken, allowedCallers };
}

/** Parses and checks a policy file. Throws ConfigError naming the file, each bad path and why. */
export function parsePolicy(yamlText: string, sourceName: string): Policy {
  const doc = parseDocument(yamlText, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      sourceName,
      doc.errors.map((e) => ({
        path: `line ${e.linePos?.[0]?.line ?? '?'}, column ${e.linePos?.[0]?.col ?? '?'}`,
        reason: e.message.split('\n')[0] ?? e.code,
      })),
    );
  }
  const root: unknown = doc.toJS();
  if (!isNode(root))
    throw new ConfigError(sourceName, [{ path: '', reason: 'must be a mapping with trustDomain, providers, services and roles' }]);
  const r = new Reader();
  r.onlyKeys(root, '', ['trustDomain', 'roleClaim', 'providers', 'services', 'roles']);
  const trustDomain = r.string(root, 'trustDomain', '', {
    required: true,
    pattern: TRUST_DOMAIN,
    hint: 'is not a SPIFFE trust domain (lower-case letters, digits, ".", "-", "_"), e.g. mcpmesh.local',
  });
  const roleClaim =
    r.string(root, 'roleClaim', '', { pattern: /^\S+$/, hint: 'must be a claim name such as "roles" or "scope"' }) ?? DEFAULT_ROLE_CLAIM;

  const providers: JwtProvider[] = [];
  const seenProviders = new Map<string, string>();
  (r.list(root, 'providers', '') ?? []).forEach((raw, i) => {
    const p = readProvider(r, raw, `providers[${i}]`, seenProviders);
    if (p) providers.push(p);
  });

  const services: ServicePolicy[] = [];
  const servicesNode = r.object(root, 'services', '');
  for (const [name, raw] of Object.entries(servicesNode ?? {})) {
    const s = readService(r, name, raw, join('services', name), trustDomain ?? 'invalid');
    if (s) services.push(s);
  }

  const roles: Role[] = [];
  const rolesNode = r.object(root, 'roles', '');
  for (const [name, raw] of Object.entries(rolesNode ?? {})) {
    const path = join('roles', name);
    if (!ROLE_NAME.test(name))
      r.fail(path, `${JSON.stringify(name)} is not a role name (1-256 characters, no whitespace or control characters)`);
    else {
      // Header RBAC matches a role inside a space-separated claim with a regex (translate/rbac.ts).
      const problem = re2Problem(wordInListRegex(name), `role ${JSON.stringify(name)}`, 'role names of up to 74 ASCII characters fit');
      if (problem) r.fail(path, problem);
    }
    if (raw === null || raw === undefined) {
      roles.push({ name, allow: [], deny: [] });
      continue;
    }
    if (!isNode(raw)) {
      r.fail(path, 'must be a mapping with allow and/or deny lists');
      continue;
    }
    r.onlyKeys(raw, path, ['allow', 'deny']);
    const read = (key: 'allow' | 'deny'): RuleTarget[] => {
      const out: RuleTarget[] = [];
      (r.list(raw, key, path) ?? []).forEach((rule, i) => {
        const t = readRule(r, rule, `${path}.${key}[${i}]`);
        if (t) out.push(t);
      });
      return out;
    };
    roles.push({ name, allow: read('allow'), deny: read('deny') });
  }

  if (r.problems.length > 0) throw new ConfigError(sourceName, r.problems);
  return { trustDomain: trustDomain as string, roleClaim, providers, roles, services };
}
