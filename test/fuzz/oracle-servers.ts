// The oracle MCP servers themselves (run in a worker thread by oracles.ts): two real servers built with
// @modelcontextprotocol/sdk 1.x, with the same tools, resources and prompts (named like the fuzz policy's),
// whose handlers record what actually ran:
//  - "plain":   node:http + StreamableHTTPServerTransport, which reads the body itself and decodes it as UTF-8
//               (TextDecoder: a UTF-8 BOM is dropped, invalid bytes become U+FFFD);
//  - "express": createMcpExpressApp() (express.json(): body-parser 2.x + iconv-lite), which decodes the body in
//               the charset the client names (any `utf-*`, UTF-7 included) and inflates gzip/deflate bodies.
// Both run stateless (a fresh McpServer and transport per request, as the SDK documents), so tools/call
// executes without an initialize handshake, and answer JSON (enableJsonResponse): the response is written
// once every request of the body has been handled, so the record travels back in a response header
// (RAN_HEADER, base64 JSON), set when the response head is written.
//
// Handlers record the tool name they are registered under (the SDK looks tools and prompts up by exact name),
// the resource URI as the SDK hands it to the handler (after `new URL()`: dot segments, `%2e%2e`, backslashes,
// tabs, `localhost` hosts and scheme case resolved) and the prompt name.
//
// The servers also play what a mesh must assume a 2026-07-28 server may be (../shared/docs/facts.md: "Policy on
// headers alone is unsafe"): one that executes the body and never compares it with Mcp-Method/Mcp-Name. SDK
// 1.x refuses an `MCP-Protocol-Version` it does not list, so 2026-07-28 is added to the SDK's list, in the
// worker thread only: a request for a 2026-07-28 service then reaches the handlers its body names.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { ORACLE_PATH, ORACLE_PROMPTS, ORACLE_RESOURCE_TEMPLATES, ORACLE_TOOLS, RAN_HEADER, type RanAction } from './oracles.ts';

/** Let SDK 1.x accept a version header it does not list (see the file comment). Idempotent. */
export function acceptRevision(revision: string): void {
  const list = SUPPORTED_PROTOCOL_VERSIONS as string[];
  if (!list.includes(revision)) list.push(revision);
}

function mcpServer(record: RanAction[]): McpServer {
  const server = new McpServer({ name: 'fuzz-oracle', version: '1.0.0' });
  for (const name of ORACLE_TOOLS) {
    server.registerTool(name, { description: `fuzz tool ${name}` }, async () => {
      record.push({ kind: 'tool', name });
      return { content: [{ type: 'text', text: `ran ${name}` }] };
    });
  }
  ORACLE_RESOURCE_TEMPLATES.forEach((template, i) => {
    server.registerResource(`files-${i}`, new ResourceTemplate(template, { list: undefined }), { description: template }, async (uri) => {
      record.push({ kind: 'resource', uri: uri.toString() });
      return { contents: [{ uri: uri.toString(), text: 'contents' }] };
    });
  });
  for (const name of ORACLE_PROMPTS) {
    server.registerPrompt(name, { description: `fuzz prompt ${name}` }, async () => {
      record.push({ kind: 'prompt', name });
      return { messages: [{ role: 'user', content: { type: 'text', text: name } }] };
    });
  }
  return server;
}

/** A record for this response, sent back in RAN_HEADER when the response head is written. */
function recordFor(res: http.ServerResponse): RanAction[] {
  const record: RanAction[] = [];
  const writeHead = res.writeHead;
  res.writeHead = function patched(this: http.ServerResponse, ...args: unknown[]): http.ServerResponse {
    const value = Buffer.from(JSON.stringify(record)).toString('base64');
    const raw = args.find((a): a is unknown[] => Array.isArray(a));
    if (raw) raw.push(RAN_HEADER, value);
    else if (!this.headersSent) this.setHeader(RAN_HEADER, value);
    return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof res.writeHead;
  return record;
}

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Serves one stateless MCP request: a fresh server and transport, torn down when the response closes. */
async function serveMcp(record: RanAction[], req: http.IncomingMessage, res: http.ServerResponse, parsedBody?: unknown): Promise<void> {
  const server = mcpServer(record);
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, parsedBody);
}

function fail(res: http.ServerResponse, err: unknown): void {
  if (!res.headersSent) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  } else res.destroy();
}

/** The minimal surface of the Express app createMcpExpressApp() returns (no @types/express here). */
interface ExpressApp extends Listener {
  post(path: string, handler: (req: http.IncomingMessage & { body?: unknown }, res: http.ServerResponse) => void): void;
  use(handler: (err: unknown, req: http.IncomingMessage, res: http.ServerResponse, next: (err?: unknown) => void) => void): void;
}

function plainListener(): Listener {
  return (req, res) => {
    const record = recordFor(res);
    if (new URL(req.url ?? '/', 'http://x').pathname !== ORACLE_PATH) {
      res.writeHead(404).end();
      return;
    }
    serveMcp(record, req, res).catch((err: unknown) => fail(res, err));
  };
}

function expressListener(): Listener {
  const app = createMcpExpressApp() as unknown as ExpressApp;
  const records = new WeakMap<http.ServerResponse, RanAction[]>();
  const listener: Listener = (req, res) => {
    records.set(res, recordFor(res));
    app(req, res);
  };
  app.post(ORACLE_PATH, (req, res) => {
    serveMcp(records.get(res) ?? [], req, res, req.body).catch((err: unknown) => fail(res, err));
  });
  // body-parser's refusals (400 bad JSON, 415 charset, 413 size) as plain answers, without Express's stack dump.
  app.use((err, _req, res, _next) => {
    const status =
      typeof err === 'object' && err !== null && typeof (err as { status?: unknown }).status === 'number'
        ? (err as { status: number }).status
        : 500;
    if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain' }).end(err instanceof Error ? err.message : 'error');
  });
  return listener;
}

export interface OracleServers {
  readonly ports: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

/** Starts both servers on loopback, ephemeral ports. */
export async function startOracleServers(): Promise<OracleServers> {
  acceptRevision('2026-07-28');
  const servers: http.Server[] = [];
  const ports: Record<string, number> = {};
  for (const [name, make] of [
    ['plain', plainListener],
    ['express', expressListener],
  ] as const) {
    const server = http.createServer(make());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    servers.push(server);
    ports[name] = (server.address() as AddressInfo).port;
  }
  return {
    ports,
    async close() {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}
