// Snapshot builds that reuse the previous build (MeshBuilder keeps unchanged services, the encoder and
// buildSnapshot skip what did not change) must publish exactly what a build from scratch publishes, and must
// still refuse what a build from scratch refuses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildSnapshot, ResourceEncoder, SnapshotError, type Snapshot } from '../../control-plane/src/cache/snapshot.ts';
import { MeshBuilder, type ServiceSpec } from '../../control-plane/src/model/mesh.ts';
import type { ProxyInfo } from '../../control-plane/src/model/types.ts';
import { proxyResources } from '../../control-plane/src/translate/proxy.ts';
import type { XdsResource } from '../../control-plane/src/translate/resource.ts';
import { RESOURCE_KINDS } from '../../control-plane/src/xds/proto.ts';
import { meshSpecs } from '../bench/mesh.ts';

const GATEWAY: ProxyInfo = { id: 'gw', role: 'gateway', listenerPort: 8080 };

/** Every kind's version and every resource's name, version and bytes. */
function contents(s: Snapshot): unknown {
  return Object.fromEntries(
    RESOURCE_KINDS.map((k) => [
      k,
      { version: s.versions[k], resources: [...s.resources[k]].map(([n, r]) => [n, r.version, Buffer.from(r.bytes).toString('base64')]) },
    ]),
  );
}

function fromScratch(specs: readonly ServiceSpec[]): Snapshot {
  const { mesh } = new MeshBuilder().build(specs);
  return buildSnapshot('gw', proxyResources(mesh, GATEWAY), new ResourceEncoder());
}

describe('incremental snapshot builds', () => {
  it('publish exactly what a build from scratch publishes, through changes, additions, removals and undos', () => {
    const builder = new MeshBuilder();
    const encoder = new ResourceEncoder();
    let previous: Snapshot | undefined;
    const steps: ServiceSpec[][] = [
      meshSpecs(20, 3),
      meshSpecs(20, 3, { service: 4, port: 9001 }),
      meshSpecs(20, 3), // the change undone
      meshSpecs(21, 3), // a service added
      meshSpecs(19, 3), // two removed
      meshSpecs(19, 3).map((s, i) => (i === 7 ? { ...s, endpoints: [...s.endpoints].reverse() } : s)), // same, out of order
      meshSpecs(19, 3).map((s, i) => (i === 7 ? { ...s, endpoints: s.endpoints.map((e, j) => (j === 1 ? { ...e, weight: 5 } : e)) } : s)),
      meshSpecs(19, 3).map((s, i) =>
        i === 8 ? { ...s, endpoints: s.endpoints.map((e, j) => (j === 0 ? { ...e, locality: { ...e.locality, zone: 'c' } } : e)) } : s,
      ),
      meshSpecs(19, 3).map((s, i) => (i === 9 ? { ...s, sidecar: true } : s)),
    ];
    for (const [n, specs] of steps.entries()) {
      const { mesh, commit } = builder.build(specs);
      const snap = buildSnapshot('gw', proxyResources(mesh, GATEWAY), encoder, previous);
      encoder.rotate();
      commit();
      assert.deepEqual(contents(snap), contents(fromScratch(specs)), `step ${n}`);
      if (previous && n === 1) {
        // Only the changed service's endpoints differ: everything else is the previous snapshot's, unsorted and unhashed.
        assert.equal(snap.resources.cluster, previous.resources.cluster, 'unchanged kinds are reused whole');
        assert.equal(snap.resources.listener, previous.resources.listener);
        assert.notEqual(snap.versions.endpoint, previous.versions.endpoint);
      }
      if (previous && n === 2) {
        // Undoing a change finds the resources encoded before it (the encoder remembers what is in use).
        assert.equal(snap.resources.cluster, previous.resources.cluster);
      }
      previous = snap;
    }
  });

  it('keeps unchanged services by identity even when the source hands over new objects, and sees every field change', () => {
    const builder = new MeshBuilder();
    const first = builder.build(meshSpecs(5, 3));
    first.commit();
    const again = builder.build(meshSpecs(5, 3));
    again.mesh.services.forEach((s, i) => {
      assert.equal(s, first.mesh.services[i], 'same content, same object');
    });
    again.commit();
    const tweak = (f: (e: ServiceSpec['endpoints'][number]) => object): ServiceSpec[] =>
      meshSpecs(5, 3).map((s, i) => (i === 2 ? { ...s, endpoints: s.endpoints.map((e, j) => (j === 1 ? (f(e) as typeof e) : e)) } : s));
    const changes = [
      tweak((e) => ({ ...e, healthy: false })),
      tweak((e) => ({ ...e, weight: 3 })),
      tweak((e) => ({ ...e, locality: { ...e.locality, region: 'other' } })),
      tweak((e) => ({ ...e, healthFrom: { source: 'consul', status: 'warning', checks: 1 } })),
      meshSpecs(5, 3).map((s, i) => (i === 2 ? { ...s, transport: 'sse' as const } : s)),
    ];
    for (const [n, specs] of changes.entries()) {
      const r = builder.build(specs);
      assert.notEqual(r.mesh.services[2], first.mesh.services[2], `change ${n} is seen`);
      assert.equal(r.mesh.services[3], first.mesh.services[3], `change ${n} leaves other services alone`);
    }
  });

  it('still refuses a snapshot whose change breaks a rule that spans resources', () => {
    const encoder = new ResourceEncoder();
    const { mesh } = new MeshBuilder().build(meshSpecs(3, 1));
    const good = buildSnapshot('gw', proxyResources(mesh, GATEWAY), encoder);
    encoder.rotate();
    // Only the endpoints change, and one cluster's EDS name no longer exists: the reference check must run.
    const broken: XdsResource[] = proxyResources(mesh, GATEWAY).map((r) =>
      r.kind === 'endpoint' && r.name === 'mcp.svc-0001'
        ? { ...r, name: 'mcp.svc-0001-renamed', body: { ...r.body, cluster_name: 'mcp.svc-0001-renamed' } }
        : r,
    );
    assert.throws(
      () => buildSnapshot('gw', broken, encoder, good),
      (err: unknown) => err instanceof SnapshotError && /references endpoints "mcp\.svc-0001"/.test(err.message),
    );
    // Same names, one cluster's body changed to name endpoints that do not exist.
    const dangling = proxyResources(mesh, GATEWAY).map((r) =>
      r.kind === 'cluster' && r.name === 'mcp.svc-0002'
        ? { ...r, body: { ...r.body, eds_cluster_config: { ...(r.body['eds_cluster_config'] as object), service_name: 'nowhere' } } }
        : r,
    );
    assert.throws(() => buildSnapshot('gw', dangling, encoder, good), /cluster "mcp\.svc-0002" references endpoints "nowhere"/);
    // A second listener on the same address: the listener rule must run though only a listener was added.
    const dup = proxyResources(mesh, GATEWAY).flatMap((r) =>
      r.kind === 'listener' ? [r, { ...r, name: `${r.name}-copy`, body: { ...r.body, name: `${r.name}-copy` } }] : [r],
    );
    assert.throws(() => buildSnapshot('gw', dup, encoder, good), /listener\.unique-address/);
  });
});
