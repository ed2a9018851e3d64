// End to end: a REAL MCP client (@modelcontextprotocol/sdk Client + StreamableHTTPClientTransport) talks to a
// REAL MCP server (@modelcontextprotocol/server-everything, Streamable HTTP) through a small HTTP proxy that
// plays Envoy's part: it verifies the bearer token (as jwt_authn, with the dev issuer's keys) and passes the
// verified payload on as dynamic metadata, asks the MCP authorizer over gRPC (Envoy's CheckRequest, with the body),
// answers the denied response itself, or forwards the request (minus the client's token) and streams the
// answer back with the authorizer's response headers.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Registry } from 'prom-client';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { AuthzServer } from '../../control-plane/src/authz/server.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { authzChecker, forwardAllowed, readClientRequest } from '../helpers/forward.ts';
import { encodeCheckRequest } from './helpers.ts';

const POLICY = `
trustDomain: mcpmesh.local
providers:
  - { name: dev, issuer: "http://127.0.0.1/oauth", audiences: [mcp-mesh], jwksUri: "http://127.0.0.1/oauth/jwks" }
roles:
  echoer:
    allow:
      - { service: everything, tools: [echo] }
  viewer:
    allow:
      - { service: everything }
`;

interface Seen {
  method: string;
  verdict: string;
}

/** The Envoy stand-in: jwt_authn + ext_authz (with_request_body) + router. */
async function startProxy(
  issuer: DevIssuer,
  authzPort: number,
  upstream: URL,
  seen: Seen[],
): Promise<{ url: string; close(): Promise<void> }> {
  const authz = authzChecker(authzPort);
  const check = authz.check;
  const server = http.createServer(async (req, res) => {
    try {
      // jwt_authn: verify, then forward the payload (base64url, as forward_payload_header does).
      const { headers, body } = await readClientRequest(req);
      const auth = headers['authorization'] ?? '';
      let claims: Record<string, unknown> | undefined;
      if (auth.startsWith('Bearer ')) {
        const token = auth.slice(7);
        try {
          claims = { ...(await issuer.verify(token)) };
        } catch (err) {
          res
            .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer error="invalid_token"' })
            .end((err as Error).message);
          return;
        }
        headers['x-jwt-payload'] = token.split('.')[1] as string;
      }
      // ext_authz, as the gateway configures it: the body packed as bytes, the verified payload as dynamic
      // metadata (metadata_context_namespaces: jwt_authn; payload_in_metadata: jwt_payload), the service as the
      // route's context extension.
      const r = await check(
        encodeCheckRequest({
          method: req.method ?? 'GET',
          path: '/mcp/everything',
          service: 'everything',
          body: body.toString('utf8'),
          size: body.length,
          asBytes: true,
          headers: { ...headers, ':method': req.method ?? 'GET', ':path': req.url ?? '/' },
          ...(claims ? { metadataClaims: claims } : {}),
        }),
      );
      const methodOf = (() => {
        try {
          return String((JSON.parse(body.toString()) as { method?: string }).method ?? 'response');
        } catch {
          return req.method ?? '';
        }
      })();
      if (r.denied_response) {
        seen.push({ method: methodOf, verdict: 'deny' });
        const out: Record<string, string> = {};
        for (const h of r.denied_response.headers ?? []) if (h.header?.key) out[h.header.key] = h.header.value ?? '';
        res.writeHead(Number(r.denied_response.status?.code ?? 403), out).end(r.denied_response.body ?? '');
        return;
      }
      seen.push({ method: methodOf, verdict: 'allow' });
      // Router: the client's token is not passed on (forwardToken: false); Host is the upstream's.
      forwardAllowed(req.method, headers, body, res, upstream, { drop: ['authorization', 'x-jwt-payload'], check: r });
    } catch (err) {
      if (!res.headersSent) res.writeHead(500).end((err as Error).message);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/mcp/everything`,
    close: async () => {
      authz.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('MCP authorizer end to end: SDK client -> proxy (Envoy stand-in) -> server-everything', () => {
  let everything: RunningServer;
  let authz: AuthzServer;
  let proxy: { url: string; close(): Promise<void> };
  let issuer: DevIssuer;
  const seen: Seen[] = [];
  const clients: Array<{ client: Client; transport: StreamableHTTPClientTransport }> = [];

  async function connect(roles: string[]): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const { token } = await issuer.sign({ subject: `agent-${roles.join('-')}`, roles });
    const transport = new StreamableHTTPClientTransport(new URL(proxy.url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    const client = new Client({ name: 'authz-e2e', version: '1.0.0' });
    await client.connect(transport);
    const c = { client, transport };
    clients.push(c);
    return c;
  }

  before(async () => {
    issuer = await DevIssuer.create({ issuer: 'http://127.0.0.1/oauth', audience: 'mcp-mesh' });
    everything = await startEverythingHttp();
    authz = new AuthzServer({ policy: parsePolicy(POLICY, 'e2e-policy.yaml'), registry: new Registry() });
    const port = await authz.listen('127.0.0.1', 0);
    proxy = await startProxy(issuer, port, new URL(everything.url), seen);
  });

  after(async () => {
    for (const c of clients) await c.client.close().catch(() => {});
    await proxy?.close();
    await authz?.close();
    await everything?.stop();
  });

  it('a role that allows echo: initialize, ping, listTools and callTool(echo) work', async () => {
    const { client } = await connect(['echoer']);
    await client.ping();
    const tools = await client.listTools();
    assert.ok(
      tools.tools.some((t) => t.name === 'echo'),
      'server-everything lists echo',
    );
    const r = await client.callTool({ name: 'echo', arguments: { message: 'through the mesh' } });
    assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: through the mesh' }]);
    assert.ok(seen.some((s) => s.method === 'initialize' && s.verdict === 'allow'));
    assert.ok(seen.some((s) => s.method === 'tools/call' && s.verdict === 'allow'));
    // The SDK opens its standalone SSE stream (GET) after initialize: allowed, as the service is.
    for (const method of ['initialize', 'notifications/initialized', 'GET', 'ping', 'tools/list']) {
      assert.ok(
        seen.some((s) => s.method === method && s.verdict === 'allow'),
        `${method} went through the authorizer and was allowed`,
      );
    }
  });

  it('the same role cannot call a tool it is not allowed: the client gets the JSON-RPC error', async () => {
    const { client } = await connect(['echoer']);
    await assert.rejects(client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } }), (err: Error & { code?: number }) => {
      assert.equal(err.code, 403, err.message);
      const body = JSON.parse(err.message.slice(err.message.indexOf('{'))) as { id: unknown; error: { code: number; message: string } };
      assert.equal(body.error.code, -32003);
      assert.equal(body.error.message, 'Forbidden: tool "get-sum" on service "everything" is denied by policy rule default-deny');
      assert.equal(typeof body.id, 'number', 'the JSON-RPC id of the tools/call is kept');
      return true;
    });
    // The session is still usable afterwards.
    const r = await client.callTool({ name: 'echo', arguments: { message: 'still here' } });
    assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: still here' }]);
  });

  it('a role that only allows the service: listTools and ping work, callTool(echo) is denied', async () => {
    const { client, transport } = await connect(['viewer']);
    await client.ping();
    const tools = await client.listTools();
    assert.ok(tools.tools.length > 0);
    await assert.rejects(client.callTool({ name: 'echo', arguments: { message: 'nope' } }), (err: Error & { code?: number }) => {
      assert.equal(err.code, 403, err.message);
      assert.match(err.message, /"code":-32003/);
      assert.match(err.message, /tool \\"echo\\" on service \\"everything\\" is denied by policy rule default-deny/);
      return true;
    });
    // DELETE (end of session) needs only the service.
    await transport.terminateSession();
    assert.ok(seen.some((s) => s.method === 'DELETE' && s.verdict === 'allow'));
  });

  it('a token without any policy role cannot even initialize', async () => {
    const { token } = await issuer.sign({ subject: 'stranger', roles: ['nobody'] });
    const transport = new StreamableHTTPClientTransport(new URL(proxy.url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    const client = new Client({ name: 'authz-e2e', version: '1.0.0' });
    await assert.rejects(client.connect(transport), (err: Error & { code?: number }) => {
      assert.equal(err.code, 403, err.message);
      assert.match(err.message, /access to service \\"everything\\" is denied by policy rule default-deny/);
      return true;
    });
    await client.close().catch(() => {});
  });
});
