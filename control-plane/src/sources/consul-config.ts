// Routing from Consul: the configuration entries platform teams tune MCP services with (proxy-defaults,
// service-defaults, service-resolver), mapped onto model/tuning.ts layers and watched with blocking queries.
//
// Who is the "downstream" here: in Consul, `service-defaults` UpstreamConfig is set on the CALLER and says how
// it reaches its upstreams. The mesh's caller of every MCP service is the gateway, so the gateway's own entry
// (service-defaults named MCPMESH_CONSUL_GATEWAY_SERVICE, default `mcp-gateway`) carries it: its
// `UpstreamConfig.Defaults` are mesh-wide, its `UpstreamConfig.Overrides[{Name: X}]` tune service X.
// What belongs to the service itself comes from the service's own entries: `service-defaults` X (Protocol,
// Meta) and `service-resolver` X (LoadBalancer, ConnectTimeout, RequestTimeout). `proxy-defaults` global
// (Config.protocol, Meta) is mesh-wide. Knobs Consul has no field for come from entry Meta keys `mcpmesh/...`.
//
// Ranks (higher wins within a scope, see model/tuning.ts): proxy-defaults < gateway Defaults (mesh);
// service-defaults X < gateway Overrides[X] < service-resolver X (service). Every field the mesh does not
// map is reported (once per entry version), never silently ignored; a bad value refuses the whole entry, whose
// last good version stays in force.
import type http from 'node:http';
import { EventEmitter } from 'node:events';
import { isNode, Reader, type Node } from '../model/reader.ts';
import {
  KNOB_BY_NAME,
  META_KNOBS,
  META_PREFIX,
  RANK,
  readMetaValue,
  type KnobName,
  type KnobValue,
  type Layer,
  type Setting,
  type TuningOverlay,
} from '../model/tuning.ts';
import { BlockingQuery, type BlockingQueryError, type BlockingQueryState } from './blocking-query.ts';
import { consulAgent, consulUrl, DEFAULT_MCP_TAG, validateCatalog, type ConsulSourceOptions } from './consul.ts';

export const CONFIG_KINDS = ['proxy-defaults', 'service-defaults', 'service-resolver'] as const;
export type ConfigKind = (typeof CONFIG_KINDS)[number];
export const DEFAULT_GATEWAY_SERVICE = 'mcp-gateway';

/** A config entry as GET /v1/config/:kind returns it. */
export type ConfigEntry = Node & { Kind: string; Name: string };

export interface EntryProblem {
  /** kind/name */
  readonly entry: string;
  readonly field: string;
  readonly reason: string;
}

/** One entry's contribution: layers for the mesh or a service, bad values, and fields the mesh does not map. */
export interface MappedEntry {
  readonly entry: string;
  readonly mesh: readonly Layer[];
  readonly services: ReadonlyMap<string, readonly Layer[]>;
  readonly problems: readonly EntryProblem[];
  readonly unsupported: readonly { field: string; why: string }[];
}

// Bookkeeping fields every entry carries; not settings.
const BOOKKEEPING = new Set(['Kind', 'Name', 'Namespace', 'Partition', 'CreateIndex', 'ModifyIndex', 'Hash']);
const CONSUL_LB = ['least_request', 'round_robin', 'random', 'ring_hash', 'maglev'];

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
/** Go's time.Duration as Consul's JSON carries it ("1m30s", or nanoseconds as a number), in ms; undefined when not one. */
export function goDurationMs(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v / 1e6 : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^([-+]?)(.*)$/.exec(v) as RegExpExecArray;
  if (m[2] === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let ns = 0;
  let pos = 0;
  const s = m[2] as string;
  while (pos < s.length) {
    re.lastIndex = pos;
    const x = re.exec(s);
    if (!x) return undefined;
    ns += Number(x[1]) * (UNIT_NS[x[2] as string] as number);
    pos = re.lastIndex;
  }
  if (pos === 0) return undefined;
  return (m[1] === '-' ? -ns : ns) / 1e6;
}

const isEmpty = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  v === '' ||
  v === 0 ||
  v === false ||
  (Array.isArray(v) && v.length === 0) ||
  (isNode(v) && Object.values(v).every(isEmpty));

class EntryMapper {
  readonly problems: EntryProblem[] = [];
  readonly unsupported: { field: string; why: string }[] = [];
  readonly entry: string;
  private readonly where: string;
  constructor(e: ConfigEntry) {
    this.entry = `${e.Kind}/${e.Name}`;
    this.where = this.entry;
  }

  fail(field: string, reason: string): void {
    this.problems.push({ entry: this.entry, field, reason });
  }

  skip(field: string, why: string): void {
    this.unsupported.push({ field, why });
  }

  /** Reports every non-empty field of `node` not in `mapped` as unsupported. */
  rest(node: Node, prefix: string, mapped: readonly string[], why = 'not mapped by MCP Mesh'): void {
    for (const [k, v] of Object.entries(node)) {
      if (mapped.includes(k) || (prefix === '' && BOOKKEEPING.has(k)) || isEmpty(v)) continue;
      this.skip(prefix ? `${prefix}.${k}` : k, why);
    }
  }

  /** Validates a value (already in model units) with the knob's own reader; problems are named by Consul field. */
  setting(out: Partial<Record<KnobName, Setting>>, knob: KnobName, field: string, value: KnobValue): void {
    const k = KNOB_BY_NAME.get(knob);
    if (!k) throw new Error(`no knob ${knob}`);
    const r = new Reader();
    const v = k.read(r, { [k.yaml]: k.duration && typeof value === 'number' ? `${value}ms` : value }, '');
    for (const p of r.problems) this.fail(field, p.reason);
    if (v !== undefined && r.problems.length === 0) out[knob] = { value: v, from: { source: 'consul', where: this.where, field } };
  }

  duration(
    out: Partial<Record<KnobName, Setting>>,
    knob: KnobName,
    node: Node,
    key: string,
    prefix: string,
    unit: 'go' | 'ms' = 'go',
  ): void {
    const raw = node[key];
    if (raw === undefined || raw === null || raw === '') return;
    const field = prefix ? `${prefix}.${key}` : key;
    const ms = unit === 'ms' ? (typeof raw === 'number' && Number.isInteger(raw) ? raw : undefined) : goDurationMs(raw);
    if (ms === undefined)
      return this.fail(
        field,
        `${JSON.stringify(raw)} is not a ${unit === 'ms' ? 'whole number of milliseconds' : 'duration such as "5s" or "1m30s"'}`,
      );
    if (ms < 0) return this.fail(field, `must not be negative (got ${JSON.stringify(raw)})`);
    // Consul documents 0 as "not set" for every duration the mesh reads (its own default then applies; for
    // RequestTimeout the mesh's "no limit").
    if (ms === 0) return;
    this.setting(out, knob, field, Math.round(ms));
  }

  integer(
    out: Partial<Record<KnobName, Setting>>,
    knob: KnobName,
    node: Node,
    key: string,
    prefix: string,
    opts: { zeroUnset?: boolean } = {},
  ): void {
    const raw = node[key];
    if (raw === undefined || raw === null) return;
    const field = `${prefix}.${key}`;
    if (typeof raw !== 'number' || !Number.isInteger(raw)) return this.fail(field, `must be an integer (got ${JSON.stringify(raw)})`);
    if (raw < 0) return this.fail(field, `must not be negative (got ${raw})`);
    // Consul documents 0 as "not set" for Limits and PassiveHealthCheck counts.
    if (raw === 0 && opts.zeroUnset) return;
    this.setting(out, knob, field, raw);
  }

  protocol(out: Partial<Record<KnobName, Setting>>, raw: unknown, field: string): void {
    if (raw === undefined || raw === null || raw === '') return;
    const map: Record<string, KnobValue> = { http: 'http1', http2: 'http2', grpc: 'http2' };
    const v = typeof raw === 'string' ? map[raw.toLowerCase()] : undefined;
    if (v === undefined) {
      return this.fail(
        field,
        raw === 'tcp'
          ? 'is "tcp": MCP is carried over HTTP; use "http", "http2" or "grpc"'
          : `${JSON.stringify(raw)} is not one of: http, http2, grpc`,
      );
    }
    this.setting(out, 'routing.upstreamProtocol', field, v);
  }

  /** `mcpmesh/...` Meta keys: the knobs Consul has no field for. Other Meta keys are the operator's own. */
  meta(out: Partial<Record<KnobName, Setting>>, e: ConfigEntry): void {
    const meta = e['Meta'];
    if (meta === undefined || meta === null) return;
    if (!isNode(meta)) return this.fail('Meta', 'must be a map of strings');
    for (const [key, value] of Object.entries(meta).sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (!key.startsWith(META_PREFIX)) continue;
      const field = `Meta["${key}"]`;
      const k = META_KNOBS.get(key);
      if (!k) {
        this.fail(field, `unknown MCP Mesh key (expected one of: ${[...META_KNOBS.keys()].join(', ')})`);
        continue;
      }
      if (typeof value !== 'string') {
        this.fail(field, 'must be a string');
        continue;
      }
      const r = new Reader();
      const v = readMetaValue(r, k, value, '');
      for (const p of r.problems) this.fail(field, p.reason);
      if (v !== undefined) out[`${k.section}.${k.field}` as KnobName] = { value: v, from: { source: 'consul', where: this.where, field } };
    }
  }

  /** UpstreamConfig.Defaults or one of its Overrides (ConnectTimeoutMs, Protocol, Limits, PassiveHealthCheck). */
  upstream(node: Node, prefix: string, extraMapped: readonly string[] = []): Partial<Record<KnobName, Setting>> {
    const out: Partial<Record<KnobName, Setting>> = {};
    this.protocol(out, node['Protocol'], `${prefix}.Protocol`);
    this.duration(out, 'routing.connectTimeoutMs', node, 'ConnectTimeoutMs', prefix, 'ms');
    const limits = node['Limits'];
    if (isNode(limits)) {
      const p = `${prefix}.Limits`;
      this.integer(out, 'circuitBreakers.maxConnections', limits, 'MaxConnections', p, { zeroUnset: true });
      this.integer(out, 'circuitBreakers.maxPendingRequests', limits, 'MaxPendingRequests', p, { zeroUnset: true });
      this.integer(out, 'circuitBreakers.maxRequests', limits, 'MaxConcurrentRequests', p, { zeroUnset: true });
      this.rest(limits, p, ['MaxConnections', 'MaxPendingRequests', 'MaxConcurrentRequests']);
    }
    const phc = node['PassiveHealthCheck'];
    if (isNode(phc)) {
      const p = `${prefix}.PassiveHealthCheck`;
      this.duration(out, 'outlierDetection.intervalMs', phc, 'Interval', p);
      this.integer(out, 'outlierDetection.consecutive5xx', phc, 'MaxFailures', p, { zeroUnset: true });
      this.integer(out, 'outlierDetection.maxEjectionPercent', phc, 'MaxEjectionPercent', p);
      this.duration(out, 'outlierDetection.baseEjectionTimeMs', phc, 'BaseEjectionTime', p);
      // The mesh enforces consecutive-5xx ejection fully or not at all: 0 turns it off, 100 (Envoy's default) keeps it.
      const enf = phc['EnforcingConsecutive5xx'];
      if (enf === 0)
        out['outlierDetection.consecutive5xx'] = {
          value: 0,
          from: { source: 'consul', where: this.where, field: `${p}.EnforcingConsecutive5xx` },
        };
      else if (enf !== undefined && enf !== null && enf !== 100) {
        if (typeof enf !== 'number' || !Number.isInteger(enf) || enf < 0 || enf > 100)
          this.fail(`${p}.EnforcingConsecutive5xx`, `must be an integer from 0 to 100 (got ${JSON.stringify(enf)})`);
        else this.skip(`${p}.EnforcingConsecutive5xx`, 'partial enforcement is not supported: 0 (off) or 100');
      }
      this.rest(phc, p, ['Interval', 'MaxFailures', 'MaxEjectionPercent', 'BaseEjectionTime', 'EnforcingConsecutive5xx']);
    }
    this.rest(node, prefix, ['Protocol', 'ConnectTimeoutMs', 'Limits', 'PassiveHealthCheck', ...extraMapped]);
    return out;
  }
}

function layer(scope: Layer['scope'], rank: number, settings: Partial<Record<KnobName, Setting>>): Layer[] {
  return Object.keys(settings).length > 0 ? [{ scope, rank, settings }] : [];
}

/** Maps one config entry. Pure. */
export function mapConfigEntry(e: ConfigEntry, gateway = DEFAULT_GATEWAY_SERVICE): MappedEntry {
  const m = new EntryMapper(e);
  const mesh: Layer[] = [];
  const services = new Map<string, Layer[]>();
  const add = (svc: string, l: Layer[]): void => void (l.length > 0 && services.set(svc, [...(services.get(svc) ?? []), ...l]));
  if (e.Kind === 'proxy-defaults') {
    if (e.Name !== 'global') m.fail('Name', `must be "global" for proxy-defaults (got ${JSON.stringify(e.Name)})`);
    const out: Partial<Record<KnobName, Setting>> = {};
    const config = e['Config'];
    if (isNode(config)) {
      m.protocol(out, config['protocol'], 'Config.protocol');
      m.rest(config, 'Config', ['protocol']);
    }
    m.meta(out, e);
    m.rest(e, '', ['Config', 'Meta']);
    mesh.push(...layer('mesh', RANK.consul, out));
  } else if (e.Kind === 'service-defaults' && e.Name === gateway) {
    const up = e['UpstreamConfig'];
    if (isNode(up)) {
      const defaults = up['Defaults'];
      if (isNode(defaults)) mesh.push(...layer('mesh', RANK.consul + 1, m.upstream(defaults, 'UpstreamConfig.Defaults')));
      const overrides = up['Overrides'];
      if (Array.isArray(overrides)) {
        overrides.forEach((o, i) => {
          const p = `UpstreamConfig.Overrides[${i}]`;
          if (!isNode(o) || typeof o['Name'] !== 'string' || o['Name'] === '') {
            m.fail(`${p}.Name`, 'is required: the MCP service this override tunes');
            return;
          }
          if (!isEmpty(o['Peer'])) {
            m.skip(p, 'overrides for peered services are not supported');
            return;
          }
          add(o['Name'], layer('service', RANK.consul + 3, m.upstream(o, p, ['Name', 'Namespace', 'Partition', 'Peer'])));
        });
      } else if (!isEmpty(overrides)) m.fail('UpstreamConfig.Overrides', 'must be a list');
      m.rest(up, 'UpstreamConfig', ['Defaults', 'Overrides']);
    }
    const out: Partial<Record<KnobName, Setting>> = {};
    m.meta(out, e);
    mesh.push(...layer('mesh', RANK.consul + 1, out));
    m.rest(e, '', ['UpstreamConfig', 'Meta'], `the gateway's own setting, not how it reaches MCP services`);
  } else if (e.Kind === 'service-defaults') {
    const out: Partial<Record<KnobName, Setting>> = {};
    m.protocol(out, e['Protocol'], 'Protocol');
    m.meta(out, e);
    if (!isEmpty(e['UpstreamConfig']))
      m.skip(
        'UpstreamConfig',
        `configures ${e.Name}'s own upstreams (MCP servers dial nothing through the mesh); set how ${e.Name} is reached in service-defaults/${gateway} UpstreamConfig.Overrides`,
      );
    m.rest(e, '', ['Protocol', 'Meta', 'UpstreamConfig']);
    add(e.Name, layer('service', RANK.consul + 2, out));
  } else if (e.Kind === 'service-resolver') {
    const out: Partial<Record<KnobName, Setting>> = {};
    m.duration(out, 'routing.connectTimeoutMs', e, 'ConnectTimeout', '');
    // Consul's RequestTimeout bounds the whole request; Consul's own 15 s default is NOT applied (it would cut
    // long tool calls and SSE streams), so an unset RequestTimeout leaves the mesh's "no limit".
    m.duration(out, 'routing.maxStreamDurationMs', e, 'RequestTimeout', '');
    const lb = e['LoadBalancer'];
    if (isNode(lb)) {
      const policy = lb['Policy'];
      if (policy !== undefined && policy !== null && policy !== '') {
        if (typeof policy !== 'string' || !CONSUL_LB.includes(policy))
          m.fail('LoadBalancer.Policy', `${JSON.stringify(policy)} is not a Consul load-balancing policy (${CONSUL_LB.join(', ')})`);
        else if (policy !== 'least_request' && policy !== 'round_robin')
          m.fail('LoadBalancer.Policy', `"${policy}" is not supported by MCP Mesh (supported: least_request, round_robin)`);
        else m.setting(out, 'routing.lbPolicy', 'LoadBalancer.Policy', policy);
      }
      const lrc = lb['LeastRequestConfig'];
      if (isNode(lrc) && lrc['ChoiceCount'] !== undefined && lrc['ChoiceCount'] !== 2)
        m.skip('LoadBalancer.LeastRequestConfig.ChoiceCount', 'the mesh uses 2 choices');
      m.rest(lb, 'LoadBalancer', ['Policy', 'LeastRequestConfig']);
    }
    m.meta(out, e);
    m.rest(e, '', ['ConnectTimeout', 'RequestTimeout', 'LoadBalancer', 'Meta']);
    add(e.Name, layer('service', RANK.consul + 4, out));
  } else {
    m.fail('Kind', `${JSON.stringify(e.Kind)} is not read by MCP Mesh`);
  }
  return { entry: m.entry, mesh, services, problems: m.problems, unsupported: m.unsupported };
}

/** Combines mapped entries into one overlay (entries sorted by kind/name, so the result is deterministic). */
export function overlayOf(entries: readonly MappedEntry[]): TuningOverlay {
  const sorted = [...entries].sort((a, b) => (a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0));
  const services = new Map<string, Layer[]>();
  for (const e of sorted) for (const [svc, ls] of e.services) services.set(svc, [...(services.get(svc) ?? []), ...ls]);
  return { mesh: sorted.flatMap((e) => e.mesh), services };
}

/**
 * Keeps the last good version of every entry: a refused version (any problem) leaves the previous one in force,
 * and an entry that never had a good version contributes nothing. Reports unsupported fields once per version.
 */
/** What the catalog says a config entry's target is: an MCP service, another Consul service, or (absent) nothing. */
export type CatalogKinds = ReadonlyMap<string, 'mcp' | 'other'>;

export interface EntryUpdate {
  readonly overlay: TuningOverlay;
  /** Refused entries (their last good version stays). */
  readonly problems: EntryProblem[];
  /** Entries naming a service that is not registered (or, for the gateway's overrides, not an MCP service): kept. */
  readonly missing: EntryProblem[];
  readonly unsupported: Array<{ entry: string; field: string; why: string }>;
}

/**
 * Keeps the last good version of every entry: a refused version (any problem) leaves the previous one in force,
 * and an entry that never had a good version contributes nothing. Reports unsupported fields once per version.
 * With the catalog known, entries of Consul services that are not MCP services are none of the mesh's business
 * (other teams' config): they are skipped without a report; entries naming unregistered services are reported.
 */
export class ConfigEntryState {
  private readonly good = new Map<string, MappedEntry>();
  private readonly reported = new Set<string>();
  private readonly gateway: string;
  constructor(gateway = DEFAULT_GATEWAY_SERVICE) {
    this.gateway = gateway;
  }

  /** Replaces every entry of `kind` with `entries` (all kinds are kept in `all`) and maps them all again. */
  update(
    kind: ConfigKind,
    entries: readonly ConfigEntry[],
    all: Map<ConfigKind, readonly ConfigEntry[]>,
    catalog?: CatalogKinds,
  ): EntryUpdate {
    all.set(kind, entries);
    const problems: EntryProblem[] = [];
    const missing: EntryProblem[] = [];
    const unsupported: Array<{ entry: string; field: string; why: string }> = [];
    const present = new Set<string>();
    for (const [, list] of [...all].sort(([a], [b]) => (a < b ? -1 : 1))) {
      for (const e of list) {
        const entry = `${e.Kind}/${e.Name}`;
        const own = e.Kind === 'service-resolver' || (e.Kind === 'service-defaults' && e.Name !== this.gateway);
        if (own && catalog?.get(e.Name) === 'other') continue;
        if (own && catalog && !catalog.has(e.Name))
          missing.push({
            entry,
            field: 'Name',
            reason: `no service "${e.Name}" is registered in Consul (kept; applies when it registers as an MCP service)`,
          });
        const mapped = mapConfigEntry(e, this.gateway);
        if (catalog && !own) {
          const overrides =
            isNode(e['UpstreamConfig']) && Array.isArray(e['UpstreamConfig']['Overrides']) ? e['UpstreamConfig']['Overrides'] : [];
          overrides.forEach((o, i) => {
            const target = isNode(o) && typeof o['Name'] === 'string' ? o['Name'] : undefined;
            if (target === undefined || target === '') return;
            const what = catalog.get(target);
            if (what === 'mcp') return;
            missing.push({
              entry,
              field: `UpstreamConfig.Overrides[${i}].Name`,
              reason:
                what === 'other'
                  ? `"${target}" is not an MCP service (gateways only reach MCP services)`
                  : `no service "${target}" is registered in Consul (kept; applies when it registers as an MCP service)`,
            });
          });
        }
        present.add(mapped.entry);
        const version = `${mapped.entry}@${String(e['ModifyIndex'] ?? '')}`;
        for (const u of mapped.unsupported) {
          const key = `${version} ${u.field}`;
          if (this.reported.has(key)) continue;
          this.reported.add(key);
          unsupported.push({ entry: mapped.entry, ...u });
        }
        if (mapped.problems.length > 0) problems.push(...mapped.problems);
        else this.good.set(mapped.entry, mapped);
      }
    }
    for (const k of [...this.good.keys()]) if (!present.has(k)) this.good.delete(k);
    return { overlay: overlayOf([...this.good.values()]), problems, missing, unsupported };
  }
}

export interface ConsulConfigEvents {
  update: [EntryUpdate & { observedAt: number }];
  error: [BlockingQueryError];
  recover: [];
}

function validateEntries(body: unknown): ConfigEntry[] {
  if (!Array.isArray(body)) throw new Error('expected a list of config entries');
  return body.map((e, i) => {
    if (!isNode(e) || typeof e['Kind'] !== 'string' || typeof e['Name'] !== 'string') throw new Error(`entry [${i}] has no Kind and Name`);
    return e as ConfigEntry;
  });
}

/** The three config-entry kinds, each watched with a blocking query on GET /v1/config/:kind. */
export class ConsulConfigWatch extends EventEmitter<ConsulConfigEvents> {
  private readonly queries: Array<{ state(): BlockingQueryState; start(): void; stop(): void }> = [];
  private readonly all = new Map<ConfigKind, readonly ConfigEntry[]>();
  private readonly state: ConfigEntryState;
  private pendingUnsupported: Array<{ entry: string; field: string; why: string }> = [];
  private catalog: CatalogKinds | undefined;

  private readonly agent: http.Agent;

  constructor(
    opts: Pick<
      ConsulSourceOptions,
      'address' | 'token' | 'datacenter' | 'tls' | 'tag' | 'wait' | 'backoffFactorMs' | 'backoffMaxMs' | 'timeoutMarginMs'
    > & { gateway?: string },
  ) {
    super();
    this.state = new ConfigEntryState(opts.gateway);
    const base = consulUrl(opts.address);
    const agent = consulAgent(base, opts.tls);
    this.agent = agent;
    const query = <T>(name: string, path: string, validate: (b: unknown) => T, onChange: (v: T, observedAt: number) => void): void => {
      const url = new URL(path, base);
      if (opts.datacenter) url.searchParams.set('dc', opts.datacenter);
      this.queries.push(
        new BlockingQuery<T>({
          name,
          url,
          validate,
          agent,
          ...(opts.token ? { headers: { 'X-Consul-Token': opts.token } } : {}),
          wait: opts.wait ?? '30s',
          ...(opts.timeoutMarginMs !== undefined ? { timeoutMarginMs: opts.timeoutMarginMs } : {}),
          ...(opts.backoffFactorMs !== undefined ? { backoffBaseMs: opts.backoffFactorMs } : {}),
          ...(opts.backoffMaxMs !== undefined ? { backoffMaxMs: opts.backoffMaxMs } : {}),
          onChange: (v, info) => onChange(v, info.observedAt),
          onError: (err) => this.emit('error', err),
          onRecover: () => this.emit('recover'),
        }),
      );
    };
    for (const kind of CONFIG_KINDS)
      query(`config ${kind}`, `/v1/config/${kind}`, validateEntries, (entries, at) => this.changed(kind, entries, at));
    // Which services exist and which are MCP services: entries of other services are skipped, of unregistered ones reported.
    const tag = opts.tag ?? DEFAULT_MCP_TAG;
    query('config catalog', '/v1/catalog/services', validateCatalog, (services, at) => {
      const next: CatalogKinds = new Map(
        Object.entries(services).map(([n, tags]) => [n, (tags ?? []).includes(tag) ? 'mcp' : 'other'] as const),
      );
      const same = this.catalog !== undefined && this.catalog.size === next.size && [...next].every(([n, k]) => this.catalog?.get(n) === k);
      if (same) return;
      this.catalog = next;
      const [kind] = this.all.keys();
      if (kind !== undefined) this.changed(kind, this.all.get(kind) ?? [], at);
    });
  }

  private changed(kind: ConfigKind, entries: readonly ConfigEntry[], observedAt: number): void {
    const result = this.state.update(kind, entries, this.all, this.catalog);
    this.pendingUnsupported.push(...result.unsupported);
    // Until every kind and the catalog have answered once, a partial overlay would flap routing (e.g. a resolver
    // without its defaults) and unregistered-service reports would be guesses.
    if (this.all.size < CONFIG_KINDS.length || this.catalog === undefined) return;
    const unsupported = this.pendingUnsupported;
    this.pendingUnsupported = [];
    this.emit('update', { ...result, unsupported, observedAt });
  }

  queryStates(): BlockingQueryState[] {
    return this.queries.map((q) => q.state());
  }

  start(): void {
    for (const q of this.queries) q.start();
  }

  stop(): void {
    for (const q of this.queries) q.stop();
    this.agent.destroy();
  }
}
