// 2026-07-28 services (issue 11, parts 2 and 3): the authorizer runs for them too, with the body, and refuses
// (400, JSON-RPC -32020 HeaderMismatch) a request whose Mcp-Method / Mcp-Name / MCP-Protocol-Version do not
// mirror the body, a repeated MCP header, an unknown revision; requiredScopes are enforced. Over real gRPC,
// with the header map Envoy sends under encode_raw_headers (each copy of a header its own entry).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CHECK_PATH, AuthzServer } from '../../control-plane/src/authz/server.ts';
import type { MeshSecurity, MeshService } from '../../control-plane/src/model/types.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { extAuthzFilter, extAuthzPerRoute, gatewayResource } from '../../control-plane/src/translate/security.ts';
import { decodeCheckResponse, encodeCheckRequest, headerOf, type CheckSpec, type DecodedCheckResponse } from './helpers.ts';
import type { JsonRpcErrorReply } from '../../control-plane/src/authz/check.ts';

/** The JSON-RPC error response in a denial's body (a denied batch answers with an array of them). */

const POLICY = parsePolicy(
  `
trustDomain: mcpmesh.local
services:
  vault: { requiredScopes: [vault.read] }
roles:
  analyst:
    allow:
      - { service: inventory, tools: ["get_*"], resources: ["inv://public/*"], prompts: [summary] }
      - { service: vault, tools: ["*"] }
      - { service: legacy, tools: ["get_*"] }
    deny:
      - { service: inventory, tools: ["get_secret*"] }
`,
  'headers.yaml',
);

const ANALYST = { sub: 'alice', roles: ['analyst'] };
const V = '2026-07-28';
const identity = (b: Buffer): Buffer => b;
const b64 = (s: string): string => `=?base64?${Buffer.from(s).toString('base64')}?=`;
const callBody = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  jsonrpc: '2.0',
  id: 7,
  method: 'tools/call',
  params: { name, arguments: {}, ...extra },
});

describe('2026-07-28 services: headers and body agree (the authorizer behind header RBAC)', () => {
  let server: AuthzServer;
  let client: grpc.Client;
  const check = (s: CheckSpec): Promise<DecodedCheckResponse> =>
    new Promise((resolve, reject) => {
      const req = encodeCheckRequest({
        service: 'inventory',
        contextExtensions: { mcp_protocol: V },
        metadataClaims: ANALYST,
        rawHeaders: true,
        ...s,
        headers: { 'mcp-protocol-version': V, ...s.headers },
      });
      client.makeUnaryRequest(CHECK_PATH, identity, identity, req, (err, resp) =>
        err ? reject(err) : resolve(decodeCheckResponse(resp as Buffer)),
      );
    });
  const verdict = (r: DecodedCheckResponse): { status: number; decision?: string; body?: JsonRpcErrorReply } => {
    if (r.ok_response) return { status: 200, decision: headerOf(r.ok_response.response_headers_to_add, 'x-mcpmesh-decision') };
    return {
      status: Number(r.denied_response?.status?.code),
      decision: headerOf(r.denied_response?.headers, 'x-mcpmesh-decision'),
      body: JSON.parse(r.denied_response?.body ?? 'null'),
    };
  };
  const mismatch = async (s: CheckSpec, why: RegExp): Promise<void> => {
    const v = verdict(await check(s));
    assert.equal(v.status, 400, JSON.stringify(s.headers));
    assert.equal(v.decision, 'deny; rule=header-mismatch');
    assert.equal(v.body?.error.code, -32020);
    assert.match(v.body?.error.message ?? '', why);
  };
  const tool = (name: string): Record<string, string> => ({ 'mcp-method': 'tools/call', 'mcp-name': name });

  before(async () => {
    server = new AuthzServer({ policy: POLICY, registry: new Registry() });
    client = new grpc.Client(`127.0.0.1:${await server.listen('127.0.0.1', 0)}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('the gateway now asks the authorizer for 2026-07-28 routes too, naming the revision, with raw headers', () => {
    const security = { policy: POLICY, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } } as MeshSecurity;
    const svc = { name: 'inventory', protocol: V } as MeshService;
    const perRoute = JSON.parse(JSON.stringify(extAuthzPerRoute(svc, gatewayResource(security, svc)))) as {
      disabled?: unknown;
      check_settings: { context_extensions: Record<string, string> };
    };
    assert.equal(perRoute['disabled'], undefined, 'ext_authz is not disabled for a 2026-07-28 route');
    assert.equal(perRoute['check_settings'].context_extensions.mcp_service, 'inventory');
    assert.equal(perRoute['check_settings'].context_extensions.mcp_protocol, V);
    const filter = JSON.parse(JSON.stringify(extAuthzFilter())) as { typed_config: Record<string, unknown> };
    assert.equal(filter.typed_config['encode_raw_headers'], true);
  });

  it('headers that mirror the body: decided on the body as for any service', async () => {
    assert.equal(
      verdict(await check({ headers: tool('get_stock'), body: callBody('get_stock') })).decision,
      'allow; rule=roles.analyst.allow[0]',
    );
    assert.equal(
      verdict(await check({ headers: tool('get_secret_x'), body: callBody('get_secret_x') })).decision,
      'deny; rule=roles.analyst.deny[0]',
    );
    const list = await check({ headers: { 'mcp-method': 'tools/list' }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    assert.equal(verdict(list).status, 200);
    const note = await check({
      headers: { 'mcp-method': 'notifications/cancelled' },
      body: { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } },
    });
    assert.equal(verdict(note).status, 200);
    const res = await check({
      headers: { 'mcp-method': 'resources/read', 'mcp-name': 'inv://public/a' },
      body: { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'inv://public/a' } },
    });
    assert.equal(verdict(res).status, 200);
  });

  it("Mcp-Method must be the body's method, exactly", async () => {
    // Header RBAC saw a harmless tools/list; the body calls a tool.
    await mismatch(
      { headers: { 'mcp-method': 'tools/list' }, body: callBody('get_secret_x') },
      /header mcp-method "tools\/list" does not match the body's method "tools\/call"/,
    );
    await mismatch(
      { headers: { 'mcp-method': 'Tools/Call', 'mcp-name': 'get_stock' }, body: callBody('get_stock') },
      /does not match the body's method/,
    );
    await mismatch({ headers: { 'mcp-name': 'get_stock' }, body: callBody('get_stock') }, /header mcp-method is missing/);
  });

  it('Mcp-Name must be params.name / params.uri: headers saying get_stock while the body calls another tool are refused', async () => {
    await mismatch(
      { headers: tool('get_stock'), body: callBody('admin_drop') },
      /header mcp-name "get_stock" does not match the body's "admin_drop"/,
    );
    await mismatch(
      {
        headers: { 'mcp-method': 'resources/read', 'mcp-name': 'inv://public/a' },
        body: { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'inv://private/a' } },
      },
      /does not match/,
    );
    await mismatch(
      { headers: { 'mcp-method': 'tools/call' }, body: callBody('get_stock') },
      /header mcp-name is missing \(required for tools\/call\)/,
    );
    await mismatch(
      { headers: { 'mcp-method': 'tools/list', 'mcp-name': 'get_stock' }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } },
      /names something, the body's tools\/list names nothing/,
    );
    // The comparison is on the body as sent, not the normalized URI the policy matches.
    await mismatch(
      {
        headers: { 'mcp-method': 'resources/read', 'mcp-name': 'inv://public/b' },
        body: { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'inv://public/a/../b' } },
      },
      /does not match/,
    );
  });

  it('decodes =?base64?...?= names (non-ASCII, or any a client chose to encode) before comparing', async () => {
    assert.equal(verdict(await check({ headers: tool(b64('get_ünïcødé')), body: callBody('get_ünïcødé') })).status, 200);
    assert.equal(
      verdict(await check({ headers: tool(b64('get_secret_x')), body: callBody('get_secret_x') })).decision,
      'deny; rule=roles.analyst.deny[0]',
    );
    await mismatch({ headers: tool(b64('get_stock')), body: callBody('get_secret_x') }, /does not match/);
    await mismatch({ headers: tool('=?base64?not*base64?='), body: callBody('get_stock') }, /not valid Base64/);
    await mismatch(
      { headers: tool(`=?base64?${Buffer.from([0xc0, 0xaf]).toString('base64')}?=`), body: callBody('get_stock') },
      /does not decode to UTF-8/,
    );
    // Markers are case-sensitive: this one is a plain value, and not the body's name.
    await mismatch(
      { headers: tool(`=?BASE64?${Buffer.from('get_stock').toString('base64')}?=`), body: callBody('get_stock') },
      /does not match/,
    );
  });

  it("MCP-Protocol-Version: a known header-validated revision (allow-list), equal to the body's _meta version", async () => {
    await mismatch(
      { omitHeaders: ['mcp-protocol-version'], headers: tool('get_stock'), body: callBody('get_stock') },
      /header mcp-protocol-version is missing/,
    );
    for (const v of ['2025-11-25', '2024-11-05', '2027-01-01', '2026-07-28x', 'latest']) {
      await mismatch(
        { headers: { ...tool('get_stock'), 'mcp-protocol-version': v }, body: callBody('get_stock') },
        /is not a revision the mesh knows/,
      );
    }
    await mismatch(
      { headers: tool('get_stock'), body: callBody('get_stock', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2025-11-25' } }) },
      /does not match the body's _meta protocol version "2025-11-25"/,
    );
    assert.equal(
      verdict(
        await check({
          headers: tool('get_stock'),
          body: callBody('get_stock', { _meta: { 'io.modelcontextprotocol/protocolVersion': V } }),
        }),
      ).status,
      200,
    );
  });

  it('a repeated MCP header is refused, whether Envoy sends each copy or joins them with ","', async () => {
    for (const [h, v] of [
      ['mcp-name', 'get_stock'],
      ['mcp-name', 'admin_drop'],
      ['mcp-method', 'tools/call'],
      ['mcp-protocol-version', V],
    ] as const) {
      await mismatch(
        { headers: tool('get_stock'), extraHeaders: [[h, v]], body: callBody('get_stock') },
        new RegExp(`header ${h} is sent more than once`),
      );
    }
    await mismatch(
      { rawHeaders: false, headers: tool('get_stock'), extraHeaders: [['mcp-name', 'admin_drop']], body: callBody('get_stock') },
      /header mcp-name is sent more than once/,
    );
  });

  it('one message per POST: a batch or a response is refused', async () => {
    await mismatch({ headers: tool('get_stock'), body: [callBody('get_stock')] }, /not a batch/);
    await mismatch({ headers: { 'mcp-method': 'tools/call' }, body: { jsonrpc: '2.0', id: 1, result: {} } }, /not a response/);
  });

  it('older revisions are decided on the body alone, whatever Mcp-* headers say', async () => {
    const r = await check({
      service: 'legacy',
      contextExtensions: { mcp_protocol: '2025-11-25' },
      headers: { ...tool('admin_drop'), 'mcp-protocol-version': '2025-11-25' },
      body: callBody('get_stock'),
    });
    assert.equal(verdict(r).decision, 'allow; rule=roles.analyst.allow[2]');
  });

  it('requiredScopes hold on 2026-07-28 services: no scope -> 403 insufficient_scope; with it -> allowed', async () => {
    const vault = { service: 'vault', headers: tool('read_secret'), body: callBody('read_secret') };
    const no = await check({ ...vault, metadataClaims: { ...ANALYST, scope: 'openid' } });
    assert.equal(Number(no.denied_response?.status?.code), 403);
    assert.match(headerOf(no.denied_response?.headers, 'www-authenticate') ?? '', /^Bearer error="insufficient_scope", scope="vault.read"/);
    const yes = await check({ ...vault, metadataClaims: { ...ANALYST, scope: 'openid vault.read' } });
    assert.equal(verdict(yes).status, 200);
  });
});
