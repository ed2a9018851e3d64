// The routing file against a running control plane: it tunes registry services live, a bad edit is refused
// with file, path and reason while the last good routing stays, and `mcpmesh routing explain` reads the
// result (value and source of each knob) from the admin port.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { routingMain } from '../../control-plane/src/routing-cli.ts';
import { waitFor } from '../helpers/wait.ts';

const REGISTRY = `services:
  - name: weather
    protocol: "2025-11-25"
    endpoints: [{ address: 10.0.0.1, port: 7001 }]
  - name: search
    protocol: "2025-11-25"
    routing: { connectTimeout: 750ms }
    endpoints: [{ address: 10.0.0.2, port: 7001 }]
`;

interface Cluster {
  name: string;
  resource: {
    connect_timeout: { seconds: string | number; nanos?: number };
    outlier_detection: { consecutive_5xx: { value: number }; base_ejection_time: { seconds: string | number } };
    load_balancing_policy: { policies: Array<{ typed_extension_config: { name: string } }> };
  };
}

async function captureStdout(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await fn(), out };
  } finally {
    process.stdout.write = write;
  }
}

describe('routing file', () => {
  let dir: string;
  let file: string;
  let cp: ControlPlane;
  let admin: string;
  const write = (text: string): void => {
    // Editors replace the file; the watcher follows the directory.
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  const clusters = async (): Promise<Map<string, Cluster['resource']>> => {
    const dump = (await (await fetch(`${admin}/debug/config_dump?role=gateway`)).json()) as { cluster: Cluster[] };
    return new Map(dump.cluster.map((c) => [c.name, c.resource]));
  };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-routing-'));
    writeFileSync(path.join(dir, 'registry.yaml'), REGISTRY);
    file = path.join(dir, 'routing.yaml');
    writeFileSync(file, 'services:\n  weather:\n    routing: { lbPolicy: round_robin }\n');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'registry.yaml'),
      routingFile: file,
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      quietMs: 10,
      maxDelayMs: 100,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
    }).start();
    admin = `http://127.0.0.1:${cp.adminPort}`;
  });
  after(async () => {
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tunes a registry service from the start, and explain names the file and path', async () => {
    const c = await clusters();
    assert.equal(
      c.get('mcp.weather')?.load_balancing_policy.policies[0]?.typed_extension_config.name,
      'envoy.load_balancing_policies.round_robin',
    );
    assert.equal(
      c.get('mcp.search')?.load_balancing_policy.policies[0]?.typed_extension_config.name,
      'envoy.load_balancing_policies.least_request',
    );
    const { code, out } = await captureStdout(() => routingMain(['explain', 'weather', '--admin', admin]));
    assert.equal(code, 0);
    assert.match(
      out,
      new RegExp(
        `routing\\.lbPolicy\\s+"round_robin"\\s+file ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: services\\.weather\\.routing\\.lbPolicy`,
      ),
    );
    assert.match(out, /routing\.connectTimeoutMs\s+5s\s+built-in default/);
    const json = await captureStdout(() => routingMain(['explain', 'search', '--admin', admin, '--json']));
    const body = JSON.parse(json.out) as { knobs: Array<{ knob: string; value: unknown; from: { source: string; field: string } }> };
    assert.deepEqual(
      body.knobs.find((k) => k.knob === 'routing.connectTimeoutMs'),
      {
        ...body.knobs.find((k) => k.knob === 'routing.connectTimeoutMs'),
        value: 750,
        from: { source: 'registry', where: path.join(dir, 'registry.yaml'), field: 'services[1].routing.connectTimeout' },
      },
    );
    const missing = await captureStdout(() => routingMain(['explain', 'nope', '--admin', admin]));
    assert.equal(missing.code, 1);
  });

  it('applies an edit live; refuses a bad one with file, path and reason and keeps the last good routing', async () => {
    write(
      'defaults:\n  routing: { connectTimeout: 2s }\nservices:\n  weather:\n    outlierDetection: { consecutive5xx: 2, baseEjectionTime: 5s }\n',
    );
    await waitFor('edit applied', async () => (await clusters()).get('mcp.weather')?.outlier_detection.consecutive_5xx.value === 2);
    const c = await clusters();
    assert.equal(
      Number(c.get('mcp.search')?.connect_timeout.seconds ?? 0),
      0,
      "search keeps its own 750ms: per-service beats the file's mesh-wide default",
    );
    assert.equal(Number(c.get('mcp.weather')?.connect_timeout.seconds), 2);
    assert.equal(
      c.get('mcp.weather')?.load_balancing_policy.policies[0]?.typed_extension_config.name,
      'envoy.load_balancing_policies.least_request',
      'dropped from the file: back to the default',
    );

    write('services:\n  weather:\n    outlierDetection: { consecutive5xx: -1, maxEjectionPercent: 101 }\n');
    const errors = await waitFor('bad edit reported', async () => {
      const e = (await (await fetch(`${admin}/debug/sources`)).json()) as Record<string, string | null>;
      return e['routing-file'] ? e : undefined;
    });
    assert.match(errors['routing-file'] ?? '', new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: 2 problem\\(s\\)`));
    assert.match(
      errors['routing-file'] ?? '',
      /services\.weather\.outlierDetection\.consecutive5xx: must be an integer from 0 to 1000 \(got -1\)/,
    );
    assert.match(
      errors['routing-file'] ?? '',
      /services\.weather\.outlierDetection\.maxEjectionPercent: must be an integer from 0 to 100 \(got 101\)/,
    );
    assert.equal((await clusters()).get('mcp.weather')?.outlier_detection.consecutive_5xx.value, 2, 'last good routing kept');
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    assert.match(metrics, /mcpmesh_source_errors_total\{source="routing-file"\} [1-9]/);

    write('services:\n  weather:\n    outlierDetection: { consecutive5xx: 3 }\n  ghost: { routing: { retries: 0 } }\n');
    await waitFor('fixed edit applied', async () => (await clusters()).get('mcp.weather')?.outlier_detection.consecutive_5xx.value === 3);
    const all = (await (await fetch(`${admin}/debug/routing`)).json()) as {
      services: Record<string, unknown>;
      problems: { unknownServices: unknown[]; sources: Record<string, string> };
    };
    assert.deepEqual(Object.keys(all.services), ['search', 'weather']);
    assert.deepEqual(
      all.problems.unknownServices,
      [{ origin: 'file', service: 'ghost' }],
      'routing for a service the mesh does not have is shown',
    );
    assert.equal(all.problems.sources['routing-file'], undefined, 'the error clears once the file is good');
  });
});
