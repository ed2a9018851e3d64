// The tools/list external processor over real gRPC, fed Envoy's own ProcessingRequest messages
// (protobufjs-encoded from Envoy's protos): JSON and SSE flows, mode_override, passthrough, errors.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../control-plane/src/log.ts';
import {
  ExtProcServer,
  extProcFilterConfig,
  extProcRouteOverride,
  FILTER_PROCESSING_MODE,
  type ToolFilterContext,
} from '../../control-plane/src/extproc/server.ts';
import { HTTP_FILTER_TYPE } from '../../control-plane/src/extproc/config.ts';
import { serviceOf } from '../../control-plane/src/extproc/context.ts';
import { validateMessage } from '../../control-plane/src/xds/validate.ts';
import { headerMap, ProcessClient, type DecodedResponse } from './harness.ts';

const TOOLS = [{ name: 'echo', description: 'e' }, { name: 'secret' }, { name: 'get-sum' }, { name: 'rm' }];
const ALLOWED = new Set(['echo', 'get-sum']);

const PASSTHROUGH = {
  request_header_mode: 'SEND',
  response_header_mode: 'SKIP',
  request_body_mode: 'NONE',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
};

function post(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ':method': 'POST',
    ':path': '/mcp',
    ':authority': 'gw',
    ':scheme': 'http',
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'accept-encoding': 'gzip',
    'mcp-protocol-version': '2025-11-25',
    'x-user': 'alice',
    ...extra,
  };
}

const body = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
const reqBody = (v: unknown) => ({ request_body: { body: body(v), end_of_stream: true } });
const respHeaders = (h: Record<string, string>, eos = false) => ({
  response_headers: { headers: headerMap({ ':status': '200', ...h }), end_of_stream: eos },
});
const respBody = (b: Buffer | string, eos: boolean) => ({ response_body: { body: Buffer.from(b), end_of_stream: eos } });

function mutatedBody(r: DecodedResponse, original: Buffer): Buffer {
  const bm = r.response_body?.response?.body_mutation;
  if (!bm) return original;
  if (bm.mutation === 'clear_body') return Buffer.alloc(0);
  return bm.body ?? Buffer.alloc(0);
}

describe('ExternalProcessor over gRPC (Envoy ext_proc protocol)', () => {
  let server: ExtProcServer;
  let port: number;
  const registry = new Registry();
  const seen: ToolFilterContext[] = [];
  const open: ProcessClient[] = [];

  const stream = (md: Record<string, string> = {}): ProcessClient => {
    const c = new ProcessClient(port, md);
    open.push(c);
    return c;
  };

  before(async () => {
    server = new ExtProcServer({
      log: silentLogger,
      registry,
      toolFilter: (ctx) => {
        seen.push(ctx);
        if (ctx.headers['x-user'] === 'admin') return undefined;
        if (ctx.headers['x-user'] === 'broken') throw new Error('policy store down');
        return (name) => ALLOWED.has(name);
      },
    });
    port = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    for (const c of open) c.close();
    await server.close();
  });

  it('2025-11-25 tools/list answered with JSON: body BUFFERED both ways, tools filtered, Content-Length dropped', async () => {
    const s = stream({ 'x-mcp-service': 'everything' });
    const h = await s.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    assert.equal(h.response, 'request_headers');
    assert.equal(h.request_headers?.response?.status ?? 'CONTINUE', 'CONTINUE');
    assert.deepEqual(h.mode_override, {
      ...FILTER_PROCESSING_MODE,
      request_body_mode: 'BUFFERED',
      response_header_mode: 'SEND',
      response_body_mode: 'NONE',
    });
    assert.equal(seen.at(-1)?.service, 'everything');
    assert.equal(seen.at(-1)?.headers[':method'], 'POST');

    const b = await s.send(reqBody({ jsonrpc: '2.0', id: 4, method: 'tools/list', params: {} }));
    assert.equal(b.response, 'request_body');
    assert.deepEqual(b.request_body?.response?.header_mutation?.remove_headers, ['accept-encoding']);
    assert.equal(b.request_body?.response?.body_mutation, undefined);

    const rh = await s.send(respHeaders({ 'content-type': 'application/json; charset=utf-8', 'content-length': '999' }));
    assert.equal(rh.response, 'response_headers');
    assert.equal(rh.mode_override?.['response_body_mode'], 'BUFFERED');

    const original = body({ jsonrpc: '2.0', id: 4, result: { tools: TOOLS, nextCursor: 'n' } });
    const rb = await s.send(respBody(original, true));
    assert.equal(rb.response, 'response_body');
    assert.deepEqual(JSON.parse(mutatedBody(rb, original).toString()), {
      jsonrpc: '2.0',
      id: 4,
      result: { tools: [TOOLS[0], TOOLS[2]], nextCursor: 'n' },
    });
    assert.deepEqual(rb.response_body?.response?.header_mutation?.remove_headers, ['content-length']);
    assert.equal(rb.mode_override, undefined);
    // Nothing more to do for this HTTP stream: the processor closes cleanly (Envoy carries on without it).
    assert.equal((await s.status).code, grpc.status.OK);
  });

  it('tools/list answered with SSE: STREAMED, only the matching event rewritten, chunk boundaries anywhere', async () => {
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    await s.send(reqBody({ jsonrpc: '2.0', id: 'L', method: 'tools/list' }));
    const rh = await s.send(respHeaders({ 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
    assert.equal(rh.mode_override?.['response_body_mode'], 'STREAMED');
    assert.deepEqual(rh.response_headers?.response?.header_mutation?.remove_headers, ['content-length']);

    const note = '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}';
    const sse = [
      'id: p0\r\ndata: \r\n\r\n',
      `event: message\r\nid: e1\r\ndata: ${note}\r\n\r\n`,
      `event: message\r\nid: e2\r\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 'L', result: { tools: TOOLS } })}\r\n\r\n`,
    ].join('');
    const expected = sse.replace(
      JSON.stringify({ jsonrpc: '2.0', id: 'L', result: { tools: TOOLS } }),
      JSON.stringify({ jsonrpc: '2.0', id: 'L', result: { tools: [TOOLS[0], TOOLS[2]] } }),
    );
    const all = Buffer.from(sse);
    // Cut inside the priming event, between the CR and LF of the notification's blank line, and in the
    // middle of the tools/list response.
    const cuts = [5, sse.indexOf(note) + note.length + 3, sse.indexOf('"secret"') + 3];
    const chunks = [all.subarray(0, cuts[0]), all.subarray(cuts[0], cuts[1]), all.subarray(cuts[1], cuts[2]), all.subarray(cuts[2])];
    const out: Buffer[] = [];
    const mutations: Array<string | undefined> = [];
    for (const c of chunks) {
      const r = await s.send(respBody(c, false));
      assert.equal(r.response, 'response_body');
      mutations.push(r.response_body?.response?.body_mutation?.mutation);
      out.push(mutatedBody(r, c));
    }
    assert.equal(Buffer.concat(out).toString(), expected);
    // The priming event was held until complete, the notification went out as soon as it was complete.
    assert.deepEqual(mutations, ['clear_body', 'body', 'body', 'body']);
    assert.equal(out[1]?.toString(), `id: p0\r\ndata: \r\n\r\nevent: message\r\nid: e1\r\ndata: ${note}\r\n\r`);
    // The awaited response went by: the processor bows out and Envoy streams the rest on its own.
    assert.equal((await s.status).code, grpc.status.OK);
  });

  it('batched request: every tools/list response in the JSON array is filtered, others untouched', async () => {
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    await s.send(
      reqBody([
        { jsonrpc: '2.0', id: 1, method: 'tools/list' },
        { jsonrpc: '2.0', id: 2, method: 'prompts/list' },
        { jsonrpc: '2.0', id: 3, method: 'tools/list', params: { cursor: 'n' } },
      ]),
    );
    await s.send(respHeaders({ 'content-type': 'application/json' }));
    const original = body([
      { jsonrpc: '2.0', id: 1, result: { tools: TOOLS } },
      { jsonrpc: '2.0', id: 2, result: { prompts: [{ name: 'secret' }] } },
      { jsonrpc: '2.0', id: 3, result: { tools: [{ name: 'rm' }] } },
    ]);
    const rb = await s.send(respBody(original, true));
    assert.deepEqual(JSON.parse(mutatedBody(rb, original).toString()), [
      { jsonrpc: '2.0', id: 1, result: { tools: [TOOLS[0], TOOLS[2]] } },
      { jsonrpc: '2.0', id: 2, result: { prompts: [{ name: 'secret' }] } },
      { jsonrpc: '2.0', id: 3, result: { tools: [] } },
    ]);
  });

  it('a request that is not tools/list: body inspected, then the response body is never asked for', async () => {
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    const b = await s.send(
      reqBody({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { message: 'tools/list' } } }),
    );
    assert.equal(b.request_body?.response?.header_mutation, undefined);
    assert.equal(b.request_body?.response?.body_mutation, undefined);
    const rh = await s.send(respHeaders({ 'content-type': 'text/event-stream' }));
    assert.equal(rh.mode_override?.['response_body_mode'], 'NONE');
    assert.equal(rh.response_headers?.response?.header_mutation, undefined);
    assert.equal((await s.status).code, grpc.status.OK);
  });

  it('callers the factory does not filter: everything after the request headers is skipped (mode_override)', async () => {
    const s = stream();
    const h = await s.send({ request_headers: { headers: headerMap(post({ 'x-user': 'admin' })), end_of_stream: false } });
    assert.deepEqual(h.mode_override, PASSTHROUGH);
    assert.equal(h.request_headers?.response?.header_mutation, undefined);
    assert.equal((await s.status).code, grpc.status.OK);
  });

  it('GET / DELETE without Last-Event-ID, and bodiless POSTs, pass through', async () => {
    for (const [method, eos] of [
      ['GET', true],
      ['DELETE', true],
      ['POST', true],
    ] as const) {
      const s = stream();
      const h = await s.send({ request_headers: { headers: headerMap(post({ ':method': method })), end_of_stream: eos } });
      assert.deepEqual(h.mode_override, PASSTHROUGH, method);
    }
  });

  it('2026-07-28: a trusted Mcp-Method header decides without the body', async () => {
    const other = stream();
    const h1 = await other.send({
      request_headers: {
        headers: headerMap(post({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' })),
        end_of_stream: false,
      },
    });
    assert.deepEqual(h1.mode_override, PASSTHROUGH);

    const s = stream();
    const h = await s.send({
      request_headers: {
        headers: headerMap(post({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' })),
        end_of_stream: false,
      },
    });
    assert.equal(h.mode_override?.['request_body_mode'], 'NONE');
    assert.equal(h.mode_override?.['response_header_mode'], 'SEND');
    assert.deepEqual(h.request_headers?.response?.header_mutation?.remove_headers, ['accept-encoding']);
    await s.send(respHeaders({ 'content-type': 'text/event-stream' }));
    const ev = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 77, result: { tools: TOOLS } })}\n\n`;
    const r = await s.send(respBody(ev, false));
    assert.deepEqual(
      JSON.parse(mutatedBody(r, Buffer.from(ev)).toString().split('data: ')[1] ?? '').result.tools.map((t: { name: string }) => t.name),
      ['echo', 'get-sum'],
    );

    // An older revision's Mcp-Method header is not trusted: the body decides.
    const old = stream();
    const h2 = await old.send({ request_headers: { headers: headerMap(post({ 'mcp-method': 'ping' })), end_of_stream: false } });
    assert.equal(h2.mode_override?.['request_body_mode'], 'BUFFERED');
    const b2 = await old.send(reqBody({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    assert.deepEqual(b2.request_body?.response?.header_mutation?.remove_headers, ['accept-encoding']);
  });

  it('resumed GET (Last-Event-ID) may replay a tools/list response: its events are filtered', async () => {
    const s = stream();
    const h = await s.send({
      request_headers: { headers: headerMap(post({ ':method': 'GET', 'last-event-id': 'e1' })), end_of_stream: true },
    });
    assert.equal(h.mode_override?.['response_header_mode'], 'SEND');
    const rh = await s.send(respHeaders({ 'content-type': 'text/event-stream' }));
    assert.equal(rh.mode_override?.['response_body_mode'], 'STREAMED');
    const ev = `id: e2\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: TOOLS } })}\n\n`;
    const r = await s.send(respBody(ev, false));
    assert.match(
      mutatedBody(r, Buffer.from(ev)).toString(),
      /^id: e2\ndata: .*"tools":\[\{"name":"echo","description":"e"\},\{"name":"get-sum"\}\]/,
    );
  });

  it('a resumed GET is let go after its replay budget (256 KiB) when no tools/list response came by', async () => {
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post({ ':method': 'GET', 'last-event-id': 'e1' })), end_of_stream: true } });
    const rh = await s.send(respHeaders({ 'content-type': 'text/event-stream' }));
    assert.equal(rh.mode_override?.['response_body_mode'], 'STREAMED');
    const note = (i: number): string =>
      `id: n${i}\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { data: 'x'.repeat(16 * 1024) } })}\n\n`;
    let sent = 0;
    let i = 0;
    // Every chunk is answered while the budget lasts; the processor then closes its stream cleanly.
    while (sent < 256 * 1024) {
      const ev = note(i++);
      const r = await s.exchange(respBody(ev, false));
      assert.equal(r.kind, 'response', `chunk ${i} (${sent} bytes in) was answered`);
      sent += Buffer.byteLength(ev);
    }
    assert.equal((await s.exchange(respBody(note(i), false))).kind, 'closed', 'then Envoy carries on without the processor');
  });

  it('malformed JSON, error statuses and compressed responses pass unchanged (and are counted)', async () => {
    const before = { ...server.stats.counts };
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    await s.send(reqBody({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    await s.send(respHeaders({ 'content-type': 'application/json' }));
    const bad = '{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}';
    const rb = await s.send(respBody(bad, true));
    assert.equal(rb.response_body?.response?.body_mutation, undefined);
    assert.equal(rb.response_body?.response?.header_mutation, undefined);
    assert.equal(server.stats.counts.malformed, before.malformed + 1);

    const e = stream();
    await e.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    await e.send(reqBody({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    const r404 = await e.send({
      response_headers: { headers: headerMap({ ':status': '404', 'content-type': 'application/json' }), end_of_stream: false },
    });
    assert.equal(r404.mode_override?.['response_body_mode'], 'NONE');

    const z = stream();
    await z.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    await z.send(reqBody({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    const rz = await z.send(respHeaders({ 'content-type': 'application/json', 'content-encoding': 'gzip' }));
    assert.equal(rz.mode_override?.['response_body_mode'], 'NONE');
    assert.equal(server.stats.counts.encoded, before.encoded + 1);
    const text = await registry.metrics();
    assert.match(text, /mcpmesh_extproc_events_total\{event="malformed"\} [1-9]/);
  });

  it('a factory that throws hides every tool rather than showing them', async () => {
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post({ 'x-user': 'broken' })), end_of_stream: false } });
    await s.send(reqBody({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    await s.send(respHeaders({ 'content-type': 'application/json' }));
    const original = body({ jsonrpc: '2.0', id: 1, result: { tools: TOOLS } });
    const rb = await s.send(respBody(original, true));
    assert.deepEqual(JSON.parse(mutatedBody(rb, original).toString()).result.tools, []);
  });

  it('trailers are acknowledged; an empty request is refused; observability mode gets no responses', async () => {
    const s = stream();
    await s.send({ request_headers: { headers: headerMap(post()), end_of_stream: false } });
    const t = await s.send({ request_trailers: { trailers: headerMap({ x: '1' }) } });
    assert.equal(t.response, 'request_trailers');

    const o = stream();
    o.sendRaw(Buffer.alloc(0)); // a ProcessingRequest with no request set breaks the protocol
    const status = await o.status;
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, /without a known request/);

    const obs = stream();
    const quiet = obs.exchange({ request_headers: { headers: headerMap(post()), end_of_stream: false }, observability_mode: true });
    const raced = await Promise.race([quiet.then(() => 'answered'), new Promise((r) => setTimeout(() => r('silent'), 200))]);
    assert.equal(raced, 'silent');
  });

  it('protocol violations end the gRPC stream with a clean INVALID_ARGUMENT status', async () => {
    const s = stream();
    s.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])); // not a ProcessingRequest
    const st = await s.status;
    assert.equal(st.code, grpc.status.INVALID_ARGUMENT);
    assert.match(st.details, /undecodable ProcessingRequest/);
    // The server is fine afterwards.
    const ok = stream();
    const h = await ok.send({ request_headers: { headers: headerMap(post({ 'x-user': 'admin' })), end_of_stream: false } });
    assert.deepEqual(h.mode_override, PASSTHROUGH);
  });
});

describe('service lookup and Envoy config', () => {
  it('serviceOf: gRPC initial metadata > dynamic metadata > xds.cluster_name attribute > request header', () => {
    const headers = { 'x-mcp-service': 'from-header' };
    const metadataContext = { filter_metadata: { mcpmesh: { fields: { service: { stringValue: 'from-metadata' } } } } };
    const attributes = { 'envoy.filters.http.ext_proc': { fields: { 'xds.cluster_name': { stringValue: 'mcp.from-cluster' } } } };
    assert.equal(serviceOf({ grpcMetadata: { 'x-mcp-service': 'from-route' }, metadataContext, attributes, headers }), 'from-route');
    assert.equal(serviceOf({ metadataContext, attributes, headers }), 'from-metadata');
    assert.equal(serviceOf({ attributes, headers }), 'from-cluster');
    assert.equal(serviceOf({ attributes: { f: { fields: { 'xds.cluster_name': { stringValue: 'local.side' } } } }, headers: {} }), 'side');
    assert.equal(serviceOf({ headers }), 'from-header');
    assert.equal(serviceOf({ headers: {} }), '');
  });

  it('extProcFilterConfig passes Envoy schema + PGV validation, as an HttpFilter and inside an HCM', () => {
    const filter = extProcFilterConfig('mcpmesh.extproc');
    assert.deepEqual(validateMessage(HTTP_FILTER_TYPE, filter), []);
    const typed = filter['typed_config'] as Record<string, unknown>;
    assert.equal(typed['@type'], 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor');
    assert.equal(typed['allow_mode_override'], true);
    assert.deepEqual(typed['processing_mode'], {
      request_header_mode: 'SEND',
      response_header_mode: 'SEND',
      request_body_mode: 'BUFFERED',
      response_body_mode: 'NONE',
      request_trailer_mode: 'SKIP',
      response_trailer_mode: 'SKIP',
    });
    const hcm = {
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
      stat_prefix: 'gw',
      rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: 'r' },
      http_filters: [
        filter,
        {
          name: 'envoy.filters.http.router',
          typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
        },
      ],
    };
    const listener = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
      filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
    };
    assert.deepEqual(validateMessage('envoy.config.listener.v3.Listener', listener), []);
    // A broken one is caught (cluster name is required).
    assert.notDeepEqual(validateMessage(HTTP_FILTER_TYPE, extProcFilterConfig('')), []);
  });

  it('extProcRouteOverride is a valid ExtProcPerRoute inside a route', () => {
    const route = {
      name: 'r',
      virtual_hosts: [
        {
          name: 'v',
          domains: ['*'],
          routes: [
            {
              match: { prefix: '/mcp/everything' },
              route: { cluster: 'mcp.everything' },
              typed_per_filter_config: { 'envoy.filters.http.ext_proc': extProcRouteOverride('everything') },
            },
          ],
        },
      ],
    };
    assert.deepEqual(validateMessage('envoy.config.route.v3.RouteConfiguration', route), []);
  });
});
