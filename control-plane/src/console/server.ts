// The web console's server side, mounted by the admin server under /ui (same exposure as /debug: loopback,
// or the admin token beyond it). Read-only: every route is GET, and nothing here can change the mesh.
//
//   /ui                    the page (index.html; an import map points the browser at the vendored modules)
//   /ui/app.js, app.css    the console (preact + htm, plain ES modules: no build step, no CDN)
//   /ui/vendor/*.mjs       preact, preact/hooks and htm, served from node_modules as shipped
//   /ui/api/state          the whole view (console/state.ts) as JSON; ?from=region/zone picks the vantage
//   /ui/api/explain        `mcpmesh policy explain` for one matrix cell, run with the policy in force
//   /ui/api/events         server-sent events: `change` whenever the view would differ, so the page refetches
//
// History. Prometheus histograms only hold totals, so the console samples the ones it charts (convergence,
// snapshot builds, authorizer decisions) every few seconds and keeps ten minutes of differences in memory.
import type http from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SnapshotCache } from '../cache/cache.ts';
import type { Metrics } from '../metrics.ts';
import { policyExplainMain } from '../policy/cli.ts';
import { compilePolicy } from '../policy/engine.ts';
import { encodeMcpHeaderValue, headerValidated } from '../policy/mcp-http.ts';
import type { Policy } from '../policy/types.ts';
import type { RoutingLayers } from '../routing.ts';
import type { KnobExplanation } from '../model/tuning.ts';
import type { ProxyTracker } from '../server/proxies.ts';
import {
  defaultVantage,
  gatewaysOf,
  knobView,
  localitiesKnown,
  parseLocality,
  policyView,
  proxiesView,
  servicesView,
  type ConsoleState,
  type DecisionRow,
  type HealthView,
  type SeriesPoint,
} from './state.ts';

export interface ConsoleOptions {
  readonly cache: SnapshotCache;
  readonly tracker: ProxyTracker;
  readonly metrics: Metrics;
  readonly sourceErrors: () => Record<string, string | undefined>;
  readonly sourceDescription: () => string;
  /** The policy in force (after hot reloads), or undefined when the mesh is not secured. */
  readonly policy: () => Policy | undefined;
  /** The latest certificate the mesh CA signed for each workload identity (expiry only). */
  readonly workloadCertificates?: () => { identity: string; notAfter: Date }[];
  /** Effective routing with provenance: the same answers /debug/routing gives. */
  readonly routing?: Pick<RoutingLayers, 'services' | 'debug'>;
  /** How often the metrics behind the charts are sampled (default 5 s). */
  readonly sampleMs?: number;
  /** How often live pages are told that something changed (default 1 s). */
  readonly eventMs?: number;
}

// One object, so that the memo key (its generation) stays the same without a routing view.
const NO_ROUTING: Readonly<Record<string, readonly KnobExplanation[]>> = Object.freeze({});
const HISTORY_MS = 10 * 60_000;
const RECENT_MS = 60_000;
// Page loads sample too (fresh figures): bound the history whatever the traffic.
const MAX_SAMPLES = 1000;

interface Sample {
  readonly at: number;
  readonly convergence: { count: number; sum: number };
  readonly builds: { count: number; sum: number };
  readonly rejected: number;
  /** Counter values by [service, rule or tool, decision] as JSON text. */
  readonly byRule: ReadonlyMap<string, number>;
  readonly byTool: ReadonlyMap<string, number>;
}

const WEB_DIR = new URL('./web/', import.meta.url);

/** Files the page loads, read once at start: the console works with no network and no build step. */
function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const js = 'text/javascript; charset=utf-8';
  const file = (u: URL | string): Buffer => readFileSync(typeof u === 'string' ? fileURLToPath(import.meta.resolve(u)) : u);
  return new Map([
    ['/ui/app.js', { type: js, body: file(new URL('app.js', WEB_DIR)) }],
    ['/ui/app.css', { type: 'text/css; charset=utf-8', body: file(new URL('app.css', WEB_DIR)) }],
    ['/ui/vendor/preact.mjs', { type: js, body: file('preact') }],
    ['/ui/vendor/hooks.mjs', { type: js, body: file('preact/hooks') }],
    ['/ui/vendor/htm.mjs', { type: js, body: file('htm') }],
  ]);
}

const IMPORT_MAP = JSON.stringify({
  imports: { preact: '/ui/vendor/preact.mjs', 'preact/hooks': '/ui/vendor/hooks.mjs', htm: '/ui/vendor/htm.mjs' },
});

function page(): { html: string; csp: string } {
  // The import map is the one inline script: allowed by its hash, so the policy can forbid every other.
  const hash = createHash('sha256').update(IMPORT_MAP).digest('base64');
  return {
    html: `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MCP Mesh console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
<script type="importmap">${IMPORT_MAP}</script>
<link rel="modulepreload" href="/ui/vendor/preact.mjs">
<link rel="modulepreload" href="/ui/vendor/hooks.mjs">
<link rel="modulepreload" href="/ui/vendor/htm.mjs">
<link rel="preload" href="/ui/api/state" as="fetch" crossorigin="anonymous">
<script type="module" src="/ui/app.js"></script>
</head>
<body><div id="app"><p class="loading">Loading the mesh…</p></div></body>
</html>
`,
    csp: `default-src 'none'; script-src 'self' 'sha256-${hash}'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  };
}

const NOTES: readonly string[] = [
  "Outlier ejection: proxies do not report ejections to the control plane (no load reporting), so endpoints show the health their source gives; an Envoy's own view is on its admin port (/clusters).",
];

function json(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

export class ConsoleServer {
  private readonly opts: ConsoleOptions;
  private readonly assets = loadAssets();
  private readonly page = page();
  private readonly samples: Sample[] = [];
  private readonly sampler: NodeJS.Timeout;
  private readonly ticker: NodeJS.Timeout;
  private readonly clients = new Set<http.ServerResponse>();
  private lastFingerprint = '';
  /** Snapshot-build totals when last looked at, and the mean of the builds that happened since the look before. */
  private builds = { count: 0, sum: 0, lastMs: null as number | null };

  constructor(opts: ConsoleOptions) {
    this.opts = opts;
    void this.sample();
    this.sampler = setInterval(() => void this.sample(), opts.sampleMs ?? 5000);
    this.sampler.unref();
    this.ticker = setInterval(() => this.notify(), opts.eventMs ?? 1000);
    this.ticker.unref();
  }

  /** Serves a /ui path; the admin server has already decided the caller may see it. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'the console is read-only: GET only' });
    const p = url.pathname;
    if (p === '/ui' || p === '/ui/') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': this.page.csp,
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
      });
      return void res.end(this.page.html);
    }
    const asset = this.assets.get(p);
    if (asset)
      return void res
        .writeHead(200, { 'content-type': asset.type, 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache' })
        .end(asset.body);
    if (p === '/ui/api/state') {
      const body = await this.stateJson(url.searchParams.get('from'));
      return void res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
    }
    if (p === '/ui/api/explain') return this.explain(res, url);
    if (p === '/ui/api/routing') return this.routing(res, url);
    if (p === '/ui/api/events') return this.events(req, res);
    json(res, 404, {
      error: 'not found',
      paths: [
        '/ui',
        '/ui/api/state?from=<region>/<zone>',
        '/ui/api/explain?role=&service=&kind=&name=',
        '/ui/api/routing?service=',
        '/ui/api/events',
      ],
    });
  }

  /**
   * The state document as JSON text. The two big parts (topology, policy matrix) are pure functions of the mesh,
   * the policy, the vantage and the connected sidecars: they are serialized once per change and reused by every
   * page load and live refresh until then (one 1,000-service build costs a few hundred ms on a busy 2-core box).
   */
  async stateJson(from: string | null): Promise<string> {
    await this.sampleIfStale();
    const { cache, tracker } = this.opts;
    const mesh = cache.currentMesh;
    const proxies = tracker.list();
    const localities = localitiesKnown(mesh, proxies);
    const vantage = parseLocality(from) ?? defaultVantage(localities, proxies);
    const policy = this.opts.policy();
    const meshGen = generationOf(mesh);
    const routing = this.opts.routing?.services() ?? NO_ROUTING;
    const sidecars = proxies
      .filter((p) => p.proxy.role === 'sidecar')
      .map((p) => `${p.proxy.id}@${p.proxy.service}`)
      .sort()
      .join(',');
    const part = <K extends keyof ConsoleState>(k: K, v: ConsoleState[K]): string => `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    const memo = <K extends keyof ConsoleState>(k: K, key: string, build: () => ConsoleState[K]): string =>
      `${JSON.stringify(k)}:${this.memo(`${k}|${key}`, () => JSON.stringify(build()))}`;
    return `{${[
      part('generatedAt', new Date().toISOString()),
      part('vantage', vantage ?? null),
      part('localities', localities),
      memo('services', `${meshGen}|${generationOf(routing)}|${vantage ? `${vantage.region}/${vantage.zone}` : ''}|${sidecars}`, () =>
        servicesView(mesh, proxies, vantage, routing),
      ),
      part('gateways', gatewaysOf(proxies)),
      part('proxies', proxiesView(proxies, policy?.trustDomain)),
      memo('policy', `${meshGen}|${generationOf(policy)}`, () => policyView(policy, mesh)),
      part('decisions', this.decisions()),
      part('convergence', this.series()),
      part('health', this.health()),
      part('notes', NOTES),
    ].join(',')}}`;
  }

  private readonly memos = new Map<string, string>();

  private memo(key: string, build: () => string): string {
    let v = this.memos.get(key);
    if (v === undefined) {
      v = build();
      // A handful of vantages per mesh at most; an old mesh's entries are never asked for again.
      if (this.memos.size >= 8) this.memos.delete(this.memos.keys().next().value as string);
      this.memos.set(key, v);
    }
    return v;
  }

  // ---------------------------------------------------------------------------------------------- explain

  private async explain(res: http.ServerResponse, url: URL): Promise<void> {
    const q = (k: string): string => url.searchParams.get(k) ?? '';
    const policy = this.opts.policy();
    if (!policy) return json(res, 404, { error: 'the mesh is not secured (no policy): there is nothing to explain' });
    const [role, service, kind, name] = [q('role'), q('service'), q('kind'), q('name')];
    if (!policy.roles.some((r) => r.name === role))
      return json(res, 400, { error: `role ${JSON.stringify(role)} is not defined in the policy` });
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(service))
      return json(res, 400, { error: `${JSON.stringify(service)} is not a service name` });
    const method = ({ tool: 'tools/call', resource: 'resources/read', prompt: 'prompts/get' } as Record<string, string | undefined>)[kind];
    if (kind !== 'service' && (method === undefined || name === ''))
      return json(res, 400, { error: 'kind must be service, tool, resource or prompt (with a name)' });
    // A service the policy names but the mesh lacks is explained at the CLI's default revision.
    const protocol = this.opts.cache.currentMesh?.services.find((s) => s.name === service)?.protocol;
    const svcPolicy = policy.services.find((s) => s.service === service);
    const argv = [
      '--policy',
      '(the policy in force)',
      '--service',
      service,
      '--roles',
      role,
      ...(protocol ? ['--protocol', protocol] : []),
    ];
    // The caller carries the service's required scopes, like the matrix assumes: the cell is about roles.
    if (svcPolicy && svcPolicy.requiredScopes.length > 0) argv.push('--scopes', svcPolicy.requiredScopes.join(','));
    if (method !== undefined) {
      const param = kind === 'resource' ? 'uri' : 'name';
      argv.push('--body', JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { [param]: name } }));
      // What a client of this revision sends along: without them the answer would be about a malformed request.
      if (protocol && headerValidated(protocol))
        argv.push('--header', `Mcp-Method: ${method}`, '--header', `Mcp-Name: ${encodeMcpHeaderValue(name)}`);
    }
    let out = '';
    let err = '';
    const code = await policyExplainMain(argv, { out: (t) => void (out += t), err: (t) => void (err += t) }, compilePolicy(policy));
    json(res, 200, { allow: code === 0, exit: code, text: out + err });
  }

  /** Every knob of one service, as /debug/routing?service= answers (the page expands a service's routing with it). */
  private routing(res: http.ServerResponse, url: URL): void {
    const r = this.opts.routing?.debug(url.searchParams.get('service') ?? '') ?? { code: 404, body: { error: 'routing is not available' } };
    const body = r.body as { knobs?: KnobExplanation[] };
    json(res, r.code, body.knobs ? { ...body, knobs: body.knobs.map((k) => ({ ...k, ...knobView(k) })) } : body);
  }

  // ------------------------------------------------------------------------------------------------- live

  private events(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    this.clients.add(res);
    req.on('close', () => this.clients.delete(res));
  }

  /** Cheap: what would make the page differ (mesh object, streams and their versions, policy, errors, samples). */
  private fingerprint(): string {
    const { cache, tracker } = this.opts;
    const streams = tracker.list().map(
      (s) =>
        `${s.streamId}:${Object.entries(s.types)
          .map(([k, t]) => `${k}=${t?.sentVersion}/${t?.ackedVersion}/${t?.nackedVersion}/${t?.nacks}`)
          .join(',')}`,
    );
    const s = this.samples.at(-1);
    // Sample values, not times: an idle mesh must not make every open page refetch every few seconds.
    const figures = s ? [s.convergence.count, s.builds.count, s.rejected, [...s.byRule.values()].reduce((a, b) => a + b, 0)] : [];
    return JSON.stringify([
      generationOf(cache.currentMesh),
      generationOf(this.opts.routing?.services()),
      streams,
      generationOf(this.opts.policy()),
      this.opts.sourceErrors(),
      figures,
    ]);
  }

  private lastWrite = 0;

  private notify(): void {
    if (this.clients.size === 0) return;
    const f = this.fingerprint();
    const now = Date.now();
    if (f === this.lastFingerprint) {
      // A comment now and then, so proxies and load balancers do not cut an idle stream.
      if (now - this.lastWrite > 25_000) {
        this.lastWrite = now;
        for (const c of this.clients) c.write(': idle\n\n');
      }
      return;
    }
    this.lastFingerprint = f;
    this.lastWrite = now;
    for (const c of this.clients) c.write(`event: change\ndata: ${now}\n\n`);
  }

  // ---------------------------------------------------------------------------------------------- samples

  private lastSampleAt = 0;

  // A page load must not show figures from before the change it was told about.
  private async sampleIfStale(): Promise<void> {
    if (Date.now() - this.lastSampleAt > 200) await this.sample();
  }

  private sampling: Promise<void> | undefined;

  // One at a time, so samples stay in order when a page load and the timer meet.
  private sample(): Promise<void> {
    this.sampling ??= this.takeSample().finally(() => (this.sampling = undefined));
    return this.sampling;
  }

  private async takeSample(): Promise<void> {
    const now = Date.now();
    this.lastSampleAt = now;
    const m = this.opts.metrics;
    const hist = async (h: {
      get(): Promise<{ values: Array<{ metricName?: string; value: number }> }>;
    }): Promise<{ count: number; sum: number }> => {
      const v = (await h.get()).values;
      const total = (suffix: string): number => v.filter((x) => x.metricName?.endsWith(suffix)).reduce((a, x) => a + x.value, 0);
      return { count: total('_count'), sum: total('_sum') };
    };
    const counts = async (name: string, second: string): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      const counter = m.registry.getSingleMetric(name);
      if (!counter) return out;
      for (const v of (await counter.get()).values) {
        const l = v.labels as Record<string, string | number | undefined>;
        out.set(JSON.stringify([String(l['service'] ?? ''), String(l[second] ?? ''), String(l['decision'] ?? '')]), v.value);
      }
      return out;
    };
    const byRule = await counts('mcpmesh_authz_rule_decisions_total', 'rule');
    const byTool = await counts('mcpmesh_authz_decisions_total', 'tool');
    const rejected = (await m.snapshotsRejected.get()).values.reduce((a, v) => a + v.value, 0);
    const builds = await hist(m.snapshotBuild);
    if (builds.count > this.builds.count) {
      this.builds = { ...builds, lastMs: ((builds.sum - this.builds.sum) / (builds.count - this.builds.count)) * 1000 };
    }
    this.samples.push({ at: now, convergence: await hist(m.convergence), builds, rejected, byRule, byTool });
    while (this.samples.length > 2 && ((this.samples[0] as Sample).at < now - HISTORY_MS || this.samples.length > MAX_SAMPLES))
      this.samples.shift();
  }

  private series(): SeriesPoint[] {
    const out: SeriesPoint[] = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1] as Sample;
      const b = this.samples[i] as Sample;
      const rounds = b.convergence.count - a.convergence.count;
      out.push({
        at: new Date(b.at).toISOString(),
        rounds,
        meanMs: rounds > 0 ? ((b.convergence.sum - a.convergence.sum) / rounds) * 1000 : null,
      });
    }
    return out;
  }

  private decisions(): ConsoleState['decisions'] {
    const last = this.samples.at(-1);
    if (!last) return { byRule: [], byTool: [] };
    const base = this.samples.find((s) => s.at >= last.at - RECENT_MS) ?? last;
    const rows = (pick: (s: Sample) => ReadonlyMap<string, number>): DecisionRow[] =>
      [...pick(last).entries()]
        .map(([k, total]) => {
          const [service, by, decision] = JSON.parse(k) as [string, string, string];
          return { service, by, decision, total, recent: total - (base === last ? 0 : (pick(base).get(k) ?? 0)) };
        })
        .sort(
          (a, b) =>
            b.recent - a.recent ||
            b.total - a.total ||
            (`${a.service}|${a.by}|${a.decision}` < `${b.service}|${b.by}|${b.decision}` ? -1 : 1),
        );
    return { byRule: rows((s) => s.byRule), byTool: rows((s) => s.byTool) };
  }

  private health(): HealthView {
    const { cache, metrics } = this.opts;
    const errors = this.opts.sourceErrors();
    const last = this.samples.at(-1);
    // The control plane's own serving certificate, then the workloads' as the CA last signed them.
    const certs = [...(metrics.certificates?.() ?? []), ...(this.opts.workloadCertificates?.() ?? [])];
    return {
      ready: cache.ready,
      source: this.opts.sourceDescription(),
      sources: Object.keys(errors)
        .sort()
        .map((name) => ({ name, error: errors[name] ?? null })),
      snapshots: {
        builds: last?.builds.count ?? 0,
        rejected: last?.rejected ?? 0,
        meanMs: last && last.builds.count > 0 ? (last.builds.sum / last.builds.count) * 1000 : null,
        lastMs: this.builds.lastMs,
        keys: cache.size,
      },
      certificates: certs.map((c) => ({ identity: c.identity, notAfter: c.notAfter.toISOString() })),
      ca: metrics.caNotAfter ? { notAfter: metrics.caNotAfter.toISOString() } : null,
    };
  }

  close(): void {
    clearInterval(this.sampler);
    clearInterval(this.ticker);
    for (const c of this.clients) c.end();
    this.clients.clear();
  }
}

// Object identities as small numbers: a new mesh or policy object means a publish or a reload happened.
const generations = new WeakMap<object, number>();
let nextGeneration = 1;
function generationOf(o: object | null | undefined): number {
  if (!o) return 0;
  let g = generations.get(o);
  if (g === undefined) generations.set(o, (g = nextGeneration++));
  return g;
}
