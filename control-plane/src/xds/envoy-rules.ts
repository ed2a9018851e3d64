// The Envoy semantics gate: load-time rules of Envoy's C++ that its protos and their protoc-gen-validate
// rules cannot express (xds/validate.ts checks those). Each rule names the Envoy source file and function it
// mirrors (read in Envoy 1.35-1.39; docs/envoy-compat.md lists them) and says what Envoy does when it is
// broken: refuse the resource (NACK) or, worse, accept it and misbehave. Snapshots run every rule before they
// are published; a violation is refused like a PGV failure, with the resource, field path and reason.
import type { ProtoObject } from '../translate/resource.ts';
import { readJwks } from '../policy/jwks.ts';
import type { ResourceKind } from './proto.ts';
import { RE2_MAX_PROGRAM_SIZE, re2ProgramSize, Re2SyntaxError } from './re2-size.ts';
import type { Violation } from './validate.ts';

type Obj = Record<string, unknown>;

export interface EnvoyRule {
  /** `envoy.<id>` is the violation's rule. */
  readonly id: string;
  /** Envoy source file and function the rule mirrors. */
  readonly source: string;
  /** What Envoy does with config that breaks it. */
  readonly effect: string;
}

/** Where in a resource a rule is broken, and Envoy's words for it. */
export type Finding = Omit<Violation, 'rule'>;

/** A rule on one resource at a time. */
export interface ResourceRule extends EnvoyRule {
  readonly kinds: readonly ResourceKind[];
  check(body: ProtoObject): Finding[];
}

/** The resources of one snapshot, by kind and name (the plain objects the translators built). */
export type SnapshotBodies = Readonly<Record<ResourceKind, ReadonlyMap<string, ProtoObject>>>;

/** A rule that spans resources (a listener's filters and the clusters or route tables they name). */
export interface SnapshotRule extends EnvoyRule {
  /**
   * The kinds whose bodies or names the check reads. A snapshot that changes none of them since the last one
   * that passed cannot break the rule (checks are pure functions of what they read), so it is not run again.
   */
  readonly reads: readonly ResourceKind[];
  check(resources: SnapshotBodies): string[];
}

// ------------------------------------------------------------------------------------------ walking

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
}

/**
 * Every object node under `value` with its field path (Any types appear as `field<type>` like validate.ts).
 * Several rules walk the same resource: the walk of a whole resource is done once and kept with it.
 */
const walked = new WeakMap<object, ReadonlyArray<readonly [Obj, string]>>();
function nodes(value: unknown, path = ''): ReadonlyArray<readonly [Obj, string]> {
  const root = typeof value === 'object' && value !== null && path === '' ? value : undefined;
  const known = root ? walked.get(root) : undefined;
  if (known) return known;
  const out: Array<readonly [Obj, string]> = [];
  const stack: Array<[unknown, string]> = [[value, path]];
  while (stack.length > 0) {
    const [v, p] = stack.pop() as [unknown, string];
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], join(p, i)]);
      continue;
    }
    if (!isObj(v)) continue;
    const url = v['@type'];
    const here = typeof url === 'string' ? `${p}<${url.slice(url.lastIndexOf('/') + 1)}>` : p;
    out.push([v, here]);
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i] as string;
      const child = v[k];
      if (k !== '@type' && typeof child === 'object' && child !== null) stack.push([child, join(here, k)]);
    }
  }
  if (root) walked.set(root, out);
  return out;
}

/**
 * `find` over one resource body, remembered per body: snapshot rules run on every resource of every build, and
 * an unchanged resource keeps its body object (10,000 clusters are otherwise walked again for a one-endpoint change).
 */
function perBody<T>(find: (body: ProtoObject) => T): (body: ProtoObject) => T {
  const memo = new WeakMap<ProtoObject, T>();
  return (body) => {
    if (memo.has(body)) return memo.get(body) as T;
    const v = find(body);
    memo.set(body, v);
    return v;
  };
}

/** Nodes that are an Any of `typeName` (full proto name). */
function typed(value: unknown, typeName: string): Array<readonly [Obj, string]> {
  const url = `type.googleapis.com/${typeName}`;
  return nodes(value).filter(([n]) => n['@type'] === url);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function u32(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (isObj(v) && typeof v['value'] === 'number') return v['value'];
  return undefined;
}

const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const JWT_AUTHN = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const EXT_AUTHZ = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_PROC = 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const RBAC = 'envoy.extensions.filters.http.rbac.v3.RBAC';
const RBAC_PER_ROUTE = 'envoy.extensions.filters.http.rbac.v3.RBACPerRoute';
const ROUTER = 'envoy.extensions.filters.http.router.v3.Router';
const TLS_SOCKET = 'envoy.transport_sockets.tls';

/** Envoy's default direct_response body limit (RouteConfiguration.max_direct_response_body_size_bytes). */
const MAX_DIRECT_RESPONSE_BODY_BYTES = 4096;
/**
 * What the gateway's gRPC side-stream clusters must allow at least: every HTTP stream through ext_proc holds
 * one request on it for as long as Envoy needs the processor (1.37+ closes early; older Envoys hold it for the
 * HTTP stream's life), and Envoy's default max_requests is 1024.
 */
export const MIN_SIDE_STREAM_REQUESTS = 10_000;

// ------------------------------------------------------------------------------------- resource rules

const alpnNeedsTls: ResourceRule = {
  id: 'cluster.alpn-needs-tls',
  source: 'source/common/upstream/upstream_impl.cc, ClusterInfoImpl (use_alpn_ from auto_config)',
  effect: 'cluster refused: "ALPN configured for cluster … which has a non-ALPN transport socket"',
  kinds: ['cluster'],
  check(c) {
    const out: Finding[] = [];
    for (const [opts, path] of typed(c['typed_extension_protocol_options'], HTTP_PROTOCOL_OPTIONS)) {
      if (opts['auto_config'] === undefined) continue;
      const socket = isObj(c['transport_socket']) ? str(c['transport_socket']['name']) : undefined;
      if (socket !== TLS_SOCKET) {
        out.push({
          path: join(join('typed_extension_protocol_options', path), 'auto_config'),
          message: `ALPN configured for cluster ${String(c['name'])} which has a non-ALPN transport socket (${socket ?? 'raw_buffer'}): use explicit_http_config, or TLS`,
        });
      }
    }
    return out;
  },
};

const logicalDnsSingleHost: ResourceRule = {
  id: 'cluster.logical-dns-single-host',
  source: 'source/extensions/clusters/logical_dns/logical_dns_cluster.cc, LogicalDnsCluster::create',
  effect: 'cluster refused: "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint"',
  kinds: ['cluster'],
  check(c) {
    if (c['type'] !== 'LOGICAL_DNS') return [];
    const groups = list(isObj(c['load_assignment']) ? c['load_assignment']['endpoints'] : undefined);
    const ok = groups.length === 1 && isObj(groups[0]) && list(groups[0]['lb_endpoints']).length === 1;
    return ok
      ? []
      : [
          {
            path: 'load_assignment.endpoints',
            message: 'LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint',
          },
        ];
  },
};

const edsConfigOnlyEds: ResourceRule = {
  id: 'cluster.eds-config-needs-eds',
  source: 'source/common/upstream/upstream_impl.cc, ClusterInfoImpl',
  effect: 'cluster refused: "eds_cluster_config set in a non-EDS cluster"',
  kinds: ['cluster'],
  check(c) {
    return c['eds_cluster_config'] !== undefined && c['type'] !== 'EDS'
      ? [{ path: 'eds_cluster_config', message: 'eds_cluster_config set in a non-EDS cluster' }]
      : [];
  },
};

const healthCheckStatusRange: ResourceRule = {
  id: 'health_check.status-range',
  source: 'source/extensions/health_checkers/http/health_checker_impl.cc, HttpHealthCheckerImpl (expected_statuses)',
  effect: 'cluster refused: "Invalid http expected status range"',
  kinds: ['cluster'],
  check(c) {
    const out: Finding[] = [];
    list(c['health_checks']).forEach((hc, i) => {
      const http = isObj(hc) ? hc['http_health_check'] : undefined;
      if (!isObj(http)) return;
      for (const key of ['expected_statuses', 'retriable_statuses']) {
        list(http[key]).forEach((r, j) => {
          const start = isObj(r) ? Number(r['start'] ?? 0) : 0;
          const end = isObj(r) ? Number(r['end'] ?? 0) : 0;
          if (!(start >= 100 && end <= 600 && start < end))
            out.push({
              path: `health_checks[${i}].http_health_check.${key}[${j}]`,
              message: `Invalid http ${key === 'expected_statuses' ? 'expected' : 'retriable'} status range: expecting start < end, start >= 100 and end <= 600 (got [${start}, ${end}))`,
            });
        });
      }
    });
    return out;
  },
};

/** Every `safe_regex` (StringMatcher), `safe_regex_match` (HeaderMatcher) and `pattern` (regex rewrite). */
function* regexes(body: unknown): Generator<[string, string]> {
  // Named reads, not a loop over the three keys: this runs on every node of every resource (keyed reads on
  // objects of many shapes were a tenth of the gate's time for 10,000 clusters).
  for (const [n, path] of nodes(body)) {
    const { safe_regex: a, safe_regex_match: b, pattern: c } = n;
    if (a === undefined && b === undefined && c === undefined) continue;
    for (const [key, m] of [
      ['safe_regex', a],
      ['safe_regex_match', b],
      ['pattern', c],
    ] as const) {
      if (isObj(m) && typeof m['regex'] === 'string') yield [m['regex'], join(join(path, key), 'regex')];
    }
  }
}

const re2ProgramSizeRule: ResourceRule = {
  id: 're2.program-size',
  source: 'source/common/common/regex.cc, CompiledGoogleReMatcher (re2.max_program_size.error_level, default 100)',
  effect: 'resource refused: "regex … RE2 program size of N > max program size of 100 set for the error level threshold"',
  kinds: ['listener', 'route', 'cluster', 'secret'],
  check(body) {
    const out: Finding[] = [];
    for (const [regex, path] of regexes(body)) {
      let size: number;
      try {
        size = re2ProgramSize(regex);
      } catch (err) {
        if (err instanceof Re2SyntaxError) {
          out.push({ path, message: `RE2 cannot compile ${JSON.stringify(regex)}: ${err.message}` });
          continue;
        }
        throw err;
      }
      if (size > RE2_MAX_PROGRAM_SIZE) {
        const shown = Number.isFinite(size) ? String(size) : "beyond what can be computed without RE2's Unicode tables";
        out.push({
          path,
          message: `regex ${JSON.stringify(regex)} RE2 program size of ${shown} > max program size of ${RE2_MAX_PROGRAM_SIZE} set for the error level threshold`,
        });
      }
    }
    return out;
  },
};

const regexIgnoreCase: ResourceRule = {
  id: 'string_match.ignore-case-regex',
  source: 'source/common/common/matchers.h, StringMatcherImpl',
  effect: 'resource refused: "ignore_case has no effect for safe_regex."',
  kinds: ['listener', 'route', 'cluster', 'secret'],
  check(body) {
    const out: Finding[] = [];
    for (const [n, path] of nodes(body))
      if (n['safe_regex'] !== undefined && n['ignore_case'] === true)
        out.push({ path: join(path, 'ignore_case'), message: 'ignore_case has no effect for safe_regex.' });
    return out;
  },
};

/** Names Envoy's tag extractors take as one dot-free token (`cluster.$.**`, `vhost.$.**`, ...). */
const HCM_URL = `type.googleapis.com/${HCM}`;
const RBAC_URL = `type.googleapis.com/${RBAC}`;
const RBAC_PER_ROUTE_URL = `type.googleapis.com/${RBAC_PER_ROUTE}`;
function* statNames(kind: ResourceKind, body: Obj): Generator<[string, string, string]> {
  if (kind === 'cluster')
    yield [
      str(body['alt_stat_name']) ?? str(body['name']) ?? '',
      str(body['alt_stat_name']) !== undefined ? 'alt_stat_name' : 'name',
      'cluster name (envoy_cluster_name)',
    ];
  for (const [n, path] of nodes(body)) {
    if (n['@type'] === HCM_URL && typeof n['stat_prefix'] === 'string')
      yield [n['stat_prefix'], join(path, 'stat_prefix'), 'HTTP connection manager stat prefix (envoy_http_conn_manager_prefix)'];
    if (Array.isArray(n['domains']) && typeof n['name'] === 'string') {
      yield [n['name'], join(path, 'name'), 'virtual host name (envoy_virtual_host)'];
      const vcs = list(n['virtual_clusters']);
      for (let i = 0; i < vcs.length; i++) {
        const vc = vcs[i];
        if (isObj(vc) && typeof vc['name'] === 'string')
          yield [vc['name'], `${join(path, 'virtual_clusters')}[${i}].name`, 'virtual cluster name (envoy_virtual_cluster)'];
      }
    }
    const isRbac = n['@type'] === RBAC_URL;
    if (isRbac || n['@type'] === RBAC_PER_ROUTE_URL) {
      const cfg = isRbac ? n : isObj(n['rbac']) ? n['rbac'] : undefined;
      if (!cfg) continue;
      const base = isRbac ? path : join(path, 'rbac');
      for (const key of ['rules_stat_prefix', 'shadow_rules_stat_prefix'])
        if (typeof cfg[key] === 'string') yield [cfg[key], join(base, key), 'RBAC stat prefix (envoy_rbac_http_prefix)'];
      if (cfg['track_per_rule_stats'] === true) {
        for (const key of ['rules', 'shadow_rules']) {
          const rules = cfg[key];
          if (isObj(rules) && isObj(rules['policies']))
            for (const name of Object.keys(rules['policies']))
              yield [name, `${join(join(base, key), 'policies')}[${JSON.stringify(name)}]`, 'RBAC policy name (envoy_rbac_policy_name)'];
        }
      }
    }
  }
}

const TAG_SAFE: EnvoyRule = {
  id: 'stats.tag-safe-names',
  source: 'source/common/config/well_known_names.cc, TagNameValues (tokenized extractors: a tag value is one dot-free token)',
  effect: 'accepted, but the tag takes only the text before the first dot: dashboards and alerts see wrong labels',
};

function tagSafe(kind: ResourceKind, body: ProtoObject): Finding[] {
  const out: Finding[] = [];
  for (const [name, path, what] of statNames(kind, body as Obj))
    if (name.includes('.')) out.push({ path, message: `${what} ${JSON.stringify(name)} has a dot` });
  return out;
}

const tagSafeCluster: ResourceRule = { ...TAG_SAFE, kinds: ['cluster'], check: (b) => tagSafe('cluster', b) };
const tagSafeConfig: ResourceRule = { ...TAG_SAFE, kinds: ['listener', 'route'], check: (b) => tagSafe('listener', b) };

/** CertificateValidationContext nodes, and whether each is the default half of a combined context. */
function* validationContexts(body: unknown): Generator<[Obj, string, boolean]> {
  for (const [n, path] of nodes(body)) {
    if (isObj(n['validation_context'])) yield [n['validation_context'], join(path, 'validation_context'), false];
    const combined = n['combined_validation_context'];
    if (isObj(combined) && isObj(combined['default_validation_context']))
      yield [combined['default_validation_context'], join(join(path, 'combined_validation_context'), 'default_validation_context'), true];
  }
}

function hasSanMatchers(vc: Obj): boolean {
  return list(vc['match_typed_subject_alt_names']).length > 0 || list(vc['match_subject_alt_names']).length > 0;
}

/** A CA to check peers against: inline or from a file, from a certificate provider (gRPC), or a custom validator. */
function hasTrustedCa(vc: Obj): boolean {
  return (
    vc['trusted_ca'] !== undefined || vc['ca_certificate_provider_instance'] !== undefined || vc['custom_validator_config'] !== undefined
  );
}

const sanNeedsTrustedCa: ResourceRule = {
  id: 'tls.san-needs-trusted-ca',
  source: 'source/common/ssl/certificate_validation_context_config_impl.cc, CertificateValidationContextConfigImpl::initialize',
  effect: 'resource refused: "SAN-based verification of peer certificates without trusted CA is insecure and not allowed"',
  kinds: ['cluster', 'listener', 'secret'],
  check(body) {
    const out: Finding[] = [];
    // A combined context's default half is merged with its SDS secret first: the snapshot rule checks that pair.
    for (const [vc, path, combined] of validationContexts(body)) {
      if (!combined && hasSanMatchers(vc) && !hasTrustedCa(vc))
        out.push({ path, message: 'SAN-based verification of peer certificates without trusted CA is insecure and not allowed' });
    }
    return out;
  },
};

const jwtLocalJwks: ResourceRule = {
  id: 'jwt_authn.local-jwks',
  source:
    'source/extensions/filters/http/jwt_authn/filter_factory.cc, validateJwtConfig; source/common/jwt/jwks.cc, Jwks::createFromJwksCore',
  effect: 'listener refused: "Provider … in jwt_authn config has invalid local jwks: …"',
  kinds: ['listener'],
  check(body) {
    const out: Finding[] = [];
    for (const [cfg, path] of typed(body, JWT_AUTHN)) {
      const providers = isObj(cfg['providers']) ? cfg['providers'] : {};
      for (const [name, p] of Object.entries(providers)) {
        const local = isObj(p) && isObj(p['local_jwks']) ? p['local_jwks'] : undefined;
        if (!local) continue;
        const text = str(local['inline_string']);
        if (text === undefined) continue;
        const reading = readJwks(text);
        if (reading.error)
          out.push({
            path: `${join(path, 'providers')}[${JSON.stringify(name)}].local_jwks.inline_string`,
            message: `Provider '${name}' in jwt_authn config has invalid local jwks: ${reading.error}`,
          });
      }
    }
    return out;
  },
};

function requirementProviders(req: unknown): string[] {
  if (!isObj(req)) return [];
  const out: string[] = [];
  if (typeof req['provider_name'] === 'string') out.push(req['provider_name']);
  const pa = req['provider_and_audiences'];
  if (isObj(pa) && typeof pa['provider_name'] === 'string') out.push(pa['provider_name']);
  for (const key of ['requires_any', 'requires_all']) {
    const group = req[key];
    if (isObj(group)) for (const r of list(group['requirements'])) out.push(...requirementProviders(r));
  }
  return out;
}

const jwtProvidersExist: ResourceRule = {
  id: 'jwt_authn.provider-exists',
  source: 'source/extensions/filters/http/jwt_authn/verifier.cc, innerCreate',
  effect: 'listener refused: "Required provider [\'…\'] is not configured."',
  kinds: ['listener'],
  check(body) {
    const out: Finding[] = [];
    for (const [cfg, path] of typed(body, JWT_AUTHN)) {
      const known = new Set(Object.keys(isObj(cfg['providers']) ? cfg['providers'] : {}));
      const reqs: Array<[unknown, string]> = [];
      list(cfg['rules']).forEach((r, i) => {
        reqs.push([isObj(r) ? r['requires'] : undefined, `${join(path, 'rules')}[${i}].requires`]);
      });
      if (isObj(cfg['requirement_map']))
        for (const [k, r] of Object.entries(cfg['requirement_map']))
          reqs.push([r, `${join(path, 'requirement_map')}[${JSON.stringify(k)}]`]);
      for (const [req, p] of reqs)
        for (const name of requirementProviders(req))
          if (!known.has(name)) out.push({ path: p, message: `Required provider ['${name}'] is not configured.` });
    }
    return out;
  },
};

const routerLast: ResourceRule = {
  id: 'hcm.router-last',
  source: 'source/common/config/utility.h, Utility::validateTerminalFilters',
  effect: 'listener refused: "terminal filter named … must be the last filter" / "non-terminal filter … is the last filter"',
  kinds: ['listener'],
  check(body) {
    const out: Finding[] = [];
    for (const [hcm, path] of typed(body, HCM)) {
      const filters = list(hcm['http_filters']);
      filters.forEach((f, i) => {
        const router = isObj(f) && isObj(f['typed_config']) && f['typed_config']['@type'] === `type.googleapis.com/${ROUTER}`;
        const last = i === filters.length - 1;
        if (router && !last)
          out.push({
            path: `${join(path, 'http_filters')}[${i}]`,
            message: `Error: terminal filter named ${String((f as Obj)['name'])} of type envoy.filters.http.router must be the last filter in a http filter chain.`,
          });
        if (!router && last)
          out.push({
            path: `${join(path, 'http_filters')}[${i}]`,
            message: `Error: non-terminal filter named ${String((f as Obj)['name'])} is the last filter in a http filter chain.`,
          });
      });
      if (filters.length === 0)
        out.push({
          path: join(path, 'http_filters'),
          message: 'no router: an HTTP connection manager without envoy.filters.http.router answers nothing',
        });
    }
    return out;
  },
};

const stripPortExclusive: ResourceRule = {
  id: 'hcm.strip-port-exclusive',
  source: 'source/extensions/filters/network/http_connection_manager/config.cc, HttpConnectionManagerConfig',
  effect: 'listener refused: "Error: Only one of `strip_matching_host_port` or `strip_any_host_port` can be set."',
  kinds: ['listener'],
  check(body) {
    const out: Finding[] = [];
    for (const [hcm, path] of typed(body, HCM))
      if (hcm['strip_any_host_port'] === true && hcm['strip_matching_host_port'] === true)
        out.push({ path, message: 'Error: Only one of `strip_matching_host_port` or `strip_any_host_port` can be set.' });
    return out;
  },
};

const extAuthzV3: ResourceRule = {
  id: 'ext_authz.transport-v3',
  source: 'source/extensions/filters/http/ext_authz/config.cc (Config::Utility::checkTransportVersion)',
  effect: 'listener refused: "V2 (and AUTO) xDS transport protocol versions are deprecated"',
  kinds: ['listener'],
  check(body) {
    const out: Finding[] = [];
    for (const [cfg, path] of typed(body, EXT_AUTHZ))
      if (cfg['transport_api_version'] !== 'V3' && cfg['transport_api_version'] !== 2)
        out.push({
          path: join(path, 'transport_api_version'),
          message: 'V2 (and AUTO) xDS transport protocol versions are deprecated: set transport_api_version V3',
        });
    return out;
  },
};

const extProcConfig: ResourceRule = {
  id: 'ext_proc.config',
  source: 'source/extensions/filters/http/ext_proc/config.cc, verifyFilterConfig / verifyProcessingModeConfig',
  effect: 'listener refused ("One and only one of grpc_service or http_service must be configured", FULL_DUPLEX_STREAMED rules)',
  kinds: ['listener'],
  check(body) {
    const out: Finding[] = [];
    for (const [cfg, path] of typed(body, EXT_PROC)) {
      if ((cfg['grpc_service'] !== undefined) === (cfg['http_service'] !== undefined))
        out.push({ path, message: 'One and only one of grpc_service or http_service must be configured' });
      const mode = isObj(cfg['processing_mode']) ? cfg['processing_mode'] : {};
      for (const [body, trailer] of [
        ['request_body_mode', 'request_trailer_mode'],
        ['response_body_mode', 'response_trailer_mode'],
      ] as const) {
        if (mode[body] !== 'FULL_DUPLEX_STREAMED') continue;
        if (mode[trailer] !== 'SEND')
          out.push({
            path: join(join(path, 'processing_mode'), trailer),
            message: `If the ext_proc filter has the ${body} set to FULL_DUPLEX_STREAMED, then the ${trailer} has to be set to SEND`,
          });
        if (cfg['failure_mode_allow'] === true)
          out.push({
            path: join(path, 'failure_mode_allow'),
            message:
              'If the ext_proc filter has either the request_body_mode or the response_body_mode set to FULL_DUPLEX_STREAMED, then the failure_mode_allow has to be left as false',
          });
      }
    }
    return out;
  },
};

const uniqueDomains: ResourceRule = {
  id: 'route.unique-domains',
  source: 'source/common/router/config_impl.cc, RouteMatcher::RouteMatcher',
  effect:
    'route table refused: "Only unique values for domains are permitted. Duplicate entry of domain …" / "Only a single wildcard domain is permitted"',
  kinds: ['route'],
  check(rc) {
    const out: Finding[] = [];
    const seen = new Map<string, string>();
    list(rc['virtual_hosts']).forEach((vh, i) => {
      if (!isObj(vh)) return;
      list(vh['domains']).forEach((d, j) => {
        const domain = String(d).toLowerCase();
        const path = `virtual_hosts[${i}].domains[${j}]`;
        const prev = seen.get(domain);
        if (prev)
          out.push({
            path,
            message:
              domain === '*'
                ? `Only a single wildcard domain is permitted in route ${String(rc['name'])} (also at ${prev})`
                : `Only unique values for domains are permitted. Duplicate entry of domain ${domain} in route ${String(rc['name'])} (also at ${prev})`,
          });
        else seen.set(domain, path);
      });
    });
    return out;
  },
};

const directResponseSize: ResourceRule = {
  id: 'route.direct-response-size',
  source: 'source/common/router/config_impl.cc (DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE_BYTES = 4096; DataSourceProvider::create)',
  effect: 'route table refused: "response body size is N bytes; maximum is 4096"',
  kinds: ['route'],
  check(rc) {
    const out: Finding[] = [];
    const max = u32(rc['max_direct_response_body_size_bytes']) ?? MAX_DIRECT_RESPONSE_BODY_BYTES;
    for (const [n, path] of nodes(rc)) {
      const dr = n['direct_response'];
      const text = isObj(dr) && isObj(dr['body']) ? str(dr['body']['inline_string']) : undefined;
      if (text !== undefined && Buffer.byteLength(text) > max)
        out.push({
          path: join(join(join(path, 'direct_response'), 'body'), 'inline_string'),
          message: `response body size is ${Buffer.byteLength(text)} bytes; maximum is ${max}`,
        });
    }
    return out;
  },
};

const rewriteExclusive: ResourceRule = {
  id: 'route.rewrite-exclusive',
  source: 'source/common/router/config_impl.cc, RouteEntryImplBase',
  effect: 'route table refused: "Specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy"',
  kinds: ['route'],
  check(rc) {
    const out: Finding[] = [];
    for (const [n, path] of nodes(rc)) {
      const route = n['route'];
      if (!isObj(route)) continue;
      const set = ['prefix_rewrite', 'regex_rewrite', 'path_rewrite_policy'].filter((k) => route[k] !== undefined && route[k] !== '');
      if (set.length > 1)
        out.push({ path: join(path, 'route'), message: 'Specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy' });
    }
    return out;
  },
};

const virtualClusterHeaders: ResourceRule = {
  id: 'route.virtual-cluster-headers',
  source: 'source/common/router/config_impl.cc, CommonVirtualHostImpl',
  effect: 'route table refused: "virtual clusters must define \'headers\'"',
  kinds: ['route'],
  check(rc) {
    const out: Finding[] = [];
    list(rc['virtual_hosts']).forEach((vh, i) => {
      if (!isObj(vh)) return;
      list(vh['virtual_clusters']).forEach((vc, j) => {
        if (!isObj(vc) || list(vc['headers']).length === 0)
          out.push({ path: `virtual_hosts[${i}].virtual_clusters[${j}]`, message: "virtual clusters must define 'headers'" });
      });
    });
    return out;
  },
};

export const RESOURCE_RULES: readonly ResourceRule[] = [
  alpnNeedsTls,
  logicalDnsSingleHost,
  edsConfigOnlyEds,
  healthCheckStatusRange,
  re2ProgramSizeRule,
  regexIgnoreCase,
  tagSafeCluster,
  tagSafeConfig,
  sanNeedsTrustedCa,
  jwtLocalJwks,
  jwtProvidersExist,
  routerLast,
  stripPortExclusive,
  extAuthzV3,
  extProcConfig,
  uniqueDomains,
  directResponseSize,
  rewriteExclusive,
  virtualClusterHeaders,
];

/** Every resource rule that applies to `kind`, as violations named `envoy.<rule id>`. */
export function checkEnvoyRules(kind: ResourceKind, body: ProtoObject): Violation[] {
  const out: Violation[] = [];
  for (const rule of RESOURCE_RULES) {
    if (!rule.kinds.includes(kind)) continue;
    for (const v of rule.check(body)) out.push({ ...v, path: v.path || '(root)', rule: `envoy.${rule.id}` });
  }
  return out;
}

// ------------------------------------------------------------------------------------- snapshot rules

/** The HTTP connection managers of a listener, with their HTTP filter names and route table name. */
function* connectionManagers(listener: ProtoObject): Generator<{ hcm: Obj; filters: string[]; routeConfig?: string }> {
  for (const [hcm] of typed(listener, HCM)) {
    const filters = list(hcm['http_filters']).map((f) => (isObj(f) ? String(f['name']) : ''));
    const rds = isObj(hcm['rds']) ? str(hcm['rds']['route_config_name']) : undefined;
    yield { hcm, filters, ...(rds ? { routeConfig: rds } : {}) };
  }
}

/** Each typed_per_filter_config key of a route table, with the path of the map holding it. */
const perFilterConfigKeys = perBody((rc) => {
  const out: Array<readonly [string, string]> = [];
  for (const [n, path] of nodes(rc)) {
    const per = n['typed_per_filter_config'];
    if (isObj(per)) for (const key of Object.keys(per)) out.push([key, path]);
  }
  return out;
});

const perFilterConfigKnown: SnapshotRule = {
  id: 'route.per-filter-config-known',
  reads: ['listener', 'route'],
  source: "source/common/router/per_filter_config.cc (looked up at run time by the HTTP filter's config name)",
  effect: 'accepted, and silently ignored: a per-route RBAC or ext_authz setting under a name no filter has never applies',
  check(res) {
    const out: string[] = [];
    for (const [lname, listener] of res.listener) {
      for (const { filters, routeConfig } of connectionManagers(listener)) {
        const rc = routeConfig ? res.route.get(routeConfig) : undefined;
        if (!rc) continue;
        const known = new Set(filters);
        for (const [key, path] of perFilterConfigKeys(rc)) {
          if (!known.has(key))
            out.push(
              `route configuration "${routeConfig}": ${join(path, 'typed_per_filter_config')}[${JSON.stringify(key)}]: envoy.${this.id}: listener "${lname}" has no HTTP filter named ${key}; Envoy would ignore this setting`,
            );
        }
      }
    }
    return out;
  },
};

const sideStreamBreakers: SnapshotRule = {
  id: 'cluster.side-stream-circuit-breakers',
  reads: ['listener', 'cluster'],
  source:
    'source/common/upstream/upstream_impl.cc, ClusterInfoImpl::ResourceManagers::load (max_requests default 1024); ext_proc.cc (one side stream per HTTP stream)',
  effect: "accepted, but past 1024 concurrent streams the filter's calls overflow: every new request through it fails",
  check(res) {
    const out: string[] = [];
    for (const [lname, listener] of res.listener) {
      for (const type of [EXT_PROC, EXT_AUTHZ]) {
        for (const [cfg, path] of typed(listener, type)) {
          const grpc = isObj(cfg['grpc_service']) ? cfg['grpc_service'] : undefined;
          const name = grpc && isObj(grpc['envoy_grpc']) ? str(grpc['envoy_grpc']['cluster_name']) : undefined;
          const cluster = name ? res.cluster.get(name) : undefined;
          // Only what the snapshot holds can be judged: a local-authz gateway's authorizer clusters are static,
          // in its bootstrap (sidecar/src/bootstrap.ts, localAuthzClusters, whose test holds them to this floor).
          if (!cluster) continue;
          const thresholds = isObj(cluster['circuit_breakers']) ? list(cluster['circuit_breakers']['thresholds']) : [];
          const def = thresholds.find((t) => isObj(t) && (t['priority'] === undefined || t['priority'] === 'DEFAULT')) as Obj | undefined;
          const maxRequests = def ? (u32(def['max_requests']) ?? 1024) : 1024;
          if (maxRequests < MIN_SIDE_STREAM_REQUESTS)
            out.push(
              `listener "${lname}": ${join(path, 'grpc_service')}: envoy.${this.id}: cluster "${name}" allows ${maxRequests} concurrent requests (Envoy's default is 1024); a gateway's side streams need at least ${MIN_SIDE_STREAM_REQUESTS}`,
            );
        }
      }
    }
    return out;
  },
};

/** Combined validation contexts whose default half matches SANs without a CA of its own: the secret must bring one. */
const combinedContextsNeedingCa = perBody((body) => {
  const out: Array<readonly [Obj, string]> = [];
  for (const [n, path] of nodes(body)) {
    const combined = n['combined_validation_context'];
    if (!isObj(combined) || !isObj(combined['default_validation_context'])) continue;
    const def = combined['default_validation_context'];
    if (hasSanMatchers(def) && !hasTrustedCa(def)) out.push([combined, path]);
  }
  return out;
});

const combinedSanNeedsCa: SnapshotRule = {
  id: 'tls.san-needs-trusted-ca',
  reads: ['cluster', 'listener', 'secret'],
  source:
    'source/common/tls/context_config_impl.cc, getCombinedValidationContextConfig; certificate_validation_context_config_impl.cc, initialize',
  effect: 'the SDS secret update is refused and the listener or cluster never warms: "SAN-based verification … without trusted CA"',
  check(res) {
    const out: string[] = [];
    for (const kind of ['cluster', 'listener'] as const) {
      for (const [rname, body] of res[kind]) {
        for (const [combined, path] of combinedContextsNeedingCa(body)) {
          const ref = isObj(combined['validation_context_sds_secret_config'])
            ? str(combined['validation_context_sds_secret_config']['name'])
            : undefined;
          const secret = ref ? res.secret.get(ref) : undefined;
          const vc = secret && isObj(secret['validation_context']) ? secret['validation_context'] : undefined;
          if (secret && !(vc && hasTrustedCa(vc)))
            out.push(
              `${kind} "${rname}": ${join(path, 'combined_validation_context')}: envoy.${this.id}: SAN-based verification of peer certificates without trusted CA is insecure and not allowed (secret "${ref}" carries no trusted_ca)`,
            );
        }
      }
    }
    return out;
  },
};

const uniqueListenerAddress: SnapshotRule = {
  id: 'listener.unique-address',
  reads: ['listener'],
  source: 'source/common/listener_manager/listener_manager_impl.cc, setNewOrDrainingSocketFactory',
  effect: 'listener refused: "error adding listener: … has duplicate address … as existing listener"',
  check(res) {
    const out: string[] = [];
    const seen = new Map<string, string>();
    for (const [name, l] of res.listener) {
      const sa = isObj(l['address']) && isObj(l['address']['socket_address']) ? l['address']['socket_address'] : undefined;
      if (!sa) continue;
      const addr = `${String(sa['address'])}:${String(u32(sa['port_value']) ?? sa['port_value'])}`;
      const prev = seen.get(addr);
      if (prev)
        out.push(
          `listener "${name}": address: envoy.${this.id}: error adding listener: '${name}' has duplicate address '${addr}' as existing listener '${prev}'`,
        );
      else seen.set(addr, name);
    }
    return out;
  },
};

export const SNAPSHOT_RULES: readonly SnapshotRule[] = [
  perFilterConfigKnown,
  sideStreamBreakers,
  combinedSanNeedsCa,
  uniqueListenerAddress,
];

/** Every snapshot rule (or those reading a kind in `changed`), as lines naming the resource, path, rule and reason. */
export function checkSnapshotRules(resources: SnapshotBodies, changed?: ReadonlySet<ResourceKind>): string[] {
  return SNAPSHOT_RULES.flatMap((r) => (!changed || r.reads.some((k) => changed.has(k)) ? r.check(resources) : []));
}
