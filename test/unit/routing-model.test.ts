// The layered routing model (model/tuning.ts) and the routing file: precedence, provenance, and bad input
// refused with file, path and reason.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../control-plane/src/model/reader.ts';
import { applyOverlays, layersOf, resolveTuning, serviceLayers, type KnobExplanation } from '../../control-plane/src/model/tuning.ts';
import { parseRegistry, parseRegistryOffThread } from '../../control-plane/src/sources/registry-file.ts';
import { DEFAULT_ROUTING_MAX_BYTES, parseRoutingFile, RoutingFileSource } from '../../control-plane/src/sources/routing-file.ts';

const REGISTRY = `
defaults:
  routing: { streamIdleTimeout: 2h, retries: 1 }
  outlierDetection: { consecutive5xx: 7 }
services:
  - name: weather
    protocol: "2025-11-25"
    routing: { mcpPath: /rpc, connectTimeout: 1s }
    endpoints: [{ address: 10.0.0.1, port: 7001 }]
  - name: search
    protocol: "2025-11-25"
    endpoints: [{ address: 10.0.0.2, port: 7001 }]
`;

const knob = (e: KnobExplanation[], name: string): KnobExplanation => e.find((k) => k.knob === name) as KnobExplanation;

describe('layered routing model', () => {
  it("keeps the registry's provenance per knob, and the health check follows the MCP path", () => {
    const [search, weather] = parseRegistry(REGISTRY, 'reg.yaml').sort((a, b) => a.name.localeCompare(b.name));
    const e = resolveTuning(layersOf(weather!)).explain;
    assert.deepEqual(knob(e, 'routing.connectTimeoutMs').from, {
      source: 'registry',
      where: 'reg.yaml',
      field: 'services[0].routing.connectTimeout',
    });
    assert.deepEqual(knob(e, 'routing.streamIdleTimeoutMs').from, {
      source: 'registry',
      where: 'reg.yaml',
      field: 'defaults.routing.streamIdleTimeout',
    });
    assert.equal(knob(e, 'routing.streamIdleTimeoutMs').shown, '2h');
    assert.deepEqual(knob(e, 'routing.lbPolicy').from, { source: 'default', where: 'built-in', field: '' });
    assert.equal(knob(e, 'healthCheck.path').value, '/rpc');
    assert.match(knob(e, 'healthCheck.path').from.field, /services\[0\]\.routing\.mcpPath \(follows the MCP path\)/);
    assert.equal(search?.outlierDetection.consecutive5xx, 7);
    assert.equal(search?.circuitBreakers.maxRequests, 100_000, 'every block filled');
  });

  it("the registry's layers survive the parse worker, so overlays still see the registry's own settings", async () => {
    // The running control plane parses in a worker thread; provenance crosses the structured clone beside the specs.
    const specs = await parseRegistryOffThread(REGISTRY, 'reg.yaml');
    const weather = specs.find((s) => s.name === 'weather')!;
    assert.deepEqual(layersOf(weather), layersOf(parseRegistry(REGISTRY, 'reg.yaml').find((s) => s.name === 'weather')!));
    const file = parseRoutingFile('services: { weather: { routing: { retries: 0 } } }', 'routing.yaml');
    const tuned = applyOverlays(specs, [file]).find((s) => s.name === 'weather')!;
    assert.equal(tuned.routing.connectTimeoutMs, 1000, "the registry's per-service 1s is kept under an overlay");
    assert.equal(tuned.routing.mcpPath, '/rpc');
  });

  it('per-service beats mesh-wide whoever wrote it; within a scope the routing file beats the registry', () => {
    const specs = parseRegistry(REGISTRY, 'reg.yaml');
    const file = parseRoutingFile(
      `
defaults:
  routing: { connectTimeout: 3s, lbPolicy: round_robin }
services:
  weather:
    routing: { retries: 0, maxStreamDuration: 10m }
    outlierDetection: { consecutive5xx: 2, baseEjectionTime: 5s, maxEjectionPercent: 100 }
    circuitBreakers: { maxRequests: 500 }
`,
      'routing.yaml',
    );
    const tuned = applyOverlays(specs, [file]);
    const weather = tuned.find((s) => s.name === 'weather')!;
    const search = tuned.find((s) => s.name === 'search')!;
    assert.equal(weather.routing.connectTimeoutMs, 1000, "registry per-service 1s beats the file's mesh-wide 3s");
    assert.equal(search.routing.connectTimeoutMs, 3000, 'file mesh-wide 3s beats built-in 5s');
    assert.equal(search.routing.lbPolicy, 'round_robin');
    assert.equal(weather.routing.retries, 0, 'file per-service beats registry mesh-wide retries: 1');
    assert.equal(weather.routing.maxStreamDurationMs, 600_000);
    assert.deepEqual(weather.outlierDetection, {
      ...search.outlierDetection,
      consecutive5xx: 2,
      baseEjectionTimeMs: 5000,
      maxEjectionPercent: 100,
    });
    assert.equal(search.outlierDetection.consecutive5xx, 7);
    assert.equal(weather.circuitBreakers.maxRequests, 500);
    assert.equal(weather.routing.mcpPath, '/rpc', 'identity stays with the source');
    const e = resolveTuning(serviceLayers(weather, [])).explain;
    const retries = knob(e, 'routing.retries');
    assert.deepEqual(retries.from, { source: 'file', where: 'routing.yaml', field: 'services.weather.routing.retries' });
    assert.deepEqual(
      retries.overridden.map((o) => [o.from.source, o.shown]),
      [
        ['default', '2'],
        ['registry', '1'],
      ],
    );
    // Identity: the same overlay twice gives the same spec objects (the mesh builder skips unchanged services).
    assert.equal(
      applyOverlays(specs, [file]).find((s) => s.name === 'weather'),
      weather,
    );
    assert.equal(
      applyOverlays(specs, []).find((s) => s.name === 'weather'),
      specs.find((s) => s.name === 'weather'),
      'no overlay: the source spec as is',
    );
  });

  it('refuses a bad routing file naming file, path and reason for every problem', () => {
    assert.throws(
      () =>
        parseRoutingFile(
          `
defaults:
  routing: { connectTimeout: -1s, lbPolicy: random, mcpPath: /x }
services:
  weather:
    outlierDetection: { maxEjectionPercent: 150, interval: 1x }
    healthCheck: { timout: 1s }
  Bad_Name: {}
`,
          '/etc/mcpmesh/routing.yaml',
        ),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.source, '/etc/mcpmesh/routing.yaml');
        assert.deepEqual(
          err.problems.map((p) => p.path),
          [
            'defaults.routing.mcpPath',
            'defaults.routing.connectTimeout',
            'defaults.routing.lbPolicy',
            'services.weather.outlierDetection.interval',
            'services.weather.outlierDetection.maxEjectionPercent',
            'services.weather.healthCheck.timout',
            'services.Bad_Name',
          ],
        );
        assert.match(err.message, /defaults\.routing\.connectTimeout: must be a duration .* \(got "-1s"\)/);
        assert.match(err.message, /defaults\.routing\.lbPolicy: "random" is not one of: least_request, round_robin/);
        assert.match(err.message, /services\.weather\.outlierDetection\.maxEjectionPercent: must be an integer from 0 to 100 \(got 150\)/);
        assert.match(err.message, /defaults\.routing\.mcpPath: unknown field/);
        return true;
      },
    );
  });
});

describe('routing file size limit', () => {
  const big = `services: {}\n# ${'x'.repeat(DEFAULT_ROUTING_MAX_BYTES)}\n`;

  it('refuses a routing file over the limit unread at start, naming the file, its size and the limit', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'mcpmesh-routing-')), 'routing.yaml');
    writeFileSync(file, big);
    assert.throws(
      () => new RoutingFileSource(file).load(),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message.includes(file) &&
        /over the limit of 1048576 bytes \(1\.0 MiB\); not read \(a routing file holds overrides only/.test(err.message),
    );
  });

  it('refuses an edit over the limit and keeps the last good routing', { timeout: 10_000 }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-routing-'));
    const file = path.join(dir, 'routing.yaml');
    writeFileSync(file, 'services: { weather: { routing: { retries: 0 } } }\n');
    const src = new RoutingFileSource(file, { debounceMs: 10 });
    const updates: unknown[] = [];
    src.on('update', (o) => updates.push(o));
    const refused = new Promise<Error>((resolve) => src.once('error', resolve));
    assert.ok(src.load().services.has('weather'));
    src.start();
    try {
      writeFileSync(path.join(dir, 'next.yaml'), big);
      renameSync(path.join(dir, 'next.yaml'), file);
      const err = await refused;
      assert.match(err.message, /over the limit of 1048576 bytes/);
      assert.equal(updates.length, 0, 'nothing replaced the last good routing');
    } finally {
      src.stop();
    }
  });
});

describe('deploy/routing.example.yaml', () => {
  it('is a valid routing file that tunes what its comments say', async () => {
    const { readFileSync } = await import('node:fs');
    const file = new URL('../../deploy/routing.example.yaml', import.meta.url);
    const overlay = parseRoutingFile(readFileSync(file, 'utf8'), file.pathname);
    const specs = parseRegistry(
      'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n  - { name: reports, protocol: "2025-11-25", endpoints: [] }\n',
      'r.yaml',
    );
    const [reports, weather] = applyOverlays(specs, [overlay]).sort((a, b) => a.name.localeCompare(b.name));
    assert.equal(weather?.outlierDetection.consecutive5xx, 2);
    assert.equal(weather?.outlierDetection.intervalMs, 2000);
    assert.equal(reports?.routing.maxStreamDurationMs, 900_000);
    assert.equal(reports?.routing.streamIdleTimeoutMs, 4 * 3_600_000);
    assert.equal(weather?.routing.streamIdleTimeoutMs, 2 * 3_600_000);
  });
});

describe('README "Tuning routing" knob table', () => {
  it('lists every knob of the model with its YAML key and Meta key (one table, no drift)', async () => {
    const { readFileSync } = await import('node:fs');
    const { KNOBS } = await import('../../control-plane/src/model/tuning.ts');
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Tuning routing'), readme.indexOf('### Consul config entries'));
    for (const k of KNOBS as readonly { section: string; yaml: string; meta?: string }[]) {
      assert.match(section, new RegExp(`\`${k.section}\\.[^|]*\\b${k.yaml}\\b`), `${k.section}.${k.yaml} missing from the knob table`);
      if (k.meta) assert.ok(section.includes(`\`${k.meta}\``), `Meta key ${k.meta} missing`);
    }
  });
});
