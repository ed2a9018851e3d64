// stdio bridge tests with real peers: the MCP SDK client over Streamable HTTP -> StdioBridge -> the real
// @modelcontextprotocol/server-everything speaking stdio (spawned with the pinned Node).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateMessageRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import type { StdioBridge } from '../../sidecar/src/bridge/stdio-bridge.ts';
import { connectClient, newClient, processAlive, startEverythingBridge, waitFor, type LogRecord } from './conformance/harness.ts';

const bridges: StdioBridge[] = [];
after(async () => {
  await Promise.all(bridges.map((b) => b.stop()));
});

function textOf(result: unknown): string {
  const content = (result as CallToolResult).content;
  return content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
}

/** Raw HTTP request (node:http lets a test set Host, which fetch does not). */
function rawRequest(
  url: string,
  opts: { method: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method, headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const INIT_BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});
const POST_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

function sessionPids(bridge: StdioBridge): number[] {
  return bridge
    .listSessions()
    .map((s) => s.pid)
    .filter((p): p is number => p !== null);
}

describe('stdio bridge in front of server-everything (stdio)', () => {
  const { bridge, logs } = startEverythingBridge();
  bridges.push(bridge);
  let url = '';

  it('starts on 127.0.0.1 with an ephemeral port', async () => {
    const started = await bridge.start();
    url = started.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    assert.ok(started.port > 0);
    assert.equal(bridge.sessions, 0);
  });

  it('initialize, listTools, callTool echo, ping through the bridge', async () => {
    const { client, transport } = await connectClient(url);
    try {
      assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything');
      assert.ok(transport.sessionId, 'bridge issued an Mcp-Session-Id');
      const tools = await client.listTools();
      const names = tools.tools.map((t) => t.name);
      assert.ok(names.includes('echo'), `tools: ${names.join(', ')}`);
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'hello' } });
      assert.equal(textOf(echo), 'Echo: hello');
      assert.deepEqual(await client.ping(), {});
      assert.equal(bridge.sessions, 1);
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  });

  it('relays progress notifications to the request that asked for them', async () => {
    const { client, transport } = await connectClient(url);
    try {
      const progress: number[] = [];
      const result = await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } }, undefined, {
        onprogress: (p) => progress.push(p.progress),
      });
      assert.match(textOf(result), /Long running operation completed/);
      assert.deepEqual(progress, [1, 2, 3]);
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  });

  it('relays server->client requests (sampling in a tool call, roots/list after init) and logging notifications', async () => {
    const { client, transport } = newClient(url, { sampling: {}, roots: { listChanged: true } });
    const samplingPrompts: string[] = [];
    let rootsCalls = 0;
    const logMessages: string[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      const content = req.params.messages[0]?.content;
      const blocks = Array.isArray(content) ? content : content ? [content] : [];
      samplingPrompts.push(blocks.map((b) => (b.type === 'text' ? b.text : `[${b.type}]`)).join(' '));
      return { role: 'assistant', content: { type: 'text', text: 'sampled by the test client' }, model: 'test-model' };
    });
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      rootsCalls++;
      return { roots: [{ uri: 'file:///tmp/bridge-test', name: 'bridge-test' }] };
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, async (n) => {
      logMessages.push(String(n.params.data));
    });
    await client.connect(transport);
    try {
      // Sampling: the child sends sampling/createMessage while the tool call is in flight; the bridge must put
      // it on that call's SSE stream and carry the client's answer (a POST with no method) back to the child.
      const result = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 5 } });
      assert.match(textOf(result), /sampled by the test client/);
      assert.equal(samplingPrompts.length, 1);
      assert.match(samplingPrompts[0]!, /hi/);
      // Roots: server-everything asks roots/list ~350 ms after initialized, with no request in flight: it goes
      // out on the standalone GET stream; the server then logs "Roots updated".
      await waitFor(() => rootsCalls >= 1, 5000, 'roots/list from the child');
      await waitFor(() => logMessages.some((m) => m.includes('Roots updated')), 5000, 'roots log message');
      // Logging during a tool call.
      const before = logMessages.length;
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
      await waitFor(() => logMessages.length > before, 5000, 'simulated logging notification');
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  });

  it('two concurrent sessions get separate children; DELETE ends a session and stops its child', async () => {
    const a = await connectClient(url);
    const b = await connectClient(url);
    try {
      assert.notEqual(a.transport.sessionId, b.transport.sessionId);
      assert.equal(bridge.sessions, 2);
      const infos = bridge.listSessions();
      const pidA = infos.find((s) => s.id === a.transport.sessionId)?.pid;
      const pidB = infos.find((s) => s.id === b.transport.sessionId)?.pid;
      assert.ok(pidA && pidB && pidA !== pidB, `separate children: ${pidA} vs ${pidB}`);
      // Both work concurrently.
      const [ra, rb] = await Promise.all([
        a.client.callTool({ name: 'echo', arguments: { message: 'from a' } }),
        b.client.callTool({ name: 'echo', arguments: { message: 'from b' } }),
      ]);
      assert.equal(textOf(ra), 'Echo: from a');
      assert.equal(textOf(rb), 'Echo: from b');

      const sidA = a.transport.sessionId!;
      await a.transport.terminateSession(); // DELETE
      await waitFor(() => !processAlive(pidA), 6000, 'child of the deleted session to exit');
      assert.equal(bridge.sessions, 1);
      assert.ok(processAlive(pidB), 'the other session is untouched');
      // The deleted session id is now unknown: 404 per spec.
      const res = await rawRequest(url, {
        method: 'POST',
        headers: { ...POST_HEADERS, 'mcp-session-id': sidA, 'mcp-protocol-version': '2025-11-25' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
      });
      assert.equal(res.status, 404);
      assert.equal(JSON.parse(res.body).error.code, -32001);
      assert.equal(textOf(await b.client.callTool({ name: 'echo', arguments: { message: 'still here' } })), 'Echo: still here');
    } finally {
      await b.transport.terminateSession().catch(() => undefined);
      await a.client.close();
      await b.client.close();
    }
    await waitFor(() => bridge.sessions === 0, 6000, 'all sessions closed');
  });

  it('a child that dies ends its session (next request fails with 404), and new sessions still work', async () => {
    const { client, transport } = await connectClient(url);
    const pid = bridge.listSessions().find((s) => s.id === transport.sessionId)?.pid;
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => bridge.sessions === 0, 5000, 'session of the killed child to end');
    await assert.rejects(
      () => client.callTool({ name: 'echo', arguments: { message: 'x' } }),
      (err: Error) => /404|Session not found/.test(err.message),
    );
    await client.close();
    assert.ok(
      logs.some((l) => l.msg.includes('exited; ending its session') && l.fields?.pid === pid),
      'the exit is logged',
    );
    const fresh = await connectClient(url);
    try {
      assert.equal(textOf(await fresh.client.callTool({ name: 'echo', arguments: { message: 'again' } })), 'Echo: again');
    } finally {
      await fresh.transport.terminateSession();
      await fresh.client.close();
    }
  });

  it('a child that dies during a request answers that request with an error naming the command', async () => {
    const { client, transport } = await connectClient(url);
    const pid = bridge.listSessions().find((s) => s.id === transport.sessionId)?.pid;
    assert.ok(pid);
    const pending = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 5, steps: 1 } });
    await sleep(200);
    process.kill(pid, 'SIGKILL');
    await assert.rejects(pending, (err: Error) => err.message.includes(process.execPath) && /exited/.test(err.message));
    await client.close();
  });

  it("puts progress, logging and sampling of a call on that call's POST stream (no GET stream open)", async () => {
    // The SDK client (and the conformance suite's client) open a standalone GET stream and accept anything on
    // it, so they cannot tell whether the bridge routed a message to the right stream. A client without a
    // GET stream can: everything the child says about a call must arrive on the call's own SSE response.
    const initBody = JSON.parse(INIT_BODY) as { params: { capabilities: Record<string, unknown> } };
    initBody.params.capabilities = { sampling: {} };
    const init = await fetch(url, { method: 'POST', headers: POST_HEADERS, body: JSON.stringify(initBody) });
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid);
    await init.text(); // the initialize response must arrive before notifications/initialized is sent
    const headers = { ...POST_HEADERS, 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': sid };
    await fetch(url, { method: 'POST', headers, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' });
    try {
      type Msg = { id?: number | string; method?: string; params?: Record<string, unknown>; result?: unknown };
      /** POSTs a request and returns every message of its SSE response, up to and including the response. */
      async function call(id: number, method: string, params: unknown, onRequest?: (m: Msg) => Promise<void>): Promise<Msg[]> {
        const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id, method, params }) });
        assert.equal(res.headers.get('content-type'), 'text/event-stream');
        const reader = res.body!.getReader();
        const seen: Msg[] = [];
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += Buffer.from(value).toString('utf8');
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line.startsWith('data: {')) continue;
            const m = JSON.parse(line.slice(6)) as Msg;
            seen.push(m);
            if (m.method !== undefined && m.id !== undefined && onRequest) await onRequest(m);
          }
          if (seen.some((m) => m.id === id && m.method === undefined)) break;
        }
        await reader.cancel().catch(() => undefined);
        return seen;
      }

      const progressRun = await call(2, 'tools/call', {
        name: 'trigger-long-running-operation',
        arguments: { duration: 0.2, steps: 2 },
        _meta: { progressToken: 'p-1' },
      });
      assert.deepEqual(
        progressRun.filter((m) => m.method === 'notifications/progress').map((m) => m.params?.progress),
        [1, 2],
      );
      const loggingRun = await call(3, 'tools/call', { name: 'toggle-simulated-logging', arguments: {} });
      assert.ok(
        loggingRun.some((m) => m.method === 'notifications/message'),
        JSON.stringify(loggingRun),
      );
      const samplingRun = await call(
        4,
        'tools/call',
        { name: 'trigger-sampling-request', arguments: { prompt: 'p', maxTokens: 5 } },
        async (req) => {
          assert.equal(req.method, 'sampling/createMessage');
          const answer = {
            jsonrpc: '2.0',
            id: req.id,
            result: { role: 'assistant', content: { type: 'text', text: 'raw answer' }, model: 'm' },
          };
          const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify(answer) });
          assert.equal(r.status, 202);
        },
      );
      assert.ok(
        samplingRun.some((m) => m.method === 'sampling/createMessage'),
        JSON.stringify(samplingRun),
      );
      assert.match(JSON.stringify(samplingRun.find((m) => m.id === 4)?.result), /raw answer/);
    } finally {
      await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
      await waitFor(() => bridge.sessions === 0, 6000, 'session closed');
    }
  });

  it('SSE resumption: a client that loses a POST stream mid-call gets the rest with Last-Event-ID', async () => {
    const base = { ...POST_HEADERS, 'mcp-protocol-version': '2025-11-25' };
    const init = await fetch(url, { method: 'POST', headers: POST_HEADERS, body: INIT_BODY });
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid);
    await init.text(); // the initialize response must arrive before notifications/initialized is sent
    const headers = { ...base, 'mcp-session-id': sid };
    const initialized = await fetch(url, { method: 'POST', headers, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' });
    assert.equal(initialized.status, 202);
    try {
      const abort = new AbortController();
      const call = await fetch(url, {
        method: 'POST',
        headers,
        signal: abort.signal,
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 7,
          method: 'tools/call',
          params: { name: 'trigger-long-running-operation', arguments: { duration: 0.6, steps: 3 }, _meta: { progressToken: 'tok' } },
        }),
      });
      assert.equal(call.headers.get('content-type'), 'text/event-stream');
      // Read up to the priming event (id + empty data), then drop the connection.
      const reader = call.body!.getReader();
      let buf = '';
      let primingId: string | undefined;
      while (primingId === undefined) {
        const { value, done } = await reader.read();
        assert.ok(!done, 'stream ended before the priming event');
        buf += Buffer.from(value).toString('utf8');
        primingId = buf.match(/^id: (\S+)$/m)?.[1];
      }
      abort.abort();
      await sleep(900); // the operation finishes while the client is away; the bridge stores its messages

      const resumed = await fetch(url, {
        method: 'GET',
        headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'last-event-id': primingId },
      });
      assert.equal(resumed.status, 200);
      const r2 = resumed.body!.getReader();
      let text = '';
      while (!text.includes('"id":7')) {
        const { value, done } = await r2.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
      }
      await r2.cancel();
      const messages = text
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)) as { method?: string; id?: number; params?: { progress?: number }; result?: unknown });
      assert.deepEqual(
        messages.filter((m) => m.method === 'notifications/progress').map((m) => m.params?.progress),
        [1, 2, 3],
      );
      const result = messages.find((m) => m.id === 7);
      assert.match(JSON.stringify(result?.result), /Long running operation completed/);
    } finally {
      await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
      await waitFor(() => bridge.sessions === 0, 6000, 'session closed');
    }
  });

  it('answers the HTTP edge cases as the spec says', async () => {
    // GET/DELETE without a session, unknown session, wrong path, unsupported method.
    assert.equal((await rawRequest(url, { method: 'GET', headers: { accept: 'text/event-stream' } })).status, 400);
    assert.equal((await rawRequest(url, { method: 'DELETE' })).status, 400);
    assert.equal(
      (await rawRequest(url, { method: 'GET', headers: { accept: 'text/event-stream', 'mcp-session-id': 'nope' } })).status,
      404,
    );
    assert.equal((await rawRequest(url.replace('/mcp', '/other'), { method: 'GET' })).status, 404);
    const put = await rawRequest(url, { method: 'PUT' });
    assert.equal(put.status, 405);
    assert.equal(put.headers.allow, 'GET, POST, DELETE');
    // Non-initialize POST without a session, bad JSON, missing Accept: refused without spawning anything.
    const ping = await rawRequest(url, { method: 'POST', headers: POST_HEADERS, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
    assert.equal(ping.status, 400);
    assert.equal((await rawRequest(url, { method: 'POST', headers: POST_HEADERS, body: '{nope' })).status, 400);
    assert.equal(
      (
        await rawRequest(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: INIT_BODY,
        })
      ).status,
      406,
    );
    assert.equal(bridge.sessions, 0);
  });

  it('rejects DNS-rebinding Host/Origin with 403 before spawning anything', async () => {
    const evilHost = await rawRequest(url, { method: 'POST', headers: { ...POST_HEADERS, host: 'evil.example.com' }, body: INIT_BODY });
    assert.equal(evilHost.status, 403);
    assert.match(JSON.parse(evilHost.body).error.message, /Invalid Host/);
    const evilOrigin = await rawRequest(url, {
      method: 'POST',
      headers: { ...POST_HEADERS, origin: 'http://evil.example.com' },
      body: INIT_BODY,
    });
    assert.equal(evilOrigin.status, 403);
    assert.equal(bridge.sessions, 0);
    // localhost with any port is fine (port-agnostic, like the SDK's hostHeaderValidation).
    const ok = await rawRequest(url, {
      method: 'POST',
      headers: { ...POST_HEADERS, host: 'localhost:1234', origin: 'http://localhost:5173' },
      body: INIT_BODY,
    });
    assert.equal(ok.status, 200);
    const sid = ok.headers['mcp-session-id'];
    assert.ok(typeof sid === 'string');
    const del = await rawRequest(url, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
    assert.equal(del.status, 200);
    await waitFor(() => bridge.sessions === 0, 6000, 'raw session closed');
  });
});

describe('stdio bridge options', () => {
  it('allowedHosts lets the mesh add the Host that Envoy forwards', async () => {
    const { bridge } = startEverythingBridge({ allowedHosts: ['weather.mcp.mesh'] });
    bridges.push(bridge);
    const { url } = await bridge.start();
    const res = await rawRequest(url, { method: 'POST', headers: { ...POST_HEADERS, host: 'weather.mcp.mesh:15001' }, body: INIT_BODY });
    assert.equal(res.status, 200);
    assert.equal(bridge.sessions, 1);
    await bridge.stop();
    assert.equal(bridge.sessions, 0);
  });

  it('maxSessions: a session beyond the limit gets a clear 503', async () => {
    const { bridge, logs } = startEverythingBridge({ maxSessions: 1 });
    bridges.push(bridge);
    const { url } = await bridge.start();
    const first = await connectClient(url);
    const res = await rawRequest(url, { method: 'POST', headers: POST_HEADERS, body: INIT_BODY });
    assert.equal(res.status, 503);
    assert.ok(res.headers['retry-after']);
    const body = JSON.parse(res.body);
    assert.equal(body.id, 1);
    assert.match(body.error.message, /too many sessions.*at most 1 concurrent session/i);
    await assert.rejects(
      () => connectClient(url),
      (err: Error & { code?: number }) => err.code === 503 && /too many sessions/.test(err.message),
    );
    assert.ok(logs.some((l) => l.msg.includes('session limit reached')));
    await first.transport.terminateSession();
    await waitFor(() => bridge.sessions === 0, 6000, 'slot freed');
    const second = await connectClient(url);
    await second.transport.terminateSession();
    await first.client.close();
    await second.client.close();
    await bridge.stop();
  });

  it('sessionIdleTimeoutMs ends idle sessions and stops their children', async () => {
    const { bridge } = startEverythingBridge({ sessionIdleTimeoutMs: 300 });
    bridges.push(bridge);
    const { url } = await bridge.start();
    const { client } = await connectClient(url);
    const pid = sessionPids(bridge)[0];
    assert.ok(pid);
    await waitFor(() => bridge.sessions === 0, 5000, 'idle session to end');
    await waitFor(() => !processAlive(pid), 6000, 'idle child to exit');
    await client.close();
    await bridge.stop();
  });

  it('stop() stops every child', async () => {
    const { bridge } = startEverythingBridge();
    bridges.push(bridge);
    const { url } = await bridge.start();
    const a = await connectClient(url);
    const b = await connectClient(url);
    const pids = sessionPids(bridge);
    assert.equal(pids.length, 2);
    await bridge.stop();
    assert.equal(bridge.sessions, 0);
    for (const pid of pids) assert.ok(!processAlive(pid), `child ${pid} stopped`);
    await a.client.close();
    await b.client.close();
  });
});

describe('stdio bridge spawn failures', () => {
  function hasLog(logs: LogRecord[], level: string, text: string): boolean {
    return logs.some((l) => l.level === level && JSON.stringify(l).includes(text));
  }

  it('a command that does not exist fails initialize with an error naming it; the bridge keeps running', async () => {
    const command = 'mcp-bridge-test-no-such-command';
    const { bridge, logs } = startEverythingBridge({ command, args: ['--stdio'], spawnBackoffInitialMs: 300, spawnBackoffMaxMs: 1000 });
    bridges.push(bridge);
    const { url } = await bridge.start();

    await assert.rejects(
      () => connectClient(url),
      (err: Error & { code?: number }) => err.code === 502 && err.message.includes(command) && /ENOENT/.test(err.message),
    );
    assert.ok(hasLog(logs, 'error', command), 'spawn failure logged at error level');
    assert.equal(bridge.sessions, 0);

    // Within the backoff window: refused without spawning, still naming the command.
    const during = await rawRequest(url, { method: 'POST', headers: POST_HEADERS, body: INIT_BODY });
    assert.equal(during.status, 503);
    assert.ok(during.headers['retry-after']);
    assert.ok(JSON.parse(during.body).error.message.includes(command));
    const spawnErrors = () => logs.filter((l) => l.level === 'error' && l.msg === 'stdio MCP server failed to start').length;
    assert.equal(spawnErrors(), 1, 'no second spawn during backoff');

    // After the window: the bridge tries again (and fails again, with a longer backoff).
    await sleep(350);
    const again = await rawRequest(url, { method: 'POST', headers: POST_HEADERS, body: INIT_BODY });
    assert.equal(again.status, 502);
    const err = JSON.parse(again.body);
    assert.equal(err.id, 1);
    assert.ok(err.error.message.includes(command));
    assert.equal(spawnErrors(), 2);
    const second = logs.filter((l) => l.msg === 'stdio MCP server failed to start')[1];
    assert.equal(second?.fields?.retryInMs, 600, 'exponential backoff doubles');
    await bridge.stop();
  });

  it('a child that exits before answering initialize fails initialize with its command and stderr', async () => {
    const { bridge, logs } = startEverythingBridge({
      command: process.execPath,
      args: ['-e', 'console.error("boom: missing API key"); process.exit(3)'],
    });
    bridges.push(bridge);
    const { url } = await bridge.start();
    await assert.rejects(
      () => connectClient(url),
      (err: Error) => err.message.includes(process.execPath) && err.message.includes('boom: missing API key'),
    );
    assert.ok(hasLog(logs, 'error', 'boom: missing API key'));
    await waitFor(() => bridge.sessions === 0, 5000, 'failed session cleaned up');
    const during = await rawRequest(url, { method: 'POST', headers: POST_HEADERS, body: INIT_BODY });
    assert.equal(during.status, 503, 'crash-looping command is backed off');
    await bridge.stop();
  });
});
