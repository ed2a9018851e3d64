// One layered routing model for every source. A service's routing knobs are resolved from layers:
//
//   built-in defaults -> mesh-wide layers -> per-service layers
//
// and, within one scope, by source rank: registry < Consul config entries < routing file. Scope comes first
// (a per-service setting beats any mesh-wide one, whoever wrote it), so "this service needs 10 minute tool
// calls" is never undone by a mesh-wide default added later elsewhere. Within a scope the routing file wins:
// it is reviewed and versioned (GitOps), so a Consul entry cannot silently undo a pinned, reviewed value;
// every knob the file leaves unset stays tunable in Consul. Each knob keeps where its value came from
// (provenance), and the layers it overrode, for `mcpmesh routing explain` and /debug/routing.
//
// The knob table below is the only list of knobs: the registry reader, the routing file, Consul entry Meta
// keys and the explain output all read it, so a knob added here is settable everywhere at once.
import { DEFAULT_CIRCUIT_BREAKERS, DEFAULT_HEALTH_CHECK, DEFAULT_OUTLIER_DETECTION, DEFAULT_ROUTING } from './defaults.ts';
import { join, type Node, type Reader } from './reader.ts';
import type { CircuitBreakers, HealthCheck, LbPolicy, OutlierDetection, Routing, UpstreamProtocol } from './types.ts';

export const DAY_MS = 86_400_000;
const HOST_NAME = /^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
export const HTTP_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;

export const LB_POLICIES: readonly LbPolicy[] = ['least_request', 'round_robin'];
export const UPSTREAM_PROTOCOLS: readonly UpstreamProtocol[] = ['http1', 'http2', 'auto'];

export type Section = 'routing' | 'outlierDetection' | 'healthCheck' | 'circuitBreakers';
export const SECTIONS: readonly Section[] = ['routing', 'outlierDetection', 'healthCheck', 'circuitBreakers'];
export type KnobValue = number | string | readonly string[];

interface KnobDef {
  readonly section: Section;
  /** The model field (and the key of the tuned object). */
  readonly field: string;
  /** The YAML key in registry and routing files. */
  readonly yaml: string;
  /** Durations are shown as "5s"; others as they are. */
  readonly duration?: true;
  /** Entry Meta key (after the `mcpmesh/` prefix) for knobs Consul has no field of its own for. */
  readonly meta?: string;
  /** What the service is, not how it is tuned: set by the source only (registry, Consul catalog), never by tuning. */
  readonly identity?: true;
  /** The Envoy (or grpc-js-xds) setting it becomes, for explain and the README table. */
  readonly envoy: string;
  readonly read: (r: Reader, node: Node, path: string) => KnobValue | undefined;
}

const integer =
  (min: number, max: number) =>
  (r: Reader, n: Node, p: string, k: string): number | undefined =>
    r.integer(n, k, p, min, max);
const duration =
  (min: number, max: number) =>
  (r: Reader, n: Node, p: string, k: string): number | undefined =>
    r.duration(n, k, p, min, max);

function knob(
  section: Section,
  field: string,
  yaml: string,
  envoy: string,
  read: (r: Reader, n: Node, p: string, k: string) => KnobValue | undefined,
  extra: { duration?: true; meta?: string; identity?: true } = {},
): KnobDef {
  return { section, field, yaml, envoy, ...extra, read: (r, n, p) => read(r, n, p, yaml) };
}

function readHosts(r: Reader, node: Node, path: string, key: string): readonly string[] | undefined {
  const hosts = r.list(node, key, path);
  if (!hosts) return undefined;
  const out: string[] = [];
  hosts.forEach((h, i) => {
    if (typeof h === 'string' && HOST_NAME.test(h)) out.push(h);
    else r.fail(join(join(path, key), i), `${JSON.stringify(h)} is not a host name`);
  });
  return out;
}

export const KNOBS = [
  knob(
    'routing',
    'mcpPath',
    'mcpPath',
    'route prefix_rewrite; health check path',
    (r, n, p, k) => r.string(n, k, p, { pattern: HTTP_PATH, hint: 'must be an absolute HTTP path such as /mcp' }),
    { identity: true },
  ),
  knob('routing', 'hosts', 'hosts', 'virtual host domains', readHosts, { identity: true }),
  knob('routing', 'maxStreamDurationMs', 'maxStreamDuration', 'route max_stream_duration (0 = none)', duration(0, 7 * DAY_MS), {
    duration: true,
    meta: 'max-stream-duration',
  }),
  knob('routing', 'streamIdleTimeoutMs', 'streamIdleTimeout', 'route idle_timeout; cluster idle_timeout', duration(0, 7 * DAY_MS), {
    duration: true,
    meta: 'stream-idle-timeout',
  }),
  knob('routing', 'connectTimeoutMs', 'connectTimeout', 'cluster connect_timeout', duration(1, 300_000), { duration: true }),
  knob('routing', 'upstreamProtocol', 'upstreamProtocol', 'cluster HttpProtocolOptions (explicit http1/http2, or ALPN)', (r, n, p, k) =>
    r.oneOf<UpstreamProtocol>(n, k, p, UPSTREAM_PROTOCOLS),
  ),
  knob('routing', 'lbPolicy', 'lbPolicy', 'cluster load_balancing_policy', (r, n, p, k) => r.oneOf<LbPolicy>(n, k, p, LB_POLICIES)),
  knob(
    'routing',
    'retries',
    'retries',
    'route retry_policy.num_retries (connect-failure, refused-stream, reset-before-request)',
    integer(0, 10),
    { meta: 'retries' },
  ),
  knob('outlierDetection', 'consecutive5xx', 'consecutive5xx', 'outlier_detection.consecutive_5xx (0 = off)', integer(0, 1000)),
  knob(
    'outlierDetection',
    'consecutiveGatewayFailure',
    'consecutiveGatewayFailure',
    'outlier_detection.consecutive_gateway_failure (0 = off)',
    integer(0, 1000),
    { meta: 'consecutive-gateway-failure' },
  ),
  knob('outlierDetection', 'intervalMs', 'interval', 'outlier_detection.interval', duration(1, DAY_MS), { duration: true }),
  knob('outlierDetection', 'baseEjectionTimeMs', 'baseEjectionTime', 'outlier_detection.base_ejection_time', duration(1, DAY_MS), {
    duration: true,
  }),
  knob('outlierDetection', 'maxEjectionPercent', 'maxEjectionPercent', 'outlier_detection.max_ejection_percent', integer(0, 100)),
  knob(
    'outlierDetection',
    'failurePercentageThreshold',
    'failurePercentageThreshold',
    'outlier_detection.failure_percentage_threshold (0 = off)',
    integer(0, 100),
    { meta: 'failure-percentage-threshold' },
  ),
  knob(
    'outlierDetection',
    'failurePercentageMinimumHosts',
    'failurePercentageMinimumHosts',
    'outlier_detection.failure_percentage_minimum_hosts',
    integer(1, 10_000),
    { meta: 'failure-percentage-minimum-hosts' },
  ),
  knob(
    'outlierDetection',
    'failurePercentageRequestVolume',
    'failurePercentageRequestVolume',
    'outlier_detection.failure_percentage_request_volume',
    integer(1, 1_000_000),
    { meta: 'failure-percentage-request-volume' },
  ),
  knob(
    'healthCheck',
    'path',
    'path',
    'health_checks[0].http_health_check.path ("" = no active check)',
    (r, n, p, k) => (n[k] === '' ? '' : r.string(n, k, p, { pattern: HTTP_PATH, hint: 'must be an absolute HTTP path, or "" to disable' })),
    { meta: 'health-check-path' },
  ),
  knob('healthCheck', 'intervalMs', 'interval', 'health_checks[0].interval', duration(100, DAY_MS), {
    duration: true,
    meta: 'health-check-interval',
  }),
  knob('healthCheck', 'timeoutMs', 'timeout', 'health_checks[0].timeout', duration(1, DAY_MS), {
    duration: true,
    meta: 'health-check-timeout',
  }),
  knob('healthCheck', 'unhealthyThreshold', 'unhealthyThreshold', 'health_checks[0].unhealthy_threshold', integer(1, 100), {
    meta: 'health-check-unhealthy-threshold',
  }),
  knob('healthCheck', 'healthyThreshold', 'healthyThreshold', 'health_checks[0].healthy_threshold', integer(1, 100), {
    meta: 'health-check-healthy-threshold',
  }),
  knob(
    'circuitBreakers',
    'maxConnections',
    'maxConnections',
    'circuit_breakers.thresholds[DEFAULT].max_connections',
    integer(1, 1_000_000),
  ),
  knob(
    'circuitBreakers',
    'maxPendingRequests',
    'maxPendingRequests',
    'circuit_breakers.thresholds[DEFAULT].max_pending_requests',
    integer(1, 1_000_000),
  ),
  knob('circuitBreakers', 'maxRequests', 'maxRequests', 'circuit_breakers.thresholds[DEFAULT].max_requests', integer(1, 1_000_000)),
  knob('circuitBreakers', 'maxRetries', 'maxRetries', 'circuit_breakers.thresholds[DEFAULT].max_retries', integer(0, 1_000_000), {
    meta: 'max-retries',
  }),
] as const satisfies readonly KnobDef[];

/** `routing.lbPolicy`, `outlierDetection.consecutive5xx`, ... (section + model field). */
export type KnobName = `${Section}.${string}`;
export const knobName = (k: KnobDef): KnobName => `${k.section}.${k.field}`;
export const KNOB_BY_NAME: ReadonlyMap<KnobName, KnobDef> = new Map(KNOBS.map((k) => [knobName(k), k]));
/** The Meta key prefix on Consul config entries for knobs Consul has no field for. */
export const META_PREFIX = 'mcpmesh/';

export interface Provenance {
  readonly source: 'default' | 'registry' | 'file' | 'consul';
  /** The file, or the Consul entry as kind/name (or the catalog). */
  readonly where: string;
  /** The YAML path, or the entry's field. */
  readonly field: string;
}

export interface Setting {
  readonly value: KnobValue;
  readonly from: Provenance;
}

export type Settings = Readonly<Partial<Record<KnobName, Setting>>>;

/** Source ranks within a scope: higher wins. Consul entries use 20-29 among themselves. */
export const RANK = { registry: 10, consul: 20, file: 30 } as const;

export interface Layer {
  readonly scope: 'mesh' | 'service';
  readonly rank: number;
  readonly settings: Settings;
}

export interface Tuned {
  readonly routing: Routing;
  readonly outlierDetection: OutlierDetection;
  readonly healthCheck: HealthCheck;
  readonly circuitBreakers: CircuitBreakers;
}

export interface KnobExplanation {
  readonly knob: KnobName;
  readonly value: KnobValue;
  /** The value as an operator writes it ("5s", "least_request"). */
  readonly shown: string;
  readonly from: Provenance;
  /** Settings of lower layers this one replaced, lowest first. */
  readonly overridden: readonly (Setting & { shown: string })[];
  readonly envoy: string;
}

export interface RoutingProblems {
  readonly sources: Readonly<Record<string, string>>;
  readonly unknownServices: readonly { readonly origin: string; readonly service: string }[];
}

/** /debug/routing without ?service (routing.ts): every published service's knobs, by name (sorted). */
export interface RoutingView {
  readonly services: Readonly<Record<string, readonly KnobExplanation[]>>;
  readonly problems: RoutingProblems;
}

const BUILT_IN: Provenance = { source: 'default', where: 'built-in', field: '' };
const DEFAULTS: Record<Section, Record<string, KnobValue>> = {
  routing: DEFAULT_ROUTING as unknown as Record<string, KnobValue>,
  outlierDetection: DEFAULT_OUTLIER_DETECTION as unknown as Record<string, KnobValue>,
  healthCheck: DEFAULT_HEALTH_CHECK as unknown as Record<string, KnobValue>,
  circuitBreakers: DEFAULT_CIRCUIT_BREAKERS as unknown as Record<string, KnobValue>,
};

export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

export function showValue(name: KnobName, v: KnobValue): string {
  if (Array.isArray(v)) return `[${v.join(', ')}]`;
  if (typeof v === 'number' && KNOB_BY_NAME.get(name)?.duration) return formatDuration(v);
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** Where a value came from, as explain, the console and `mcpmesh status` print it. */
export function showProvenance(p: Provenance): string {
  if (p.source === 'default') return 'built-in default';
  if (p.source === 'consul') return `consul ${p.where} ${p.field}`;
  return `${p.source} ${p.where}: ${p.field}`;
}

/**
 * The knobs whose effective value is not the built-in one (whoever set them), for the compact views (console,
 * `mcpmesh status`). By value, not by source: a registry that spells out a default changes nothing worth a line.
 */
export function nonDefaultKnobs(knobs: readonly KnobExplanation[]): KnobExplanation[] {
  return knobs.filter((k) => {
    const def = KNOB_BY_NAME.get(k.knob);
    return def === undefined || showValue(k.knob, DEFAULTS[def.section][def.field] as KnobValue) !== k.shown;
  });
}

/**
 * Reads one section (`routing:`, `outlierDetection:`, ...) of a registry or routing file into settings, every
 * problem reported on `r` with its path. `identity: false` refuses knobs only a source may set.
 */
export function readSection(
  r: Reader,
  node: Node | undefined,
  path: string,
  section: Section,
  from: (field: string) => Provenance,
  opts: { identity?: boolean } = {},
): Settings {
  if (!node) return {};
  const defs = KNOBS.filter((k: KnobDef) => k.section === section && (opts.identity !== false || !k.identity));
  r.onlyKeys(
    node,
    path,
    defs.map((k) => k.yaml),
  );
  const out: Partial<Record<KnobName, Setting>> = {};
  for (const k of defs) {
    const v = k.read(r, node, path);
    if (v !== undefined) out[knobName(k)] = { value: v, from: from(join(path, k.yaml)) };
  }
  return out;
}

/** Reads the `routing`, `outlierDetection`, `healthCheck` and `circuitBreakers` blocks of one mapping. */
export function readSections(
  r: Reader,
  node: Node,
  path: string,
  from: (field: string) => Provenance,
  opts: { identity?: boolean } = {},
): Settings {
  const out: Partial<Record<KnobName, Setting>> = {};
  for (const s of SECTIONS) Object.assign(out, readSection(r, r.object(node, s, path), join(path, s), s, from, opts));
  return out;
}

/**
 * Reads one Meta value (a string) as the knob whose meta key it is; undefined with a problem on `r` when the
 * value is bad. Uses the same validators as the files.
 */
export function readMetaValue(r: Reader, k: KnobDef, value: string, path: string): KnobValue | undefined {
  // Numbers arrive as strings in Meta; the integer reader accepts digit strings, the duration reader strings.
  return k.read(r, { [k.yaml]: value }, path);
}

export const META_KNOBS: ReadonlyMap<string, KnobDef> = new Map(
  KNOBS.filter((k: KnobDef) => k.meta !== undefined).map((k: KnobDef) => [META_PREFIX + (k.meta as string), k]),
);

function ordered(layers: readonly Layer[]): Layer[] {
  // Stable: equal scope and rank keep their given order (later wins).
  return layers
    .map((l, i) => ({ l, i }))
    .sort((a, b) => (a.l.scope === b.l.scope ? 0 : a.l.scope === 'mesh' ? -1 : 1) || a.l.rank - b.l.rank || a.i - b.i)
    .map((x) => x.l);
}

/**
 * Resolves layers into the model's four blocks (every field filled) and an explanation per knob. The health
 * check follows the MCP path unless some layer set its path explicitly.
 */
export function resolveTuning(layers: readonly Layer[]): { tuned: Tuned; explain: KnobExplanation[] } {
  const stacks = new Map<KnobName, Setting[]>();
  for (const k of KNOBS) stacks.set(knobName(k), [{ value: DEFAULTS[k.section][k.field] as KnobValue, from: BUILT_IN }]);
  for (const layer of ordered(layers)) {
    for (const [name, s] of Object.entries(layer.settings) as [KnobName, Setting][]) stacks.get(name)?.push(s);
  }
  const hcPath = stacks.get('healthCheck.path') as Setting[];
  const mcpPath = (stacks.get('routing.mcpPath') as Setting[]).at(-1) as Setting;
  if (hcPath.length === 1)
    hcPath[0] = {
      value: mcpPath.value,
      from: mcpPath.from.source === 'default' ? BUILT_IN : { ...mcpPath.from, field: `${mcpPath.from.field} (follows the MCP path)` },
    };
  const blocks: Record<Section, Record<string, KnobValue>> = { routing: {}, outlierDetection: {}, healthCheck: {}, circuitBreakers: {} };
  const explain: KnobExplanation[] = [];
  for (const k of KNOBS) {
    const name = knobName(k);
    const stack = stacks.get(name) as Setting[];
    const win = stack.at(-1) as Setting;
    blocks[k.section][k.field] = win.value;
    explain.push({
      knob: name,
      value: win.value,
      shown: showValue(name, win.value),
      from: win.from,
      envoy: k.envoy,
      overridden: stack.slice(0, -1).map((s) => ({ ...s, shown: showValue(name, s.value) })),
    });
  }
  return { tuned: blocks as unknown as Tuned, explain };
}

// The layers a source resolved a spec from, kept beside the spec (not in it: the model stays the plain
// values translators read) so that routing overlays and explain can re-resolve with provenance.
const SOURCE_LAYERS = new WeakMap<object, readonly Layer[]>();

export function withLayers<T extends object>(spec: T, layers: readonly Layer[]): T {
  SOURCE_LAYERS.set(spec, layers);
  return spec;
}

/** The layers `spec` was resolved from by its source (none when a caller built it by hand). */
export function layersOf(spec: object): readonly Layer[] {
  return SOURCE_LAYERS.get(spec) ?? [];
}

/** Routing that comes from beside the service's source (a routing file, Consul config entries). */
export interface TuningOverlay {
  readonly mesh: readonly Layer[];
  readonly services: ReadonlyMap<string, readonly Layer[]>;
}

// A spec built without layers (by hand): its values, as one per-service layer of the source.
function layersFromValues(spec: Tuned): Layer[] {
  const settings: Partial<Record<KnobName, Setting>> = {};
  for (const k of KNOBS)
    settings[knobName(k)] = {
      value: (spec[k.section] as unknown as Record<string, KnobValue>)[k.field] as KnobValue,
      from: { source: 'registry', where: 'source', field: knobName(k) },
    };
  return [{ scope: 'service', rank: RANK.registry, settings }];
}

/** The layers a service resolves from: its source's, then every overlay's mesh-wide and own layers. */
export function serviceLayers(spec: Tuned & { readonly name: string }, overlays: readonly TuningOverlay[]): Layer[] {
  const base = layersOf(spec);
  return [
    ...(base.length > 0 ? base : layersFromValues(spec)),
    ...overlays.flatMap((o) => [...o.mesh, ...(o.services.get(spec.name) ?? [])]),
  ];
}

const tunedCache = new WeakMap<object, { overlays: readonly TuningOverlay[]; spec: object }>();

/**
 * Applies overlays to source specs. A spec no overlay touches is returned as is, and a tuned spec is reused
 * while neither it nor the overlays change, so the mesh builder keeps recognising unchanged services by identity.
 */
export function applyOverlays<T extends Tuned & { readonly name: string }>(specs: readonly T[], overlays: readonly TuningOverlay[]): T[] {
  const live = overlays.filter((o) => o.mesh.length > 0 || o.services.size > 0);
  return specs.map((spec) => {
    if (!live.some((o) => o.mesh.length > 0 || o.services.has(spec.name))) return spec;
    const cached = tunedCache.get(spec);
    if (cached && cached.overlays.length === live.length && cached.overlays.every((o, i) => o === live[i])) return cached.spec as T;
    const layers = serviceLayers(spec, live);
    const tuned = withLayers({ ...spec, ...resolveTuning(layers).tuned }, layers);
    tunedCache.set(spec, { overlays: live, spec: tuned });
    return tuned;
  });
}
