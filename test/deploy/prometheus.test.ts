// The alert rules (deploy/prometheus/alerts.yml): promtool accepts them and passes their unit tests, every alert
// is documented and unit-tested both ways, and a real Prometheus scraping a real control plane sees its metrics,
// loads the rules, keeps quiet while the mesh is healthy, runs every dashboard query, and fires on a real invalid
// registry edit.
//
// Needs Debian's `prometheus` package (prometheus and promtool on PATH; .ci/run installs it, so CI runs them all).
// Without it the promtool and real-Prometheus tests are reported as skipped, naming the install command; the
// conventions and coverage checks still run.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { startControlPlane, type TestControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';
import { findTool, INSTALL, skipUnless } from '../helpers/tools.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES = path.join(ROOT, 'deploy/prometheus/alerts.yml');
const RULE_TESTS = path.join(ROOT, 'deploy/prometheus/alerts.test.yml');
const EXAMPLE_CONFIG = path.join(ROOT, 'deploy/prometheus/prometheus.yml');

const skipPromtool = skipUnless('promtool', INSTALL.prometheus);
const skipPrometheus = skipUnless('prometheus', INSTALL.prometheus);

function binary(name: 'prometheus' | 'promtool'): string {
  return findTool(name) ?? assert.fail(`${name} not found on PATH: ${INSTALL.prometheus}`);
}

function run(bin: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface RuleTestFile {
  rule_files: string[];
  tests: { name?: string; alert_rule_test?: { eval_time: string; alertname: string; exp_alerts?: unknown[] }[] }[];
}

const ruleFile = (): RuleFile => parseYaml(readFileSync(RULES, 'utf8')) as RuleFile;
const alerts = (): Rule[] =>
  ruleFile()
    .groups.flatMap((g) => g.rules)
    .filter((r) => r.alert !== undefined);

// ------------------------------------------------------------------------------------------ promtool

describe('alert rules: promtool', () => {
  let promtool: string;
  let dir: string;
  before(() => {
    if (skipPromtool) return;
    promtool = binary('promtool');
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-promtool-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('promtool check rules accepts alerts.yml (every rule counted)', { skip: skipPromtool }, () => {
    const n = ruleFile().groups.reduce((k, g) => k + g.rules.length, 0);
    assert.ok(n >= 15, `only ${n} rules in alerts.yml`);
    const r = run(promtool, ['check', 'rules', RULES]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`SUCCESS: ${n} rules found`), r.out);
  });

  it('promtool test rules passes alerts.test.yml', { skip: skipPromtool }, () => {
    const r = run(promtool, ['test', 'rules', RULE_TESTS]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/, r.out);
    assert.doesNotMatch(r.out, /FAILED/, r.out);
  });

  it('rejects a broken rules file (the check can fail)', { skip: skipPromtool }, () => {
    const bad = path.join(dir, 'broken.yml');
    writeFileSync(
      bad,
      [
        'groups:',
        '  - name: mcpmesh.broken',
        '    rules:',
        '      - alert: Unbalanced',
        '        expr: sum(rate(mcpmesh_xds_nacks_total[5m])',
        '        labels: { severity: warning }',
        '',
      ].join('\n'),
    );
    const r = run(promtool, ['check', 'rules', bad]);
    assert.notEqual(r.code, 0, `promtool accepted a broken expression:\n${r.out}`);
    assert.match(r.out, /FAILED/, r.out);
    assert.match(r.out, /parse error|unclosed|unexpected/i, r.out);
  });

  it('fails a rules unit test whose expectation is wrong (the unit tests can fail)', { skip: skipPromtool }, () => {
    const t = path.join(dir, 'wrong.test.yml');
    writeFileSync(
      t,
      [
        `rule_files: [${JSON.stringify(RULES)}]`,
        'evaluation_interval: 1m',
        'tests:',
        '  - interval: 1m',
        '    input_series:',
        '      - series: \'up{job="mcpmesh-control-plane", instance="cp:18001"}\'',
        "        values: '1x10'",
        '    alert_rule_test:',
        '      - eval_time: 5m',
        '        alertname: McpMeshControlPlaneDown',
        '        exp_alerts:',
        '          - exp_labels: { severity: critical, job: mcpmesh-control-plane, instance: "cp:18001" }',
        '',
      ].join('\n'),
    );
    const r = run(promtool, ['test', 'rules', t]);
    assert.notEqual(r.code, 0, `a healthy control plane "fired" McpMeshControlPlaneDown:\n${r.out}`);
    assert.match(r.out, /FAILED/, r.out);
  });

  it('the example prometheus.yml is valid and loads alerts.yml', { skip: skipPromtool }, () => {
    const r = run(promtool, ['check', 'config', EXAMPLE_CONFIG]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: 1 rule files found/, r.out);
    const cfg = parseYaml(readFileSync(EXAMPLE_CONFIG, 'utf8')) as { scrape_configs: { job_name: string; metrics_path?: string }[] };
    const jobs = Object.fromEntries(cfg.scrape_configs.map((j) => [j.job_name, j.metrics_path]));
    assert.deepEqual(jobs, { 'mcpmesh-control-plane': '/metrics', 'mcpmesh-envoy': '/stats/prometheus' });
  });
});

describe('alert rules: conventions and coverage', () => {
  it('groups are named mcpmesh.*, alerts are unique, and each has a severity, summary, description and runbook', () => {
    const file = ruleFile();
    for (const g of file.groups) assert.match(g.name, /^mcpmesh[.-]/, `group ${g.name}`);
    const names = alerts().map((a) => a.alert);
    assert.equal(new Set(names).size, names.length, `duplicate alert names: ${names.join(', ')}`);
    for (const a of alerts()) {
      assert.match(a.alert ?? '', /^McpMesh[A-Z]\w+$/, `alert name ${a.alert}`);
      assert.ok(
        ['critical', 'warning', 'info'].includes(a.labels?.['severity'] ?? ''),
        `${a.alert}: severity label is ${a.labels?.['severity']}`,
      );
      for (const k of ['summary', 'description', 'runbook']) {
        assert.ok((a.annotations?.[k] ?? '').trim().length > 10, `${a.alert}: annotation ${k} missing or empty`);
      }
    }
  });

  it('covers what the mesh needs alerting on', () => {
    const exprs = new Map(alerts().map((a) => [a.alert ?? '', a.expr]));
    const expect: [string, RegExp][] = [
      ['McpMeshControlPlaneDown', /up\{job="mcpmesh-control-plane"\} == 0/],
      ['McpMeshControlPlaneAbsent', /absent\(up\{job="mcpmesh-control-plane"\}\)/],
      ['McpMeshProxyRejectingConfig', /mcpmesh_xds_proxy_nacked/],
      ['McpMeshXdsNacks', /mcpmesh_xds_nacks_total/],
      ['McpMeshConvergenceSlow', /histogram_quantile\(0\.99,.*mcpmesh_convergence_seconds_bucket\[10m\].*> 1\b/s],
      ['McpMeshConvergenceTimeouts', /mcpmesh_convergence_timeouts_total/],
      ['McpMeshEndpointsEjected', /envoy_cluster_outlier_detection_ejections_active\{[^}]*envoy_cluster_name=~"mcp_\.\+"/],
      ['McpMeshCertificateExpiringSoon', /mcpmesh_certificate_expiry_timestamp_seconds - time\(\)\) < 3600/],
      ['McpMeshCAExpiringSoon', /mcpmesh_ca_expiry_timestamp_seconds.*< 30 \* 86400/],
      ['McpMeshAuthorizerDenialSpike', /decision="deny"/],
      ['McpMeshConsulWatchStale', /mcpmesh_consul_watch_lag_seconds/],
      ['McpMeshConsulWatchFailing', /mcpmesh_consul_watch_errors_total/],
      ['McpMeshSourceFailing', /mcpmesh_source_up == 0/],
      ['McpMeshSnapshotRejected', /mcpmesh_snapshot_rejected_total/],
      ['McpMeshEnvoyDisconnected', /envoy_control_plane_connected_state\{job="mcpmesh-envoy"\} == 0/],
    ];
    for (const [name, re] of expect) {
      const e = exprs.get(name);
      assert.ok(e !== undefined, `alert ${name} missing`);
      assert.match(e, re, name);
    }
  });

  it('every alert has a unit test where it fires and one where it must not', () => {
    const tests = parseYaml(readFileSync(RULE_TESTS, 'utf8')) as RuleTestFile;
    assert.deepEqual(tests.rule_files, ['alerts.yml']);
    const fires = new Set<string>();
    const quiet = new Set<string>();
    for (const t of tests.tests) {
      for (const a of t.alert_rule_test ?? []) ((a.exp_alerts ?? []).length > 0 ? fires : quiet).add(a.alertname);
    }
    const names = alerts().map((a) => a.alert ?? '');
    assert.deepEqual(
      names.filter((n) => !fires.has(n)),
      [],
      'alerts without a firing case',
    );
    assert.deepEqual(
      names.filter((n) => !quiet.has(n)),
      [],
      'alerts without a not-firing case',
    );
    const unknown = [...fires, ...quiet].filter((n) => !names.includes(n));
    assert.deepEqual(unknown, [], 'unit tests for alerts that do not exist');
  });
});

// ------------------------------------------------------------------------------------------ real Prometheus

function registry(services: string[]): string {
  return `services:\n${services.map((s, i) => `  - name: ${s}\n    protocol: "2025-11-25"\n    endpoints:\n      - { address: 127.0.0.1, port: ${7001 + i}, locality: { region: eu-west, zone: a } }\n`).join('')}`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}
interface PromAlert {
  labels: Record<string, string>;
  state: string;
}
interface DashPanel {
  title?: string;
  targets?: { expr?: string; refId?: string }[];
  panels?: DashPanel[];
}

describe('a real Prometheus scraping a real control plane with alerts.yml loaded', () => {
  let tcp: TestControlPlane;
  let prom: ChildProcess | undefined;
  let promLog = '';
  let base = '';
  let dir = '';

  const api = async <T>(p: string): Promise<T> => {
    const res = await fetch(`${base}${p}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${p}: ${body.error ?? res.status}`);
    return body.data;
  };
  const query = (q: string) =>
    api<{ resultType: string; result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(q)}`).then((d) => d.result);
  const logTail = () => promLog.split('\n').slice(-15).join('\n');

  before(async () => {
    if (skipPrometheus) return;
    const bin = binary('prometheus');
    tcp = await startControlPlane(registry(['weather', 'inventory']));
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-prometheus-'));
    mkdirSync(path.join(dir, 'data'));
    writeFileSync(
      path.join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
        `rule_files: [${JSON.stringify(RULES)}]`,
        'scrape_configs:',
        '  - job_name: mcpmesh-control-plane',
        '    metrics_path: /metrics',
        `    static_configs: [{ targets: ["127.0.0.1:${tcp.cp.adminPort}"] }]`,
        '',
      ].join('\n'),
    );
    // The free port can be taken between probing and binding: retry with another one.
    for (let attempt = 0; attempt < 3 && !base; attempt++) {
      const port = await freePort();
      promLog = '';
      const child = spawn(
        bin,
        [
          `--config.file=${path.join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=info',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      prom = child;
      child.stdout?.on('data', (d: Buffer) => (promLog += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (promLog += d.toString()));
      let exited = false;
      child.once('exit', () => (exited = true));
      try {
        await waitFor(
          'Prometheus to be ready',
          async () => {
            if (exited) throw new Error(`prometheus exited:\n${logTail()}`);
            const res = await fetch(`http://127.0.0.1:${port}/-/ready`);
            return res.status === 200;
          },
          20_000,
          100,
        );
        base = `http://127.0.0.1:${port}`;
      } catch (err) {
        if (!exited || attempt === 2) throw err;
      }
    }
  });

  after(async () => {
    const child = prom;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    await tcp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let firstScrapeAt = 0;

  it("scrapes the control plane: up == 1 and mcpmesh_mesh_services == 2 (the registry's services)", { skip: skipPrometheus }, async () => {
    const up = await waitFor(
      'up{job="mcpmesh-control-plane"} == 1',
      async () => {
        const r = await query('up{job="mcpmesh-control-plane"}');
        return r.length === 1 && r[0]?.value[1] === '1' ? r[0] : undefined;
      },
      20_000,
      200,
    ).catch((err: Error) => assert.fail(`${err.message}\nprometheus log:\n${logTail()}`));
    assert.equal(up.metric['instance'], `127.0.0.1:${tcp.cp.adminPort}`);
    firstScrapeAt = up.value[0];
    const services = await query('mcpmesh_mesh_services');
    assert.equal(services.length, 1, JSON.stringify(services));
    assert.equal(services[0]?.value[1], '2');
    assert.equal(services[0]?.metric['job'], 'mcpmesh-control-plane');
    const endpoints = await query('sum(mcpmesh_mesh_endpoints{health="healthy"})');
    assert.equal(endpoints[0]?.value[1], '2');
  });

  it('loaded every rule group and alert of alerts.yml', { skip: skipPrometheus }, async () => {
    const data = await api<{
      groups: { name: string; file: string; rules: { name: string; type: string; health: string; lastError?: string }[] }[];
    }>('/api/v1/rules');
    const want = ruleFile().groups;
    assert.deepEqual(data.groups.map((g) => g.name).sort(), want.map((g) => g.name).sort());
    for (const g of data.groups) {
      assert.equal(g.file, RULES);
      assert.deepEqual(
        g.rules.map((r) => r.name),
        want.find((w) => w.name === g.name)?.rules.map((r) => r.alert ?? r.record),
      );
    }
    // Every rule evaluates without error against real data.
    await waitFor(
      'every rule to have been evaluated without error',
      async () => {
        const d = await api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules');
        const rules = d.groups.flatMap((g) => g.rules);
        const bad = rules.filter((r) => r.health === 'err');
        if (bad.length) assert.fail(`rules failing: ${JSON.stringify(bad.map((r) => [r.name, r.lastError]))}`);
        return rules.every((r) => r.health === 'ok');
      },
      15_000,
      200,
    );
  });

  it('keeps every alert quiet (not even pending) for a healthy control plane', { skip: skipPrometheus }, async () => {
    assert.ok(firstScrapeAt > 0, 'the first test did not see a scrape');
    // Wait until every group has been evaluated on data that includes the control plane's first scrape.
    await waitFor(
      'a rule evaluation after the first scrape',
      async () => {
        const d = await api<{ groups: { name: string; lastEvaluation: string }[] }>('/api/v1/rules');
        return d.groups.every((g) => Date.parse(g.lastEvaluation) / 1000 > firstScrapeAt + 1);
      },
      15_000,
      200,
    );
    const { alerts: active } = await api<{ alerts: PromAlert[] }>('/api/v1/alerts');
    assert.deepEqual(
      active.map((a) => `${a.labels['alertname']} (${a.state})`),
      [],
    );
  });

  it('follows a registry change: mcpmesh_mesh_services goes to 3', { skip: skipPrometheus }, async () => {
    tcp.writeRegistry(registry(['weather', 'inventory', 'calendar']));
    await waitFor(
      'mcpmesh_mesh_services == 3 in Prometheus',
      async () => {
        const r = await query('mcpmesh_mesh_services');
        return r[0]?.value[1] === '3';
      },
      20_000,
      200,
    );
  });

  it("runs every Grafana dashboard query without error, and the mesh panels show the control plane's data", {
    skip: skipPrometheus,
  }, async () => {
    const dir = path.join(ROOT, 'deploy/grafana/dashboards');
    const vars: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '1h', service: 'weather', instance: '.+' };
    const queries: { where: string; expr: string }[] = [];
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) {
      const d = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { panels: DashPanel[] };
      const walk = (ps: DashPanel[]) => {
        for (const p of ps) {
          for (const t of p.targets ?? []) {
            if (t.expr)
              queries.push({
                where: `${f} "${p.title}" ${t.refId}`,
                expr: t.expr.replace(/\$\{?(\w+)\}?/g, (_m, v: string) => vars[v] ?? assert.fail(`${f}: unknown variable $${v}`)),
              });
          }
          walk(p.panels ?? []);
        }
      };
      walk(d.panels);
    }
    assert.ok(queries.length >= 60, `only ${queries.length} queries`);
    const failed: string[] = [];
    for (const q of queries) {
      const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q.expr)}`);
      const body = (await res.json()) as { status: string; error?: string };
      if (body.status !== 'success') failed.push(`${q.where}: ${body.error}`);
    }
    assert.deepEqual(failed, []);
    const services = queries.find((q) => q.where === 'mcpmesh-overview.json "MCP services" A');
    assert.ok(services, 'overview has no "MCP services" stat');
    assert.equal((await query(services.expr))[0]?.value[1], '3');
    const byHealth = queries.find((q) => q.where === 'mcpmesh-overview.json "Endpoints by health" A');
    assert.ok(byHealth, 'overview has no "Endpoints by health" panel');
    const health = Object.fromEntries((await query(byHealth.expr)).map((r) => [r.metric['health'], r.value[1]]));
    assert.deepEqual(health, { healthy: '3', unhealthy: '0' });
  });

  it('fires McpMeshSourceUpdateRejected on a real invalid registry edit, and keeps the last good mesh', {
    skip: skipPrometheus,
  }, async () => {
    tcp.writeRegistry(
      'services:\n  - name: weather\n    protocol: "2025-11-25"\n    endpoints:\n      - { address: 127.0.0.1, port: 99999 }\n',
    );
    const alert = await waitFor(
      'McpMeshSourceUpdateRejected to fire',
      async () => {
        const { alerts: active } = await api<{ alerts: PromAlert[] }>('/api/v1/alerts');
        return active.find((a) => a.labels['alertname'] === 'McpMeshSourceUpdateRejected' && a.state === 'firing');
      },
      20_000,
      200,
    );
    assert.deepEqual(alert.labels, {
      alertname: 'McpMeshSourceUpdateRejected',
      severity: 'warning',
      source: 'registry',
      job: 'mcpmesh-control-plane',
      instance: `127.0.0.1:${tcp.cp.adminPort}`,
    });
    const services = await query('mcpmesh_mesh_services');
    assert.equal(services[0]?.value[1], '3', 'the invalid edit must not change the mesh');
    const { alerts: active } = await api<{ alerts: PromAlert[] }>('/api/v1/alerts');
    // The registry is still broken, so McpMeshSourceFailing (mcpmesh_source_up == 0) may be pending beside it.
    assert.deepEqual(
      active.map((a) => a.labels['alertname']).filter((n) => n !== 'McpMeshSourceFailing'),
      ['McpMeshSourceUpdateRejected'],
      'no other alert fires',
    );
    assert.ok(
      active.every((a) => a.labels['alertname'] !== 'McpMeshSourceFailing' || (a.state === 'pending' && a.labels['source'] === 'registry')),
      JSON.stringify(active),
    );
  });
});
