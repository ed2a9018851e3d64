// stdio bridge of the sidecar agent: serves a stdio-only MCP server as Streamable HTTP on 127.0.0.1 so the
// Envoy sidecar can front it.
//
// It is a message-level proxy built from the SDK's own transports (no protocol code of its own):
// StreamableHTTPServerTransport faces the HTTP client, StdioClientTransport faces the child; JSON-RPC messages
// are relayed unchanged in both directions (see session.ts for how server->client messages find their stream).
//
// Design decisions
// ----------------
// Sessions: one child process per HTTP MCP session. A stdio server is a single process speaking to a single
//   client for its whole life (one initialize, one set of negotiated capabilities, one roots list, one log
//   level, its own subscriptions). Sharing one child between HTTP sessions would need the bridge to fake
//   initialize for every client after the first, merge capabilities and demultiplex ids and notifications,
//   and one client's state (log level, subscriptions) would leak into the others'. Per-session children keep
//   the protocol exact and isolate clients, at the cost of one process per session; so:
//   - the child is spawned when a POST without Mcp-Session-Id carries `initialize`, and the client's own
//     initialize is what the child answers; the SDK transport then issues the Mcp-Session-Id (random UUID);
//   - the child is stopped on DELETE, when the session has had no request for `sessionIdleTimeoutMs` (an open
//     standalone GET stream alone does not count as activity), and on stop();
//   - at most `maxSessions` sessions (spawning ones included) exist; a new initialize beyond that gets 503 with
//     Retry-After and a JSON-RPC error saying so.
// Child death: a child that exits ends its session. Requests still waiting on it get a JSON-RPC error naming
//   the command, its SSE streams end, and the session id is forgotten, so the client's next request gets 404
//   and, as the spec says, it re-initializes, which spawns a fresh child. The bridge itself keeps serving.
//   There is no "restart" of a session's child: a new process could not take over the old one's state.
// Spawn failures: a command that cannot be started (ENOENT, EACCES, bad cwd) makes the initialize POST fail
//   with HTTP 502 and a JSON-RPC error naming the command; a child that exits before answering initialize (a
//   crashing server, `npx` of a missing package) fails the initialize with a JSON-RPC error naming the command
//   and quoting the tail of its stderr (in-band on the initialize's SSE stream: the HTTP status is already
//   sent by then). Both are logged at error level and count as spawn failures: consecutive failures impose an
//   exponential backoff (spawnBackoffInitialMs doubling up to spawnBackoffMaxMs) during which new sessions are
//   refused with 503 + Retry-After instead of spawning, so a crash-looping command is not spawned at the rate
//   clients retry. A successful initialize resets the backoff.
// Binding and DNS rebinding: binds 127.0.0.1 by default. When bound to a loopback address, the Host header's
//   hostname (port-agnostic, like the SDK's hostHeaderValidation middleware) must be localhost / 127.0.0.1 /
//   [::1] or one of `allowedHosts` (the mesh adds the names Envoy forwards as Host when it does not rewrite
//   it); a browser Origin must be in `allowedOrigins` or, when that is unset, have an allowed hostname. The
//   check runs in the bridge before any session lookup or spawn, so a rebinding request never starts a
//   process; it is answered 403. Bound to a non-loopback address, Host is checked only if allowedHosts is set.
// HTTP surface: POST, GET (standalone SSE stream) and DELETE on `path` are handled by the SDK transport;
//   unknown session id -> 404, missing session id on a non-initialize request -> 400, other methods -> 405,
//   other paths -> 404. Each session has a bounded event store, so SSE streams carry event ids and clients can
//   resume with Last-Event-ID (useful behind Envoy's stream timeouts).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isInitializeRequest, type JSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';
import {
  acceptsPostResponse,
  BodyTooLargeError,
  checkHostAndOrigin,
  isJsonContentType,
  isLoopbackBindHost,
  LOOPBACK_HOSTNAMES,
  readBody,
  sendJsonRpcError,
  SpawnBackoff,
} from './http-util.ts';
import { BRIDGE_ERROR_CODE, BridgeSession, type LogFn, type SessionHooks } from './session.ts';

export type { LogFn } from './session.ts';

export interface StdioBridgeOptions {
  /** Executable of the stdio MCP server (resolved on PATH; no shell). */
  command: string;
  args?: string[];
  /** Extra environment for the child, on top of the SDK's safe default (HOME, LOGNAME, PATH, SHELL, TERM, USER). */
  env?: Record<string, string>;
  cwd?: string;
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** Port to bind; 0 (default) = ephemeral. */
  port?: number;
  /** MCP endpoint path. Default '/mcp'. */
  path?: string;
  /** Concurrent sessions (= child processes) allowed. Default 32. */
  maxSessions?: number;
  /** A session with no request for this long is ended and its child stopped. Default 15 min; 0 disables. */
  sessionIdleTimeoutMs?: number;
  /** Extra Host hostnames (no port) to accept, e.g. the service name Envoy forwards as Host. */
  allowedHosts?: string[];
  /** Exact Origin values (scheme://host[:port]) to accept from browsers. */
  allowedOrigins?: string[];
  /** First backoff delay after a spawn failure. Default 500 ms. */
  spawnBackoffInitialMs?: number;
  /** Backoff ceiling. Default 30 s. */
  spawnBackoffMaxMs?: number;
  /** Largest POST body read for an initialize (the SDK's limit applies to the others). Default 4 MiB. */
  maxRequestBodyBytes?: number;
  log?: LogFn;
}

export interface BridgeSessionInfo {
  /** Mcp-Session-Id, or undefined while the child is being spawned. */
  id: string | undefined;
  pid: number | null;
  createdAt: number;
  lastActivity: number;
  inFlightRequests: number;
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;

/** Default logger: JSON lines on stderr, info and above. */
export const stderrLogger: LogFn = (level, msg, fields) => {
  if (LEVELS[level] < LEVELS.info) return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, component: 'stdio-bridge', msg, ...fields })}\n`);
};

export class StdioBridge {
  private readonly opts: StdioBridgeOptions;
  private readonly log: LogFn;
  private readonly path: string;
  private readonly host: string;
  private readonly maxSessions: number;
  private readonly idleTimeoutMs: number;
  private readonly maxBody: number;
  private readonly backoff: SpawnBackoff;
  private allowedHostnames: string[] | undefined;
  private readonly allowedOrigins: string[] | undefined;
  private server: Server | undefined;
  private stopping: Promise<void> | undefined;
  /** Every live session, including those still spawning / initializing. */
  private readonly live = new Set<BridgeSession>();
  /** Sessions the HTTP transport has given an id, by Mcp-Session-Id. */
  private readonly byId = new Map<string, BridgeSession>();
  private readonly hooks: SessionHooks;

  constructor(opts: StdioBridgeOptions) {
    if (!opts.command) throw new Error('StdioBridge: command is required');
    this.opts = opts;
    this.log = opts.log ?? stderrLogger;
    this.path = opts.path ?? '/mcp';
    this.host = opts.host ?? '127.0.0.1';
    this.maxSessions = opts.maxSessions ?? 32;
    this.idleTimeoutMs = opts.sessionIdleTimeoutMs ?? 15 * 60_000;
    this.maxBody = opts.maxRequestBodyBytes ?? 4 * 1024 * 1024;
    this.backoff = new SpawnBackoff(opts.spawnBackoffInitialMs ?? 500, opts.spawnBackoffMaxMs ?? 30_000);
    this.allowedOrigins = opts.allowedOrigins;
    const extra = (opts.allowedHosts ?? []).map((h) => h.toLowerCase());
    this.allowedHostnames = isLoopbackBindHost(this.host)
      ? [...LOOPBACK_HOSTNAMES, ...extra]
      : opts.allowedHosts !== undefined
        ? extra
        : undefined;
    this.hooks = {
      registered: (s) => {
        if (s.sessionId === undefined) return;
        this.byId.set(s.sessionId, s);
        this.log('info', 'session started', { session: s.sessionId, pid: s.pid, sessions: this.live.size });
      },
      initialized: (s, ok) => {
        if (ok) {
          this.backoff.success();
          return;
        }
        // The child refused initialize (e.g. no common protocol version): the client has its answer; the
        // session is useless, so end it once that answer is flushed.
        this.log('warn', 'stdio MCP server rejected initialize; ending session', { session: s.label, pid: s.pid });
        void s.close('initialize rejected by server');
      },
      spawnFailed: (s, message) => {
        const retryInMs = this.backoff.failure(message);
        this.log('error', 'stdio MCP server failed to start', {
          session: s.label,
          command: this.opts.command,
          args: this.opts.args ?? [],
          error: message,
          consecutiveFailures: this.backoff.consecutiveFailures,
          retryInMs,
        });
      },
      closed: (s) => {
        this.live.delete(s);
        const id = s.sessionId;
        if (id !== undefined && this.byId.get(id) === s) this.byId.delete(id);
      },
    };
  }

  /** Live sessions (each with its own child process), including ones still starting. */
  get sessions(): number {
    return this.live.size;
  }

  listSessions(): BridgeSessionInfo[] {
    return [...this.live].map((s) => ({
      id: s.sessionId,
      pid: s.pid,
      createdAt: s.createdAt,
      lastActivity: s.lastActivity,
      inFlightRequests: s.inFlightRequests,
    }));
  }

  async start(): Promise<{ port: number; url: string }> {
    if (this.server) throw new Error('StdioBridge already started');
    const server = createServer((req, res) => {
      void this.onRequest(req, res);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const hostForUrl = this.host.includes(':') && !this.host.startsWith('[') ? `[${this.host}]` : this.host;
    const url = `http://${hostForUrl}:${port}${this.path}`;
    if (this.allowedHostnames === undefined) {
      this.log('warn', 'bound to a non-loopback address without allowedHosts: Host header is not validated', {
        host: this.host,
      });
    }
    this.log('info', 'stdio bridge listening', {
      url,
      command: this.opts.command,
      args: this.opts.args ?? [],
      maxSessions: this.maxSessions,
      sessionIdleTimeoutMs: this.idleTimeoutMs,
    });
    return { port, url };
  }

  /** Stops accepting requests, ends every session and stops every child. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      const server = this.server;
      const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
      await Promise.all([...this.live].map((s) => s.close('bridge stopping')));
      server?.closeAllConnections();
      await closed;
      this.log('info', 'stdio bridge stopped', { command: this.opts.command });
    })();
    return this.stopping;
  }

  // ---- HTTP ----------------------------------------------------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const pathname = new URL(req.url ?? '/', 'http://bridge.invalid').pathname;
      if (pathname !== this.path) {
        sendJsonRpcError(res, 404, BRIDGE_ERROR_CODE, `Not Found: the MCP endpoint is ${this.path}`);
        return;
      }
      const rejection = checkHostAndOrigin(req, this.allowedHostnames, this.allowedOrigins);
      if (rejection !== undefined) {
        this.log('warn', 'rejected request (DNS rebinding protection)', {
          reason: rejection,
          host: req.headers.host,
          origin: req.headers.origin,
        });
        sendJsonRpcError(res, 403, BRIDGE_ERROR_CODE, rejection);
        return;
      }
      const method = req.method ?? '';
      if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
        sendJsonRpcError(res, 405, BRIDGE_ERROR_CODE, 'Method not allowed.', { headers: { allow: 'GET, POST, DELETE' } });
        return;
      }
      if (this.stopping) {
        sendJsonRpcError(res, 503, BRIDGE_ERROR_CODE, 'Service Unavailable: the stdio bridge is stopping');
        return;
      }
      const sessionHeader = req.headers['mcp-session-id'];
      const sessionId = Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader;
      if (sessionId !== undefined) {
        const session = this.byId.get(sessionId);
        if (session === undefined || session.closed) {
          // Spec: a terminated or unknown session is answered 404; the client must start a new session.
          sendJsonRpcError(res, 404, -32001, 'Session not found');
          return;
        }
        await session.handle(req, res);
        return;
      }
      if (method !== 'POST') {
        sendJsonRpcError(res, 400, BRIDGE_ERROR_CODE, 'Bad Request: Mcp-Session-Id header is required');
        return;
      }
      await this.newSession(req, res);
    } catch (err) {
      this.log('error', 'error handling request', { error: err instanceof Error ? err.stack : String(err) });
      sendJsonRpcError(res, 500, -32603, 'Internal error');
    }
  }

  /** POST without Mcp-Session-Id: must be an initialize; spawns the session's child. */
  private async newSession(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Same checks, order and messages as the SDK transport, done here so a request it would refuse never
    // spawns a process.
    if (!acceptsPostResponse(req)) {
      sendJsonRpcError(res, 406, BRIDGE_ERROR_CODE, 'Not Acceptable: Client must accept both application/json and text/event-stream');
      return;
    }
    if (!isJsonContentType(req)) {
      sendJsonRpcError(res, 415, BRIDGE_ERROR_CODE, 'Unsupported Media Type: Content-Type must be application/json');
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req, this.maxBody));
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        sendJsonRpcError(res, 413, BRIDGE_ERROR_CODE, `Payload Too Large: ${err.message}`);
      } else {
        sendJsonRpcError(res, 400, -32700, 'Parse error: Invalid JSON');
      }
      return;
    }
    const messages: unknown[] = Array.isArray(body) ? body : [body];
    const init = messages.find((m): m is JSONRPCRequest => isInitializeRequest(m));
    if (init === undefined) {
      sendJsonRpcError(res, 400, BRIDGE_ERROR_CODE, 'Bad Request: Mcp-Session-Id header is required (send initialize to start a session)');
      return;
    }
    const command = this.opts.command;
    const waitMs = this.backoff.remainingMs();
    if (waitMs > 0) {
      const message = `Not starting MCP server command "${command}" yet: it failed ${this.backoff.consecutiveFailures} time(s) in a row (last: ${this.backoff.lastError}); retry in ${Math.ceil(waitMs / 1000)}s`;
      this.log('debug', 'initialize refused during spawn backoff', { command, retryInMs: waitMs });
      sendJsonRpcError(res, 503, BRIDGE_ERROR_CODE, message, {
        id: init.id,
        data: { command, retryAfterMs: waitMs },
        headers: { 'retry-after': String(Math.ceil(waitMs / 1000)) },
      });
      return;
    }
    if (this.live.size >= this.maxSessions) {
      this.log('warn', 'initialize refused: session limit reached', { maxSessions: this.maxSessions });
      sendJsonRpcError(
        res,
        503,
        BRIDGE_ERROR_CODE,
        `Service Unavailable: too many sessions; the stdio bridge for "${command}" allows at most ${this.maxSessions} concurrent sessions (one process each). End a session (DELETE) or retry later.`,
        { id: init.id, data: { maxSessions: this.maxSessions }, headers: { 'retry-after': '5' } },
      );
      return;
    }

    const session = new BridgeSession({
      command,
      args: this.opts.args ?? [],
      ...(this.opts.env !== undefined ? { env: this.opts.env } : {}),
      ...(this.opts.cwd !== undefined ? { cwd: this.opts.cwd } : {}),
      idleTimeoutMs: this.idleTimeoutMs,
      log: this.log,
      hooks: this.hooks,
    });
    this.live.add(session);
    try {
      await session.spawn();
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      const message = `Failed to start MCP server command "${command}": ${error}`;
      const retryInMs = this.backoff.failure(message);
      this.log('error', 'stdio MCP server failed to start', {
        command,
        args: this.opts.args ?? [],
        cwd: this.opts.cwd,
        error,
        consecutiveFailures: this.backoff.consecutiveFailures,
        retryInMs,
      });
      await session.close('spawn failed');
      sendJsonRpcError(res, 502, BRIDGE_ERROR_CODE, message, {
        id: init.id,
        data: { command, args: this.opts.args ?? [], retryAfterMs: retryInMs },
      });
      return;
    }
    if (session.closed) {
      // Died between 'spawn' and now (spawnFailed has recorded and logged it).
      const stderr = session.stderrSummary();
      sendJsonRpcError(
        res,
        502,
        BRIDGE_ERROR_CODE,
        `MCP server command "${command}" exited right after starting${stderr ? `; stderr: ${stderr}` : ''}`,
        {
          id: init.id,
          data: { command, args: this.opts.args ?? [] },
        },
      );
      return;
    }
    await session.handle(req, res, body);
    // The transport refused the initialize (it answered 4xx and issued no session id): nothing will ever reach
    // this child, stop it.
    if (session.sessionId === undefined && !session.closed) await session.close('initialize not accepted');
  }
}
