// One bridge session = one Streamable HTTP MCP session = one stdio child process.
//
// The session is a message-level proxy between two SDK transports:
//   StreamableHTTPServerTransport (client side, HTTP)  <->  StdioClientTransport (server side, child's stdio)
// Messages are relayed unchanged (ids preserved). Because there is exactly one client per child, JSON-RPC ids
// cannot collide: the client's request ids and the child's request ids live in different directions.
//
// The one thing stdio loses is *which HTTP stream* a server->client message belongs to. An SDK server talking
// HTTP passes `relatedRequestId` so that progress, logs and sampling/elicitation requests raised while handling
// request R go out on R's SSE stream; over stdio that information is gone. The bridge restores it:
//   - notifications/progress: exact, by the `progressToken` the client put in `_meta` of the request;
//   - responses: exact, the SDK transport routes them by id;
//   - list_changed and resources/updated notifications: session-scoped, so the standalone GET stream (where an
//     SDK HTTP server sends them too);
//   - any other server->client request or notification (logging, sampling, elicitation, roots/list, ping):
//     related to the most recent client request still in flight (during a tool call that is the tool call,
//     which is what the server meant); with none in flight it goes to the standalone GET stream, as an HTTP
//     server would send it. With several requests in flight this is a guess, but a harmless one: clients
//     accept any message on any of the session's streams, and answers to server requests come back by POST.
// Messages sent to the HTTP transport are queued so they keep the child's order.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import { BoundedEventStore } from './event-store.ts';

export type LogFn = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/** JSON-RPC error code the bridge uses for its own failures (implementation-defined server error range). */
export const BRIDGE_ERROR_CODE = -32000;

export interface SessionHooks {
  /** The HTTP transport assigned a session id (initialize accepted): register it for routing. */
  registered(session: BridgeSession): void;
  /** The child answered initialize (ok = result, not error). */
  initialized(session: BridgeSession, ok: boolean): void;
  /** The child could not be used: it died before answering initialize. */
  spawnFailed(session: BridgeSession, message: string): void;
  /** The session is gone (DELETE, child exit, idle timeout, bridge stop); unregister it. */
  closed(session: BridgeSession, reason: string): void;
}

export interface BridgeSessionOptions {
  command: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  idleTimeoutMs: number;
  log: LogFn;
  hooks: SessionHooks;
}

interface InFlight {
  seq: number;
  progressToken?: string | number;
}

/** notifications/{tools,prompts,resources,roots}/list_changed and notifications/resources/updated. */
const SESSION_SCOPED_NOTIFICATION = /^notifications\/(?:[a-z]+\/list_changed|resources\/updated)$/;

const STDERR_TAIL_LINES = 20;
const STDERR_LINE_MAX = 500;

export class BridgeSession {
  /** Local id for logs before the HTTP session id exists. */
  readonly localId = randomUUID().slice(0, 8);
  readonly createdAt = Date.now();
  readonly child: StdioClientTransport;
  readonly http: StreamableHTTPServerTransport;
  readonly eventStore = new BoundedEventStore();
  private readonly opts: BridgeSessionOptions;

  private pidValue: number | null = null;
  private initRequestId: RequestId | undefined;
  private initAnswered = false;
  private deleteRequested = false;
  private closedReason: string | undefined;
  private closing: Promise<void> | undefined;
  private readonly inFlight = new Map<RequestId, InFlight>();
  private readonly progressTokens = new Map<string | number, RequestId>();
  private seq = 0;
  private outQueue: Promise<void> = Promise.resolve();
  private readonly stderrTail: string[] = [];
  private stderrPartial = '';
  private activeRequests = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  lastActivity = Date.now();

  constructor(opts: BridgeSessionOptions) {
    this.opts = opts;
    this.child = new StdioClientTransport({
      command: opts.command,
      args: opts.args,
      // The SDK passes a safe default environment (HOME, LOGNAME, PATH, SHELL, TERM, USER) plus `env`;
      // the child does not inherit the sidecar's full environment (and thus none of its credentials).
      ...(opts.env !== undefined ? { env: opts.env } : {}),
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      stderr: 'pipe',
    });
    this.http = new StreamableHTTPServerTransport({
      // Stateful: the bridge's session id is what ties later requests to this child.
      sessionIdGenerator: () => randomUUID(),
      eventStore: this.eventStore,
      onsessioninitialized: () => {
        this.opts.hooks.registered(this);
      },
      onsessionclosed: () => {
        this.deleteRequested = true;
      },
      // DNS-rebinding checks happen in the bridge before anything is spawned (see stdio-bridge.ts), so the
      // transport's own (deprecated, exact-match) allowedHosts/allowedOrigins options stay off.
    });
  }

  get sessionId(): string | undefined {
    return this.http.sessionId;
  }

  get pid(): number | null {
    return this.pidValue;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get label(): string {
    return this.sessionId ?? `pending-${this.localId}`;
  }

  get inFlightRequests(): number {
    return this.inFlight.size;
  }

  /** Last lines the child wrote to stderr (for error messages). */
  stderrSummary(): string {
    const lines = [...this.stderrTail];
    if (this.stderrPartial) lines.push(this.stderrPartial.slice(0, STDERR_LINE_MAX));
    return lines.join('\n');
  }

  /** Spawns the child. Rejects (e.g. ENOENT) if the command cannot be started. */
  async spawn(): Promise<void> {
    const { log } = this.opts;
    this.child.onmessage = (msg) => this.fromChild(msg);
    this.child.onerror = (err) => {
      // E.g. a line on the child's stdout that is not JSON-RPC (a server logging to stdout), or EPIPE on stdin.
      log('warn', 'stdio child transport error', { session: this.label, pid: this.pidValue, error: err.message });
    };
    this.child.onclose = () => this.onChildClosed();
    const stderr = this.child.stderr as Readable | null;
    stderr?.setEncoding('utf8');
    stderr?.on('data', (chunk: string) => this.onStderr(chunk));
    this.http.onmessage = (msg) => this.fromClient(msg);
    this.http.onerror = (err) => {
      log('debug', 'http transport error', { session: this.label, error: err.message });
    };
    this.http.onclose = () => {
      void this.close(this.deleteRequested ? 'client sent DELETE' : 'http transport closed');
    };
    await this.http.start();
    await this.child.start();
    this.pidValue = this.child.pid;
    log('info', 'spawned stdio MCP server', {
      session: this.label,
      pid: this.pidValue,
      command: this.opts.command,
      args: this.opts.args,
    });
  }

  /** Hands one HTTP request to the SDK transport; tracks activity for the idle timeout. */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void> {
    this.lastActivity = Date.now();
    // A GET (opening or resuming the standalone SSE stream) counts as activity when it arrives, but the open
    // stream itself does not keep the session alive: an abandoned client holding only a GET stream is reaped.
    if (req.method === 'GET') {
      if (this.activeRequests === 0) this.armIdle();
    } else {
      this.activeRequests++;
      this.clearIdle();
      res.once('close', () => {
        this.activeRequests--;
        this.lastActivity = Date.now();
        if (this.activeRequests === 0) this.armIdle();
      });
    }
    await this.http.handleRequest(req, res, parsedBody);
  }

  // ---- relay -------------------------------------------------------------------------------------------

  private fromClient(msg: JSONRPCMessage): void {
    if (this.closed) return;
    this.lastActivity = Date.now();
    if (isJSONRPCRequest(msg)) {
      const entry: InFlight = { seq: ++this.seq };
      const token = (msg.params as { _meta?: { progressToken?: unknown } } | undefined)?._meta?.progressToken;
      if (typeof token === 'string' || typeof token === 'number') {
        entry.progressToken = token;
        this.progressTokens.set(token, msg.id);
      }
      this.inFlight.set(msg.id, entry);
      if (msg.method === 'initialize') this.initRequestId = msg.id;
    } else if (isJSONRPCNotification(msg) && msg.method === 'notifications/cancelled') {
      // The child SHOULD NOT answer a cancelled request, so stop treating it as in flight.
      const requestId = (msg.params as { requestId?: unknown } | undefined)?.requestId;
      if (typeof requestId === 'string' || typeof requestId === 'number') this.forget(requestId);
    }
    this.child.send(msg).catch((err: unknown) => {
      const error = err instanceof Error ? err.message : String(err);
      this.opts.log('warn', 'could not write to stdio child', { session: this.label, pid: this.pidValue, error });
      if (isJSONRPCRequest(msg)) {
        this.forget(msg.id);
        this.toClient(this.errorResponse(msg.id, `MCP server process "${this.opts.command}" is not accepting input: ${error}`));
      }
    });
  }

  private fromChild(msg: JSONRPCMessage): void {
    if (this.closed) return;
    if (isJSONRPCResultResponse(msg) || isJSONRPCErrorResponse(msg)) {
      const id = msg.id;
      if (id !== undefined && id === this.initRequestId && !this.initAnswered) {
        this.initAnswered = true;
        this.opts.hooks.initialized(this, isJSONRPCResultResponse(msg));
      }
      if (id !== undefined) this.forget(id);
      this.toClient(msg);
      return;
    }
    this.toClient(msg, this.relatedRequestFor(msg));
  }

  /** Picks the client request a server->client request/notification belongs to (see header comment). */
  private relatedRequestFor(msg: JSONRPCMessage): RequestId | undefined {
    if (isJSONRPCNotification(msg)) {
      if (msg.method === 'notifications/progress') {
        // Exact: the token names the request. A token we do not know (request already answered) goes to the
        // standalone stream rather than to an unrelated request.
        const token = (msg.params as { progressToken?: unknown } | undefined)?.progressToken;
        if (typeof token === 'string' || typeof token === 'number') {
          const id = this.progressTokens.get(token);
          if (id !== undefined && this.inFlight.has(id)) return id;
        }
        return undefined;
      }
      // Session-scoped by definition (list_changed, resources/updated): an SDK server sends them without a
      // related request, i.e. on the standalone GET stream; so does the bridge.
      if (SESSION_SCOPED_NOTIFICATION.test(msg.method)) return undefined;
    }
    // Logging, cancellations and server->client requests (sampling, elicitation, roots/list, ping): most
    // recent client request still in flight.
    let best: RequestId | undefined;
    let bestSeq = -1;
    for (const [id, entry] of this.inFlight) {
      if (entry.seq > bestSeq) {
        best = id;
        bestSeq = entry.seq;
      }
    }
    return best;
  }

  private forget(id: RequestId): void {
    const entry = this.inFlight.get(id);
    if (entry === undefined) return;
    this.inFlight.delete(id);
    if (entry.progressToken !== undefined && this.progressTokens.get(entry.progressToken) === id) {
      this.progressTokens.delete(entry.progressToken);
    }
  }

  private toClient(msg: JSONRPCMessage, relatedRequestId?: RequestId): void {
    this.outQueue = this.outQueue
      .then(() => this.http.send(msg, relatedRequestId !== undefined ? { relatedRequestId } : undefined))
      .catch((err: unknown) => {
        // E.g. the client dropped the stream of a request and the response cannot be delivered (no resume
        // cursor); the SDK has already released its bookkeeping. Nothing else can be done with the message.
        this.opts.log('debug', 'message from stdio child not delivered', {
          session: this.label,
          error: err instanceof Error ? err.message : String(err),
        });
      });
  }

  private errorResponse(id: RequestId, message: string): JSONRPCMessage {
    return {
      jsonrpc: '2.0',
      id,
      error: { code: BRIDGE_ERROR_CODE, message, data: { command: this.opts.command } },
    } as JSONRPCMessage;
  }

  // ---- child lifecycle ---------------------------------------------------------------------------------

  private onStderr(chunk: string): void {
    const text = this.stderrPartial + chunk;
    const lines = text.split('\n');
    this.stderrPartial = (lines.pop() ?? '').slice(-STDERR_LINE_MAX * 4);
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '');
      if (line === '') continue;
      this.stderrTail.push(line.slice(0, STDERR_LINE_MAX));
      if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      this.opts.log('info', 'stdio child stderr', { session: this.label, pid: this.pidValue, line });
    }
  }

  private onChildClosed(): void {
    if (this.closed) return; // we stopped it ourselves
    const stderr = this.stderrSummary();
    const what = `MCP server process "${this.opts.command}" (pid ${this.pidValue ?? '?'}) exited`;
    const initPending = !this.initAnswered;
    const initMessage = `${what} before answering initialize${stderr ? `; stderr: ${stderr}` : ''}`;
    if (initPending) {
      this.initAnswered = true;
      this.opts.hooks.spawnFailed(this, initMessage);
    } else {
      this.opts.log('warn', 'stdio MCP server exited; ending its session', {
        session: this.label,
        pid: this.pidValue,
        inFlight: this.inFlight.size,
        stderr,
      });
    }
    // Answer every request the child will now never answer, so clients fail fast instead of hanging; then end
    // the session: later requests with this session id get 404 and the client re-initializes (spec).
    for (const id of [...this.inFlight.keys()]) {
      const isInit = initPending && id === this.initRequestId;
      this.toClient(this.errorResponse(id, isInit ? initMessage : `${what}; the session has ended`));
      this.forget(id);
    }
    void this.close('stdio child exited');
  }

  private armIdle(): void {
    this.clearIdle();
    if (this.closed || this.opts.idleTimeoutMs <= 0) return;
    this.idleTimer = setTimeout(() => {
      this.opts.log('info', 'session idle timeout; stopping its stdio MCP server', {
        session: this.label,
        pid: this.pidValue,
        idleTimeoutMs: this.opts.idleTimeoutMs,
      });
      void this.close('idle timeout');
    }, this.opts.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /**
   * Ends the session: flushes queued messages, closes the HTTP transport (ends its SSE streams; the session id
   * is then unknown -> 404) and stops the child (stdin EOF, then SIGTERM, then SIGKILL, per the SDK's close()).
   * Idempotent; resolves when the child is gone.
   */
  close(reason: string): Promise<void> {
    if (this.closing) return this.closing;
    this.closedReason = reason;
    this.clearIdle();
    this.opts.hooks.closed(this, reason);
    this.closing = (async () => {
      await this.outQueue;
      await this.http.close().catch(() => undefined);
      await this.child.close().catch(() => undefined);
      this.opts.log('info', 'session closed', { session: this.label, pid: this.pidValue, reason });
    })();
    return this.closing;
  }
}
