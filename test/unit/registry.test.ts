import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_ROUTING } from '../../control-plane/src/model/defaults.ts';
import { ConfigError } from '../../control-plane/src/model/reader.ts';
import { parseRegistry, RegistryFileSource } from '../../control-plane/src/sources/registry-file.ts';
import type { ServiceSpec } from '../../control-plane/src/model/mesh.ts';

function problems(yaml: string): string[] {
  try {
    parseRegistry(yaml, 'reg.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.match(err.message, /^reg\.yaml: /, 'the message names the file');
    return err.problems.map((p) => `${p.path}: ${p.reason}`);
  }
  assert.fail('expected the registry to be rejected');
}

describe('registry YAML', () => {
  it('parses the documented shape and fills in MCP-safe defaults', () => {
    const [svc] = parseRegistry(
      `
services:
  - name: weather
    protocol: "2025-11-25"
    endpoints:
      - { address: 127.0.0.1, port: 7001, locality: { region: eu-west, zone: a } }
      - { address: 127.0.0.1, port: 7002, healthy: true }
`,
      'reg.yaml',
    );
    assert.equal(svc?.name, 'weather');
    // Healthy by default, and the model says nobody checked: the views must not claim otherwise.
    assert.deepEqual(svc?.endpoints, [
      {
        address: '127.0.0.1',
        port: 7001,
        locality: { region: 'eu-west', zone: 'a' },
        weight: 1,
        healthy: true,
        healthFrom: { source: 'registry', declared: false },
      },
      {
        address: '127.0.0.1',
        port: 7002,
        locality: { region: '', zone: '' },
        weight: 1,
        healthy: true,
        healthFrom: { source: 'registry', declared: true },
      },
    ]);
    assert.equal(svc?.routing.maxStreamDurationMs, 0, 'no cap on long tool calls by default');
    assert.deepEqual(svc?.routing, DEFAULT_ROUTING);
    assert.equal(svc?.healthCheck.path, '/mcp');
  });

  it('applies defaults, then per-service overrides, and follows mcpPath for the health probe', () => {
    const [a, b] = parseRegistry(
      `
defaults:
  routing: { streamIdleTimeout: 2h, retries: 0 }
services:
  - { name: a, protocol: "2026-07-28", endpoints: [] }
  - name: b
    protocol: "2025-06-18"
    routing: { mcpPath: /rpc, retries: 3, maxStreamDuration: 90s }
    endpoints: []
`,
      'reg.yaml',
    ) as [ServiceSpec, ServiceSpec];
    assert.equal(a.routing.streamIdleTimeoutMs, 7_200_000);
    assert.equal(a.routing.retries, 0);
    assert.equal(b.routing.retries, 3);
    assert.equal(b.routing.maxStreamDurationMs, 90_000);
    assert.equal(b.routing.streamIdleTimeoutMs, 7_200_000);
    assert.equal(b.healthCheck.path, '/rpc');
  });

  it('names every problem with its path and reason', () => {
    assert.deepEqual(
      problems(`
services:
  - name: Weather_1
    protocol: "2025-01-01"
    endpoints:
      - { address: localhost, port: 0 }
      - { address: 10.0.0.1, port: 80, weight: 500, locality: { region: "eu west" } }
      - { address: 10.0.0.1, port: 80 }
    routing: { lbPolicy: random, maxStreamDuration: forever }
    helthCheck: {}
`),
      [
        'services[0].helthCheck: unknown field (expected one of: name, protocol, transport, sidecar, endpoints, routing, outlierDetection, healthCheck, circuitBreakers)',
        'services[0].name: "Weather_1" must be a DNS label: lower-case letters, digits and "-", at most 63',
        'services[0].protocol: "2025-01-01" is not one of: 2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28',
        'services[0].routing.maxStreamDuration: must be a duration like "250ms", "5s", "1h" between 0ms and 604800000ms (got "forever")',
        'services[0].routing.lbPolicy: "random" is not one of: least_request, round_robin',
        'services[0].endpoints[0].address: "localhost" is not an IPv4 or IPv6 address',
        'services[0].endpoints[0].port: must be an integer from 1 to 65535 (got 0)',
        'services[0].endpoints[1].locality.region: "eu west" must be 1-63 letters, digits, ".", "_" or "-"',
        'services[0].endpoints[1].weight: must be an integer from 1 to 128 (got 500)',
        'services[0].endpoints[2]: duplicate endpoint 10.0.0.1:80 (also at endpoints[1])',
      ],
    );
  });

  it('rejects duplicate services and hosts claimed twice', () => {
    assert.deepEqual(
      problems(`
services:
  - { name: a, protocol: "2025-11-25", endpoints: [], routing: { hosts: [b, x.example.com] } }
  - { name: b, protocol: "2025-11-25", endpoints: [], routing: { hosts: [x.example.com] } }
  - { name: a, protocol: "2025-11-25", endpoints: [] }
`),
      [
        'services[0].routing.hosts[0]: host "b" is already routed to service "b"',
        'services[1].routing.hosts[0]: host "x.example.com" is already routed to service "a"',
        'services[2].name: duplicate service name "a" (also at services[0])',
      ],
    );
  });

  it('reports YAML syntax errors with line and column', () => {
    const p = problems('services:\n  - name: a\n   protocol: x\n');
    assert.equal(p.length, 1);
    assert.match(p[0] ?? '', /^line \d+, column \d+: /);
  });

  it('rejects a document that is not a mapping, or lacks services', () => {
    assert.deepEqual(problems('- just\n- a list\n'), [': must be a mapping with a "services" list']);
    assert.deepEqual(problems('defaults: {}\n'), ['services: is required (a list of MCP services)']);
  });

  it('watches the file: a bad edit is reported with the file name, a fixed edit is published', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-reg-'));
    const file = path.join(dir, 'registry.yaml');
    writeFileSync(file, 'services: []\n');
    const src = new RegistryFileSource(file, { debounceMs: 20 });
    assert.deepEqual(await src.load(), []);
    const events: Array<['update', ServiceSpec[]] | ['error', Error]> = [];
    src.on('update', (s) => events.push(['update', s]));
    src.on('error', (e) => events.push(['error', e]));
    src.start();
    try {
      const replace = (text: string): void => {
        writeFileSync(path.join(dir, 'tmp'), text);
        renameSync(path.join(dir, 'tmp'), file);
      };
      replace('services: [ { name: a, protocol: "2025-11-25", endpoints: [ { address: 1.2.3.4, port: 70000 } ] } ]\n');
      await waitForEvents(events, 1);
      const [kind, err] = events[0]!;
      assert.equal(kind, 'error');
      assert.match(
        (err as Error).message,
        new RegExp(
          `${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 1 problem\\(s\\):\\n  services\\[0\\]\\.endpoints\\[0\\]\\.port: must be an integer from 1 to 65535 \\(got 70000\\)`,
        ),
      );
      replace('services: [ { name: a, protocol: "2025-11-25", endpoints: [ { address: 1.2.3.4, port: 7000 } ] } ]\n');
      await waitForEvents(events, 2);
      assert.equal(events[1]![0], 'update');
      assert.equal((events[1]![1] as ServiceSpec[])[0]?.endpoints[0]?.port, 7000);
    } finally {
      src.stop();
    }
  });
});

async function waitForEvents(events: unknown[], n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (events.length < n) {
    if (Date.now() > deadline) throw new Error(`expected ${n} event(s), got ${events.length}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
