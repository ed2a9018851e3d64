// A control plane started with a policy: the gateway config carries the security filters, and the same
// process answers Envoy's ext_authz Check on its authorizer port from that policy (real gRPC call).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ControlPlane, toolFilterFor } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { decodeCheckResponse, encodeCheckRequest, payloadHeader } from '../policy/helpers.ts';

const policy = parsePolicy(readFileSync(new URL('../../deploy/policy.example.yaml', import.meta.url), 'utf8'), 'policy.example.yaml');

describe('control plane with a policy', () => {
  let cp: ControlPlane;
  let client: grpc.Client;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      security: { policy, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } },
    }).start();
    client = new grpc.Client(`127.0.0.1:${cp.authzPort}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await cp?.stop();
  });

  const check = (roles: string[], tool: string): Promise<ReturnType<typeof decodeCheckResponse>> =>
    new Promise((resolve, reject) => {
      const body = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: tool, arguments: {} } };
      client.makeUnaryRequest(
        '/envoy.service.auth.v3.Authorization/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        encodeCheckRequest({ service: 'weather', method: 'POST', body, metadataClaims: { sub: 'u', roles } }),
        (err, res) => (err ? reject(err) : resolve(decodeCheckResponse(res as Buffer))),
      );
    });

  it('answers Check from the policy on its authorizer port', async () => {
    const allowed = await check(['analyst'], 'get_forecast');
    assert.equal(allowed.status?.code ?? 0, 0);
    const denied = await check(['analyst'], 'get_secret_forecast');
    assert.equal(denied.status?.code, 7, 'PERMISSION_DENIED');
    assert.match(denied.denied_response?.body ?? '', /roles\.analyst\.deny\[0\]/);
  });

  it('puts jwt_authn, RBAC, ext_authz and ext_proc in the gateway listener', async () => {
    const dump = JSON.stringify(await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?role=gateway`)).json());
    for (const f of [
      'envoy.filters.http.jwt_authn',
      'mcpmesh.rbac.deny',
      'mcpmesh.rbac.allow',
      'envoy.filters.http.ext_authz',
      'envoy.filters.http.ext_proc',
    ])
      assert.ok(dump.includes(f), f);
  });

  it('filters tools/list per caller from the same policy, by the claims jwt_authn verified', () => {
    const f = toolFilterFor(policy);
    const analyst = f({ service: 'weather', headers: {}, claims: { roles: ['analyst'] } });
    assert.ok(analyst?.('get_forecast'));
    assert.ok(!analyst?.('get_secret_forecast'));
    assert.ok(!f({ service: 'weather', headers: {} })?.('get_forecast'), 'anonymous callers see no tools');
    // jwt_authn appends its payload header, so a client's own copy reaches the processor: it counts for nothing.
    const forged = f({ service: 'weather', headers: { 'x-jwt-payload': payloadHeader({ roles: ['analyst'] }) } });
    assert.ok(!forged?.('get_forecast'), 'a client-sent x-jwt-payload grants no roles');
  });

  it('the tools/list filter honours requiredScopes: a token with the scope sees the tools, one without sees none', () => {
    const scoped = {
      ...policy,
      services: [
        { service: 'weather', mode: 'enforce' as const, requiredScopes: ['mcp.weather'], forwardToken: false, allowedCallers: [] },
      ],
    };
    const f = toolFilterFor(scoped);
    assert.ok(f({ service: 'weather', headers: {}, claims: { roles: ['analyst'], scope: 'openid mcp.weather' } })?.('get_forecast'));
    assert.ok(!f({ service: 'weather', headers: {}, claims: { roles: ['analyst'], scope: 'openid' } })?.('get_forecast'));
  });
});
