// The Grafana dashboards (deploy/grafana/dashboards/*.json) and the alert rules are written against the metrics
// catalogue: every dashboard parses and provisions cleanly (stable uid, datasource variable, unique panel ids),
// every mcpmesh_* metric (and label) a dashboard or alert uses is in docs/metrics.md, every envoy_* metric is one
// Envoy documents, and every PromQL expression (template variables filled in) parses: promtool checks them all.
//
// Needs promtool from Debian's `prometheus` package on PATH (.ci/run installs it); without it the two promtool tests
// are reported as skipped, naming the install command, and the other checks still run.
import { AUTHZ_CLUSTER, serviceCluster, statName } from '../../control-plane/src/translate/naming.ts';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { findTool, INSTALL, skipUnless } from '../helpers/tools.ts';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';

// biome-ignore lint/suspicious/noTemplateCurlyInString: `${datasource}` is Grafana's template variable, written literally in the dashboard JSON.
const PROMETHEUS_DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARDS = path.join(ROOT, 'deploy/grafana/dashboards');
const CATALOGUE = path.join(ROOT, 'docs/metrics.md');
const RULES = path.join(ROOT, 'deploy/prometheus/alerts.yml');

/** The dashboards and their uids: links and bookmarks use the uid, so it never changes. */
const EXPECTED: Record<string, string> = {
  'mcpmesh-overview.json': 'mcpmesh-overview',
  'mcpmesh-services.json': 'mcpmesh-services',
  'mcpmesh-control-plane.json': 'mcpmesh-control-plane',
};

/**
 * Envoy statistics the dashboards and alerts may use, in the form Envoy's /stats/prometheus prints them with its
 * default tag extraction (cluster name, response code class and HCM stat prefix become labels). From Envoy's docs:
 * cluster manager statistics (upstream_*, membership_*, outlier_detection.*), HTTP connection manager statistics
 * (downstream_rq_*), the RBAC and ext_authz filters' statistics, and the management server's control_plane.*.
 * A name outside this list is most likely a typo that would leave a panel empty or an alert silent.
 */
const ENVOY_METRICS = new Set([
  'envoy_cluster_upstream_rq_total',
  'envoy_cluster_upstream_rq_xx',
  'envoy_cluster_upstream_rq_time_bucket',
  'envoy_cluster_upstream_rq_active',
  'envoy_cluster_upstream_rq_retry',
  'envoy_cluster_upstream_rq_timeout',
  'envoy_cluster_upstream_cx_connect_fail',
  'envoy_cluster_membership_healthy',
  'envoy_cluster_membership_total',
  'envoy_cluster_outlier_detection_ejections_active',
  'envoy_cluster_outlier_detection_ejections_enforced_total',
  'envoy_http_downstream_rq_total',
  'envoy_http_downstream_rq_xx',
  'envoy_http_downstream_rq_time_bucket',
  // Virtual cluster (per MCP method) stats of the router filter.
  'envoy_vhost_vcluster_upstream_rq_total',
  'envoy_vhost_vcluster_upstream_rq_time_bucket',
  'envoy_http_rbac_denied',
  'envoy_http_ext_authz_denied',
  'envoy_control_plane_connected_state',
  'envoy_server_live',
]);
/** Labels that come from Envoy's tag extraction or from our scrape configs (deploy/prometheus/prometheus.yml). */
const ENVOY_LABELS = new Set([
  'envoy_cluster_name',
  'envoy_response_code_class',
  'envoy_http_conn_manager_prefix',
  'envoy_virtual_host',
  'envoy_virtual_cluster',
]);
const TARGET_LABELS = new Set(['job', 'instance', 'le', 'mcpmesh_role', 'mcpmesh_node', 'mcpmesh_service', 'mcpmesh_zone']);
/** Grafana's built-in variables and the values they are checked with. */
const BUILTIN_VARS: Record<string, string> = { __rate_interval: '1m', __interval: '1m', __range: '1h' };

// ------------------------------------------------------------------------------------------ helpers

const skipPromtool = skipUnless('promtool', INSTALL.prometheus);

function promtool(): string {
  return findTool('promtool') ?? assert.fail(`promtool not found on PATH: ${INSTALL.prometheus}`);
}

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query?: string };
  regex?: string;
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  tags?: string[];
  panels?: Panel[];
  templating?: { list?: Variable[] };
}

function load(file: string): Dashboard {
  return JSON.parse(readFileSync(path.join(DASHBOARDS, file), 'utf8')) as Dashboard;
}

/** Every panel, including the ones inside (collapsed) rows. */
function allPanels(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (ps: Panel[] | undefined) => {
    for (const p of ps ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(d.panels);
  return out;
}

interface Expr {
  where: string;
  expr: string;
}

/** PromQL expressions of a dashboard: panel targets, and the PromQL inside query variables. */
function expressions(file: string, d: Dashboard): Expr[] {
  const out: Expr[] = [];
  for (const p of allPanels(d)) {
    for (const t of p.targets ?? []) {
      if (t.expr !== undefined) out.push({ where: `${file} panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr });
    }
  }
  for (const v of d.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    out.push({ where: `${file} variable $${v.name}`, expr: variablePromQL(q, `${file} $${v.name}`) });
  }
  return out;
}

/** Grafana's Prometheus variable queries: label_values(expr, label), query_result(expr), or plain PromQL. */
function variablePromQL(q: string, where: string): string {
  const lv = /^\s*label_values\(\s*(.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/s.exec(q);
  if (lv) return lv[1] ?? '';
  const qr = /^\s*query_result\((.*)\)\s*$/s.exec(q);
  if (qr) return qr[1] ?? '';
  assert.doesNotMatch(q, /^\s*(label_names|label_values|metrics)\(/, `${where}: unsupported variable query ${q}`);
  return q;
}

/** Fills in $var, ${var}, ${var:format} and [[var]]; an unknown variable fails the test. */
function substitute(e: Expr, vars: Record<string, string>): string {
  return e.expr.replace(/\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (_m, a?: string, b?: string, c?: string) => {
    const name = a ?? b ?? c ?? '';
    const v = vars[name];
    assert.ok(v !== undefined, `${e.where}: uses $${name}, which is neither a dashboard variable nor a Grafana built-in`);
    return v;
  });
}

const STRING = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g;
const GROUPING = /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g;

/** Metric names (identifiers used as series selectors) in a PromQL expression. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(STRING, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(GROUPING, '')
    .replace(/\[[^\]]*\]/g, '[]');
  const names = new Set<string>();
  for (const m of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    const next = bare.slice((m.index ?? 0) + id.length).trimStart();
    if (next.startsWith('(')) continue; // a function call
    names.add(id);
  }
  return [...names];
}

/** [metric, label] pairs from selectors such as metric{label="x"}, and the labels of by()/without()/on() clauses. */
function labelUses(expr: string): { selectors: [string, string][]; grouping: string[] } {
  const selectors: [string, string][] = [];
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{((?:[^}"'`]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)*)\}/g)) {
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) selectors.push([m[1] ?? '', l[1] ?? '']);
  }
  const grouping: string[] = [];
  for (const g of expr.replace(STRING, '""').matchAll(GROUPING)) {
    for (const l of (g[1] ?? '').split(',')) if (l.trim()) grouping.push(l.trim());
  }
  return { selectors, grouping };
}

interface CatalogueEntry {
  type: string;
  labels: string[];
}

/**
 * docs/metrics.md: table rows beginning "| `mcpmesh_<name>` |" (then type and labels columns), plus the process
 * metrics, which the catalogue names in its prose (`mcpmesh_process_...`, `mcpmesh_nodejs_...`).
 */
function readCatalogue(): Map<string, CatalogueEntry> {
  assert.ok(existsSync(CATALOGUE), `${CATALOGUE} is missing: it is the metrics catalogue dashboards and alerts are checked against`);
  const md = readFileSync(CATALOGUE, 'utf8');
  const out = new Map<string, CatalogueEntry>();
  for (const line of md.split('\n')) {
    const m = /^\|\s*((?:`mcpmesh_[a-z0-9_]+`[\s,]*)+)\|([^|]*)\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const type = (m[2] ?? '').trim().split(/\s/)[0] ?? '';
    const labels = [...(m[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((l) => l[1] ?? '');
    for (const n of (m[1] ?? '').matchAll(/`(mcpmesh_[a-z0-9_]+)`/g)) out.set(n[1] ?? '', { type, labels });
  }
  for (const n of md.matchAll(/`(mcpmesh_(?:process|nodejs)_[a-z0-9_]*[a-z0-9])`/g))
    if (!out.has(n[1] ?? '')) out.set(n[1] ?? '', { type: '', labels: [] });
  return out;
}

/** The catalogue entry for a metric name as used in PromQL (histogram series carry _bucket/_sum/_count). */
function lookup(cat: Map<string, CatalogueEntry>, name: string): CatalogueEntry | undefined {
  const direct = cat.get(name);
  if (direct) return direct;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m ? cat.get(m[1] ?? '') : undefined;
  if (base && (base.type === 'histogram' || base.type === 'summary' || base.type === '')) {
    return m?.[2] === 'bucket' ? { ...base, labels: [...base.labels, 'le'] } : base;
  }
  return undefined;
}

/** Problems with the metric names and labels of one expression (empty when it only uses documented ones). */
function catalogueProblems(cat: Map<string, CatalogueEntry>, e: Expr): string[] {
  const problems: string[] = [];
  const names = metricNames(e.expr);
  const documentedLabels = new Set<string>();
  for (const n of names) {
    if (n.startsWith('mcpmesh_')) {
      const entry = lookup(cat, n);
      if (!entry) problems.push(`${e.where}: ${n} is not in docs/metrics.md`);
      else for (const l of entry.labels) documentedLabels.add(l);
    } else if (n.startsWith('envoy_') && !ENVOY_METRICS.has(n)) {
      problems.push(`${e.where}: ${n} is not an Envoy statistic this repo knows (typo?)`);
    }
  }
  const { selectors, grouping } = labelUses(e.expr);
  for (const [metric, label] of selectors) {
    if (!metric.startsWith('mcpmesh_') || TARGET_LABELS.has(label)) continue;
    const entry = lookup(cat, metric);
    if (entry && !entry.labels.includes(label))
      problems.push(`${e.where}: ${metric} has no label "${label}" (docs/metrics.md: ${entry.labels.join(', ') || 'none'})`);
  }
  for (const label of grouping) {
    if (TARGET_LABELS.has(label) || ENVOY_LABELS.has(label) || documentedLabels.has(label)) continue;
    problems.push(`${e.where}: groups by "${label}", which none of its metrics has`);
  }
  return problems;
}

/** Runs every expression through `promtool check rules` as a recording rule; returns promtool's result. */
function promtoolCheck(dir: string, exprs: Expr[], name: string): { code: number | null; out: string } {
  const file = path.join(dir, `${name}.rules.yml`);
  // JSON is YAML: no quoting problems with PromQL's quotes and backslashes.
  const groups = exprs.map((e, i) => ({ name: `${i} ${e.where}`, rules: [{ record: `dashboard_expression_${i}`, expr: e.expr }] }));
  writeFileSync(file, JSON.stringify({ groups }, null, 1));
  const r = spawnSync(promtool(), ['check', 'rules', file], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function alertExpressions(): Expr[] {
  const file = parseYaml(readFileSync(RULES, 'utf8')) as {
    groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
  };
  return file.groups.flatMap((g) => g.rules.map((r) => ({ where: `alerts.yml ${r.alert ?? r.record}`, expr: r.expr })));
}

// ------------------------------------------------------------------------------------------ tests

describe('Grafana dashboards', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-dashboards-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('are exactly the expected files, each with its stable uid, a title, tags and schemaVersion 39', () => {
    const files = readdirSync(DASHBOARDS)
      .filter((f) => f.endsWith('.json'))
      .sort();
    assert.deepEqual(files, Object.keys(EXPECTED).sort());
    const titles = new Set<string>();
    for (const f of files) {
      const d = load(f);
      assert.equal(d.uid, EXPECTED[f], `${f}: uid`);
      assert.match(d.uid ?? '', /^[a-zA-Z0-9_-]{1,40}$/, `${f}: Grafana uids are at most 40 of [a-zA-Z0-9_-]`);
      assert.ok(typeof d.title === 'string' && d.title.startsWith('MCP Mesh'), `${f}: title ${d.title}`);
      assert.ok(!titles.has(d.title), `${f}: duplicate title`);
      titles.add(d.title);
      assert.equal(d.schemaVersion, 39, `${f}: schemaVersion`);
      assert.ok(d.tags?.includes('mcpmesh'), `${f}: tag mcpmesh`);
    }
  });

  it('provision cleanly: a Prometheus datasource variable that every panel and query uses', () => {
    for (const f of Object.keys(EXPECTED)) {
      const d = load(f);
      const ds = d.templating?.list?.find((v) => v.name === 'datasource');
      assert.ok(ds, `${f}: no "datasource" variable`);
      assert.equal(ds.type, 'datasource');
      assert.equal(ds.query, 'prometheus');
      const json = JSON.stringify(d);
      assert.doesNotMatch(json, /\$\{DS_[A-Z_]+\}/, `${f}: import-only \${DS_...} placeholders do not resolve when provisioned`);
      for (const p of allPanels(d)) {
        if (p.type === 'row') continue;
        assert.deepEqual(p.datasource, PROMETHEUS_DATASOURCE, `${f} panel ${p.id} "${p.title}": datasource`);
        assert.ok((p.targets ?? []).length > 0, `${f} panel ${p.id} "${p.title}": no queries`);
        for (const t of p.targets ?? []) assert.deepEqual(t.datasource, PROMETHEUS_DATASOURCE, `${f} panel ${p.id} ${t.refId}: datasource`);
      }
      for (const v of d.templating?.list ?? []) {
        if (v.type === 'query') assert.deepEqual(v.datasource, PROMETHEUS_DATASOURCE, `${f} $${v.name}: datasource`);
      }
    }
  });

  it('have unique panel ids, unique refIds per panel, and panels that fit the 24-column grid without overlapping', () => {
    for (const f of Object.keys(EXPECTED)) {
      const panels = allPanels(load(f));
      assert.ok(panels.length >= 8, `${f}: only ${panels.length} panels`);
      const ids = panels.map((p) => p.id);
      for (const id of ids) assert.ok(Number.isInteger(id) && (id ?? 0) > 0, `${f}: panel id ${id}`);
      assert.equal(new Set(ids).size, ids.length, `${f}: duplicate panel ids ${ids.join(',')}`);
      const boxes: { id: number | undefined; h: number; w: number; x: number; y: number }[] = [];
      for (const p of panels) {
        assert.ok(p.title, `${f} panel ${p.id}: no title`);
        const refs = (p.targets ?? []).map((t) => t.refId);
        assert.equal(new Set(refs).size, refs.length, `${f} panel ${p.id}: duplicate refIds`);
        const g = p.gridPos;
        assert.ok(g, `${f} panel ${p.id}: no gridPos`);
        assert.ok(g.w >= 1 && g.x >= 0 && g.x + g.w <= 24 && g.h >= 1 && g.y >= 0, `${f} panel ${p.id}: gridPos ${JSON.stringify(g)}`);
        for (const b of boxes) {
          const overlap = g.x < b.x + b.w && b.x < g.x + g.w && g.y < b.y + b.h && b.y < g.y + g.h;
          assert.ok(!overlap, `${f}: panels ${b.id} and ${p.id} overlap`);
        }
        boxes.push({ id: p.id, ...g });
      }
    }
  });

  it('the services dashboard has a $service variable over the stat names of mcp.<service> clusters, used by its panels', () => {
    const d = load('mcpmesh-services.json');
    const v = d.templating?.list?.find((x) => x.name === 'service');
    assert.ok(v, 'no $service variable');
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    assert.match(q, /label_values\(.*envoy_cluster_name=~"mcp_\.\+".*,\s*envoy_cluster_name\)/);
    const re = /^\/(.*)\/$/.exec(v.regex ?? '');
    assert.ok(re, `regex ${v.regex}`);
    const rx = new RegExp(re[1] ?? '');
    // What Envoy reports for the clusters the naming module generates.
    assert.equal(rx.exec(statName(serviceCluster('weather')))?.[1], 'weather');
    assert.equal(rx.exec(statName(AUTHZ_CLUSTER)), null);
    const uses = expressions('mcpmesh-services.json', d).filter((e) => e.expr.includes('$service'));
    assert.ok(uses.length >= 10, `only ${uses.length} expressions use $service`);
    assert.ok(
      uses.some((e) => /mcpmesh_authz_decisions_total\{service=~"\$service"/.test(e.expr)),
      'authorizer decisions are not filtered by $service',
    );
    assert.ok(
      uses.some((e) => /sum by \(service, tool, decision\)/.test(e.expr)),
      'no authorizer decisions by tool and decision',
    );
  });

  it("use only metrics (and labels) from docs/metrics.md and Envoy's documented stats; alerts.yml too", () => {
    const cat = readCatalogue();
    assert.ok(cat.size >= 25, `parsed only ${cat.size} metrics from docs/metrics.md: did its table format change?`);
    const problems: string[] = [];
    const used = new Set<string>();
    const all = [...Object.keys(EXPECTED).flatMap((f) => expressions(f, load(f))), ...alertExpressions()];
    for (const e of all) {
      problems.push(...catalogueProblems(cat, e));
      for (const n of metricNames(e.expr)) used.add(n);
    }
    assert.deepEqual(problems, []);
    // The checker itself sees what it should (so an empty problem list means something).
    for (const n of [
      'mcpmesh_xds_connected_proxies',
      'mcpmesh_convergence_seconds_bucket',
      'mcpmesh_authz_decisions_total',
      'envoy_cluster_upstream_rq_total',
    ]) {
      assert.ok(used.has(n), `${n} not found in any expression`);
    }
    const fake = {
      where: 'self-check',
      expr: 'sum by (flavour) (rate(mcpmesh_xds_pushes_totl{typ="cluster"}[5m])) + envoy_cluster_upstream_rq_totl + mcpmesh_xds_pushes_total{flavour="x"}',
    };
    assert.deepEqual(catalogueProblems(cat, fake), [
      'self-check: mcpmesh_xds_pushes_totl is not in docs/metrics.md',
      'self-check: envoy_cluster_upstream_rq_totl is not an Envoy statistic this repo knows (typo?)',
      'self-check: mcpmesh_xds_pushes_total has no label "flavour" (docs/metrics.md: type, mode)',
      'self-check: groups by "flavour", which none of its metrics has',
    ]);
  });

  it('every expression is valid PromQL (promtool check rules, template variables filled in)', { skip: skipPromtool }, () => {
    const exprs: Expr[] = [];
    for (const f of Object.keys(EXPECTED)) {
      const d = load(f);
      const vars: Record<string, string> = { ...BUILTIN_VARS };
      for (const v of d.templating?.list ?? []) if (v.type !== 'datasource') vars[v.name] = 'example';
      for (const e of expressions(f, d)) exprs.push({ where: e.where, expr: substitute(e, vars) });
    }
    assert.ok(exprs.length >= 60, `only ${exprs.length} expressions`);
    for (const e of exprs) assert.ok(e.expr.trim().length > 0, `${e.where}: empty expression`);
    const r = promtoolCheck(dir, exprs, 'dashboards');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`SUCCESS: ${exprs.length} rules found`), r.out);
  });

  it('the PromQL check fails on broken expressions and unknown variables (it can fail)', { skip: skipPromtool }, () => {
    for (const expr of [
      'sum(rate(mcpmesh_xds_pushes_total[1m])',
      'rate(mcpmesh_xds_pushes_total)',
      'sum by (type) mcpmesh_xds_pushes_total',
    ]) {
      const r = promtoolCheck(dir, [{ where: 'broken', expr }], 'broken');
      assert.notEqual(r.code, 0, `promtool accepted ${expr}`);
      assert.match(r.out, /FAILED/, r.out);
    }
    assert.throws(
      () => substitute({ where: 'x', expr: 'rate(mcpmesh_xds_pushes_total[$__rate_intervl])' }, BUILTIN_VARS),
      /\$__rate_intervl/,
    );
  });
});
