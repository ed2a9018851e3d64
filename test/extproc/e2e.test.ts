// End to end: a real MCP SDK client (Client + StreamableHTTPClientTransport) talks to real MCP servers
// through an HTTP proxy that plays Envoy's ext_proc filter (harness.ts), configured with exactly the
// filter object extProcFilterConfig() exports and the route override extProcRouteOverride() exports, and
// driving the ExtProcServer over gRPC. server-everything answers tools/list over SSE; an in-process SDK
// server with enableJsonResponse covers application/json with the same real client.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { allToolNames } from '../helpers/forward.ts';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { silentLogger } from '../../control-plane/src/log.ts';
import {
  ExtProcServer,
  extProcFilterConfig,
  extProcRouteOverride,
  type ToolFilterContext,
} from '../../control-plane/src/extproc/server.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { EnvoyExtProcProxy } from './harness.ts';

const ALLOWED = ['echo', 'get-sum'];

async function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: 'extproc-e2e', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

/** Who may see what: admins are not filtered, everyone else sees echo and get-sum. */
function policy(seen: ToolFilterContext[]) {
  return (ctx: ToolFilterContext) => {
    seen.push(ctx);
    if (ctx.headers['x-caller'] === 'admin') return undefined;
    return (name: string) => ALLOWED.includes(name);
  };
}

describe('real MCP client -> Envoy ext_proc emulation -> ExtProcServer (gRPC) -> real MCP server', () => {
  let everything: RunningServer;
  let processor: ExtProcServer;
  let proxy: EnvoyExtProcProxy;
  let proxyUrl: string;
  const seen: ToolFilterContext[] = [];
  const clients: Client[] = [];

  before(async () => {
    everything = await startEverythingHttp();
    processor = new ExtProcServer({ toolFilter: policy(seen), log: silentLogger });
    const port = await processor.listen('127.0.0.1', 0);
    proxy = new EnvoyExtProcProxy({
      filter: extProcFilterConfig('mcpmesh_extproc'),
      routeOverride: extProcRouteOverride('everything'),
      processorPort: port,
      upstream: new URL(everything.url).origin,
      attributeValues: { 'xds.cluster_name': 'mcp.everything' },
    });
    proxyUrl = `${await proxy.listen()}/mcp`;
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await proxy?.close();
    await processor?.close();
    await everything?.stop();
  });

  it('server-everything over SSE: listTools shows only the allowed tools; calls and other lists still work', async () => {
    const direct = await connect(everything.url);
    clients.push(direct);
    const everyTool = await allToolNames(direct);
    // What server-everything offers (so the allowed names are real ones and others exist to be hidden).
    for (const name of [...ALLOWED, 'get-env', 'get-tiny-image', 'trigger-long-running-operation'])
      assert.ok(everyTool.includes(name), `${name} in ${everyTool.join(',')}`);

    const filtered = await connect(proxyUrl, { 'x-caller': 'alice' });
    clients.push(filtered);
    assert.deepEqual(await allToolNames(filtered), [...ALLOWED].sort());

    // The tools/list response really came as an SSE stream, and was rewritten while streamed.
    const listExchanges = proxy.log.filter((e) => e.method === 'POST' && e.responseBodyMode === 'STREAMED');
    assert.ok(listExchanges.length >= 1, JSON.stringify(proxy.log));
    assert.match(listExchanges[0]?.responseContentType ?? '', /^text\/event-stream/);
    assert.ok(listExchanges.some((e) => e.bodyMutations > 0));

    // Everything else goes through untouched.
    const echo = await filtered.callTool({ name: 'echo', arguments: { message: 'through the mesh' } });
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: through the mesh' }]);
    const sum = await filtered.callTool({ name: 'get-sum', arguments: { a: 2, b: 40 } });
    assert.match(JSON.stringify(sum.content), /42/);
    assert.deepEqual(
      (await filtered.listPrompts()).prompts.map((p) => p.name),
      (await direct.listPrompts()).prompts.map((p) => p.name),
    );
    assert.deepEqual(
      (await filtered.listResources()).resources.map((r) => r.uri),
      (await direct.listResources()).resources.map((r) => r.uri),
    );
    assert.deepEqual(await filtered.ping(), {});

    // The processor knew the service from the route (gRPC initial metadata), and counted what it did.
    assert.ok(seen.some((c) => c.service === 'everything' && c.headers['x-caller'] === 'alice'));
    const counts = processor.stats.counts;
    assert.ok(counts.responses_filtered >= 1);
    assert.ok(counts.tools_hidden >= everyTool.length - ALLOWED.length);
    assert.equal(counts.malformed, 0);
    assert.equal(counts.errors, 0);
  });

  it('an unfiltered caller (admin) sees every tool through the same proxy, without its bodies going to the processor', async () => {
    const direct = await connect(everything.url);
    clients.push(direct);
    const admin = await connect(proxyUrl, { 'x-caller': 'admin' });
    clients.push(admin);
    const before = proxy.log.length;
    assert.deepEqual(await allToolNames(admin), await allToolNames(direct));
    const mine = proxy.log.slice(before);
    assert.ok(mine.length >= 1);
    for (const e of mine) assert.deepEqual(e.sent, ['request_headers'], JSON.stringify(e));
  });

  it('non-tools/list traffic of a filtered caller never has its response body processed', async () => {
    const c = await connect(proxyUrl, { 'x-caller': 'bob' });
    clients.push(c);
    const before = proxy.log.length;
    await c.callTool({ name: 'echo', arguments: { message: 'x' } });
    const call = proxy.log.slice(before).find((e) => e.method === 'POST');
    assert.ok(call);
    assert.deepEqual(call.sent, ['request_headers', 'request_body', 'response_headers']);
    assert.equal(call.responseBodyMode, 'NONE');
  });
});

describe('real MCP client -> Envoy ext_proc emulation -> real SDK server answering application/json', () => {
  let upstream: http.Server;
  let processor: ExtProcServer;
  let proxy: EnvoyExtProcProxy;
  let proxyUrl: string;
  const seen: ToolFilterContext[] = [];
  const sockets = new Set<net.Socket>();

  before(async () => {
    // A stateless SDK server with enableJsonResponse: every POST is answered with one application/json body.
    upstream = http.createServer((req, res) => {
      const server = new Server({ name: 'json-server', version: '1.0.0' }, { capabilities: { tools: {} } });
      server.setRequestHandler(ListToolsRequestSchema, async () => ({
        tools: ['echo', 'secret-admin-tool', 'get-sum', 'drop-tables'].map((name) => ({
          name,
          description: `the ${name} tool`,
          inputSchema: { type: 'object' as const },
        })),
      }));
      server.setRequestHandler(CallToolRequestSchema, async (r) => ({
        content: [{ type: 'text' as const, text: `${r.params.name}: ${JSON.stringify(r.params.arguments ?? {})}` }],
      }));
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      server
        .connect(transport)
        .then(() => transport.handleRequest(req, res))
        .catch(() => res.destroy());
    });
    upstream.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    processor = new ExtProcServer({ toolFilter: policy(seen), log: silentLogger });
    const port = await processor.listen('127.0.0.1', 0);
    proxy = new EnvoyExtProcProxy({
      filter: extProcFilterConfig('mcpmesh_extproc'),
      routeOverride: extProcRouteOverride('json-server'),
      processorPort: port,
      upstream: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`,
    });
    proxyUrl = `${await proxy.listen()}/mcp`;
  });
  after(async () => {
    await proxy?.close();
    await processor?.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => upstream?.close(() => resolve()));
  });

  it('listTools over JSON is filtered (BUFFERED body replaced, Content-Length fixed); callTool works', async () => {
    const c = await connect(proxyUrl, { 'x-caller': 'carol' });
    assert.deepEqual(await allToolNames(c), ['echo', 'get-sum']);
    const list = proxy.log.find((e) => e.responseBodyMode === 'BUFFERED');
    assert.ok(list, JSON.stringify(proxy.log));
    assert.match(list.responseContentType ?? '', /^application\/json/);
    assert.equal(list.bodyMutations, 1);
    const r = await c.callTool({ name: 'echo', arguments: { message: 'hi' } });
    assert.deepEqual(r.content, [{ type: 'text', text: 'echo: {"message":"hi"}' }]);
    const admin = await connect(proxyUrl, { 'x-caller': 'admin' });
    assert.deepEqual(await allToolNames(admin), ['drop-tables', 'echo', 'get-sum', 'secret-admin-tool']);
    assert.ok(seen.every((s) => s.service === 'json-server'));
    await c.close();
    await admin.close();
  });
});
