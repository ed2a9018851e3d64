// Minimal MCP server implementing the conformance suite's fixture tools that make the *server* talk to the
// client mid-request: logging and progress notifications, sampling and elicitation requests (plus the two
// plain tools). server-everything lacks these fixtures, so against it those scenarios fail before any
// server->client traffic happens and would not show whether the bridge routes such traffic correctly.
//
//   node fixture-server.ts stdio        serve one client over stdio (what the bridge spawns)
//   node fixture-server.ts http         serve Streamable HTTP on 127.0.0.1:<ephemeral>/mcp, one SDK server per
//                                       session (prints "listening <port>" on stderr)
//
// Behaviour follows the scenario descriptions in @modelcontextprotocol/conformance (tools-call-*).
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ListToolsRequestSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const noArgs = { type: 'object' as const, properties: {} };

function buildServer(): Server {
  const server = new Server({ name: 'bridge-conformance-fixture', version: '1.0.0' }, { capabilities: { tools: {}, logging: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: [
      { name: 'test_simple_text', description: 'simple text', inputSchema: noArgs },
      { name: 'test_error_handling', description: 'always errors', inputSchema: noArgs },
      { name: 'test_tool_with_logging', description: 'logs 3 messages', inputSchema: noArgs },
      { name: 'test_tool_with_progress', description: 'reports progress', inputSchema: noArgs },
      {
        name: 'test_sampling',
        description: 'asks the client to sample',
        inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
      },
      {
        name: 'test_elicitation',
        description: 'asks the user',
        inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
      },
    ],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra): Promise<CallToolResult> => {
    const args = (req.params.arguments ?? {}) as Record<string, unknown>;
    switch (req.params.name) {
      case 'test_simple_text':
        return { content: [{ type: 'text', text: 'This is a simple text response for testing.' }] };
      case 'test_error_handling':
        return { isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] };
      case 'test_tool_with_logging': {
        const log = (data: string) => extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
        await log('Tool execution started');
        await sleep(50);
        await log('Tool processing data');
        await sleep(50);
        await log('Tool execution completed');
        return { content: [{ type: 'text', text: 'Tool with logging executed successfully' }] };
      }
      case 'test_tool_with_progress': {
        const progressToken = req.params._meta?.progressToken;
        for (const progress of [0, 50, 100]) {
          if (progressToken !== undefined) {
            await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
          }
          if (progress < 100) await sleep(50);
        }
        return { content: [{ type: 'text', text: 'Tool with progress executed successfully' }] };
      }
      case 'test_sampling': {
        const result = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt ?? '') } }], maxTokens: 100 },
          },
          CreateMessageResultSchema,
        );
        const text = result.content.type === 'text' ? result.content.text : JSON.stringify(result.content);
        return { content: [{ type: 'text', text: `LLM response: ${text}` }] };
      }
      case 'test_elicitation': {
        const result = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: String(args.message ?? ''),
              requestedSchema: {
                type: 'object',
                properties: {
                  username: { type: 'string', description: "User's response" },
                  email: { type: 'string', description: "User's email address" },
                },
                required: ['username', 'email'],
              },
            },
          },
          ElicitResultSchema,
        );
        return { content: [{ type: 'text', text: `User response: ${JSON.stringify(result)}` }] };
      }
      default:
        return { isError: true, content: [{ type: 'text', text: `Unknown tool ${req.params.name}` }] };
    }
  });
  return server;
}

const mode = process.argv[2] ?? 'stdio';
if (mode === 'stdio') {
  await buildServer().connect(new StdioServerTransport());
} else if (mode === 'http') {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const http = createHttpServer(async (req, res) => {
    try {
      const sid = req.headers['mcp-session-id'];
      const existing = typeof sid === 'string' ? transports.get(sid) : undefined;
      if (existing) {
        await existing.handleRequest(req, res);
        return;
      }
      if (sid !== undefined) {
        res
          .writeHead(404, { 'content-type': 'application/json' })
          .end('{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}');
        return;
      }
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, transport);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) transports.delete(transport.sessionId);
      };
      await buildServer().connect(transport);
      await transport.handleRequest(req, res);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    }
  });
  http.listen(0, '127.0.0.1', () => {
    process.stderr.write(`listening ${(http.address() as AddressInfo).port}\n`);
  });
} else {
  process.stderr.write(`usage: fixture-server.ts stdio|http\n`);
  process.exit(2);
}
