// A gateway that decides beside its Envoy (`mcpmesh gateway --policy`): its bootstrap and what the control plane
// sends it must add up to one config in which the ext_authz and ext_proc filters reach the agent, and nothing
// else. The bootstrap says local_authz in the node and holds static mcpmesh.authz / mcpmesh.extproc clusters to
// the agent's socket; the control plane reads the flag, omits its own clusters of those names (Envoy would keep
// the static ones anyway) and keeps such gateways in a snapshot of their own. The Envoy semantics gate judges
// the union as Envoy would load it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { buildSnapshot, ResourceEncoder } from '../../control-plane/src/cache/snapshot.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { Mesh, MeshSecurity, ProxyInfo } from '../../control-plane/src/model/types.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { AUTHZ_CLUSTER, EXT_PROC_CLUSTER } from '../../control-plane/src/translate/naming.ts';
import { proxyResources } from '../../control-plane/src/translate/proxy.ts';
import type { ProtoObject } from '../../control-plane/src/translate/resource.ts';
import { struct } from '../../control-plane/src/translate/resource.ts';
import { checkSnapshotRules, MIN_SIDE_STREAM_REQUESTS, type SnapshotBodies } from '../../control-plane/src/xds/envoy-rules.ts';
import { NodeError, proxyInfoFromNode, snapshotKey, type PbNode } from '../../control-plane/src/xds/node.ts';
import { RESOURCE_KINDS } from '../../control-plane/src/xds/proto.ts';
import { envoyBootstrap, localAuthzClusters, type GatewayBootstrapOptions } from '../../sidecar/src/bootstrap.ts';

const SOCKET = '/tmp/mcpmesh/authz.sock';
const controlPlane = { host: 'control-plane', port: 18000 };
const gatewayOptions = (local: boolean): GatewayBootstrapOptions => ({
  kind: 'gateway',
  nodeId: local ? 'gw-local' : 'gw-remote',
  gatewayName: 'public',
  listenerPort: 8080,
  zone: 'a',
  controlPlane,
  ...(local ? { localAuthz: { socket: SOCKET } } : {}),
});

const security: MeshSecurity = {
  policy: parsePolicy(
    'trustDomain: mcpmesh.local\nroles:\n  analyst:\n    allow:\n      - { service: weather, tools: [get_forecast] }\n',
    'policy.yaml',
  ),
  publicUrl: 'https://mcp.example.com',
  authz: { host: 'control-plane', port: 18002 },
};
const mesh = (): Mesh =>
  new MeshBuilder().build(
    parseRegistry(
      'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [{ address: 10.0.0.1, port: 7001 }] }\n  - { name: files, protocol: "2026-07-28", endpoints: [{ address: 10.0.0.2, port: 7002 }] }\n',
      'registry.yaml',
    ),
    security,
  ).mesh;

const bootstrapNode = (local: boolean): ProxyInfo => proxyInfoFromNode(envoyBootstrap(gatewayOptions(local))['node'] as PbNode);
const staticClusters = (b: ProtoObject): ProtoObject[] => (b['static_resources'] as { clusters: ProtoObject[] }).clusters;

/** The gRPC clusters the gateway listener's ext_authz and ext_proc filters name. */
function sideStreamClusterNames(listener: ProtoObject): string[] {
  const names: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      const grpc = o['grpc_service'] as { envoy_grpc?: { cluster_name?: string } } | undefined;
      if (grpc?.envoy_grpc?.cluster_name) names.push(grpc.envoy_grpc.cluster_name);
      Object.values(o).forEach(walk);
    }
  };
  walk(listener);
  return names.sort();
}

/** What Envoy holds once both halves arrive: the snapshot's resources, plus the bootstrap's static clusters. */
function union(snapshotResources: ReturnType<typeof proxyResources>, bootstrapClusters: readonly ProtoObject[]): SnapshotBodies {
  const bodies = Object.fromEntries(RESOURCE_KINDS.map((k) => [k, new Map<string, ProtoObject>()])) as unknown as Record<
    string,
    Map<string, ProtoObject>
  >;
  for (const r of snapshotResources) (bodies[r.kind] as Map<string, ProtoObject>).set(r.name, r.body);
  for (const c of bootstrapClusters) (bodies['cluster'] as Map<string, ProtoObject>).set(String(c['name']), c);
  return bodies as unknown as SnapshotBodies;
}

describe('local-authz gateway: the node', () => {
  it('the bootstrap says local_authz, and the control plane reads it into ProxyInfo', () => {
    assert.deepEqual(bootstrapNode(true), {
      id: 'gw-local',
      role: 'gateway',
      locality: { region: '', zone: 'a' },
      listenerPort: 8080,
      gatewayName: 'public',
      localAuthz: true,
    });
    assert.equal(bootstrapNode(false).localAuthz, undefined, 'a gateway without --policy says nothing');
  });

  it('gateways with and without it never share a snapshot key', () => {
    const local = bootstrapNode(true);
    const remote = bootstrapNode(false);
    assert.equal(snapshotKey(local), 'gateway|public|/a|8080|local-authz');
    assert.equal(snapshotKey(remote), 'gateway|public|/a|8080');
  });

  it('the flag is true or false, nothing else; a proxyless client cannot use it and gets it ignored', () => {
    const node = (v: unknown, ua?: string): PbNode => ({
      id: 'g',
      ...(ua ? { user_agent_name: ua } : {}),
      metadata: struct({ role: 'gateway', local_authz: v as never }) as never,
    });
    assert.equal(proxyInfoFromNode(node('true')).localAuthz, true, 'hand-written bootstraps may quote it');
    assert.equal(proxyInfoFromNode(node(false)).localAuthz, undefined);
    assert.throws(
      () => proxyInfoFromNode(node('yes')),
      (e: Error) => e instanceof NodeError && /node\.metadata\.local_authz: must be true or false \(got "yes"\)/.test(e.message),
    );
    assert.throws(() => proxyInfoFromNode(node(1)), /node\.metadata\.local_authz/);
    assert.equal(proxyInfoFromNode(node(true, 'gRPC Node')).localAuthz, undefined);
  });
});

describe('local-authz gateway: snapshot + bootstrap', () => {
  it('the snapshot has no mcpmesh.authz / mcpmesh.extproc clusters, and its filters still name them', () => {
    const m = mesh();
    const local = proxyResources(m, bootstrapNode(true));
    const remote = proxyResources(m, bootstrapNode(false));
    const clusters = (rs: typeof local): string[] =>
      rs
        .filter((r) => r.kind === 'cluster')
        .map((r) => r.name)
        .sort();
    assert.deepEqual(
      clusters(remote).filter((n) => !clusters(local).includes(n)),
      [AUTHZ_CLUSTER, EXT_PROC_CLUSTER],
    );
    assert.deepEqual(
      clusters(local).filter((n) => !clusters(remote).includes(n)),
      [],
    );
    const listener = (rs: typeof local): ProtoObject => (rs.find((r) => r.kind === 'listener') as { body: ProtoObject }).body;
    assert.deepEqual(sideStreamClusterNames(listener(local)), [AUTHZ_CLUSTER, EXT_PROC_CLUSTER]);
    assert.deepEqual(listener(local), listener(remote), 'the same filters, the same cluster names: only where they lead changes');
    // The whole gate (schema, PGV, Envoy's rules, consistency) accepts it as a snapshot.
    buildSnapshot(snapshotKey(bootstrapNode(true)), local, new ResourceEncoder());
  });

  it("the bootstrap holds each of them once, to the agent's socket, as HTTP/2 with generous circuit breakers", () => {
    const clusters = staticClusters(envoyBootstrap(gatewayOptions(true)));
    const mine = clusters.filter((c) => c['name'] === AUTHZ_CLUSTER || c['name'] === EXT_PROC_CLUSTER);
    assert.deepEqual(mine, localAuthzClusters(SOCKET));
    for (const c of mine) {
      assert.deepEqual(
        (c['load_assignment'] as { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: unknown } }> }> }).endpoints[0]
          ?.lb_endpoints[0]?.endpoint.address,
        { pipe: { path: SOCKET } },
      );
      const t = (c['circuit_breakers'] as { thresholds: Array<{ max_requests: { value: number } }> }).thresholds[0];
      assert.ok((t?.max_requests.value ?? 0) >= MIN_SIDE_STREAM_REQUESTS, `${String(c['name'])}: max_requests ${t?.max_requests.value}`);
    }
    assert.deepEqual(
      staticClusters(envoyBootstrap(gatewayOptions(false))).filter((c) => c['name'] === AUTHZ_CLUSTER || c['name'] === EXT_PROC_CLUSTER),
      [],
    );
  });

  it("together they pass the semantics gate, which then judges the bootstrap's clusters (and has teeth there)", () => {
    const resources = proxyResources(mesh(), bootstrapNode(true));
    const bootstrapClusters = staticClusters(envoyBootstrap(gatewayOptions(true)));
    assert.deepEqual(checkSnapshotRules(union(resources, bootstrapClusters)), []);
    // Every cluster a filter names exists once in the union: from the bootstrap.
    const names = new Set([
      ...resources.filter((r) => r.kind === 'cluster').map((r) => r.name),
      ...bootstrapClusters.map((c) => String(c['name'])),
    ]);
    for (const n of [AUTHZ_CLUSTER, EXT_PROC_CLUSTER]) assert.ok(names.has(n), n);
    // Envoy's default breakers on the static clusters would be refused: the rule looks at them.
    const defaults = bootstrapClusters.map((c) => (c['name'] === EXT_PROC_CLUSTER ? { ...c, circuit_breakers: undefined } : c));
    assert.match(
      checkSnapshotRules(union(resources, defaults)).join('\n'),
      /envoy\.cluster\.side-stream-circuit-breakers: cluster "mcpmesh\.extproc" allows 1024/,
    );
  });

  it('the snapshot cache builds one snapshot per kind of gateway', () => {
    const cache = new SnapshotCache();
    cache.setMesh(mesh());
    const a = cache.watch(bootstrapNode(true), () => {});
    const b = cache.watch(bootstrapNode(false), () => {});
    assert.ok(a.snapshot && b.snapshot);
    assert.notEqual(a.snapshot.key, b.snapshot.key);
    assert.equal(a.snapshot.resources.cluster.has(AUTHZ_CLUSTER), false);
    assert.equal(b.snapshot.resources.cluster.has(AUTHZ_CLUSTER), true);
    a.cancel();
    b.cancel();
  });
});
