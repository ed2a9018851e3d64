// The MCP-level health check against real peers: server-everything answers MCP; a socket that accepts
// TCP but never answers, and an HTTP server that is not MCP, are unhealthy.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { McpHealthChecker } from '../../sidecar/src/mcp-health.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';

describe('MCP-level health check', () => {
  let everything: RunningServer;
  before(async () => {
    everything = await startEverythingHttp();
  });
  after(async () => {
    await everything?.stop();
  });

  it('a real MCP server (server-everything, 2025-11-25) answers ping', async () => {
    const c = new McpHealthChecker({ url: everything.url, protocol: '2025-11-25', timeoutMs: 5000 });
    try {
      const first = await c.check();
      assert.equal(first.ok, true, first.output);
      assert.match(first.output, /MCP ping ok/);
      const again = await c.check();
      assert.equal(again.ok, true, again.output);
    } finally {
      await c.close();
    }
  });

  it('a server that accepts TCP but never answers is unhealthy (timeout)', async () => {
    const sockets: net.Socket[] = [];
    const hang = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
    const port = (hang.address() as net.AddressInfo).port;
    try {
      const r = await new McpHealthChecker({ url: `http://127.0.0.1:${port}/mcp`, protocol: '2025-11-25', timeoutMs: 300 }).check();
      assert.equal(r.ok, false);
      assert.match(r.output, /timed out after 300 ms/);
      const r2026 = await new McpHealthChecker({ url: `http://127.0.0.1:${port}/mcp`, protocol: '2026-07-28', timeoutMs: 300 }).check();
      assert.equal(r2026.ok, false);
      assert.match(r2026.output, /server\/discover|timed out|aborted/i);
    } finally {
      for (const s of sockets) s.destroy();
      hang.close();
    }
  });

  it('an HTTP server that does not speak MCP is unhealthy', async () => {
    const web = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>hello</h1>'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(web.address() as net.AddressInfo).port}/mcp`;
    try {
      const r = await new McpHealthChecker({ url, protocol: '2025-11-25', timeoutMs: 1000 }).check();
      assert.equal(r.ok, false, r.output);
      const r2026 = await new McpHealthChecker({ url, protocol: '2026-07-28', timeoutMs: 1000 }).check();
      assert.equal(r2026.ok, false);
      assert.match(r2026.output, /without a JSON-RPC answer/);
    } finally {
      web.close();
    }
  });
});
