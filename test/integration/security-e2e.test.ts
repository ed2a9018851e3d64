// Security end to end: a REAL MCP SDK client (Client + StreamableHTTPClientTransport) talks to a REAL MCP
// server (server-everything, Streamable HTTP) through a test harness playing Envoy's gateway filter chain:
//
//   jwt_authn (verify the bearer token with the dev issuer; 401 otherwise)
//   -> ext_authz (Check over gRPC with the body and the verified claims as jwt_authn metadata)
//   -> ext_proc  (test/extproc/harness.ts's Envoy emulator, with extProcFilterConfig()/extProcRouteOverride())
//   -> router    (server-everything)
//
// Both gRPC services are the ones a real ControlPlane started with a policy serves on its authorizer port.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { extProcFilterConfig, extProcRouteOverride } from '../../control-plane/src/extproc/config.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { EnvoyExtProcProxy } from '../extproc/harness.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { allToolNames } from '../helpers/forward.ts';
import { startGateway, type Gateway } from '../helpers/gateway-harness.ts';
import { payloadHeader } from '../policy/helpers.ts';

const ISSUER = 'http://127.0.0.1/oauth';
const AUDIENCE = 'mcp-mesh';
const SERVICE = 'everything';

const POLICY = `
trustDomain: mcpmesh.local
providers:
  - { name: dev, issuer: "${ISSUER}", audiences: [${AUDIENCE}], jwksUri: "${ISSUER}/jwks" }
roles:
  echoer:
    allow:
      - { service: ${SERVICE}, tools: [echo] }
  summer:
    allow:
      - { service: ${SERVICE}, tools: [get-sum, echo] }
    deny:
      - { service: ${SERVICE}, tools: [echo] }
`;

function assertForbidden(tool: string, rule: RegExp) {
  return (err: Error & { code?: number }): boolean => {
    assert.equal(err.code, 403, err.message);
    const body = JSON.parse(err.message.slice(err.message.indexOf('{'))) as { id: unknown; error: { code: number; message: string } };
    assert.equal(body.error.code, -32003, err.message);
    assert.match(body.error.message, new RegExp(`tool "${tool}" on service "${SERVICE}" is denied by policy rule`));
    assert.match(body.error.message, rule);
    assert.equal(typeof body.id, 'number', 'the JSON-RPC id of the tools/call is kept');
    return true;
  };
}

describe('secured mesh end to end: SDK client -> jwt_authn + ext_authz + ext_proc (control plane) -> server-everything', () => {
  let everything: RunningServer;
  let cp: ControlPlane;
  let extProc: EnvoyExtProcProxy;
  let gateway: Gateway;
  let issuer: DevIssuer;
  const clients: Client[] = [];

  async function connect(token: string): Promise<Client> {
    const client = new Client({ name: 'security-e2e', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(gateway.url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
    );
    clients.push(client);
    return client;
  }
  const tokenFor = async (role: string): Promise<string> => (await issuer.sign({ subject: `agent-${role}`, roles: [role] })).token;

  before(async () => {
    issuer = await DevIssuer.create({ issuer: ISSUER, audience: AUDIENCE });
    everything = await startEverythingHttp();
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    writeFileSync(path.join(dir, 'r.yaml'), `services:\n  - { name: ${SERVICE}, protocol: "2025-11-25", endpoints: [] }\n`);
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
      security: {
        policy: parsePolicy(POLICY, 'security-e2e.yaml'),
        publicUrl: 'https://mcp.example.com',
        authz: { host: '127.0.0.1', port: 18002 },
      },
    }).start();
    extProc = new EnvoyExtProcProxy({
      filter: extProcFilterConfig('mcpmesh_extproc'),
      routeOverride: extProcRouteOverride(SERVICE),
      processorPort: cp.authzPort,
      upstream: new URL(everything.url).origin,
      attributeValues: { 'xds.cluster_name': `mcp.${SERVICE}` },
    });
    const extProcOrigin = await extProc.listen();
    gateway = await startGateway(issuer, cp.authzPort, new URL(new URL(everything.url).pathname, extProcOrigin), SERVICE);
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await gateway?.close();
    await extProc?.close();
    await cp?.stop();
    await everything?.stop();
  });

  it('echoer: listTools shows only echo; echo works; get-sum is refused with a JSON-RPC error', async () => {
    const client = await connect(await tokenFor('echoer'));
    assert.deepEqual(await allToolNames(client), ['echo']);
    // The tools/list response really went through the processor and was rewritten.
    assert.ok(
      extProc.log.some((e) => e.method === 'POST' && e.responseBodyMode !== 'NONE' && e.bodyMutations > 0),
      JSON.stringify(extProc.log),
    );
    const r = await client.callTool({ name: 'echo', arguments: { message: 'through the mesh' } });
    assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: through the mesh' }]);
    await assert.rejects(client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } }), assertForbidden('get-sum', /default-deny/));
    // The session is still usable afterwards.
    const again = await client.callTool({ name: 'echo', arguments: { message: 'still here' } });
    assert.deepEqual(again.content, [{ type: 'text', text: 'Echo: still here' }]);
  });

  it('summer: listTools shows only get-sum (echo explicitly denied); get-sum works; echo is refused', async () => {
    const client = await connect(await tokenFor('summer'));
    assert.deepEqual(await allToolNames(client), ['get-sum']);
    const r = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 40 } });
    assert.match(JSON.stringify(r.content), /42/);
    await assert.rejects(
      client.callTool({ name: 'echo', arguments: { message: 'nope' } }),
      assertForbidden('echo', /roles\.summer\.deny\[0\]/),
    );
  });

  it('a client-sent x-jwt-payload claiming another role changes nothing: tools/list reads only verified claims', async () => {
    const forgedClaims = payloadHeader({ sub: 'mallory', roles: ['summer', 'echoer'] });
    const client = new Client({ name: 'security-e2e', version: '1.0.0' });
    const headers = { authorization: `Bearer ${await tokenFor('echoer')}`, 'x-jwt-payload': forgedClaims };
    await client.connect(new StreamableHTTPClientTransport(new URL(gateway.url), { requestInit: { headers } }));
    clients.push(client);
    assert.deepEqual(await allToolNames(client), ['echo']);
  });

  it('without a valid token the harness answers 401 (and the SDK client cannot connect)', async () => {
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    });
    const reqHeaders = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const none = await fetch(gateway.url, { method: 'POST', headers: reqHeaders, body: init });
    assert.equal(none.status, 401);
    await none.body?.cancel();
    const bad = await fetch(gateway.url, { method: 'POST', headers: { ...reqHeaders, authorization: 'Bearer not.a.jwt' }, body: init });
    assert.equal(bad.status, 401);
    await bad.body?.cancel();
    // A token signed by another issuer's key (same iss/aud) is refused too.
    const other = await DevIssuer.create({ issuer: ISSUER, audience: AUDIENCE });
    const { token: forged } = await other.sign({ subject: 'mallory', roles: ['summer'] });
    const forgedRes = await fetch(gateway.url, {
      method: 'POST',
      headers: { ...reqHeaders, authorization: `Bearer ${forged}` },
      body: init,
    });
    assert.equal(forgedRes.status, 401);
    await forgedRes.body?.cancel();
    const client = new Client({ name: 'security-e2e', version: '1.0.0' });
    await assert.rejects(client.connect(new StreamableHTTPClientTransport(new URL(gateway.url))), (err: Error & { code?: number }) => {
      assert.match(`${err.code ?? ''} ${err.message}`, /401|Unauthorized/i, err.message);
      return true;
    });
    await client.close().catch(() => {});
  });
});
