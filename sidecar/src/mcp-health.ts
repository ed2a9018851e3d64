// MCP-level health: a server that accepts TCP but does not answer MCP is not healthy. 2025-era servers
// (Streamable HTTP or legacy SSE) are checked with an MCP SDK client: initialize once, then `ping`.
// 2026-07-28 servers are stateless and have no session to ping: each check is one `server/discover` POST
// carrying the routing headers that revision requires.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { McpProtocol, McpTransport } from '../../control-plane/src/model/types.ts';

export interface HealthResult {
  readonly ok: boolean;
  /** Human-readable: what was tried and what came back (goes into the Consul check output). */
  readonly output: string;
  readonly latencyMs: number;
}

export interface McpHealthOptions {
  /** Full URL of the server's MCP endpoint, e.g. http://127.0.0.1:7001/mcp. */
  url: string;
  protocol: McpProtocol;
  transport?: McpTransport;
  timeoutMs?: number;
}

const STATELESS: readonly McpProtocol[] = ['2026-07-28'];

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Reads the JSON-RPC message answering `id` from a JSON or SSE response body. */
async function jsonRpcAnswer(res: Response, id: number): Promise<Record<string, unknown>> {
  const type = res.headers.get('content-type') ?? '';
  const text = await res.text();
  const candidates: string[] = type.includes('text/event-stream')
    ? text
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
    : [text];
  for (const c of candidates) {
    let msg: unknown;
    try {
      msg = JSON.parse(c);
    } catch {
      continue;
    }
    if (typeof msg === 'object' && msg !== null && (msg as { id?: unknown }).id === id) return msg as Record<string, unknown>;
  }
  throw new Error(`HTTP ${res.status} without a JSON-RPC answer to request ${id} (content-type ${type || 'none'}): ${text.slice(0, 200)}`);
}

export class McpHealthChecker {
  private readonly opts: Required<Omit<McpHealthOptions, 'transport'>> & { transport: McpTransport };
  private client: Client | undefined;
  private nextId = 1;

  constructor(opts: McpHealthOptions) {
    this.opts = { timeoutMs: 5_000, transport: 'streamable-http', ...opts };
  }

  async check(): Promise<HealthResult> {
    const started = performance.now();
    try {
      const output = STATELESS.includes(this.opts.protocol) ? await this.discover() : await this.ping();
      return { ok: true, output, latencyMs: performance.now() - started };
    } catch (err) {
      await this.reset();
      return {
        ok: false,
        output: `MCP check of ${this.opts.url} failed: ${(err as Error).message}`,
        latencyMs: performance.now() - started,
      };
    }
  }

  private async ping(): Promise<string> {
    const { timeoutMs, url } = this.opts;
    if (!this.client) {
      const client = new Client({ name: 'mcpmesh-sidecar-health', version: '0.1.0' });
      const transport =
        this.opts.transport === 'sse' ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
      await withTimeout(client.connect(transport, { timeout: timeoutMs }), timeoutMs, 'initialize');
      this.client = client;
    }
    await withTimeout(this.client.ping({ timeout: timeoutMs }), timeoutMs, 'ping');
    const v = this.client.getServerVersion();
    return `MCP ping ok (${v?.name ?? 'server'} ${v?.version ?? ''}, protocol ${this.opts.protocol})`.replace(/ +\)/, ')');
  }

  private async discover(): Promise<string> {
    const id = this.nextId++;
    const res = await withTimeout(
      fetch(this.opts.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': this.opts.protocol,
          'mcp-method': 'server/discover',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id, method: 'server/discover', params: {} }),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      }),
      this.opts.timeoutMs,
      'server/discover',
    );
    const answer = await jsonRpcAnswer(res, id);
    if (answer['error']) throw new Error(`server/discover answered with error ${JSON.stringify(answer['error'])}`);
    return `MCP server/discover ok (HTTP ${res.status}, protocol ${this.opts.protocol})`;
  }

  private async reset(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.close().catch(() => undefined);
  }

  close(): Promise<void> {
    return this.reset();
  }
}
