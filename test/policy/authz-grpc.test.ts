// The MCP authorizer over real gRPC: Envoy's CheckRequest messages (protobufjs, Envoy's own protos) sent with
// @grpc/grpc-js to envoy.service.auth.v3.Authorization/Check, CheckResponses decoded and checked.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CHECK_PATH, AuthzServer } from '../../control-plane/src/authz/server.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { decodeCheckResponse, encodeCheckRequest, headerOf, structJson, type CheckSpec, type DecodedCheckResponse } from './helpers.ts';
import type { JsonRpcErrorReply } from '../../control-plane/src/authz/check.ts';

/** The JSON-RPC error response in a denial's body (a denied batch answers with an array of them). */

const POLICY_YAML = `
trustDomain: mcpmesh.local
services:
  weather: {}
  files: { mode: shadow }
  vault: { requiredScopes: [vault.read] }
roles:
  analyst:
    allow:
      - { service: weather, tools: ["get_*", echo], resources: ["weather://*"] }
      - { service: files, tools: [read_file] }
      - { service: vault, tools: ["*"] }
    deny:
      - { service: weather, tools: ["get_secret*"] }
  intern:
    allow:
      - { service: weather, tools: [get_forecast] }
`;

const identity = (b: Buffer): Buffer => b;
const ANALYST = { sub: 'alice', roles: ['analyst'] };
const INTERN = { sub: 'ivan', roles: ['intern'] };
const call = (id: number | string, name: string, args: Record<string, unknown> = {}): Record<string, unknown> => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args },
});

describe('MCP authorizer over gRPC (envoy.service.auth.v3.Authorization/Check)', () => {
  let server: AuthzServer;
  let client: grpc.Client;
  let registry: Registry;
  const logs: Array<Record<string, unknown>> = [];

  const check = (s: CheckSpec): Promise<DecodedCheckResponse> => checkRaw(encodeCheckRequest(s)).then(decodeCheckResponse);
  const checkRaw = (req: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(CHECK_PATH, identity, identity, req, (err, resp) => (err ? reject(err) : resolve(resp as Buffer)));
    });
  const denied = (r: DecodedCheckResponse): { status: number; body: JsonRpcErrorReply; decision?: string; contentType?: string } => {
    assert.ok(r.denied_response, `expected a denial, got ${JSON.stringify(r)}`);
    assert.equal(r.ok_response, undefined);
    return {
      status: Number(r.denied_response.status?.code),
      body: JSON.parse(r.denied_response.body ?? '') as JsonRpcErrorReply,
      decision: headerOf(r.denied_response.headers, 'x-mcpmesh-decision'),
      contentType: headerOf(r.denied_response.headers, 'content-type'),
    };
  };
  const metric = async (labels: Record<string, string>): Promise<number> => {
    const m = await registry.getSingleMetric('mcpmesh_authz_decisions_total')?.get();
    const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => (x.labels as Record<string, unknown>)[k] === val));
    return v?.value ?? 0;
  };

  before(async () => {
    registry = new Registry();
    const log = {
      debug() {},
      info: (msg: string, f?: Record<string, unknown>) => logs.push({ msg, ...f }),
      warn: (msg: string, f?: Record<string, unknown>) => logs.push({ msg, ...f }),
      error() {},
      child() {
        return log;
      },
    };
    // Header-trusting mode, so that most cases can carry claims as jwt_authn's forward_payload_header does; the
    // default (metadata only) is covered at the end.
    server = new AuthzServer({
      policy: parsePolicy(POLICY_YAML, 'authz-test.yaml'),
      registry,
      log,
      trustRequestHeaders: true,
      publicUrl: 'https://mcp.example.com',
    });
    const port = await server.listen('127.0.0.1', 0);
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('allows a tools/call the role allows: OK with x-mcpmesh-decision naming the rule', async () => {
    const r = await check({ service: 'weather', claims: ANALYST, body: call(1, 'get_forecast', { city: 'Paris' }) });
    assert.equal(r.status?.code ?? 0, 0);
    assert.equal(r.denied_response, undefined);
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[0]');
  });

  it('hands the decision and the tool back as dynamic metadata (for the access log), allowed or denied', async () => {
    for (const [tool, decision, rule] of [
      ['get_forecast', 'allow', 'roles.analyst.allow[0]'],
      ['get_alerts', 'allow', 'roles.analyst.allow[0]'],
      ['get_secret_plans', 'deny', 'roles.analyst.deny[0]'],
    ] as const) {
      // Twice: the second answer comes from the response cache and must still name this tool.
      for (let i = 0; i < 2; i++) {
        const r = await check({ service: 'weather', claims: ANALYST, body: call(1, tool) });
        assert.deepEqual(structJson(r.dynamic_metadata), { decision, rule, mcp_kind: 'tool', mcp_name: tool });
      }
    }
    const list = await check({ service: 'weather', claims: ANALYST, body: { jsonrpc: '2.0', id: 2, method: 'tools/list' } });
    assert.deepEqual(structJson(list.dynamic_metadata), { decision: 'allow', rule: 'roles.analyst.allow[0]' });
  });

  it('denies with 403 and a JSON-RPC error that keeps the request id and names the rule', async () => {
    const r = await check({ service: 'weather', claims: ANALYST, body: call('req-7', 'get_secret_plans') });
    assert.equal(r.status?.code, 7); // PERMISSION_DENIED
    const d = denied(r);
    assert.equal(d.status, 403);
    assert.equal(d.contentType, 'application/json');
    assert.equal(d.decision, 'deny; rule=roles.analyst.deny[0]');
    assert.deepEqual(d.body, {
      jsonrpc: '2.0',
      id: 'req-7',
      error: {
        code: -32003,
        message: 'Forbidden: tool "get_secret_plans" on service "weather" is denied by policy rule roles.analyst.deny[0]',
        data: { rule: 'roles.analyst.deny[0]', service: 'weather' },
      },
    });
    const log = logs.find((l) => l['msg'] === 'authz deny' && l['tool'] === 'get_secret_plans');
    assert.ok(log, 'the denial is logged');
    assert.equal(log['subject'], 'alice');
    assert.match(String(log['reason']), /explicit deny wins/);
  });

  it('denies by default a tool no role lists (numeric id kept)', async () => {
    const d = denied(await check({ service: 'weather', claims: INTERN, body: call(42, 'get_history') }));
    assert.equal(d.status, 403);
    assert.equal(d.body['id'], 42);
    assert.equal(d.decision, 'deny; rule=default-deny');
  });

  it('anonymous callers (no x-jwt-payload) have no roles', async () => {
    const d = denied(await check({ service: 'weather', body: { jsonrpc: '2.0', id: 1, method: 'ping' } }));
    assert.equal(d.status, 403);
    assert.equal(d.decision, 'deny; rule=default-deny');
  });

  it('service-level methods, notifications and responses need only the service', async () => {
    for (const body of [
      {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      },
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 'srv-1', result: { action: 'accept' } },
    ]) {
      const r = await check({ service: 'weather', claims: INTERN, body });
      assert.equal(
        headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'),
        'allow; rule=roles.intern.allow[0]',
        JSON.stringify(body),
      );
    }
  });

  it('GET (event stream) and DELETE (end of session) are allowed iff the service is', async () => {
    for (const method of ['GET', 'DELETE']) {
      const ok = await check({ method, service: 'weather', claims: INTERN });
      assert.equal(headerOf(ok.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.intern.allow[0]', method);
      const no = denied(await check({ method, service: 'billing', claims: INTERN }));
      assert.equal(no.status, 403, method);
      assert.equal(no.body['id'], null);
      assert.match(no.body['error'].message, /access to service "billing" is denied by policy rule default-deny/);
    }
  });

  it('any other body-carrying method is judged by its body like POST', async () => {
    const d = denied(await check({ method: 'PUT', service: 'weather', claims: INTERN, body: call(3, 'get_history') }));
    assert.equal(d.status, 403);
    assert.equal(d.body['id'], 3);
  });

  it('batches: every element is decided; one denial denies all, with an error per request id', async () => {
    const ok = await check({
      service: 'weather',
      claims: ANALYST,
      body: [call(1, 'get_forecast'), call(2, 'echo'), { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 0 } }],
    });
    assert.equal(headerOf(ok.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[0]');
    const d = denied(
      await check({
        service: 'weather',
        claims: ANALYST,
        body: [call(1, 'get_forecast'), { jsonrpc: '2.0', method: 'notifications/initialized' }, call(3, 'get_secret')],
      }),
    );
    assert.equal(d.status, 403);
    assert.equal(d.decision, 'deny; rule=roles.analyst.deny[0]');
    assert.ok(Array.isArray(d.body));
    assert.deepEqual(
      (d.body as unknown as Array<{ id: number }>).map((e) => e.id),
      [1, 3],
    );
    assert.match(
      (d.body as unknown as Array<{ error: { message: string } }>)[0]?.error.message ?? '',
      /^batch element \[2\]: Forbidden: tool "get_secret"/,
    );
  });

  it('shadow mode: the would-be denial is logged and counted, the request passes with x-mcpmesh-shadow-deny', async () => {
    const before = await metric({ service: 'files', decision: 'shadow_deny' });
    const r = await check({ service: 'files', claims: INTERN, body: call(5, 'delete_file') });
    assert.equal(r.status?.code ?? 0, 0);
    assert.equal(r.denied_response, undefined);
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-shadow-deny'), 'default-deny');
    assert.equal(await metric({ service: 'files', decision: 'shadow_deny' }), before + 1);
    assert.ok(logs.some((l) => l['msg'] === 'authz shadow deny' && l['service'] === 'files' && l['tool'] === 'delete_file'));
    // Allowed requests on a shadow service are plain allows.
    const ok = await check({ service: 'files', claims: ANALYST, body: call(6, 'read_file') });
    assert.equal(headerOf(ok.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[1]');
  });

  it('a body larger than Envoy forwarded (x-envoy-auth-partial-body: true) is denied with 413', async () => {
    const d = denied(
      await check({
        service: 'weather',
        claims: ANALYST,
        body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_forecast","arguments":{"text":"aaaa',
        size: 20_000,
        headers: { 'x-envoy-auth-partial-body': 'true' },
      }),
    );
    assert.equal(d.status, 413);
    assert.equal(d.decision, 'deny; rule=body-too-large');
    assert.equal(d.body['error'].code, -32600);
    const log = logs.find((l) => l['rule'] === 'body-too-large');
    assert.match(String(log?.['reason']), /larger than the authorizer may see.*20000 bytes.*cannot be authorized/);
  });

  it('malformed JSON-RPC is denied with 400 and a JSON-RPC error naming the problem', async () => {
    const a = denied(
      await check({
        service: 'weather',
        claims: ANALYST,
        body: { jsonrpc: '2.0', id: 11, method: 'tools/call', params: { arguments: {} } },
      }),
    );
    assert.equal(a.status, 400);
    assert.equal(a.decision, 'deny; rule=malformed-request');
    assert.deepEqual(a.body, {
      jsonrpc: '2.0',
      id: 11,
      error: { code: -32600, message: 'Invalid Request: tools/call needs "params.name", a non-empty string (got nothing)' },
    });
    const b = denied(await check({ service: 'weather', claims: ANALYST, body: 'not json' }));
    assert.equal(b.status, 400);
    assert.equal(b.body['error'].code, -32700);
    assert.match(b.body['error'].message, /^Parse error: body is not JSON/);
    const c = denied(await check({ service: 'weather', claims: ANALYST, body: [] }));
    assert.equal(c.body['error'].message, 'Invalid Request: body is an empty JSON-RPC batch ([])');
    // Envoy without with_request_body sends no body at all: say so.
    const d = denied(await check({ service: 'weather', claims: ANALYST, body: '', size: 120 }));
    assert.match(d.body['error'].message, /Envoy sent no body for a 120-byte POST \(is ext_authz with_request_body configured\?\)/);
  });

  it('a check that names no service is refused (403, decision error)', async () => {
    const before = await metric({ service: '', decision: 'error' });
    const d = denied(await check({ claims: ANALYST, body: call(1, 'get_forecast') }));
    assert.equal(d.status, 403);
    assert.equal(d.decision, 'deny; rule=no-service');
    assert.equal(await metric({ service: '', decision: 'error' }), before + 1);
    assert.ok(logs.some((l) => l['msg'] === 'authz error' && /names no MCP service/.test(String(l['reason']))));
  });

  it('falls back to the x-mcp-service header when the route sets no context extension', async () => {
    const r = await check({ headers: { 'x-mcp-service': 'weather' }, claims: ANALYST, body: call(1, 'get_forecast') });
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[0]');
    // The route's context extension wins over the header.
    const d = denied(
      await check({ service: 'vault', headers: { 'x-mcp-service': 'weather' }, claims: INTERN, body: call(1, 'get_forecast') }),
    );
    assert.equal(d.body['error'].data?.['service'], 'vault');
  });

  it('reads raw_body bytes (pack_as_bytes) and raw header maps (encode_raw_headers)', async () => {
    const r = await check({ service: 'weather', claims: ANALYST, body: call(1, 'get_forecast'), asBytes: true, rawHeaders: true });
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[0]');
    const d = denied(await check({ service: 'weather', claims: ANALYST, body: call(1, 'get_secret'), asBytes: true, rawHeaders: true }));
    assert.equal(d.decision, 'deny; rule=roles.analyst.deny[0]');
  });

  it('prefers jwt_authn dynamic metadata over the header', async () => {
    const r = await check({
      service: 'weather',
      metadataClaims: { sub: 'm', roles: ['analyst'] },
      claims: INTERN,
      body: call(1, 'get_history'),
    });
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[0]');
  });

  it('an unreadable x-jwt-payload is refused (fail closed)', async () => {
    const d = denied(
      await check({ service: 'weather', headers: { 'x-jwt-payload': '!!!not-base64-json' }, body: call(1, 'get_forecast') }),
    );
    assert.equal(d.decision, 'deny; rule=bad-claims');
  });

  it('missing required scopes: 403 with WWW-Authenticate insufficient_scope naming the scopes and the RFC 9728 metadata', async () => {
    const r = await check({ service: 'vault', claims: { sub: 'a', roles: ['analyst'], scope: 'openid' }, body: call(1, 'read') });
    assert.equal(Number(r.denied_response?.status?.code), 403);
    assert.equal(
      headerOf(r.denied_response?.headers, 'www-authenticate'),
      'Bearer error="insufficient_scope", scope="vault.read", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp/vault"',
    );
    const ok = await check({
      service: 'vault',
      claims: { sub: 'a', roles: ['analyst'], scope: 'openid vault.read' },
      body: call(1, 'read'),
    });
    assert.ok(ok.ok_response);
  });

  it('an undecodable CheckRequest fails the call with INVALID_ARGUMENT', async () => {
    await assert.rejects(
      checkRaw(Buffer.from([0x0a, 0xff, 0xff, 0xff])),
      (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT,
    );
  });

  it('counts decisions with bounded labels and times every check', async () => {
    const allowBefore = await metric({ service: 'weather', tool: 'echo', decision: 'allow' });
    await check({ service: 'weather', claims: ANALYST, body: call(1, 'echo') });
    assert.equal(await metric({ service: 'weather', tool: 'echo', decision: 'allow' }), allowBefore + 1);
    // A tool name the policy only matches by glob (or not at all) is "other"; non-tool requests have tool "".
    const otherBefore = await metric({ service: 'weather', tool: 'other', decision: 'allow' });
    await check({ service: 'weather', claims: ANALYST, body: call(1, 'get_anything_random_123') });
    assert.equal(await metric({ service: 'weather', tool: 'other', decision: 'allow' }), otherBefore + 1);
    const pingBefore = await metric({ service: 'weather', tool: '', decision: 'allow' });
    await check({ service: 'weather', claims: ANALYST, body: { jsonrpc: '2.0', id: 1, method: 'ping' } });
    assert.equal(await metric({ service: 'weather', tool: '', decision: 'allow' }), pingBefore + 1);
    // An unknown service named only by header is "other".
    await check({ headers: { 'x-mcp-service': 'made-up-123' }, claims: ANALYST, body: call(1, 'echo') });
    assert.ok((await metric({ service: 'other', decision: 'deny' })) >= 1);
    const text = await registry.metrics();
    assert.match(text, /mcpmesh_authz_check_seconds_count \d+/);
    assert.doesNotMatch(text, /made-up-123|get_anything_random_123/);
  });

  it('setPolicy swaps the policy for the next check', async () => {
    const d = denied(await check({ service: 'weather', claims: INTERN, body: call(1, 'echo') }));
    assert.equal(d.decision, 'deny; rule=default-deny');
    server.setPolicy(parsePolicy(`${POLICY_YAML.replace('tools: [get_forecast]', 'tools: [get_forecast, echo]')}`, 'v2.yaml'));
    const r = await check({ service: 'weather', claims: INTERN, body: call(1, 'echo') });
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.intern.allow[0]');
    server.setPolicy(parsePolicy(POLICY_YAML, 'authz-test.yaml'));
  });
});

describe('MCP authorizer defaults: request headers are not trusted', () => {
  let server: AuthzServer;
  let client: grpc.Client;
  const check = (s: CheckSpec): Promise<DecodedCheckResponse> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(CHECK_PATH, identity, identity, encodeCheckRequest(s), (err, resp) =>
        err ? reject(err) : resolve(decodeCheckResponse(resp as Buffer)),
      );
    });

  before(async () => {
    server = new AuthzServer({ policy: parsePolicy(POLICY_YAML, 'authz-test.yaml'), registry: new Registry() });
    client = new grpc.Client(`127.0.0.1:${await server.listen('127.0.0.1', 0)}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('reads the verified claims from jwt_authn metadata', async () => {
    const r = await check({ service: 'weather', metadataClaims: ANALYST, body: call(1, 'get_forecast') });
    assert.equal(headerOf(r.ok_response?.response_headers_to_add, 'x-mcpmesh-decision'), 'allow; rule=roles.analyst.allow[0]');
  });

  it('callers cached by their metadata are kept apart', async () => {
    const verdicts: string[] = [];
    for (const claims of [ANALYST, INTERN, ANALYST, { ...INTERN, roles: ['intern', 'analyst'] }, INTERN]) {
      const r = await check({ service: 'weather', metadataClaims: claims, body: call(1, 'get_history') });
      verdicts.push(r.ok_response ? 'allow' : 'deny');
    }
    assert.deepEqual(verdicts, ['allow', 'deny', 'allow', 'allow', 'deny']);
  });

  it('ignores a client-made x-jwt-payload when jwt_authn verified nothing (anonymous: default deny)', async () => {
    const r = await check({ service: 'weather', claims: { sub: 'mallory', roles: ['analyst'] }, body: call(1, 'get_forecast') });
    assert.equal(Number(r.denied_response?.status?.code), 403);
    assert.equal(headerOf(r.denied_response?.headers, 'x-mcpmesh-decision'), 'deny; rule=default-deny');
  });

  it('ignores x-mcp-service: only the route names the service', async () => {
    const r = await check({ headers: { 'x-mcp-service': 'weather' }, metadataClaims: ANALYST, body: call(1, 'get_forecast') });
    assert.equal(headerOf(r.denied_response?.headers, 'x-mcpmesh-decision'), 'deny; rule=no-service');
  });
});
