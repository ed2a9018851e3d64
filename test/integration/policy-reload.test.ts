// The policy file is watched: a valid edit changes the authorizer's decisions, the tools/list filter and the
// gateway's RBAC without a restart; a broken edit (or one that changes the trust domain) is refused with
// the reason, and the last good policy stays in force.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { decodeCheckResponse, encodeCheckRequest } from '../policy/helpers.ts';
import { waitFor } from '../helpers/wait.ts';

const policyYaml = (tools: string, trustDomain = 'mesh.test'): string =>
  `trustDomain: ${trustDomain}\nroles:\n  analyst:\n    allow:\n      - service: "*"\n        tools: [${tools}]\n`;

describe('policy hot reload', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-policy-'));
  const file = path.join(dir, 'policy.yaml');
  let n = 0;
  const writePolicy = (text: string): void => {
    const tmp = path.join(dir, `.policy.${n++}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  };
  let cp: ControlPlane;
  let client: grpc.Client;

  before(async () => {
    writeFileSync(
      path.join(dir, 'r.yaml'),
      'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n  - { name: inventory, protocol: "2026-07-28", endpoints: [] }\n',
    );
    writeFileSync(file, policyYaml('get_forecast'));
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      quietMs: 10,
      maxDelayMs: 100,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      certTtlMs: 3_600_000,
      security: {
        policy: parsePolicy(readFileSync(file, 'utf8'), file),
        publicUrl: 'https://mcp.example.com',
        authz: { host: '127.0.0.1', port: 18002 },
      },
      policyFile: { path: file, text: readFileSync(file, 'utf8') },
    }).start();
    client = new grpc.Client(`127.0.0.1:${cp.authzPort}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await cp?.stop();
  });

  const allowed = (tool: string): Promise<boolean> =>
    new Promise((resolve, reject) => {
      const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool } };
      client.makeUnaryRequest(
        '/envoy.service.auth.v3.Authorization/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        encodeCheckRequest({ service: 'weather', method: 'POST', body, metadataClaims: { sub: 'u', roles: ['analyst'] } }),
        (err, res) => (err ? reject(err) : resolve((decodeCheckResponse(res as Buffer).status?.code ?? 0) === 0)),
      );
    });
  const gatewayRbac = async (): Promise<string> =>
    JSON.stringify(await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?role=gateway`)).json());
  const sources = async (): Promise<Record<string, string>> =>
    (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/sources`)).json()) as Record<string, string>;

  it('applies a valid edit to the authorizer and the header RBAC', async () => {
    assert.equal(await allowed('get_forecast'), true);
    assert.equal(await allowed('get_alerts'), false);
    assert.ok(!(await gatewayRbac()).includes('get_alerts'));
    writePolicy(policyYaml('get_forecast, get_alerts'));
    await waitFor('authorizer uses the new policy', () => allowed('get_alerts'), 10_000);
    assert.ok((await gatewayRbac()).includes('^get_alerts$'), "the 2026-07-28 service's RBAC names the new tool");
  });

  it('refuses a broken edit with the file, path and reason, and keeps the last good policy', async () => {
    writePolicy(`${policyYaml('get_forecast')}    deny:\n      - service: weather\n        tools: ["bad[glob"]\n`);
    const err = await waitFor('policy error reported', async () => (await sources())['policy'], 10_000);
    assert.match(err, /policy\.yaml/);
    assert.match(err, /roles\.analyst\.deny\[0\]\.tools\[0\]/);
    assert.equal(await allowed('get_alerts'), true, 'the previous (valid) policy is still in force');
    assert.match(
      await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text(),
      /mcpmesh_source_errors_total\{source="policy"\} [1-9]/,
    );
  });

  it('refuses a trust domain change (it needs a restart) and recovers on the next good edit', async () => {
    writePolicy(policyYaml('get_forecast', 'other.test'));
    await waitFor(
      'trust domain change refused',
      async () => /trustDomain: changed from "mesh.test" to "other.test"/.test((await sources())['policy'] ?? ''),
      10_000,
    );
    writePolicy(policyYaml('get_forecast'));
    await waitFor('error cleared', async () => (await sources())['policy'] === undefined, 10_000);
    assert.equal(await allowed('get_alerts'), false, 'the new policy no longer allows get_alerts');
  });
});
