// Consul health entries -> mesh model: health, locality, MCP meta, and malformed data skipped with a reason.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  consulOptionsFromEnv,
  incarnationOf,
  specsFromConsul,
  validateCatalog,
  validateHealth,
  type HealthEntry,
} from '../../control-plane/src/sources/consul.ts';

function entry(
  id: string,
  o: {
    addr?: string;
    port?: number;
    meta?: Record<string, string>;
    nodeMeta?: Record<string, string>;
    checks?: string[];
    weight?: number;
  } = {},
): HealthEntry {
  return {
    Node: { Node: 'n1', Address: '10.0.0.9', Meta: o.nodeMeta ?? {} },
    Service: {
      ID: id,
      Service: 'weather',
      Address: o.addr ?? '10.0.0.1',
      ...('port' in o ? { Port: o.port } : { Port: 7001 }),
      Meta: o.meta ?? {},
      Weights: { Passing: o.weight ?? 1, Warning: 1 },
    },
    Checks: (o.checks ?? ['passing']).map((Status, i) => ({ CheckID: `c${i}`, Status })),
  };
}

describe('Consul -> mesh model', () => {
  it('maps health, locality (service meta over node meta), weight and MCP meta', () => {
    const { specs, skipped } = specsFromConsul(
      new Map([
        [
          'weather',
          [
            entry('w1', {
              meta: { 'mcp-protocol': '2026-07-28', 'mcp-path': '/rpc', region: 'eu-west' },
              nodeMeta: { region: 'ignored', zone: 'a' },
              weight: 3,
            }),
            entry('w2', { addr: '10.0.0.2', meta: { 'mcp-protocol': '2026-07-28', 'mcp-path': '/rpc' }, checks: ['passing', 'warning'] }),
            entry('w3', { addr: '', meta: { 'mcp-protocol': '2026-07-28', 'mcp-path': '/rpc' }, checks: ['critical'] }),
          ],
        ],
      ]),
    );
    assert.deepEqual(skipped, []);
    const [svc] = specs;
    assert.equal(svc?.protocol, '2026-07-28');
    assert.equal(svc?.routing.mcpPath, '/rpc');
    assert.equal(svc?.healthCheck.path, '/rpc');
    assert.deepEqual(svc?.endpoints, [
      {
        address: '10.0.0.1',
        port: 7001,
        locality: { region: 'eu-west', zone: 'a' },
        weight: 3,
        healthy: true,
        healthFrom: { source: 'consul', status: 'passing', checks: 1 },
      },
      // A warning keeps traffic away too; the views say which status Consul gave.
      {
        address: '10.0.0.2',
        port: 7001,
        locality: { region: '', zone: '' },
        weight: 1,
        healthy: false,
        healthFrom: { source: 'consul', status: 'warning', checks: 2 },
      },
      // No service address: Consul's rule is to use the node's address.
      {
        address: '10.0.0.9',
        port: 7001,
        locality: { region: '', zone: '' },
        weight: 1,
        healthy: false,
        healthFrom: { source: 'consul', status: 'critical', checks: 1 },
      },
    ]);
  });

  it('skips malformed instances with a reason and keeps the good ones', () => {
    const { specs, skipped } = specsFromConsul(
      new Map([
        [
          'weather',
          [
            entry('ok'),
            entry('ok2', { addr: '10.0.0.8' }),
            entry('noport', { addr: '10.0.0.2', port: 0 }),
            entry('dns', { addr: 'weather.internal' }),
            entry('proto', { addr: '10.0.0.3', meta: { 'mcp-protocol': '1999-01-01' } }),
            entry('zone', { addr: '10.0.0.4', meta: { zone: 'a b' } }),
            entry('transport', { addr: '10.0.0.5', meta: { 'mcp-transport': 'carrier-pigeon' } }),
            entry('path', { addr: '10.0.0.6', meta: { 'mcp-path': 'mcp' } }),
            entry('disagree', { addr: '10.0.0.7', meta: { 'mcp-protocol': '2026-07-28' } }),
          ],
        ],
        ['Bad_Name', [entry('x')]],
      ]),
    );
    assert.deepEqual(
      specs.map((s) => [s.name, s.endpoints.map((e) => e.address)]),
      [['weather', ['10.0.0.1', '10.0.0.8']]],
    );
    assert.deepEqual(
      skipped.map((s) => `${s.service} ${s.instance}: ${s.reason}`),
      [
        'Bad_Name *: service name is not a DNS label (lower-case letters, digits, "-")',
        'weather dns@n1: address "weather.internal" is not an IP address',
        'weather noport@n1: missing or invalid port 0',
        'weather path@n1: meta mcp-path="mcp" is not an absolute HTTP path',
        'weather proto@n1: meta mcp-protocol="1999-01-01" is not one of 2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28',
        'weather transport@n1: meta mcp-transport="carrier-pigeon" is not one of streamable-http, sse',
        'weather zone@n1: bad locality meta region="" zone="a b"',
        "weather disagree@n1: meta disagrees with the service's other instances (mcp-protocol=2025-11-25, mcp-transport=streamable-http, mcp-path=/mcp, mcpmesh-sidecar=none)",
      ],
    );
  });

  it('reads the Consul CLI environment variables', () => {
    assert.equal(consulOptionsFromEnv({}), undefined);
    assert.deepEqual(
      consulOptionsFromEnv({
        CONSUL_HTTP_ADDR: 'consul:8501',
        CONSUL_HTTP_SSL: 'true',
        CONSUL_HTTP_TOKEN: 't',
        CONSUL_CACERT: '/ca.pem',
        MCPMESH_CONSUL_DATACENTER: 'dc2',
      }),
      {
        address: 'https://consul:8501',
        token: 't',
        datacenter: 'dc2',
        tls: { caFile: '/ca.pem' },
      },
    );
  });

  it('refuses answers of the wrong shape instead of reading them as "no services" or "no instances"', () => {
    assert.deepEqual(validateCatalog({ weather: ['mcp'], consul: [], odd: null }), { weather: ['mcp'], consul: [], odd: null });
    assert.throws(() => validateCatalog([]), /catalog: expected an object of service name -> tags, got an array/);
    assert.throws(() => validateCatalog(null), /got null/);
    assert.throws(() => validateCatalog({ weather: 'mcp' }), /tags of service "weather" are a string/);
    assert.throws(() => validateCatalog({ weather: [1] }), /tags of service "weather"/);
    const good = [entry('w1')];
    assert.equal(validateHealth(good), good);
    assert.deepEqual(validateHealth([]), []);
    assert.throws(() => validateHealth({}), /health: expected an array of entries, got an object/);
    assert.throws(() => validateHealth([{ Node: {}, Service: {}, Checks: 'x' }]), /health\[0\]\.Checks/);
    assert.throws(() => validateHealth([{ Node: {}, Checks: [] }]), /health\[0\]\.Service: expected an object, got nothing/);
    assert.throws(() => validateHealth([entry('w1'), 3]), /health\[1\]: expected an object, got a number/);
  });

  it('derives the incarnation from Consul state: the CreateIndex of the oldest instance', () => {
    const at = (id: string, createIndex?: number): HealthEntry => {
      const e = entry(id);
      return { ...e, Service: { ...e.Service, ...(createIndex === undefined ? {} : { CreateIndex: createIndex }) } };
    };
    assert.equal(incarnationOf([at('w2', 40), at('w1', 12), at('w3', 90)]), 12);
    assert.equal(incarnationOf([at('w1')]), 0, 'no CreateIndex: no suffix');
    assert.equal(incarnationOf([]), 0);
    const { specs } = specsFromConsul(new Map([['weather', [at('w1', 12), at('w2', 40)]]]));
    assert.equal(specs[0]?.incarnation, 12);
  });
});
