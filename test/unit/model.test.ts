import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Coalescer } from '../../control-plane/src/cache/coalesce.ts';
import {
  DEFAULT_HEALTH_CHECK,
  DEFAULT_OUTLIER_DETECTION,
  DEFAULT_CIRCUIT_BREAKERS,
  DEFAULT_ROUTING,
} from '../../control-plane/src/model/defaults.ts';
import { parseDurationMs, protoDuration } from '../../control-plane/src/model/duration.ts';
import { MeshBuilder, type ServiceSpec } from '../../control-plane/src/model/mesh.ts';
import { NodeError, proxyInfoFromNode, snapshotKey } from '../../control-plane/src/xds/node.ts';
import { struct } from '../../control-plane/src/translate/resource.ts';

const spec = (name: string, ports: number[] = [1]): ServiceSpec => ({
  name,
  protocol: '2025-11-25',
  transport: 'streamable-http',
  sidecar: false,
  routing: DEFAULT_ROUTING,
  outlierDetection: DEFAULT_OUTLIER_DETECTION,
  circuitBreakers: DEFAULT_CIRCUIT_BREAKERS,
  healthCheck: DEFAULT_HEALTH_CHECK,
  endpoints: ports.map((port) => ({ address: '10.0.0.1', port, locality: { region: '', zone: '' }, weight: 1, healthy: true })),
});

describe('mesh model', () => {
  it('sorts services and endpoints so translation is deterministic', () => {
    const { mesh } = new MeshBuilder().build([spec('b', [3, 1, 2]), spec('a')]);
    assert.deepEqual(
      mesh.services.map((s) => s.name),
      ['a', 'b'],
    );
    assert.deepEqual(
      mesh.services[1]?.endpoints.map((e) => e.port),
      [1, 2, 3],
    );
  });

  it('bumps the incarnation of a service that comes back, only for committed meshes', () => {
    const b = new MeshBuilder();
    const inc = (specs: ServiceSpec[], commit = true): Record<string, number> => {
      const r = b.build(specs);
      if (commit) r.commit();
      return Object.fromEntries(r.mesh.services.map((s) => [s.name, s.incarnation]));
    };
    assert.deepEqual(inc([spec('a'), spec('b')]), { a: 0, b: 0 });
    assert.deepEqual(inc([spec('b')], false), { b: 0 }, 'a refused mesh without a...');
    assert.deepEqual(inc([spec('a'), spec('b')]), { a: 0, b: 0 }, '...leaves no trace');
    assert.deepEqual(inc([spec('b')]), { b: 0 });
    assert.deepEqual(inc([spec('a'), spec('b')]), { a: 1, b: 0 });
    assert.deepEqual(inc([spec('a'), spec('b')]), { a: 1, b: 0 });
  });

  it('takes the incarnation a source derives from its state as is, whatever this builder saw before', () => {
    const b = new MeshBuilder();
    const inc = (specs: ServiceSpec[]): Record<string, number> => {
      const r = b.build(specs);
      r.commit();
      return Object.fromEntries(r.mesh.services.map((s) => [s.name, s.incarnation]));
    };
    assert.deepEqual(inc([{ ...spec('a'), incarnation: 7 }]), { a: 7 });
    assert.deepEqual(inc([]), {});
    assert.deepEqual(
      inc([{ ...spec('a'), incarnation: 7 }]),
      { a: 7 },
      'a re-add at the same source state is the same service: replicas and restarts agree',
    );
    assert.deepEqual(inc([{ ...spec('a'), incarnation: 31 }]), { a: 31 });
    assert.deepEqual(
      new MeshBuilder().build([{ ...spec('a'), incarnation: 31 }]).mesh.services[0]?.incarnation,
      31,
      'a fresh builder (a restart) agrees',
    );
  });

  it('parses durations as operators write them', () => {
    assert.equal(parseDurationMs('250ms'), 250);
    assert.equal(parseDurationMs('1.5s'), 1500);
    assert.equal(parseDurationMs('2h'), 7_200_000);
    assert.equal(parseDurationMs('0'), 0);
    assert.equal(parseDurationMs('5'), undefined);
    assert.equal(parseDurationMs('soon'), undefined);
    assert.deepEqual(protoDuration(1250), { seconds: 1, nanos: 250_000_000 });
  });
});

describe('proxy identity from the xDS node', () => {
  const n = (id: string, metadata: Record<string, string | number>, locality?: { region: string; zone: string }) => ({
    id,
    metadata: struct(metadata) as never,
    locality: locality ?? null,
  });

  it('reads role, service, ports and locality', () => {
    const p = proxyInfoFromNode(
      n('s1', { role: 'sidecar', service: 'weather', inbound_port: '15001', app_port: 7001 }, { region: 'r', zone: 'z' }),
    );
    assert.deepEqual(p, {
      id: 's1',
      role: 'sidecar',
      service: 'weather',
      locality: { region: 'r', zone: 'z' },
      listenerPort: 15001,
      appPort: 7001,
    });
    assert.equal(snapshotKey(p), 'sidecar|weather|15001|7001');
    assert.equal(proxyInfoFromNode(n('g', {})).role, 'gateway', 'gateway is the default role');
  });

  it('rejects bad nodes with the field that is wrong', () => {
    assert.throws(() => proxyInfoFromNode(n('', {})), /node\.id: is required/);
    assert.throws(
      () => proxyInfoFromNode(n('g', { listener_port: 0 })),
      (e: Error) => e instanceof NodeError && /node\.metadata\.listener_port: must be a port number/.test(e.message),
    );
    assert.throws(() => proxyInfoFromNode(n('s', { role: 'sidecar', service: 'x', app_port: 'http' })), /node\.metadata\.app_port/);
  });
});

describe('change coalescing', () => {
  it('turns a burst into one flush with the latest value, and bounds the wait by maxDelay', async () => {
    const flushed: Array<{ v: number; at: number }> = [];
    const start = Date.now();
    const c = new Coalescer<number>(40, 120, (v) => flushed.push({ v, at: Date.now() - start }));
    c.push(1);
    c.push(2);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(
      flushed.map((f) => f.v),
      [2],
    );
    // A change every 20 ms never leaves a 40 ms quiet window: maxDelay forces a flush anyway.
    const t0 = Date.now() - start;
    for (let i = 3; i < 12; i++) {
      c.push(i);
      await new Promise((r) => setTimeout(r, 20));
    }
    c.stop();
    assert.ok(flushed.length >= 2, `expected a forced flush, got ${JSON.stringify(flushed)}`);
    assert.ok(flushed[1]!.at - t0 < 120 + 60, `forced flush came late: ${flushed[1]!.at - t0} ms`);
  });
});
