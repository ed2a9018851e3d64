// Consul config entries -> routing layers (sources/consul-config.ts): the mapping table, the failure cases
// that must be refused with entry kind/name and field, unsupported fields reported once per entry version,
// and the last good version of a refused entry kept.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveTuning } from '../../control-plane/src/model/tuning.ts';
import {
  ConfigEntryState,
  type EntryUpdate,
  goDurationMs,
  mapConfigEntry,
  type ConfigEntry,
} from '../../control-plane/src/sources/consul-config.ts';

const tunedFor = (entries: ConfigEntry[], service: string): ReturnType<typeof resolveTuning> => {
  const all = new Map();
  const s = new ConfigEntryState();
  let r: EntryUpdate | undefined;
  for (const k of ['proxy-defaults', 'service-defaults', 'service-resolver'] as const)
    r = s.update(
      k,
      entries.filter((e) => e.Kind === k),
      all,
    );
  return resolveTuning([...r!.overlay.mesh, ...(r!.overlay.services.get(service) ?? [])]);
};

describe('Consul config entries -> routing', () => {
  it('parses Go durations as Consul writes them', () => {
    assert.equal(goDurationMs('1m30s'), 90_000);
    assert.equal(goDurationMs('250ms'), 250);
    assert.equal(goDurationMs(5e9), 5000, 'nanoseconds as a number');
    assert.equal(goDurationMs('-5s'), -5000);
    assert.equal(goDurationMs('5 s'), undefined);
  });

  it('maps each supported field to its knob, with the entry and field as provenance', () => {
    const { tuned, explain } = tunedFor(
      [
        { Kind: 'service-resolver', Name: 'weather', ConnectTimeout: '1s', RequestTimeout: '10m', LoadBalancer: { Policy: 'round_robin' } },
        {
          Kind: 'service-defaults',
          Name: 'mcp-gateway',
          UpstreamConfig: {
            Overrides: [
              {
                Name: 'weather',
                ConnectTimeoutMs: 3000,
                PassiveHealthCheck: {
                  Interval: '1s',
                  MaxFailures: 2,
                  EnforcingConsecutive5xx: 100,
                  MaxEjectionPercent: 100,
                  BaseEjectionTime: '5s',
                },
                Limits: { MaxConcurrentRequests: 64 },
              },
            ],
          },
        },
        {
          Kind: 'service-defaults',
          Name: 'weather',
          Protocol: 'grpc',
          Meta: { 'mcpmesh/stream-idle-timeout': '2h', 'mcpmesh/health-check-path': '', owner: 'team-a' },
        },
      ],
      'weather',
    );
    assert.equal(tuned.routing.connectTimeoutMs, 1000, 'service-resolver beats the gateway override (higher rank)');
    assert.equal(tuned.routing.maxStreamDurationMs, 600_000);
    assert.equal(tuned.routing.lbPolicy, 'round_robin');
    assert.equal(tuned.routing.upstreamProtocol, 'http2');
    assert.equal(tuned.routing.streamIdleTimeoutMs, 7_200_000);
    assert.equal(tuned.healthCheck.path, '', 'Meta can turn the active check off');
    assert.deepEqual(
      [
        tuned.outlierDetection.consecutive5xx,
        tuned.outlierDetection.intervalMs,
        tuned.outlierDetection.maxEjectionPercent,
        tuned.outlierDetection.baseEjectionTimeMs,
      ],
      [2, 1000, 100, 5000],
    );
    assert.equal(tuned.circuitBreakers.maxRequests, 64);
    const from = (k: string): string => {
      const e = explain.find((x) => x.knob === k)!;
      return `${e.from.where} ${e.from.field}`;
    };
    assert.equal(from('routing.lbPolicy'), 'service-resolver/weather LoadBalancer.Policy');
    assert.equal(
      from('outlierDetection.consecutive5xx'),
      'service-defaults/mcp-gateway UpstreamConfig.Overrides[0].PassiveHealthCheck.MaxFailures',
    );
    assert.equal(from('routing.streamIdleTimeoutMs'), 'service-defaults/weather Meta["mcpmesh/stream-idle-timeout"]');
    assert.deepEqual(
      explain.find((x) => x.knob === 'routing.connectTimeoutMs')!.overridden.map((o) => o.from.where),
      ['built-in', 'service-defaults/mcp-gateway'],
    );
  });

  it('reads Consul zero values as "not set", as Consul documents them', () => {
    const m = mapConfigEntry({ Kind: 'service-resolver', Name: 'weather', ConnectTimeout: '0s', RequestTimeout: 0 });
    assert.deepEqual(m.problems, []);
    assert.deepEqual(m.services.get('weather'), undefined, 'nothing set');
    const g = mapConfigEntry({
      Kind: 'service-defaults',
      Name: 'mcp-gateway',
      UpstreamConfig: { Defaults: { PassiveHealthCheck: { Interval: '0s', MaxFailures: 0 }, Limits: { MaxConnections: 0 } } },
    });
    assert.deepEqual([g.problems, g.mesh], [[], []]);
  });

  // Each row: an entry the mesh must refuse, the field named, and a fragment of the reason.
  const REFUSED: Array<[string, ConfigEntry, string, RegExp]> = [
    [
      'unknown policy',
      { Kind: 'service-resolver', Name: 'weather', LoadBalancer: { Policy: 'fancy' } },
      'LoadBalancer.Policy',
      /not a Consul load-balancing policy/,
    ],
    [
      'Consul policy the mesh lacks',
      { Kind: 'service-resolver', Name: 'weather', LoadBalancer: { Policy: 'maglev' } },
      'LoadBalancer.Policy',
      /"maglev" is not supported by MCP Mesh/,
    ],
    ['negative timeout', { Kind: 'service-resolver', Name: 'weather', ConnectTimeout: '-5s' }, 'ConnectTimeout', /must not be negative/],
    ['not a duration', { Kind: 'service-resolver', Name: 'weather', RequestTimeout: 'soon' }, 'RequestTimeout', /not a duration/],
    [
      'ejection over 100 %',
      { Kind: 'service-defaults', Name: 'mcp-gateway', UpstreamConfig: { Defaults: { PassiveHealthCheck: { MaxEjectionPercent: 150 } } } },
      'UpstreamConfig.Defaults.PassiveHealthCheck.MaxEjectionPercent',
      /from 0 to 100 \(got 150\)/,
    ],
    [
      'negative limit',
      {
        Kind: 'service-defaults',
        Name: 'mcp-gateway',
        UpstreamConfig: { Overrides: [{ Name: 'weather', Limits: { MaxConnections: -1 } }] },
      },
      'UpstreamConfig.Overrides[0].Limits.MaxConnections',
      /must not be negative/,
    ],
    [
      'override without a name',
      { Kind: 'service-defaults', Name: 'mcp-gateway', UpstreamConfig: { Overrides: [{ ConnectTimeoutMs: 5 }] } },
      'UpstreamConfig.Overrides[0].Name',
      /is required/,
    ],
    ['tcp protocol', { Kind: 'service-defaults', Name: 'weather', Protocol: 'tcp' }, 'Protocol', /MCP is carried over HTTP/],
    [
      'bad meta value',
      { Kind: 'service-defaults', Name: 'weather', Meta: { 'mcpmesh/retries': '99' } },
      'Meta["mcpmesh/retries"]',
      /from 0 to 10/,
    ],
    [
      'unknown meta key',
      { Kind: 'service-defaults', Name: 'weather', Meta: { 'mcpmesh/stream-idle': '1h' } },
      'Meta["mcpmesh/stream-idle"]',
      /unknown MCP Mesh key/,
    ],
    ['proxy-defaults not global', { Kind: 'proxy-defaults', Name: 'other' }, 'Name', /must be "global"/],
  ];
  for (const [what, entry, field, reason] of REFUSED) {
    it(`refuses ${what}, naming ${entry.Kind}/${entry.Name} and ${field}`, () => {
      const m = mapConfigEntry(entry);
      assert.equal(m.problems.length, 1, JSON.stringify(m.problems));
      assert.equal(m.problems[0]?.entry, `${entry.Kind}/${entry.Name}`);
      assert.equal(m.problems[0]?.field, field);
      assert.match(m.problems[0]?.reason ?? '', reason);
    });
  }

  it('reports unmapped fields once per entry version, with why', () => {
    const s = new ConfigEntryState();
    const all = new Map();
    const entry = {
      Kind: 'service-resolver',
      Name: 'weather',
      ModifyIndex: 7,
      Failover: { '*': { Datacenters: ['dc2'] } },
      LoadBalancer: { Policy: 'least_request', HashPolicies: [{ Field: 'header' }] },
      Namespace: 'default',
    };
    const first = s.update('service-resolver', [entry], all);
    assert.deepEqual(
      first.unsupported.map((u) => `${u.entry} ${u.field}`),
      ['service-resolver/weather LoadBalancer.HashPolicies', 'service-resolver/weather Failover'],
    );
    assert.deepEqual(s.update('service-resolver', [entry], all).unsupported, [], 'same version: not reported again');
    assert.equal(s.update('service-resolver', [{ ...entry, ModifyIndex: 8 }], all).unsupported.length, 2, 'a new version is reported');
    const own = mapConfigEntry({ Kind: 'service-defaults', Name: 'weather', UpstreamConfig: { Defaults: { ConnectTimeoutMs: 100 } } });
    assert.match(own.unsupported[0]?.why ?? '', /own upstreams.*service-defaults\/mcp-gateway UpstreamConfig\.Overrides/);
  });

  it('keeps the last good version of a refused entry, and other entries keep updating', () => {
    const s = new ConfigEntryState();
    const all = new Map();
    const good = { Kind: 'service-resolver', Name: 'weather', LoadBalancer: { Policy: 'round_robin' } };
    const other = { Kind: 'service-resolver', Name: 'search', ConnectTimeout: '1s' };
    s.update('service-resolver', [good, other], all);
    const r = s.update(
      'service-resolver',
      [
        { ...good, LoadBalancer: { Policy: 'fancy' } },
        { ...other, ConnectTimeout: '2s' },
      ],
      all,
    );
    assert.deepEqual(
      r.problems.map((p) => `${p.entry} ${p.field}`),
      ['service-resolver/weather LoadBalancer.Policy'],
    );
    assert.equal(r.overlay.services.get('weather')?.[0]?.settings['routing.lbPolicy']?.value, 'round_robin', 'last good kept');
    assert.equal(r.overlay.services.get('search')?.[0]?.settings['routing.connectTimeoutMs']?.value, 2000, 'the other entry updated');
    const gone = s.update('service-resolver', [other], all);
    assert.equal(gone.overlay.services.get('weather'), undefined, 'a deleted entry stops applying');
  });

  it("with the catalog: skips other services' entries, reports unregistered targets, and keeps them", () => {
    const s = new ConfigEntryState();
    const all = new Map();
    const catalog = new Map<string, 'mcp' | 'other'>([
      ['weather', 'mcp'],
      ['web', 'other'],
    ]);
    s.update(
      'service-defaults',
      [
        { Kind: 'service-defaults', Name: 'web', Protocol: 'tcp', UpstreamConfig: { Defaults: { ConnectTimeoutMs: 1 } } },
        {
          Kind: 'service-defaults',
          Name: 'mcp-gateway',
          UpstreamConfig: {
            Overrides: [
              { Name: 'weather', ConnectTimeoutMs: 900 },
              { Name: 'web', ConnectTimeoutMs: 900 },
              { Name: 'gone', ConnectTimeoutMs: 900 },
            ],
          },
        },
      ],
      all,
      catalog,
    );
    s.update('proxy-defaults', [], all, catalog);
    const r = s.update('service-resolver', [{ Kind: 'service-resolver', Name: 'ghost', ConnectTimeout: '2s' }], all, catalog);
    assert.deepEqual(r.problems, [], "web's Protocol tcp is not the mesh's to refuse");
    assert.deepEqual(
      r.unsupported.filter((u) => u.entry === 'service-defaults/web'),
      [],
      'nor its fields to report',
    );
    assert.deepEqual(
      r.missing.map((m) => `${m.entry} ${m.field}`),
      [
        'service-defaults/mcp-gateway UpstreamConfig.Overrides[1].Name',
        'service-defaults/mcp-gateway UpstreamConfig.Overrides[2].Name',
        'service-resolver/ghost Name',
      ],
    );
    assert.match(r.missing[0]?.reason ?? '', /"web" is not an MCP service/);
    assert.match(r.missing[2]?.reason ?? '', /no service "ghost" is registered in Consul \(kept/);
    assert.equal(r.overlay.services.get('ghost')?.[0]?.settings['routing.connectTimeoutMs']?.value, 2000, 'kept for when it registers');
    assert.equal(r.overlay.services.get('weather')?.[0]?.settings['routing.connectTimeoutMs']?.value, 900);
  });
});
