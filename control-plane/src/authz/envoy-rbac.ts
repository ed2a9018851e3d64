// Envoy's RBAC filter, evaluated here on the per-route configs the control plane generates (translate/rbac.ts):
// for `mcpmesh policy explain` and for the tests that hold the gateway chain to the authorizer. Never on a
// request path (the gateway runs Envoy).
//  - The config goes through the real proto encoding first (RBACPerRoute encoded and decoded, as an xDS client
//    receives it), so what is judged is what Envoy would read, not our object form.
//  - Permissions, and principals that are not metadata: grpc-js-xds's RBAC engine, an independent
//    implementation of Envoy's matchers (header exact / prefix / suffix / contains / safe_regex with RE2, present,
//    and / or / not). Header copies are joined with "," as Envoy before 1.38 matches them.
//  - Principals on jwt_authn's dynamic metadata (grpc-js-xds never matches those), by Envoy's rules
//    (common/common/matchers.cc): MetadataMatcher walks Struct keys, a missing value is KIND_NOT_SET and matches
//    nothing but `present_match` tests for it, `invert` flips the result; ListMatcher is false unless the value
//    is a list and true if one element matches; a StringMatcher is false unless the value is a string (then
//    grpc-js-xds's string matcher, RE2 for safe_regex).
//  - A filter (rbac/rbac_filter.cc, engine_impl.cc): ALLOW passes when a policy matches, DENY when none does;
//    policies are kept in a std::map, so the one Envoy names (effective_policy_id) is the first matching one in
//    name order. `shadow_rules` are evaluated and never deny. Anything the mesh does not generate (CEL
//    conditions, the matcher API) is refused rather than guessed.
import { createRequire } from 'node:module';
import type { ProtoObject } from '../translate/resource.ts';
import { lookupType } from '../xds/proto.ts';

/** jwt_authn's dynamic metadata: namespace -> key -> JSON value. */
export type DynamicMetadata = Readonly<Record<string, Readonly<Record<string, unknown>>>>;

/** What an RBAC filter looks at in one request. */
export interface RbacRequest {
  /** Request headers as sent, each copy its own entry; names in any case. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly path: string;
  readonly metadata: DynamicMetadata;
}

export interface RbacFilterResult {
  readonly action: 'ALLOW' | 'DENY';
  /** shadow_rules: evaluated and reported, never enforced. */
  readonly shadow: boolean;
  /** Names of the policies that match, in Envoy's (name) order. */
  readonly matched: readonly string[];
  /** What the rules decide (for shadow rules: what they would decide). */
  readonly allowed: boolean;
  /** The policy Envoy names for the outcome (the first match), when one matched. */
  readonly policy?: string;
}

interface GrpcRequestInfo {
  readonly headers: { get(name: string): string[] };
  readonly urlPath: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
}
interface GrpcRule {
  apply(info: GrpcRequestInfo): boolean;
}
interface GrpcStringMatcher {
  apply(value: string): boolean;
}
interface GrpcRbacModule {
  parsePermission(p: unknown): GrpcRule;
  parsePrincipal(p: unknown): GrpcRule;
}
interface GrpcRouteModule {
  getPredicateForStringMatcher(m: unknown): GrpcStringMatcher;
}

const require = createRequire(import.meta.url);
let grpcModules: { rbac: GrpcRbacModule; route: GrpcRouteModule } | undefined;

/** grpc-js-xds exports no RBAC API: its compiled engine is loaded from the package's build output. */
function grpcRbac(): { rbac: GrpcRbacModule; route: GrpcRouteModule } {
  grpcModules ??= {
    rbac: require('@grpc/grpc-js-xds/build/src/rbac.js') as GrpcRbacModule,
    route: require('@grpc/grpc-js-xds/build/src/route.js') as GrpcRouteModule,
  };
  return grpcModules;
}

// ------------------------------------------------------------------------------ metadata principals

type Decoded = Record<string, unknown>;

/** protobufjs decoding into the shape grpc-js-xds's engine reads (proto-loader's: oneof names, defaults, enum names). */
const DECODE_OPTIONS = { enums: String, longs: String, defaults: true, oneofs: true } as const;

function notEvaluated(what: string, v: unknown): Error {
  return new Error(`RBAC evaluation: ${what} ${JSON.stringify(v)} is not something the mesh generates`);
}

/** The value at `path` under `namespace`, or undefined (KIND_NOT_SET) where a key is missing or the value is not a Struct. */
function metadataValue(md: DynamicMetadata, namespace: string, path: readonly string[]): unknown {
  let cur: unknown = md[namespace];
  if (cur === undefined) return undefined;
  for (const key of path) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

type ValueTest = (v: unknown) => boolean;

function valueMatcher(m: Decoded): ValueTest {
  switch (m['match_pattern']) {
    case 'present_match': {
      const want = m['present_match'] === true;
      return (v) => want && v !== undefined;
    }
    case 'null_match':
      return (v) => v === null;
    case 'bool_match': {
      const want = m['bool_match'];
      return (v) => v === want;
    }
    case 'string_match': {
      const s = grpcRbac().route.getPredicateForStringMatcher(m['string_match']);
      return (v) => typeof v === 'string' && s.apply(v);
    }
    case 'list_match': {
      const list = m['list_match'] as Decoded;
      if (list['match_pattern'] !== 'one_of') throw notEvaluated('list matcher', list);
      const one = valueMatcher(list['one_of'] as Decoded);
      return (v) => Array.isArray(v) && v.some(one);
    }
    case 'or_match': {
      const any = ((m['or_match'] as Decoded)['value_matchers'] as Decoded[]).map(valueMatcher);
      return (v) => any.some((t) => t(v));
    }
    default:
      throw notEvaluated('metadata value matcher', m);
  }
}

/**
 * Header matches grpc-js-xds's engine cannot judge as Envoy does (matcher.js HeaderMatcher): it never matches a
 * `-bin` header, reads content-type as "application/grpc", and an RbacRequest carries no pseudo-headers.
 */
function assertHeadersJudged(rule: unknown): void {
  if (Array.isArray(rule)) return rule.forEach(assertHeadersJudged);
  if (typeof rule !== 'object' || rule === null) return;
  const r = rule as Decoded;
  if (r['rule'] === 'header' || r['identifier'] === 'header') {
    const name = String((r['header'] as Decoded)['name']);
    if (name.startsWith(':') || name === 'content-type' || name.endsWith('-bin')) throw notEvaluated('header match on', name);
  }
  for (const v of Object.values(r)) assertHeadersJudged(v);
}

type PrincipalTest = (md: DynamicMetadata, info: GrpcRequestInfo) => boolean;

function principal(p: Decoded): PrincipalTest {
  switch (p['identifier']) {
    case 'or_ids': {
      const ids = ((p['or_ids'] as Decoded)['ids'] as Decoded[]).map(principal);
      return (md, info) => ids.some((t) => t(md, info));
    }
    case 'and_ids': {
      const ids = ((p['and_ids'] as Decoded)['ids'] as Decoded[]).map(principal);
      return (md, info) => ids.every((t) => t(md, info));
    }
    case 'not_id': {
      const inner = principal(p['not_id'] as Decoded);
      return (md, info) => !inner(md, info);
    }
    case 'metadata': {
      const m = p['metadata'] as Decoded;
      const filter = m['filter'] as string;
      const path = (m['path'] as Decoded[]).map((s) => {
        if (s['segment'] !== 'key') throw notEvaluated('metadata path segment', s);
        return s['key'] as string;
      });
      const test = valueMatcher(m['value'] as Decoded);
      const invert = m['invert'] === true;
      return (md) => test(metadataValue(md, filter, path)) !== invert;
    }
    default: {
      // Headers, addresses, any: grpc-js-xds's engine (it would never match metadata).
      assertHeadersJudged(p);
      const rule = grpcRbac().rbac.parsePrincipal(p);
      return (_md, info) => rule.apply(info);
    }
  }
}

/** One RBAC principal (our object form, through the proto encoding) on a request's jwt_authn metadata. */
export function principalMatches(p: ProtoObject, metadata: DynamicMetadata): boolean {
  const T = lookupType('envoy.config.rbac.v3.Principal');
  const decoded = T.toObject(T.decode(T.encode(T.fromObject(p)).finish()), DECODE_OPTIONS) as Decoded;
  return principal(decoded)(metadata, requestInfo({ headers: [], path: '/', metadata }));
}

// ----------------------------------------------------------------------------------------- the filter

interface CompiledPolicy {
  readonly name: string;
  readonly permission: GrpcRule;
  readonly principal: PrincipalTest;
}

/** One route's RBAC filter config, ready to evaluate requests. */
export interface RbacFilter {
  readonly action: 'ALLOW' | 'DENY';
  readonly shadow: boolean;
  /** Policy names, in Envoy's (name) order. */
  readonly policies: readonly string[];
  evaluate(req: RbacRequest): RbacFilterResult;
}

/**
 * An RBACPerRoute config (the Any the route's typed_per_filter_config holds) as Envoy's RBAC filter applies it;
 * undefined when it carries no `rbac`: the filter is disabled on that route.
 */
export function compileRbacPerRoute(perRoute: ProtoObject): RbacFilter | undefined {
  const { '@type': _type, ...fields } = perRoute as ProtoObject & { '@type'?: string };
  const T = lookupType('envoy.extensions.filters.http.rbac.v3.RBACPerRoute');
  const decoded = T.toObject(T.decode(T.encode(T.fromObject(fields)).finish()), DECODE_OPTIONS) as Decoded;
  const rbac = decoded['rbac'] as Decoded | null;
  if (!rbac) return undefined;
  if (rbac['matcher'] || rbac['shadow_matcher']) throw notEvaluated('RBAC matcher API', rbac);
  const rules = rbac['rules'] as Decoded | null;
  const shadowRules = rbac['shadow_rules'] as Decoded | null;
  // No rules at all: the filter enforces nothing (Envoy: "If absent, no enforcing RBAC policy will be applied").
  const shadow = !rules && !!shadowRules;
  const chosen = rules ?? shadowRules;
  if (!chosen)
    return {
      action: 'ALLOW',
      shadow: false,
      policies: [],
      evaluate: () => ({ action: 'ALLOW', shadow: false, matched: [], allowed: true }),
    };
  const action = chosen['action'];
  if (action !== 'ALLOW' && action !== 'DENY') throw notEvaluated('RBAC action', action);
  const { parsePermission } = grpcRbac().rbac;
  const policies: CompiledPolicy[] = Object.entries(chosen['policies'] as Record<string, Decoded>)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, p]) => {
      if (p['condition'] || p['checked_condition'])
        throw notEvaluated(`policy ${name} condition`, p['condition'] ?? p['checked_condition']);
      const perms = (p['permissions'] as Decoded[]).map((x) => {
        assertHeadersJudged(x);
        return parsePermission(x);
      });
      const principals = (p['principals'] as Decoded[]).map(principal);
      return {
        name,
        permission: { apply: (info) => perms.some((r) => r.apply(info)) },
        principal: (md, info) => principals.some((t) => t(md, info)),
      };
    });
  return {
    action,
    shadow,
    policies: policies.map((p) => p.name),
    evaluate(req: RbacRequest): RbacFilterResult {
      const info = requestInfo(req);
      const matched = policies.filter((p) => p.principal(req.metadata, info) && p.permission.apply(info)).map((p) => p.name);
      const allowed = action === 'ALLOW' ? matched.length > 0 : matched.length === 0;
      return { action, shadow, matched, allowed, ...(matched.length > 0 ? { policy: matched[0] as string } : {}) };
    },
  };
}

function requestInfo(req: RbacRequest): GrpcRequestInfo {
  const byName = new Map<string, string[]>();
  for (const [k, v] of req.headers) {
    const name = k.toLowerCase();
    const list = byName.get(name);
    if (list) list.push(v);
    else byName.set(name, [v]);
  }
  // grpc-js-xds's header matcher only calls get(): a plain map, so values outside what gRPC metadata may hold
  // (non-ASCII bytes a client could send) are judged too.
  return { headers: { get: (name) => byName.get(name) ?? [] }, urlPath: req.path, destinationIp: '127.0.0.1', destinationPort: 0 };
}

// --------------------------------------------------------------------------------- jwt_authn metadata

/**
 * A token payload as jwt_authn puts it in dynamic metadata (payload_in_metadata with
 * normalize_payload_in_metadata.space_delimited_claims, jwt_authn/authenticator.cc setPayloadMetadata): each
 * listed top-level claim holding a string becomes the list of its space-separated parts (empty parts
 * skipped; a string with none stays as it is); lists and nested claims are untouched.
 */
export function normalizedPayload(
  claims: Readonly<Record<string, unknown>>,
  spaceDelimitedClaims: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...claims };
  for (const c of spaceDelimitedClaims) {
    const v = claims[c];
    if (typeof v === 'string') {
      const parts = v.split(' ').filter((p) => p !== '');
      if (parts.length > 0) out[c] = parts;
    }
  }
  return out;
}
