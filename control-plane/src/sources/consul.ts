// Consul as a source: services tagged `mcp` in the catalog, and each one's health, watched with
// blocking queries (sources/blocking-query.ts: index/wait, X-Consul-Index, a fresh read after any failure or
// when the index goes backwards, jittered backoff capped at a couple of seconds). Every answer's shape is
// checked: a wrong shape, a 4xx/5xx or a missing index is an error (counted, shown, retried), never "no
// services". Any number of control-plane replicas may watch the same Consul: the source keeps no state that
// another replica would need, and what it hands over is a pure function of Consul's state.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import Consul from 'consul';
import { BlockingQuery, type BlockingQueryErrorKind, type BlockingQueryState, type ChangeInfo } from './blocking-query.ts';
import { DEFAULT_ROUTING } from '../model/defaults.ts';
import { RANK, resolveTuning, withLayers, type Layer } from '../model/tuning.ts';
import type { ServiceSpec } from '../model/mesh.ts';
import { MCP_PROTOCOLS, MCP_TRANSPORTS, type McpProtocol, type McpTransport, type MeshEndpoint } from '../model/types.ts';

export const CONSUL_META = {
  region: 'region',
  zone: 'zone',
  protocol: 'mcp-protocol',
  path: 'mcp-path',
  transport: 'mcp-transport',
  /** Set by the sidecar agent when Envoy fronts the instance ("envoy"): the mesh then speaks mTLS to it. */
  sidecar: 'mcpmesh-sidecar',
} as const;

export const DEFAULT_MCP_TAG = 'mcp';
const DEFAULT_PROTOCOL: McpProtocol = '2025-11-25';
const LOCALITY_PART = /^[A-Za-z0-9._-]{1,63}$/;
const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const HTTP_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;

/** One entry of GET /v1/health/service/:name, as Consul documents it (fields we read). */
export interface HealthEntry {
  Node?: { Node?: string; Address?: string; Datacenter?: string; Meta?: Record<string, string> | null };
  Service?: {
    ID?: string;
    Service?: string;
    Tags?: string[] | null;
    Address?: string;
    Port?: number;
    Meta?: Record<string, string> | null;
    Weights?: { Passing?: number; Warning?: number } | null;
    CreateIndex?: number;
  };
  Checks?: Array<{ CheckID?: string; Status?: string; ServiceID?: string }> | null;
}

export interface SkippedInstance {
  readonly service: string;
  readonly instance: string;
  readonly reason: string;
}

/** Consul's aggregate: any critical check -> critical, else any warning -> warning, else passing. */
function aggregateStatus(checks: HealthEntry['Checks']): 'passing' | 'warning' | 'critical' {
  let status: 'passing' | 'warning' | 'critical' = 'passing';
  for (const c of checks ?? []) {
    if (c.Status === 'critical') return 'critical';
    if (c.Status === 'warning') status = 'warning';
    else if (c.Status !== 'passing') return 'critical';
  }
  return status;
}

/**
 * Maps Consul health entries onto the mesh model. Pure. An instance with bad data (no port, an address
 * that is not an IP, bad meta) is skipped with a reason; it never takes its healthy siblings down with it.
 */
export function specsFromConsul(services: ReadonlyMap<string, readonly HealthEntry[]>): {
  specs: ServiceSpec[];
  skipped: SkippedInstance[];
} {
  const specs: ServiceSpec[] = [];
  const skipped: SkippedInstance[] = [];
  for (const [name, entries] of [...services.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const one = specFromConsul(name, entries);
    if (one.spec) specs.push(one.spec);
    skipped.push(...one.skipped);
  }
  return { specs, skipped };
}

const byId = (a: HealthEntry, b: HealthEntry): number => {
  const x = a.Service?.ID ?? '',
    y = b.Service?.ID ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * A re-added service must look different to xDS clients that cache removed resources (MeshService.incarnation),
 * and replicas and restarts must agree on it: so it comes from Consul's state, the CreateIndex of the service's
 * oldest instance (every instance registered after the service vanished is newer than anything before). It
 * changes too when the oldest instance leaves while others stay: a rename of the EDS resource, harmless.
 * 0 (no suffix) when Consul gives no CreateIndex.
 */
export function incarnationOf(entries: readonly HealthEntry[]): number {
  let oldest: number | undefined;
  for (const e of entries) {
    const c = e.Service?.CreateIndex;
    if (typeof c === 'number' && Number.isSafeInteger(c) && c > 0 && (oldest === undefined || c < oldest)) oldest = c;
  }
  return oldest ?? 0;
}

/** What the catalog says about routing: the MCP path (instance meta), when set; config entries tune the rest (consul-config.ts). */
function catalogLayers(service: string, mcpPath: string | undefined): Layer[] {
  if (mcpPath === undefined) return [];
  return [
    {
      scope: 'service',
      rank: RANK.consul,
      settings: {
        'routing.mcpPath': {
          value: mcpPath,
          from: { source: 'consul', where: `catalog service ${service}`, field: `Service.Meta.${CONSUL_META.path}` },
        },
      },
    },
  ];
}

/** One service's health entries -> its spec (none when the name is unusable), and the instances left out. */
export function specFromConsul(name: string, entries: readonly HealthEntry[]): { spec?: ServiceSpec; skipped: SkippedInstance[] } {
  const skipped: SkippedInstance[] = [];
  {
    if (!SERVICE_NAME.test(name)) {
      skipped.push({ service: name, instance: '*', reason: 'service name is not a DNS label (lower-case letters, digits, "-")' });
      return { skipped };
    }
    const sorted = [...entries].sort(byId);
    const parsed: Array<{ instance: string; ep: MeshEndpoint; how: string }> = [];
    for (const e of sorted) {
      const svc = e.Service ?? {};
      const instance = `${svc.ID ?? '?'}@${e.Node?.Node ?? '?'}`;
      const skip = (reason: string): void => void skipped.push({ service: name, instance, reason });
      const meta = svc.Meta ?? {};
      const nodeMeta = e.Node?.Meta ?? {};
      const address = svc.Address || e.Node?.Address || '';
      if (!svc.Port || !Number.isInteger(svc.Port) || svc.Port < 1 || svc.Port > 65535) {
        skip(`missing or invalid port ${JSON.stringify(svc.Port)}`);
        continue;
      }
      if (isIP(address) === 0) {
        skip(`address ${JSON.stringify(address)} is not an IP address`);
        continue;
      }
      const region = meta[CONSUL_META.region] ?? nodeMeta[CONSUL_META.region] ?? '';
      const zone = meta[CONSUL_META.zone] ?? nodeMeta[CONSUL_META.zone] ?? '';
      if ((region !== '' && !LOCALITY_PART.test(region)) || (zone !== '' && !LOCALITY_PART.test(zone))) {
        skip(`bad locality meta region=${JSON.stringify(region)} zone=${JSON.stringify(zone)}`);
        continue;
      }
      const p = meta[CONSUL_META.protocol] ?? DEFAULT_PROTOCOL;
      if (!(MCP_PROTOCOLS as readonly string[]).includes(p)) {
        skip(`meta ${CONSUL_META.protocol}=${JSON.stringify(p)} is not one of ${MCP_PROTOCOLS.join(', ')}`);
        continue;
      }
      const t = meta[CONSUL_META.transport] ?? 'streamable-http';
      if (!(MCP_TRANSPORTS as readonly string[]).includes(t)) {
        skip(`meta ${CONSUL_META.transport}=${JSON.stringify(t)} is not one of ${MCP_TRANSPORTS.join(', ')}`);
        continue;
      }
      const path = meta[CONSUL_META.path] ?? DEFAULT_ROUTING.mcpPath;
      if (!HTTP_PATH.test(path)) {
        skip(`meta ${CONSUL_META.path}=${JSON.stringify(path)} is not an absolute HTTP path`);
        continue;
      }
      const weight = Math.min(128, Math.max(1, Math.round(svc.Weights?.Passing ?? 1)));
      const status = aggregateStatus(e.Checks);
      const healthy = status === 'passing';
      const sidecar = meta[CONSUL_META.sidecar] === 'envoy' ? 'sidecar' : 'direct';
      parsed.push({
        instance,
        how: `${p} ${t} ${path} ${sidecar}`,
        ep: {
          address,
          port: svc.Port,
          locality: { region, zone },
          weight,
          healthy,
          healthFrom: { source: 'consul', status, checks: e.Checks?.length ?? 0 },
        },
      });
    }
    // How the service is spoken to is a service-level fact: the majority of instances decides (ties: lowest
    // ID first); instances that disagree are skipped rather than routed to with the wrong protocol.
    const votes = new Map<string, number>();
    for (const x of parsed) votes.set(x.how, (votes.get(x.how) ?? 0) + 1);
    const winner = [...votes.entries()].reduce<[string, number] | undefined>(
      (best, v) => (!best || v[1] > best[1] ? v : best),
      undefined,
    )?.[0];
    // Paths match HTTP_PATH, so they hold no space: the key splits back unambiguously.
    const [protocol, transport, mcpPath, fronted] = winner
      ? (winner.split(' ') as [McpProtocol, McpTransport, string, string])
      : [undefined, undefined, undefined, undefined];
    const endpoints: MeshEndpoint[] = [];
    const seen = new Set<string>();
    for (const x of parsed) {
      if (x.how !== winner) {
        skipped.push({
          service: name,
          instance: x.instance,
          reason: `meta disagrees with the service's other instances (${CONSUL_META.protocol}=${protocol}, ${CONSUL_META.transport}=${transport}, ${CONSUL_META.path}=${mcpPath}, ${CONSUL_META.sidecar}=${fronted === 'sidecar' ? 'envoy' : 'none'})`,
        });
        continue;
      }
      const key = `${x.ep.address}:${x.ep.port}`;
      if (seen.has(key)) {
        skipped.push({ service: name, instance: x.instance, reason: `duplicate endpoint ${key}` });
        continue;
      }
      seen.add(key);
      endpoints.push(x.ep);
    }
    const layers = catalogLayers(name, mcpPath);
    return {
      skipped,
      spec: withLayers(
        {
          name,
          incarnation: incarnationOf(entries),
          protocol: protocol ?? DEFAULT_PROTOCOL,
          transport: transport ?? 'streamable-http',
          sidecar: fronted === 'sidecar',
          endpoints,
          ...resolveTuning(layers).tuned,
        },
        layers,
      ),
    };
  }
}

export interface ConsulTlsOptions {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  serverName?: string;
  insecureSkipVerify?: boolean;
}

export interface ConsulSourceOptions {
  /** `http://host:8500`, `https://host:8501` or `host:port` (as CONSUL_HTTP_ADDR). */
  address: string;
  token?: string;
  datacenter?: string;
  tls?: ConsulTlsOptions;
  /** Only services carrying this tag are MCP services. */
  tag?: string;
  /** Blocking query wait, a Consul duration ('30s', '5m'). */
  wait?: string;
  /** First retry delay after a failed query (default 100 ms). */
  backoffFactorMs?: number;
  /** Longest retry delay (default 2000 ms, so a recovered Consul is read within one short cycle). */
  backoffMaxMs?: number;
  /** A query is abandoned as hung after its wait + wait/16 + this (default 5000 ms). */
  timeoutMarginMs?: number;
}

export interface ConsulUpdate {
  readonly specs: ServiceSpec[];
  /** Instances left out, for the services that changed in this update. */
  readonly skipped: SkippedInstance[];
  /** X-Consul-Index of the change that produced this update. */
  readonly index: string;
  /** performance.now() when the change was observed (start of convergence). */
  readonly observedAt: number;
}

/** A failed blocking query; the watch retries with backoff and never ends on its own. */
export class ConsulWatchError extends Error {
  readonly watch: 'catalog' | 'service';
  readonly kind: BlockingQueryErrorKind;
  constructor(watch: 'catalog' | 'service', message: string, kind: BlockingQueryErrorKind) {
    super(message);
    this.name = 'ConsulWatchError';
    this.watch = watch;
    this.kind = kind;
  }
}

export interface ConsulSourceEvents {
  update: [ConsulUpdate];
  error: [ConsulWatchError];
  /** Every watch answers again (and the first time the mesh is complete), whether or not anything changed. */
  healthy: [];
}

/** Reads CONSUL_HTTP_ADDR-style settings from the environment (the variables Consul's own CLI uses). */
export function consulOptionsFromEnv(env: NodeJS.ProcessEnv): ConsulSourceOptions | undefined {
  const address = env['CONSUL_HTTP_ADDR'];
  if (!address) return undefined;
  const ssl = env['CONSUL_HTTP_SSL'] === 'true';
  const tls: ConsulTlsOptions = {
    ...(env['CONSUL_CACERT'] ? { caFile: env['CONSUL_CACERT'] } : {}),
    ...(env['CONSUL_CLIENT_CERT'] ? { certFile: env['CONSUL_CLIENT_CERT'] } : {}),
    ...(env['CONSUL_CLIENT_KEY'] ? { keyFile: env['CONSUL_CLIENT_KEY'] } : {}),
    ...(env['CONSUL_TLS_SERVER_NAME'] ? { serverName: env['CONSUL_TLS_SERVER_NAME'] } : {}),
    ...(env['CONSUL_HTTP_SSL_VERIFY'] === 'false' ? { insecureSkipVerify: true } : {}),
  };
  return {
    address: ssl && !address.includes('://') ? `https://${address}` : address,
    ...(env['CONSUL_HTTP_TOKEN'] ? { token: env['CONSUL_HTTP_TOKEN'] } : {}),
    ...(env['MCPMESH_CONSUL_DATACENTER'] ? { datacenter: env['MCPMESH_CONSUL_DATACENTER'] } : {}),
    ...(env['MCPMESH_CONSUL_TAG'] ? { tag: env['MCPMESH_CONSUL_TAG'] } : {}),
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
  };
}

/** The base URL of a Consul address (`http://` when no scheme is given). */
export function consulUrl(address: string): URL {
  const url = new URL(address.includes('://') ? address : `http://${address}`);
  if (!url.port) url.port = url.protocol === 'https:' ? '8501' : '8500';
  return url;
}

/** A keep-alive agent for Consul, with the TLS settings for https. */
export function consulAgent(url: URL, tls: ConsulTlsOptions | undefined): http.Agent {
  if (url.protocol !== 'https:') return new http.Agent({ keepAlive: true });
  return new https.Agent({
    keepAlive: true,
    ...(tls?.caFile ? { ca: readFileSync(tls.caFile) } : {}),
    ...(tls?.certFile ? { cert: readFileSync(tls.certFile) } : {}),
    ...(tls?.keyFile ? { key: readFileSync(tls.keyFile) } : {}),
    ...(tls?.serverName ? { servername: tls.serverName } : {}),
    rejectUnauthorized: !tls?.insecureSkipVerify,
  });
}

/** Builds the `consul` client for an address, token, datacenter and TLS settings. */
export function consulClient(o: Pick<ConsulSourceOptions, 'address' | 'token' | 'datacenter' | 'tls'>): Consul {
  const url = consulUrl(o.address);
  const secure = url.protocol === 'https:';
  const agent = secure ? consulAgent(url, o.tls) : undefined;
  return new Consul({
    host: url.hostname,
    port: Number(url.port || (secure ? 8501 : 8500)),
    secure,
    ...(agent ? { agent } : {}),
    defaults: { ...(o.token ? { token: o.token } : {}), ...(o.datacenter ? { dc: o.datacenter } : {}) },
  });
}

export class ConsulSource extends EventEmitter<ConsulSourceEvents> {
  private readonly opts: ConsulSourceOptions;
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly headers: Record<string, string>;
  private catalogWatch: BlockingQuery<CatalogServices> | undefined;
  private readonly healthWatches = new Map<string, BlockingQuery<HealthEntry[]>>();
  private readonly health = new Map<string, HealthEntry[]>();
  // Per service: the entries a spec was computed from. A watch hands over a new array only when that
  // service changed, so the other services keep their spec objects (and the mesh builder its identity).
  private readonly specs = new Map<string, { entries: HealthEntry[]; spec?: ServiceSpec; skipped: SkippedInstance[] }>();
  /** The failing watches and their last error; empty = healthy. */
  private readonly failing = new Map<string, ConsulWatchError>();
  private wanted = new Set<string>();
  private catalogSeen = false;
  private stopped = false;
  private startedAt = Date.now();

  constructor(opts: ConsulSourceOptions) {
    super();
    this.opts = opts;
    this.base = consulUrl(opts.address);
    this.agent = consulAgent(this.base, opts.tls);
    this.headers = opts.token ? { 'X-Consul-Token': opts.token } : {};
  }

  get description(): string {
    return `consul ${this.opts.address}${this.opts.datacenter ? ` dc=${this.opts.datacenter}` : ''} tag=${this.opts.tag ?? DEFAULT_MCP_TAG}`;
  }

  /** True once every watch has answered since its last failure (and the first publish happened). */
  get healthy(): boolean {
    return this.catalogSeen && this.failing.size === 0;
  }

  /** Each watch's loop state, for /debug. */
  watches(): BlockingQueryState[] {
    const health = [...this.healthWatches.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, w]) => w.state());
    return this.catalogWatch ? [this.catalogWatch.state(), ...health] : health;
  }

  private url(path: string): URL {
    const u = new URL(path, this.base);
    if (this.opts.datacenter) u.searchParams.set('dc', this.opts.datacenter);
    return u;
  }

  private query<T>(
    key: string,
    watch: 'catalog' | 'service',
    what: string,
    path: string,
    validate: (b: unknown) => T,
    onChange: (v: T, info: ChangeInfo) => void,
  ): BlockingQuery<T> {
    return new BlockingQuery<T>({
      name: what,
      url: this.url(path),
      validate,
      onChange,
      headers: this.headers,
      agent: this.agent,
      wait: this.opts.wait ?? '30s',
      ...(this.opts.backoffFactorMs !== undefined ? { backoffBaseMs: this.opts.backoffFactorMs } : {}),
      ...(this.opts.backoffMaxMs !== undefined ? { backoffMaxMs: this.opts.backoffMaxMs } : {}),
      ...(this.opts.timeoutMarginMs !== undefined ? { timeoutMarginMs: this.opts.timeoutMarginMs } : {}),
      onError: (err) => {
        const e = new ConsulWatchError(watch, `${what} (${this.opts.address}): ${err.detail}`, err.kind);
        this.failing.set(key, e);
        this.emit('error', e);
      },
      onRecover: () => this.recovered(key),
    });
  }

  /** A watch answered again: once none is failing, the source is healthy whether or not anything changed. */
  private recovered(key: string): void {
    if (!this.failing.delete(key)) return;
    if (this.failing.size === 0 && this.catalogSeen && !this.stopped) this.emit('healthy');
  }

  /**
   * Seconds since the catalog watch last got an answer (since start, before the first). A healthy blocking
   * query answers at least once per wait period, even when nothing changed.
   */
  catalogLagSeconds(now = Date.now()): number {
    return Math.max(0, now - (this.catalogWatch?.state().lastSuccessAt ?? this.startedAt)) / 1000;
  }

  start(): void {
    const tag = this.opts.tag ?? DEFAULT_MCP_TAG;
    this.startedAt = Date.now();
    const w = this.query('catalog', 'catalog', 'consul catalog watch', '/v1/catalog/services', validateCatalog, (services, info) => {
      const next = new Set(
        Object.entries(services)
          .filter(([, tags]) => (tags ?? []).includes(tag))
          .map(([name]) => name),
      );
      // The catalog index moves on any instance change; only a change of the MCP service set matters here
      // (instances reach us through each service's health watch).
      const same = this.catalogSeen && next.size === this.wanted.size && [...next].every((n) => this.wanted.has(n));
      if (same) return;
      for (const name of this.wanted) {
        if (next.has(name)) continue;
        this.healthWatches.get(name)?.stop();
        this.healthWatches.delete(name);
        this.health.delete(name);
        this.specs.delete(name);
        this.recovered(`service ${name}`);
      }
      for (const name of next) if (!this.healthWatches.has(name)) this.watchHealth(name);
      this.wanted = next;
      const first = !this.catalogSeen;
      this.catalogSeen = true;
      this.publish(info.index, info.observedAt);
      if (first && this.failing.size === 0) this.emit('healthy');
    });
    this.catalogWatch = w;
    w.start();
  }

  private watchHealth(name: string): void {
    const w = this.query(
      `service ${name}`,
      'service',
      `consul health watch for "${name}"`,
      `/v1/health/service/${encodeURIComponent(name)}`,
      validateHealth,
      (entries, info) => {
        if (this.healthWatches.get(name) !== w) return;
        this.health.set(name, entries);
        this.publish(info.index, info.observedAt);
      },
    );
    this.healthWatches.set(name, w);
    w.start();
  }

  // Nothing is published until the catalog and the health of every MCP service have answered once:
  // a mesh built from half the services would withdraw the others from every proxy.
  private publish(index: string, observedAt: number): void {
    if (this.stopped || !this.catalogSeen) return;
    for (const name of this.wanted) if (!this.health.has(name)) return;
    const specs: ServiceSpec[] = [];
    const skipped: SkippedInstance[] = [];
    for (const name of [...this.wanted].sort()) {
      const entries = this.health.get(name) ?? [];
      let cached = this.specs.get(name);
      if (cached?.entries !== entries) {
        cached = { entries, ...specFromConsul(name, entries) };
        this.specs.set(name, cached);
        // Reported once per change of the service, not on every publish.
        skipped.push(...cached.skipped);
      }
      if (cached.spec) specs.push(cached.spec);
    }
    this.emit('update', { specs, skipped, index, observedAt });
  }

  stop(): void {
    this.stopped = true;
    this.catalogWatch?.stop();
    for (const w of this.healthWatches.values()) w.stop();
    this.healthWatches.clear();
    this.agent.destroy();
  }
}

/** GET /v1/catalog/services: service name -> tags. */
type CatalogServices = Record<string, string[] | null>;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const describeJson = (v: unknown): string =>
  Array.isArray(v) ? 'an array' : v === null ? 'null' : v === undefined ? 'nothing' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;

/** A catalog answer must be an object of service -> list of tags; anything else is refused (never "no services"). */
export function validateCatalog(body: unknown): CatalogServices {
  if (!isObject(body)) throw new Error(`catalog: expected an object of service name -> tags, got ${describeJson(body)}`);
  for (const [name, tags] of Object.entries(body)) {
    if (tags !== null && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string'))) {
      throw new Error(`catalog: tags of service ${JSON.stringify(name)} are ${describeJson(tags)}, expected a list of strings`);
    }
  }
  return body as CatalogServices;
}

/** A health answer must be an array of {Node, Service, Checks} objects; anything else is refused (never "no instances"). */
export function validateHealth(body: unknown): HealthEntry[] {
  if (!Array.isArray(body)) throw new Error(`health: expected an array of entries, got ${describeJson(body)}`);
  body.forEach((e: unknown, i) => {
    if (!isObject(e)) throw new Error(`health[${i}]: expected an object, got ${describeJson(e)}`);
    if (!isObject(e['Node'])) throw new Error(`health[${i}].Node: expected an object, got ${describeJson(e['Node'])}`);
    if (!isObject(e['Service'])) throw new Error(`health[${i}].Service: expected an object, got ${describeJson(e['Service'])}`);
    const checks = e['Checks'];
    if (checks !== null && !(Array.isArray(checks) && checks.every(isObject)))
      throw new Error(`health[${i}].Checks: expected a list of objects, got ${describeJson(checks)}`);
  });
  return body as HealthEntry[];
}
