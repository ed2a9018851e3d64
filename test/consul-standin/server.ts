// CONSUL STAND-IN FOR TESTS. Not Consul, and not for production.
//
// No Consul binary can be installed where these tests run, so this is a small in-process HTTP server
// that answers the parts of Consul's documented HTTP API (https://developer.hashicorp.com/consul/api-docs)
// that the control plane's Consul source (`consul` npm client 2.x) and the sidecar use:
//
//   GET  /v1/status/leader, /v1/status/peers
//   GET  /v1/agent/self                      minimal: Config {Datacenter, NodeName, NodeID, Server, Version}, Member
//   GET  /v1/agent/services, /v1/agent/service/:id, /v1/agent/checks
//   PUT  /v1/agent/service/register          (?replace-existing-checks), /v1/agent/service/deregister/:id
//   PUT  /v1/agent/check/register, /v1/agent/check/deregister/:id
//   PUT  /v1/agent/check/pass|warn|fail/:id  (?note=), /v1/agent/check/update/:id ({Status, Output})
//   GET  /v1/catalog/services, /v1/catalog/service/:name (?tag), /v1/catalog/nodes         blocking
//   GET  /v1/health/service/:name (?passing, ?tag), /v1/health/checks/:name                blocking
//   GET  /v1/config/:kind, /v1/config/:kind/:name                                          blocking
//   PUT  /v1/config (?cas), DELETE /v1/config/:kind/:name (?cas)
//
// What is faithful (checked against Consul's docs and source):
// - One raft-like index bumped by every write that changes something; idempotent writes (re-registering an
//   identical service, a TTL update with the same status and output) do not bump it. Each blocking endpoint
//   reports its own index: catalog/services the services table (any instance change, not check changes);
//   catalog/service/X and health/service/X the per-service index (X's instances and checks, and node checks);
//   a service that does not exist reports the last "extinction" index (when some service lost its last
//   instance), as Consul does. The header X-Consul-Index is never 0 (Consul clamps to 1).
// - Blocking: `?index=N` (N > 0) waits while the endpoint's index is <= N (Consul's rule, so a request with an
//   index from "the future" also waits), for `wait` (Go duration, default 5m, max 10m; no jitter is added).
//   `resetIndex()` simulates a snapshot restore: the index goes backwards and waiting queries are answered at
//   once with the lower index (Consul abandons the state store the same way), so clients' reset handling runs.
// - Registration JSON keys are matched case-insensitively and with or without underscores (Go's decoder plus
//   Consul's snake_case translation). ID defaults to Name; Weights default {Passing: 1, Warning: 1}. `Check` and
//   `Checks` are combined; default check IDs are `service:<id>` or `service:<id>:<n>` (1-based) when there are
//   several, default name "Service '<name>' check", initial status `Status` or "critical". Re-registering keeps
//   the status/output of checks with the same ID, and keeps checks left out unless ?replace-existing-checks.
// - TTL checks work: pass/warn/fail/update set the status and restart the TTL; a missed TTL makes the check
//   critical with "TTL expired". Output-only changes are kept by the agent (/v1/agent/checks) and reach the
//   catalog (health) after `checkUpdateIntervalMs` (Consul's check_update_interval, default 5m, here without
//   Consul's random stagger); status changes
//   reach it at once.
// - A single node (this "agent") with a passing node check "serfHealth", and the built-in "consul" service.
// - `?dc=` other than ours on catalog/health: 500 "No path to datacenter". Unknown route: 404; wrong method: 405.
//
// - Config entries (https://developer.hashicorp.com/consul/api-docs/config): PUT /v1/config takes the entry
//   (Kind, Name and the kind's fields, keys matched like registrations) and answers `true`, or `false` when a
//   ?cas=N check fails (0: only if absent; N: only if ModifyIndex is N). Stored entries come back with the fields
//   as written plus CreateIndex/ModifyIndex; an identical re-write changes nothing. GET by kind lists entries
//   sorted by name; GET by kind and name answers 404 when absent. Both block on the config-entries table index
//   (a write of any kind wakes them, as in Consul, where the list watch uses the table's max index). DELETE
//   answers `true`/`false` with ?cas and `{}` without. Checked at write like Consul: a known Kind, a Name,
//   proxy-defaults named "global", and a service-resolver LoadBalancer.Policy from Consul's set; other
//   kind-specific validation is not done.
//
// What it does not do: no gossip, servers, raft or persistence; one node only; HTTP/TCP/gRPC checks are
// stored (status "critical" unless `Status` is given) but never executed: tests set their status with
// setCheckStatus(). DeregisterCriticalServiceAfter is stored and ignored. No KV, sessions, Connect, prepared
// queries, ?filter (answered 400 so nothing silently gets unfiltered data), ?near sorting, hash-based blocking on
// agent endpoints (they send no X-Consul-Index, like Consul), namespaces or partitions.
// ACL, when `aclToken` is set: every endpoint except /v1/status/* needs that token (?token=, X-Consul-Token, or
// Authorization: Bearer). No token: 403 "Permission denied"; another token: 403 "ACL not found". (Real Consul
// resolves a missing token to the anonymous token, and filters catalog/health lists rather than refusing.)

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export type CheckStatus = 'passing' | 'warning' | 'critical';
/** '' is the node's serfHealth check, as in Consul. */
export type CheckType = 'ttl' | 'http' | 'tcp' | 'grpc' | '';

export interface ConsulStandInOptions {
  aclToken?: string;
  /** Default 'dc1'. */
  datacenter?: string;
  /** Default 'standin-node'. */
  nodeName?: string;
  /** Default '127.0.0.1'. */
  nodeAddress?: string;
  nodeMeta?: Record<string, string>;
  /** Consul's check_update_interval: how long an output-only check change waits before catalog/health see it.
   * Default 300000 (Consul's 5m); 0 syncs at once. */
  checkUpdateIntervalMs?: number;
}

export interface StandInService {
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  weights: { Passing: number; Warning: number };
  enableTagOverride: boolean;
  /** Stored only: the stand-in never reaps critical services. */
  deregisterCriticalServiceAfter: string;
  createIndex: bigint;
  modifyIndex: bigint;
}

export interface StandInCheck {
  id: string;
  name: string;
  /** '' for node checks. */
  serviceId: string;
  type: CheckType;
  status: CheckStatus;
  /** The agent's view (/v1/agent/checks). */
  output: string;
  /** The catalog's view (health endpoints); lags `output` by checkUpdateIntervalMs for output-only changes. */
  syncedOutput: string;
  notes: string;
  ttlMs: number;
  /** HTTP/TCP/GRPC target, Interval, Timeout... as registered (stored, never executed). */
  definition: Record<string, string>;
  createIndex: bigint;
  modifyIndex: bigint;
}

class HttpError extends Error {
  status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

type Json = Record<string, unknown>;
type Handler = (m: string[], url: URL, req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void;
interface Waiter {
  min: bigint;
  index: () => bigint;
  wake: () => void;
}

const STATUSES: readonly string[] = ['passing', 'warning', 'critical'];
// Consul's config entry kinds (api-docs/config) and service-resolver load-balancing policies.
const CONFIG_KINDS: readonly string[] = [
  'proxy-defaults',
  'service-defaults',
  'service-resolver',
  'service-router',
  'service-splitter',
  'ingress-gateway',
  'terminating-gateway',
  'service-intentions',
  'mesh',
  'exported-services',
  'api-gateway',
  'bound-api-gateway',
  'http-route',
  'tcp-route',
  'inline-certificate',
  'file-system-certificate',
  'jwt-provider',
  'sameness-group',
  'control-plane-request-limit',
];
const LB_POLICIES: readonly string[] = ['least_request', 'round_robin', 'random', 'ring_hash', 'maglev'];
const MAX_WAIT_MS = 10 * 60_000;
const DEFAULT_WAIT_MS = 5 * 60_000;
const OUTPUT_MAX = 4096; // Consul's default output_max_size
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1e3, m: 6e4, h: 3.6e6 };

/** Go's time.ParseDuration (what Consul uses for `wait` and check durations), in ms; undefined when invalid. */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? NaN);
    pos = re.lastIndex;
  }
  return pos > 0 && Number.isFinite(total) ? total : undefined;
}

// Consul decodes with Go's case-insensitive JSON decoder after translating snake_case keys, so "Name",
// "name" and "deregister_critical_service_after" all count.
const norm = (k: string): string => k.replace(/_/g, '').toLowerCase();
function field(o: Json, name: string): unknown {
  const n = norm(name);
  for (const [k, v] of Object.entries(o)) if (norm(k) === n) return v;
  return undefined;
}
function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function str(o: Json, name: string): string {
  const v = field(o, name);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new HttpError(400, `Request decode failed: ${name} must be a string`);
  return v;
}
function num(o: Json, name: string, dflt: number): number {
  const v = field(o, name);
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new HttpError(400, `Request decode failed: ${name} must be an integer`);
  return v;
}
function strList(o: Json, name: string): string[] {
  const v = field(o, name);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw new HttpError(400, `Request decode failed: ${name} must be a list of strings`);
  return [...v] as string[];
}
function strMap(o: Json, name: string): Record<string, string> {
  const v = field(o, name);
  if (v === undefined || v === null) return {};
  if (!isObj(v) || !Object.values(v).every((x) => typeof x === 'string'))
    throw new HttpError(400, `Request decode failed: ${name} must be a map of strings`);
  return { ...(v as Record<string, string>) };
}
/** Durations arrive as Go strings ("10s") or nanosecond numbers; returns the original text and ms. */
function duration(o: Json, name: string): { text: string; ms: number } {
  const v = field(o, name);
  if (v === undefined || v === null || v === '') return { text: '', ms: 0 };
  const ms = typeof v === 'number' ? v / 1e6 : typeof v === 'string' ? parseGoDuration(v) : undefined;
  if (ms === undefined || ms < 0) throw new HttpError(400, `Request decode failed: ${name}: invalid duration ${JSON.stringify(v)}`);
  return { text: typeof v === 'string' ? v : `${ms}ms`, ms };
}
const sorted = (r: Record<string, string>): string => JSON.stringify(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
const n = (i: bigint): number => Number(i);
const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

interface CheckDef {
  id: string;
  name: string;
  notes: string;
  status: CheckStatus | undefined;
  type: Exclude<CheckType, ''>;
  ttlMs: number;
  definition: Record<string, string>;
}

/**
 * A check as registered from `def`. Consul snapshots check state around a re-registration: a check it already
 * knows (`prev`) keeps its status, output and indexes; a new one starts as its definition says, else critical.
 */
function checkState(id: string, name: string, serviceId: string, def: CheckDef, prev: StandInCheck | undefined): StandInCheck {
  return {
    id,
    name,
    serviceId,
    type: def.type,
    notes: def.notes,
    ttlMs: def.ttlMs,
    definition: def.definition,
    status: prev?.status ?? def.status ?? 'critical',
    output: prev?.output ?? '',
    syncedOutput: prev?.syncedOutput ?? '',
    createIndex: prev?.createIndex ?? 0n,
    modifyIndex: prev?.modifyIndex ?? 0n,
  };
}

/** A CheckType from a registration (Consul's CheckType.Validate, restricted to the kinds the stand-in stores). */
function parseCheckDef(raw: unknown): CheckDef {
  if (!isObj(raw)) throw new HttpError(400, 'Request decode failed: a check must be an object');
  const status = str(raw, 'Status');
  if (status !== '' && !STATUSES.includes(status)) throw new HttpError(400, "Status for checks must 'passing', 'warning', 'critical'");
  const ttl = duration(raw, 'TTL');
  const interval = duration(raw, 'Interval');
  const definition: Record<string, string> = {};
  let type: CheckDef['type'] | undefined;
  for (const [key, t] of [
    ['HTTP', 'http'],
    ['TCP', 'tcp'],
    ['GRPC', 'grpc'],
  ] as const) {
    const target = str(raw, key);
    if (target === '') continue;
    if (interval.ms <= 0) throw new HttpError(400, 'Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks');
    type = t;
    definition[key] = target;
    definition['Interval'] = interval.text;
    const timeout = duration(raw, 'Timeout').text;
    if (timeout) definition['Timeout'] = timeout;
    break;
  }
  if (type === undefined) {
    if (ttl.ms > 0) type = 'ttl';
    else if (
      ['Args', 'ScriptArgs', 'Script', 'UDP', 'H2PING', 'AliasService', 'AliasNode', 'OSService'].some((k) => field(raw, k) !== undefined)
    ) {
      throw new HttpError(400, 'Invalid check: this check type is not supported by the Consul stand-in (only TTL, HTTP, TCP, GRPC)');
    } else throw new HttpError(400, 'Invalid check: TTL must be > 0 for TTL checks');
  }
  const dcsa = duration(raw, 'DeregisterCriticalServiceAfter').text;
  if (dcsa) definition['DeregisterCriticalServiceAfter'] = dcsa;
  return {
    id: str(raw, 'CheckID') || str(raw, 'ID'),
    name: str(raw, 'Name'),
    notes: str(raw, 'Notes'),
    status: status === '' ? undefined : (status as CheckStatus),
    type,
    ttlMs: type === 'ttl' ? ttl.ms : 0,
    definition,
  };
}

function sameCheck(a: StandInCheck, b: StandInCheck): boolean {
  return (
    a.name === b.name &&
    a.serviceId === b.serviceId &&
    a.type === b.type &&
    a.notes === b.notes &&
    a.ttlMs === b.ttlMs &&
    a.status === b.status &&
    a.syncedOutput === b.syncedOutput &&
    sorted(a.definition) === sorted(b.definition)
  );
}
function sameService(a: StandInService, b: StandInService): boolean {
  return (
    a.name === b.name &&
    a.address === b.address &&
    a.port === b.port &&
    a.enableTagOverride === b.enableTagOverride &&
    JSON.stringify(a.tags) === JSON.stringify(b.tags) &&
    sorted(a.meta) === sorted(b.meta) &&
    a.weights.Passing === b.weights.Passing &&
    a.weights.Warning === b.weights.Warning &&
    a.deregisterCriticalServiceAfter === b.deregisterCriticalServiceAfter
  );
}

export class ConsulStandIn {
  readonly datacenter: string;
  readonly nodeName: string;
  readonly nodeAddress: string;
  readonly nodeId: string = randomUUID();
  readonly nodeMeta: Record<string, string>;
  /** HTTP requests received (all routes, including refused ones). */
  requests = 0;

  #aclToken: string | undefined;
  #checkUpdateIntervalMs: number;
  #server: http.Server | undefined;
  #host = '127.0.0.1';
  #port = 0;
  #raft = 0n;
  #nodeIdx: bigint;
  #servicesIdx: bigint; // the services table: catalog/services
  #extinctionIdx = 0n; // last time some service lost its last instance
  #svcIdx = new Map<string, bigint>(); // per service name: catalog/service/X, health/service/X
  #services = new Map<string, StandInService>();
  #checks = new Map<string, StandInCheck>();
  #ttlTimers = new Map<string, NodeJS.Timeout>();
  #deferTimers = new Map<string, NodeJS.Timeout>();
  #waiters = new Set<Waiter>();
  #configs = new Map<string, Json & { CreateIndex: number; ModifyIndex: number }>(); // key: kind/name
  #configIdx = 0n;
  #routes: [string, RegExp, Handler][];

  constructor(opts: ConsulStandInOptions = {}) {
    this.#aclToken = opts.aclToken;
    this.datacenter = opts.datacenter ?? 'dc1';
    this.nodeName = opts.nodeName ?? 'standin-node';
    this.nodeAddress = opts.nodeAddress ?? '127.0.0.1';
    this.nodeMeta = { 'consul-network-segment': '', ...opts.nodeMeta };
    this.#checkUpdateIntervalMs = opts.checkUpdateIntervalMs ?? 300_000;
    // Like a fresh dev agent: the node, its serfHealth check and the "consul" service exist from the start.
    const idx = ++this.#raft;
    this.#nodeIdx = idx;
    this.#servicesIdx = idx;
    this.#svcIdx.set('consul', idx);
    this.#services.set('consul', {
      id: 'consul',
      name: 'consul',
      tags: [],
      address: '',
      port: 8300,
      meta: {},
      weights: { Passing: 1, Warning: 1 },
      enableTagOverride: false,
      deregisterCriticalServiceAfter: '',
      createIndex: idx,
      modifyIndex: idx,
    });
    this.#checks.set('serfHealth', {
      id: 'serfHealth',
      name: 'Serf Health Status',
      serviceId: '',
      type: '',
      status: 'passing',
      output: 'Agent alive and reachable',
      syncedOutput: 'Agent alive and reachable',
      notes: '',
      ttlMs: 0,
      definition: {},
      createIndex: idx,
      modifyIndex: idx,
    });
    const R = (method: string, re: RegExp, h: Handler): [string, RegExp, Handler] => [method, re, h];
    this.#routes = [
      R('GET', /^\/v1\/status\/leader$/, (_m, _u, _q, res) => json(res, `${this.nodeAddress}:8300`)),
      R('GET', /^\/v1\/status\/peers$/, (_m, _u, _q, res) => json(res, [`${this.nodeAddress}:8300`])),
      R('GET', /^\/v1\/agent\/self$/, (_m, _u, _q, res) =>
        json(res, {
          Config: { Datacenter: this.datacenter, NodeName: this.nodeName, NodeID: this.nodeId, Server: true, Version: '0.0.0-standin' },
          Member: { Name: this.nodeName, Addr: this.nodeAddress, Port: 8301, Status: 1, Tags: { dc: this.datacenter } },
        }),
      ),
      R('GET', /^\/v1\/agent\/services$/, (_m, _u, _q, res) =>
        json(res, Object.fromEntries(this.#agentServices().map((s) => [s.id, this.#agentServiceView(s)]))),
      ),
      R('GET', /^\/v1\/agent\/service\/([^/]+)$/, (m, _u, _q, res) => {
        const s = this.#agentServices().find((x) => x.id === m[1]);
        if (!s) throw new HttpError(404, `unknown service ID: ${m[1]}`);
        json(res, this.#agentServiceView(s));
      }),
      R('GET', /^\/v1\/agent\/checks$/, (_m, _u, _q, res) =>
        json(res, Object.fromEntries(this.#agentChecks().map((c) => [c.id, this.#checkView(c, true)]))),
      ),
      R('PUT', /^\/v1\/agent\/service\/register$/, async (_m, url, req, res) => {
        this.#register(await readJson(req), isTrue(url, 'replace-existing-checks'));
        res.end();
      }),
      R('PUT', /^\/v1\/agent\/service\/deregister\/([^/]+)$/, (m, _u, _q, res) => {
        this.#deregister(m[1] ?? '');
        res.end();
      }),
      R('PUT', /^\/v1\/agent\/check\/register$/, async (_m, _u, req, res) => {
        this.#registerCheck(await readJson(req));
        res.end();
      }),
      R('PUT', /^\/v1\/agent\/check\/deregister\/([^/]+)$/, (m, _u, _q, res) => {
        const c = this.#checks.get(m[1] ?? '');
        // Consul only logs a warning for an unknown check and answers 200.
        if (c && c.id !== 'serfHealth') this.#write(this.#namesFor(c), false, () => this.#dropCheck(c.id));
        res.end();
      }),
      R('PUT', /^\/v1\/agent\/check\/(pass|warn|fail)\/([^/]+)$/, (m, url, _q, res) => {
        const status = m[1] === 'pass' ? 'passing' : m[1] === 'warn' ? 'warning' : 'critical';
        this.#ttlUpdate(m[2] ?? '', status, url.searchParams.get('note') ?? '');
        res.end();
      }),
      R('PUT', /^\/v1\/agent\/check\/update\/([^/]+)$/, async (m, _u, req, res) => {
        const body = await readJson(req);
        const status = str(body, 'Status');
        if (!STATUSES.includes(status)) throw new HttpError(400, `Invalid check status: "${status}"`);
        this.#ttlUpdate(m[1] ?? '', status as CheckStatus, str(body, 'Output'));
        res.end();
      }),
      R('GET', /^\/v1\/catalog\/services$/, (_m, url, req, res) =>
        this.#blocking(
          url,
          req,
          res,
          () => this.#servicesIdx,
          () => {
            const out: Record<string, string[]> = {};
            for (const s of this.#services.values()) out[s.name] = [...new Set([...(out[s.name] ?? []), ...s.tags])];
            return out;
          },
        ),
      ),
      R('GET', /^\/v1\/catalog\/service\/([^/]+)$/, (m, url, req, res) => {
        const name = m[1] ?? '';
        return this.#blocking(
          url,
          req,
          res,
          () => this.#serviceIndex(name),
          () => this.#instances(name, url).map((s) => this.#catalogEntry(s)),
        );
      }),
      R('GET', /^\/v1\/catalog\/nodes$/, (_m, url, req, res) =>
        this.#blocking(
          url,
          req,
          res,
          () => this.#nodeIdx,
          () => [this.#nodeView()],
        ),
      ),
      R('GET', /^\/v1\/health\/service\/([^/]+)$/, (m, url, req, res) => {
        const name = m[1] ?? '';
        const passing = url.searchParams.has('passing') && isTrue(url, 'passing');
        return this.#blocking(
          url,
          req,
          res,
          () => this.#serviceIndex(name),
          () =>
            this.#instances(name, url)
              .map((s) => ({
                Node: this.#nodeView(),
                Service: this.#healthServiceView(s),
                Checks: this.#checksOf(s).map((c) => this.#checkView(c, false)),
              }))
              .filter((e) => !passing || e.Checks.every((c) => c.Status === 'passing')),
        );
      }),
      R('GET', /^\/v1\/config\/([^/]+)$/, (m, url, req, res) => {
        const kind = this.#configKind(m[1] ?? '');
        return this.#blocking(
          url,
          req,
          res,
          () => this.#configIdx,
          () =>
            [...this.#configs.values()].filter((e) => e['Kind'] === kind).sort((a, b) => (String(a['Name']) < String(b['Name']) ? -1 : 1)),
        );
      }),
      R('GET', /^\/v1\/config\/([^/]+)\/([^/]+)$/, (m, url, req, res) => {
        const kind = this.#configKind(m[1] ?? '');
        const key = `${kind}/${m[2] ?? ''}`;
        if (!this.#configs.has(key) && !url.searchParams.has('index'))
          throw new HttpError(404, `Config entry not found for "${kind}" / "${m[2]}"`);
        return this.#blocking(
          url,
          req,
          res,
          () => this.#configIdx,
          () => {
            const e = this.#configs.get(key);
            if (!e) throw new HttpError(404, `Config entry not found for "${kind}" / "${m[2]}"`);
            return e;
          },
        );
      }),
      R('PUT', /^\/v1\/config$/, async (_m, url, req, res) => json(res, this.#putConfig(await readJson(req), url.searchParams.get('cas')))),
      R('DELETE', /^\/v1\/config\/([^/]+)\/([^/]+)$/, (m, url, _q, res) => {
        const key = `${this.#configKind(m[1] ?? '')}/${m[2] ?? ''}`;
        const cas = url.searchParams.get('cas');
        const e = this.#configs.get(key);
        if (cas !== null && (!/^\d+$/.test(cas) || !e || String(e.ModifyIndex) !== cas)) return json(res, false);
        if (e) this.#configWrite(() => this.#configs.delete(key));
        json(res, cas !== null ? true : {});
      }),
      R('GET', /^\/v1\/health\/checks\/([^/]+)$/, (m, url, req, res) => {
        const name = m[1] ?? '';
        return this.#blocking(
          url,
          req,
          res,
          () => this.#serviceIndex(name),
          () =>
            [...this.#checks.values()].filter((c) => this.#services.get(c.serviceId)?.name === name).map((c) => this.#checkView(c, false)),
        );
      }),
    ];
  }

  /** Listens; resolves with the port. */
  async start(port = 0, host = '127.0.0.1'): Promise<number> {
    if (this.#server) throw new Error('ConsulStandIn already started');
    const server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.#host = host;
    this.#port = (server.address() as AddressInfo).port;
    return this.#port;
  }

  /** Closes the server, drops open long polls and stops every timer. */
  async stop(): Promise<void> {
    for (const t of [...this.#ttlTimers.values(), ...this.#deferTimers.values()]) clearTimeout(t);
    this.#ttlTimers.clear();
    this.#deferTimers.clear();
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections(); // long polls and the client's keep-alive sockets would hold close() open
    for (const w of [...this.#waiters]) w.wake();
    await closed;
  }

  /** 'http://HOST:PORT' (throws before start()). */
  get address(): string {
    if (!this.#server) throw new Error('ConsulStandIn not started');
    return `http://${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  /** The current raft index. */
  index(): bigint {
    return this.#raft;
  }

  /** Services registered through the agent (copies). */
  services(): StandInService[] {
    return this.#agentServices().map((s) => ({ ...s, tags: [...s.tags], meta: { ...s.meta }, weights: { ...s.weights } }));
  }

  /** Every check including serfHealth (copies). */
  checks(): StandInCheck[] {
    return [...this.#checks.values()].map((c) => ({ ...c, definition: { ...c.definition } }));
  }

  /** Sets a check's status as if its owner (TTL) or the agent's prober (HTTP/TCP/GRPC) reported it, with the
   * same rules as the TTL endpoints. 'serfHealth' flips the node's health (every instance). */
  setCheckStatus(checkId: string, status: CheckStatus, output = ''): void {
    if (!this.#checks.has(checkId)) throw new Error(`no check ${checkId}`);
    if (this.#ttlTimers.has(checkId)) this.#ttlUpdate(checkId, status, output);
    else this.#updateCheck(checkId, status, output);
  }

  /** Simulates a snapshot restore: the raft index (and every stored index above it) drops to `to`, and waiting
   * blocking queries are answered immediately, as Consul does when it abandons its state store. */
  resetIndex(to = 1n): void {
    if (to < 1n) throw new RangeError('index must be >= 1');
    this.#raft = to;
    this.#nodeIdx = min(this.#nodeIdx, to);
    this.#servicesIdx = min(this.#servicesIdx, to);
    this.#extinctionIdx = min(this.#extinctionIdx, to);
    this.#configIdx = min(this.#configIdx, to);
    for (const e of this.#configs.values()) {
      e.CreateIndex = Math.min(e.CreateIndex, n(to));
      e.ModifyIndex = Math.min(e.ModifyIndex, n(to));
    }
    for (const [k, v] of this.#svcIdx) this.#svcIdx.set(k, min(v, to));
    for (const r of [...this.#services.values(), ...this.#checks.values()]) {
      r.createIndex = min(r.createIndex, to);
      r.modifyIndex = min(r.modifyIndex, to);
    }
    for (const w of [...this.#waiters]) w.wake();
  }

  // ---- HTTP ----

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.requests++;
    const url = new URL(req.url ?? '/', 'http://standin');
    try {
      const path = url.pathname;
      if (!path.startsWith('/v1/status/')) this.#checkAcl(req, url);
      let methodMismatch = false;
      for (const [method, re, handler] of this.#routes) {
        const m = re.exec(path);
        if (!m) continue;
        if (req.method !== method) {
          methodMismatch = true;
          continue;
        }
        await handler(
          m.map((s) => decodeURIComponent(s)),
          url,
          req,
          res,
        );
        return;
      }
      if (methodMismatch) throw new HttpError(405, `method ${req.method} not allowed`);
      throw new HttpError(404, `404 page not found`);
    } catch (err) {
      if (res.headersSent || res.destroyed) return;
      const e =
        err instanceof HttpError
          ? err
          : err instanceof URIError
            ? new HttpError(400, `bad path: ${err.message}`)
            : new HttpError(500, err instanceof Error ? err.message : String(err));
      res.writeHead(e.status, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(e.message);
    }
  }

  #checkAcl(req: http.IncomingMessage, url: URL): void {
    if (this.#aclToken === undefined) return;
    // Consul's order: ?token, then X-Consul-Token, then Authorization: Bearer.
    const header = req.headers['x-consul-token'];
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const token = url.searchParams.get('token') || (typeof header === 'string' ? header : '') || bearer || '';
    if (token === '') throw new HttpError(403, 'Permission denied');
    if (token !== this.#aclToken) throw new HttpError(403, 'ACL not found');
  }

  /** Runs a read with Consul's blocking-query rules and answers it with X-Consul-Index. */
  async #blocking(url: URL, _req: http.IncomingMessage, res: http.ServerResponse, index: () => bigint, body: () => unknown): Promise<void> {
    const dc = url.searchParams.get('dc');
    if (dc && dc !== this.datacenter) throw new HttpError(500, 'No path to datacenter');
    if (url.searchParams.has('filter')) throw new HttpError(400, '?filter is not supported by the Consul stand-in');
    const rawIndex = url.searchParams.get('index');
    let minIndex = 0n;
    if (rawIndex !== null && rawIndex !== '') {
      if (!/^\d+$/.test(rawIndex)) throw new HttpError(400, 'Invalid index');
      minIndex = BigInt(rawIndex);
    }
    const rawWait = url.searchParams.get('wait');
    let waitMs = DEFAULT_WAIT_MS;
    if (rawWait !== null && rawWait !== '') {
      const ms = parseGoDuration(rawWait);
      if (ms === undefined) throw new HttpError(400, 'Invalid wait time');
      waitMs = Math.min(ms, MAX_WAIT_MS);
    }
    if (minIndex > 0n && index() <= minIndex) {
      await new Promise<void>((resolve) => {
        const w: Waiter = {
          min: minIndex,
          index,
          wake: () => {
            clearTimeout(timer);
            this.#waiters.delete(w);
            res.off('close', w.wake);
            resolve();
          },
        };
        const timer = setTimeout(w.wake, waitMs);
        this.#waiters.add(w);
        res.on('close', w.wake); // the client gave up: forget the waiter
      });
      if (res.destroyed || !this.#server) return;
    }
    const idx = index();
    json(res, body(), {
      'X-Consul-Index': String(idx < 1n ? 1n : idx),
      'X-Consul-KnownLeader': 'true',
      'X-Consul-LastContact': '0',
      'X-Consul-Effective-Consistency': 'leader',
    });
  }

  // ---- state ----

  /** Applies a change at a fresh raft index, moves the indexes of the service names it touched (and of the
   * services table when instances changed) and wakes the blocking queries whose index moved. */
  #write(names: Iterable<string>, servicesTable: boolean, apply: (idx: bigint) => void): void {
    const idx = ++this.#raft;
    const touched = new Set(names);
    apply(idx);
    for (const name of touched) {
      if ([...this.#services.values()].some((s) => s.name === name)) this.#svcIdx.set(name, idx);
      else if (this.#svcIdx.delete(name)) this.#extinctionIdx = idx;
    }
    if (servicesTable) this.#servicesIdx = idx;
    for (const w of [...this.#waiters]) if (w.index() > w.min) w.wake();
  }

  #configKind(kind: string): string {
    if (!CONFIG_KINDS.includes(kind)) throw new HttpError(400, `invalid config entry kind: ${kind}`);
    return kind;
  }

  #configWrite(apply: () => void): void {
    const idx = ++this.#raft;
    apply();
    this.#configIdx = idx;
    for (const w of [...this.#waiters]) if (w.index() > w.min) w.wake();
  }

  #putConfig(body: Json, cas: string | null): boolean {
    const kind = this.#configKind(str(body, 'Kind'));
    const name = str(body, 'Name');
    if (name === '') throw new HttpError(400, 'Name is required');
    if (kind === 'proxy-defaults' && name !== 'global') throw new HttpError(400, `invalid name ("${name}"), only "global" is supported`);
    if (kind === 'service-resolver') {
      const lb = field(body, 'LoadBalancer');
      const policy = isObj(lb) ? field(lb, 'Policy') : undefined;
      if (policy !== undefined && policy !== '' && !LB_POLICIES.includes(String(policy)))
        throw new HttpError(400, `Bad request: Invalid config entry: Invalid LoadBalancer.Policy: ${JSON.stringify(policy)}`);
    }
    const key = `${kind}/${name}`;
    const prev = this.#configs.get(key);
    if (cas !== null) {
      if (!/^\d+$/.test(cas)) throw new HttpError(400, 'Invalid cas');
      if (cas === '0' ? prev !== undefined : prev?.ModifyIndex !== Number(cas)) return false;
    }
    // Canonical key casing (Kind, Name) as Consul returns them; the rest as written.
    const rest = Object.fromEntries(
      Object.entries(body).filter(
        ([k]) => norm(k) !== 'kind' && norm(k) !== 'name' && norm(k) !== 'createindex' && norm(k) !== 'modifyindex',
      ),
    );
    const entry = { Kind: kind, Name: name, ...rest };
    if (
      prev &&
      JSON.stringify({ ...prev, CreateIndex: 0, ModifyIndex: 0 }) === JSON.stringify({ ...entry, CreateIndex: 0, ModifyIndex: 0 })
    )
      return true;
    this.#configWrite(() => {
      this.#configs.set(key, { ...entry, CreateIndex: prev?.CreateIndex ?? n(this.#raft), ModifyIndex: n(this.#raft) });
    });
    return true;
  }

  #serviceIndex(name: string): bigint {
    return this.#svcIdx.get(name) ?? this.#extinctionIdx;
  }

  /** Service names whose health a check affects: its service's, or every service for a node check. */
  #namesFor(c: StandInCheck): string[] {
    if (c.serviceId === '') return [...new Set([...this.#services.values()].map((s) => s.name))];
    const s = this.#services.get(c.serviceId);
    return s ? [s.name] : [];
  }

  #register(body: Json, replaceExisting: boolean): void {
    const name = str(body, 'Name');
    if (name === '') throw new HttpError(400, 'Missing service name');
    const id = str(body, 'ID') || name;
    if (id === 'consul') throw new HttpError(400, 'service ID "consul" is reserved by the Consul stand-in');
    const w = field(body, 'Weights');
    const weights = { Passing: 1, Warning: 1 };
    if (isObj(w)) {
      weights.Passing = num(w, 'Passing', 0);
      weights.Warning = num(w, 'Warning', 0); // a partial Weights object leaves Go's zero value
      if (weights.Passing < 1) throw new HttpError(400, 'Passing must be greater than 0');
    }
    const eto = field(body, 'EnableTagOverride');
    const existing = this.#services.get(id);
    const svc: StandInService = {
      id,
      name,
      tags: strList(body, 'Tags'),
      address: str(body, 'Address'),
      port: num(body, 'Port', 0),
      meta: strMap(body, 'Meta'),
      weights,
      enableTagOverride: eto === true,
      deregisterCriticalServiceAfter: '',
      createIndex: existing?.createIndex ?? 0n,
      modifyIndex: existing?.modifyIndex ?? 0n,
    };
    const rawChecks = [
      field(body, 'Check'),
      ...((): unknown[] => {
        const cs = field(body, 'Checks');
        if (cs === undefined || cs === null) return [];
        if (!Array.isArray(cs)) throw new HttpError(400, 'Request decode failed: Checks must be a list');
        return cs;
      })(),
    ].filter((c) => c !== undefined && c !== null);
    const defs = rawChecks.map(parseCheckDef);
    svc.deregisterCriticalServiceAfter = defs.map((d) => d.definition['DeregisterCriticalServiceAfter'] ?? '').find((x) => x) ?? '';
    const checks = defs.map((d, i): StandInCheck => {
      const cid = d.id || (defs.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`);
      return checkState(cid, d.name || `Service '${name}' check`, id, d, this.#checks.get(cid));
    });
    const newIds = new Set(checks.map((c) => c.id));
    const removed = replaceExisting ? [...this.#checks.values()].filter((c) => c.serviceId === id && !newIds.has(c.id)) : [];
    const serviceChanged = !existing || !sameService(existing, svc);
    const changedChecks = checks.filter((c) => {
      const prev = this.#checks.get(c.id);
      return !prev || !sameCheck(prev, c);
    });
    if (serviceChanged || changedChecks.length > 0 || removed.length > 0) {
      this.#write([name, ...(existing ? [existing.name] : [])], serviceChanged, (idx) => {
        if (serviceChanged) {
          svc.modifyIndex = idx;
          if (!existing) svc.createIndex = idx;
          this.#services.set(id, svc);
        }
        for (const c of removed) this.#dropCheck(c.id);
        // Unchanged checks keep their record (and indexes); changed ones are replaced.
        for (const c of changedChecks) {
          c.modifyIndex = idx;
          if (c.createIndex === 0n) c.createIndex = idx;
          this.#checks.set(c.id, c);
        }
      });
    }
    // The agent re-creates each check on every registration, so a TTL restarts.
    for (const c of checks) {
      if (c.type === 'ttl') this.#armTtl(c.id, c.ttlMs);
      else this.#clearTtl(c.id);
    }
  }

  #registerCheck(body: Json): void {
    const def = parseCheckDef(body);
    if (def.name === '') throw new HttpError(400, 'Missing check name');
    const serviceId = str(body, 'ServiceID');
    const svc = serviceId ? this.#services.get(serviceId) : undefined;
    if (serviceId && (!svc || serviceId === 'consul')) throw new HttpError(400, `ServiceID "${serviceId}" does not exist`);
    const id = def.id || def.name; // Consul: the check ID defaults to its name
    if (id === 'serfHealth') throw new HttpError(400, 'check ID "serfHealth" is reserved');
    const prev = this.#checks.get(id);
    const c = checkState(id, def.name, serviceId, def, prev);
    if (!prev || !sameCheck(prev, c)) {
      this.#write([...this.#namesFor(c), ...(prev ? this.#namesFor(prev) : [])], false, (idx) => {
        c.modifyIndex = idx;
        if (c.createIndex === 0n) c.createIndex = idx;
        this.#checks.set(id, c);
      });
    }
    if (c.type === 'ttl') this.#armTtl(id, c.ttlMs);
    else this.#clearTtl(id);
  }

  #deregister(id: string): void {
    const s = this.#services.get(id);
    // Consul logs "Service does not exist" and answers 200 for an unknown ID.
    if (!s || id === 'consul') return;
    this.#write([s.name], true, () => {
      this.#services.delete(id);
      for (const c of [...this.#checks.values()]) if (c.serviceId === id) this.#dropCheck(c.id);
    });
  }

  #dropCheck(id: string): void {
    this.#checks.delete(id);
    this.#clearTtl(id);
    const t = this.#deferTimers.get(id);
    if (t) clearTimeout(t);
    this.#deferTimers.delete(id);
  }

  #armTtl(id: string, ms: number): void {
    this.#clearTtl(id);
    const t = setTimeout(() => {
      this.#ttlTimers.delete(id);
      const c = this.#checks.get(id);
      if (!c) return;
      // Consul's CheckTTL.getExpiredOutput
      const out = c.output ? `TTL expired (last output before timeout follows): ${c.output}` : 'TTL expired';
      this.#updateCheck(id, 'critical', out);
    }, ms);
    t.unref();
    this.#ttlTimers.set(id, t);
  }

  #clearTtl(id: string): void {
    const t = this.#ttlTimers.get(id);
    if (t) clearTimeout(t);
    this.#ttlTimers.delete(id);
  }

  /** The TTL endpoints: only TTL checks, truncated output, and every call restarts the TTL. */
  #ttlUpdate(id: string, status: CheckStatus, output: string): void {
    const c = this.#checks.get(id);
    if (c?.type !== 'ttl') throw new HttpError(404, `CheckID "${id}" does not have associated TTL`);
    if (output.length > OUTPUT_MAX) output = `${output.slice(0, OUTPUT_MAX)} ... (captured ${OUTPUT_MAX} of ${output.length} bytes)`;
    this.#armTtl(id, c.ttlMs);
    this.#updateCheck(id, status, output);
  }

  /** Consul's agent-side State.UpdateCheck: idempotent updates do nothing, output-only changes are deferred. */
  #updateCheck(id: string, status: CheckStatus, output: string): void {
    const c = this.#checks.get(id);
    if (!c || (c.status === status && c.output === output)) return;
    if (this.#checkUpdateIntervalMs > 0 && c.status === status) {
      c.output = output;
      if (!this.#deferTimers.has(id)) {
        const t = setTimeout(() => {
          this.#deferTimers.delete(id);
          const cur = this.#checks.get(id);
          if (cur && cur.syncedOutput !== cur.output) this.#sync(cur);
        }, this.#checkUpdateIntervalMs);
        t.unref();
        this.#deferTimers.set(id, t);
      }
      return;
    }
    c.status = status;
    c.output = output;
    this.#sync(c);
  }

  /** Anti-entropy: pushes the agent's view of a check to the catalog (one write). */
  #sync(c: StandInCheck): void {
    const t = this.#deferTimers.get(c.id);
    if (t) clearTimeout(t);
    this.#deferTimers.delete(c.id);
    this.#write(this.#namesFor(c), false, (idx) => {
      c.syncedOutput = c.output;
      c.modifyIndex = idx;
    });
  }

  #agentServices(): StandInService[] {
    return [...this.#services.values()].filter((s) => s.id !== 'consul');
  }

  #agentChecks(): StandInCheck[] {
    return [...this.#checks.values()].filter((c) => c.id !== 'serfHealth');
  }

  /** Instances of a service name, by ID, filtered by every ?tag (case-insensitive) and ?node-meta. */
  #instances(name: string, url: URL): StandInService[] {
    const tags = url.searchParams.getAll('tag').map((t) => t.toLowerCase());
    const nodeMetaOk = url.searchParams.getAll('node-meta').every((kv) => {
      const i = kv.indexOf(':');
      return i >= 0 && this.nodeMeta[kv.slice(0, i)] === kv.slice(i + 1);
    });
    if (!nodeMetaOk) return [];
    return [...this.#services.values()]
      .filter((s) => s.name === name && tags.every((t) => s.tags.some((x) => x.toLowerCase() === t)))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Node checks first, then the service's own (Consul's order). */
  #checksOf(s: StandInService): StandInCheck[] {
    const all = [...this.#checks.values()];
    return [...all.filter((c) => c.serviceId === ''), ...all.filter((c) => c.serviceId === s.id)];
  }

  // ---- JSON views (field names and shapes as in Consul's API docs; empty lists are [] as Consul sends) ----

  #taggedAddresses(): Record<string, string> {
    return { lan: this.nodeAddress, lan_ipv4: this.nodeAddress, wan: this.nodeAddress, wan_ipv4: this.nodeAddress };
  }

  #nodeView(): Json {
    return {
      ID: this.nodeId,
      Node: this.nodeName,
      Address: this.nodeAddress,
      Datacenter: this.datacenter,
      TaggedAddresses: this.#taggedAddresses(),
      Meta: { ...this.nodeMeta },
      CreateIndex: n(this.#nodeIdx),
      ModifyIndex: n(this.#nodeIdx),
    };
  }

  #agentServiceView(s: StandInService): Json {
    return {
      ID: s.id,
      Service: s.name,
      Tags: [...s.tags],
      Meta: { ...s.meta },
      Port: s.port,
      Address: s.address,
      Weights: { ...s.weights },
      EnableTagOverride: s.enableTagOverride,
      Datacenter: this.datacenter,
    };
  }

  #healthServiceView(s: StandInService): Json {
    return {
      ID: s.id,
      Service: s.name,
      Tags: [...s.tags],
      Address: s.address,
      Meta: { ...s.meta },
      Port: s.port,
      Weights: { ...s.weights },
      EnableTagOverride: s.enableTagOverride,
      CreateIndex: n(s.createIndex),
      ModifyIndex: n(s.modifyIndex),
    };
  }

  #catalogEntry(s: StandInService): Json {
    return {
      ID: this.nodeId,
      Node: this.nodeName,
      Address: this.nodeAddress,
      Datacenter: this.datacenter,
      TaggedAddresses: this.#taggedAddresses(),
      NodeMeta: { ...this.nodeMeta },
      ServiceKind: '',
      ServiceID: s.id,
      ServiceName: s.name,
      ServiceTags: [...s.tags],
      ServiceAddress: s.address,
      ServicePort: s.port,
      ServiceMeta: { ...s.meta },
      ServiceWeights: { ...s.weights },
      ServiceEnableTagOverride: s.enableTagOverride,
      CreateIndex: n(s.createIndex),
      ModifyIndex: n(s.modifyIndex),
    };
  }

  #checkView(c: StandInCheck, agent: boolean): { Status: CheckStatus } & Json {
    const s = this.#services.get(c.serviceId);
    return {
      Node: this.nodeName,
      CheckID: c.id,
      Name: c.name,
      Status: c.status,
      Notes: c.notes,
      Output: agent ? c.output : c.syncedOutput,
      ServiceID: c.serviceId,
      ServiceName: s?.name ?? '',
      ServiceTags: s ? [...s.tags] : [],
      Type: c.type,
      Interval: c.definition['Interval'] ?? '',
      Timeout: c.definition['Timeout'] ?? '',
      ExposedPort: 0,
      Definition: { ...c.definition },
      CreateIndex: n(c.createIndex),
      ModifyIndex: n(c.modifyIndex),
    };
  }
}

function json(res: http.ServerResponse, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Consul's query flags: present without a value means true, otherwise Go's strconv.ParseBool. */
function isTrue(url: URL, name: string): boolean {
  const v = url.searchParams.get(name);
  if (v === null) return false;
  if (v === '' || ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw new HttpError(400, `Invalid value for ?${name}`);
}

async function readJson(req: http.IncomingMessage): Promise<Json> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `Request decode failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObj(body)) throw new HttpError(400, 'Request decode failed: body must be a JSON object');
  return body;
}
