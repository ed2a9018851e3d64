// The console's view model (console/state.ts), without a browser: priorities are the EDS translator's, policy
// cells are the authorizer engine's decisions, services with the same rules share one matrix, and a proxy's
// status follows what it ACKed and NACKed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policyView, proxiesView, servicesView, localitiesKnown, defaultVantage } from '../../control-plane/src/console/state.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { Mesh } from '../../control-plane/src/model/types.ts';
import { decide } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { ProxyTracker } from '../../control-plane/src/server/proxies.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { loadAssignment } from '../../control-plane/src/translate/endpoints.ts';

function mesh(yaml: string): Mesh {
  return new MeshBuilder().build(parseRegistry(yaml, 'state-test.yaml'), undefined).mesh;
}

const MESH = mesh(`
services:
  - name: weather
    protocol: "2025-11-25"
    endpoints:
      - { address: 10.0.0.1, port: 7001, locality: { region: eu-west, zone: a } }
      - { address: 10.0.0.2, port: 7001, locality: { region: eu-west, zone: b }, healthy: false }
      - { address: 10.0.0.3, port: 7001, locality: { region: us-east, zone: a } }
  - name: alpha
    protocol: "2026-07-28"
    endpoints: [{ address: 10.0.1.1, port: 8000, locality: { region: us-east, zone: a } }]
  - name: beta
    protocol: "2026-07-28"
    endpoints: [{ address: 10.0.2.1, port: 8000, locality: { region: us-east, zone: b } }]
  - name: gamma
    protocol: "2025-11-25"
    endpoints: [{ address: 10.0.3.1, port: 8000, locality: { region: us-east, zone: b } }]
`);

const POLICY = parsePolicy(
  `
trustDomain: mesh.test
services:
  beta: { mode: shadow }
roles:
  reader:
    allow:
      - { service: "*", tools: ["list_*"] }
      - { service: weather, tools: ["get_*"], resources: ["weather://*"] }
    deny:
      - { service: weather, tools: ["get_secret*"] }
  admin:
    allow:
      - { service: "*", tools: ["*"], prompts: ["*"] }
`,
  'state-test-policy.yaml',
);

describe('console state', () => {
  it('gives each locality the priority the EDS translator sends a proxy at the vantage', () => {
    for (const vantage of [{ region: 'eu-west', zone: 'a' }, { region: 'us-east', zone: 'a' }, undefined]) {
      const weather = servicesView(MESH, [], vantage).find((s) => s.name === 'weather');
      assert.ok(weather);
      const cla = loadAssignment(MESH.services.find((s) => s.name === 'weather')!, vantage).body as {
        endpoints: Array<{ locality: { region: string; zone: string }; priority: number }>;
      };
      assert.deepEqual(
        weather.localities.map((l) => `${l.region}/${l.zone}=${l.priority}`).sort(),
        cla.endpoints.map((l) => `${l.locality.region}/${l.locality.zone}=${l.priority}`).sort(),
      );
      assert.equal(weather.healthy, 2);
      assert.equal(weather.unhealthy, 1);
    }
    const fromEu = servicesView(MESH, [], { region: 'eu-west', zone: 'a' }).find((s) => s.name === 'weather');
    assert.deepEqual(
      fromEu?.localities.map((l) => `${l.region}/${l.zone}`),
      ['eu-west/a', 'eu-west/b', 'us-east/a'],
      'sorted by priority',
    );
    assert.equal(fromEu?.localities[1]?.endpoints[0]?.healthy, false);
  });

  it('decides every cell with the engine, groups services that share rules, marks shadow-mode denials', () => {
    const view = policyView(POLICY, MESH);
    assert.ok(view);
    assert.deepEqual(view.roles, ['reader', 'admin']);
    // alpha and gamma are covered by the same ("*") rules but speak different revisions; beta is in shadow mode.
    assert.deepEqual(
      view.groups.map((g) => g.services),
      [['alpha'], ['beta'], ['gamma'], ['weather']],
    );
    const same = policyView(
      POLICY,
      mesh(`
services:
  - { name: a1, protocol: "2025-11-25", endpoints: [] }
  - { name: a2, protocol: "2025-11-25", endpoints: [] }
  - { name: a3, protocol: "2025-11-25", endpoints: [] }
`),
    );
    // beta and weather are named by the policy, so they have matrices even when the mesh lacks them.
    assert.deepEqual(
      same?.groups.map((g) => g.services),
      [['a1', 'a2', 'a3'], ['beta'], ['weather']],
      'one matrix for services with the same rules',
    );
    assert.equal(same?.groups[1]?.protocol, '', 'not in the mesh');
    for (const g of view.groups) {
      const service = g.services[0] as string;
      g.columns.forEach((c, ci) => {
        view.roles.forEach((role, ri) => {
          const action =
            c.kind === 'service'
              ? { kind: 'service' as const }
              : c.kind === 'tool'
                ? { kind: 'tool' as const, name: c.name }
                : c.kind === 'resource'
                  ? { kind: 'resource' as const, uri: c.name }
                  : { kind: 'prompt' as const, name: c.name };
          const d = decide(POLICY, { service, roles: [role], action });
          const cell = g.cells[ri]?.[ci];
          assert.equal(cell?.rule, d.rule, `${role} ${service} ${c.kind} ${c.name}`);
          assert.equal(cell?.outcome, d.allow ? 'allow' : g.mode === 'shadow' ? 'shadow' : 'deny');
        });
      });
    }
    const weather = view.groups.find((g) => g.services[0] === 'weather');
    const col = weather?.columns.findIndex((c) => c.kind === 'tool' && c.name === 'get_secret*') ?? -1;
    assert.deepEqual(weather?.cells[0]?.[col], { outcome: 'deny', rule: 'roles.reader.deny[0]' });
    assert.equal(weather?.columns[col]?.pattern, true);
    const beta = view.groups.find((g) => g.services[0] === 'beta');
    assert.ok(beta?.cells[0]?.some((c) => c.outcome === 'shadow'));
    assert.equal(policyView(undefined, MESH), null);
  });

  it('reports a proxy as pending, converged or nacked from its per-type versions', () => {
    const tracker = new ProxyTracker();
    const gw = tracker.open(
      { id: 'gw', role: 'gateway', listenerPort: 8080, locality: { region: 'us-east', zone: 'b' } },
      'sotw',
      'ipv4:127.0.0.1:1',
    );
    const sc = tracker.open({ id: 'sc', role: 'sidecar', service: 'weather', listenerPort: 15006 }, 'delta', 'ipv4:127.0.0.1:2');
    Object.assign(tracker.type(gw, 'cluster'), {
      sentVersion: 'v2',
      sentAt: performance.now() - 2000,
      ackedVersion: 'v1',
      ackedAt: Date.now() - 60_000,
    });
    Object.assign(tracker.type(sc, 'cluster'), { sentVersion: 'v2', ackedVersion: 'v2', ackedAt: Date.now() - 5000 });
    const view = (): ReturnType<typeof proxiesView> => proxiesView(tracker.list(), 'mesh.test');
    assert.deepEqual(
      view().map((p) => [p.id, p.status]),
      [
        ['gw', 'pending'],
        ['sc', 'converged'],
      ],
    );
    assert.ok(Math.abs(Date.parse(view()[0]?.lastPushAt ?? '') - (Date.now() - 2000)) < 1000, 'a pending push is dated when it was sent');
    assert.equal(view()[0]?.identity, 'spiffe://mesh.test/gateway/default');
    assert.equal(view()[1]?.identity, 'spiffe://mesh.test/mcp/weather');
    Object.assign(tracker.type(gw, 'cluster'), { nackedVersion: 'v2', nackedAt: Date.now(), lastNack: 'bad cluster', nacks: 1 });
    assert.equal(view()[0]?.status, 'nacked');
    assert.equal(view()[0]?.types[0]?.lastNack, 'bad cluster');
    Object.assign(tracker.type(gw, 'cluster'), { sentVersion: 'v3', ackedVersion: 'v3' });
    assert.equal(view()[0]?.status, 'converged', 'an ACK of a later version clears the NACK status (its text stays)');
    assert.equal(proxiesView(tracker.list(), undefined)[0]?.identity, null);
    // Vantage: the first gateway's locality; localities from endpoints and proxies.
    assert.deepEqual(defaultVantage(localitiesKnown(MESH, tracker.list()), tracker.list()), { region: 'us-east', zone: 'b' });
    assert.ok(localitiesKnown(MESH, []).includes('eu-west/b'));
  });
});
