// docs/metrics.md is the contract dashboards and alerts are written against: every metric a fully
// configured control plane registers (policy on, so the authorizer, processor and CA are there) must be
// listed with its type and labels, and nothing may be listed that the control plane does not register.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';

const DOC = new URL('../../docs/metrics.md', import.meta.url);

interface Entry {
  type: string;
  labels: string[];
}

/** Rows of the catalogue's tables: | `name` | type | `label`, `label` | meaning | */
export function catalogue(markdown: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const line of markdown.split('\n')) {
    const m = /^\| `(mcpmesh_[a-z0-9_]+)` \| (counter|gauge|histogram|summary) \|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = [...(m[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((l) => l[1] ?? '').sort();
    out.set(m[1] ?? '', { type: m[2] ?? '', labels });
  }
  return out;
}

describe('metrics catalogue (docs/metrics.md) matches the control plane', () => {
  let cp: ControlPlane;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n');
    const policy = parsePolicy(readFileSync(new URL('../../deploy/policy.example.yaml', import.meta.url), 'utf8'), 'policy.example.yaml');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: true }),
      security: { policy, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } },
    }).start();
  });
  after(async () => {
    await cp?.stop();
  });

  it('lists every registered metric with its type and labels, and nothing else', async () => {
    const documented = catalogue(readFileSync(DOC, 'utf8'));
    assert.ok(documented.size >= 20, `parsed only ${documented.size} rows from docs/metrics.md: did the table format change?`);
    const registered = new Map<string, Entry>();
    for (const m of await cp.metrics.registry.getMetricsAsJSON()) {
      // prom-client's default process and Node.js metrics, documented as a group.
      if (/^mcpmesh_(process|nodejs)_/.test(m.name)) continue;
      const metric = cp.metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] };
      registered.set(m.name, { type: String(m.type), labels: [...(metric.labelNames ?? [])].sort() });
    }
    const missing = [...registered.keys()].filter((n) => !documented.has(n));
    const stale = [...documented.keys()].filter((n) => !registered.has(n));
    assert.deepEqual(missing, [], 'registered but not in docs/metrics.md');
    assert.deepEqual(stale, [], 'in docs/metrics.md but not registered');
    for (const [name, r] of registered) assert.deepEqual(documented.get(name), r, `${name}: docs/metrics.md says otherwise`);
  });

  it('exports the process and Node.js metrics the docs name', async () => {
    const names = (await cp.metrics.registry.getMetricsAsJSON()).map((m) => m.name);
    const doc = readFileSync(DOC, 'utf8');
    for (const n of doc.match(/mcpmesh_(process|nodejs)_[a-z_]+[a-z]/g) ?? [])
      assert.ok(names.includes(n), `${n} is in the docs but not exported`);
  });
});
