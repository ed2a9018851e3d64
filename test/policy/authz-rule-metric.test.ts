// mcpmesh_authz_rule_decisions_total: the authorizer counts each decision by the rule that took it (what the web
// console's decisions table shows), over real gRPC Checks, with label values bounded by the policy whatever
// the requests carry.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CHECK_PATH, AuthzServer, ruleLabel } from '../../control-plane/src/authz/server.ts';
import { compilePolicy } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { encodeCheckRequest, type CheckSpec } from './helpers.ts';

const POLICY = parsePolicy(
  `
trustDomain: mcpmesh.local
services:
  weather: {}
  vault: { requiredScopes: [vault.read] }
roles:
  analyst:
    allow:
      - { service: weather, tools: ["get_*"] }
      - { service: vault, tools: ["*"] }
      - { service: weather, resources: ["weather://*"] }
    deny:
      - { service: weather, tools: ["get_secret*"] }
  intern:
    allow:
      - { service: weather, tools: [get_forecast] }
`,
  'rule-metric.yaml',
);

const call = (id: number, name: string): Record<string, unknown> => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name } });

describe('authorizer decisions by rule', () => {
  let server: AuthzServer;
  let client: grpc.Client;
  const registry = new Registry();
  const check = (s: CheckSpec): Promise<void> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        CHECK_PATH,
        (b: Buffer) => b,
        (b: Buffer) => b,
        encodeCheckRequest(s),
        (err) => (err ? reject(err) : resolve()),
      );
    });
  const counts = async (): Promise<Record<string, number>> => {
    const m = await registry.getSingleMetric('mcpmesh_authz_rule_decisions_total')?.get();
    return Object.fromEntries(
      (m?.values ?? []).map((v) => {
        const l = v.labels as Record<string, string>;
        return [`${l['service']}|${l['rule']}|${l['decision']}`, v.value];
      }),
    );
  };

  before(async () => {
    server = new AuthzServer({ policy: POLICY, registry });
    client = new grpc.Client(`127.0.0.1:${await server.listen('127.0.0.1', 0)}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('counts allows and denials under the deciding rule', async () => {
    const analyst = { sub: 'a', roles: ['analyst'] };
    await check({ service: 'weather', metadataClaims: analyst, body: call(1, 'get_forecast') });
    await check({ service: 'weather', metadataClaims: analyst, body: call(2, 'get_forecast') });
    await check({ service: 'weather', metadataClaims: analyst, body: call(3, 'get_secret_plans') });
    await check({ service: 'weather', metadataClaims: { sub: 'i', roles: ['intern'] }, body: call(4, 'get_alerts') });
    await check({ service: 'vault', metadataClaims: analyst, body: call(5, 'open') });
    // A batch whose elements two rules allow.
    await check({
      service: 'weather',
      metadataClaims: analyst,
      body: [call(6, 'get_forecast'), { jsonrpc: '2.0', id: 7, method: 'resources/read', params: { uri: 'weather://eu' } }],
    });
    assert.deepEqual(await counts(), {
      'weather|roles.analyst.allow[0]|allow': 2,
      'weather|roles.analyst.deny[0]|deny': 1,
      'weather|default-deny|deny': 1,
      'vault|services.vault.requiredScopes|deny': 1,
      'weather|several|allow': 1,
    });
  });

  it('bounds the label: unknown rule-like text is "other", a batch decided by several rules "several"', () => {
    const cp = compilePolicy(POLICY);
    assert.equal(ruleLabel('roles.analyst.deny[0]', cp), 'roles.analyst.deny[0]');
    assert.equal(ruleLabel('roles.analyst.deny[7]', cp), 'other');
    assert.equal(ruleLabel('default-deny', cp), 'default-deny');
    assert.equal(ruleLabel('header-mismatch', cp), 'header-mismatch');
    assert.equal(ruleLabel('services.vault.requiredScopes', cp), 'services.vault.requiredScopes');
    assert.equal(ruleLabel('services.attacker-chosen-name.requiredScopes', cp), 'other');
    assert.equal(ruleLabel('roles.analyst.allow[0],roles.intern.allow[0]', cp), 'several');
    assert.equal(ruleLabel('Roles With Spaces', cp), 'other');
  });
});
