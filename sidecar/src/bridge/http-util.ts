// Small HTTP helpers for the stdio bridge: JSON-RPC error replies, bounded body reading, Host/Origin checks,
// and the spawn-failure backoff.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';

/** Hostnames that mean "this machine". IPv6 literals are written with brackets, as `URL.hostname` returns them. */
export const LOOPBACK_HOSTNAMES: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];

export function isLoopbackBindHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Writes a JSON-RPC error object as a complete HTTP response (same shape as the SDK transport's errors). */
export function sendJsonRpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  opts: { id?: RequestId | null; data?: unknown; headers?: Record<string, string> } = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const error: { code: number; message: string; data?: unknown } = { code, message };
  if (opts.data !== undefined) error.data = opts.data;
  const body = JSON.stringify({ jsonrpc: '2.0', error, id: opts.id ?? null });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...opts.headers,
  });
  res.end(body);
}

export class BodyTooLargeError extends Error {}

/** Reads a request body up to `limit` bytes (the SDK transport's default limit is 4 MiB). */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new BodyTooLargeError(`body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    total += buf.length;
    if (total > limit) throw new BodyTooLargeError(`body exceeds ${limit} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * DNS-rebinding protection, port-agnostic like the SDK's `hostHeaderValidation` middleware
 * (sdk/server/middleware/hostHeaderValidation.js), which is Express-only; the bridge uses node:http.
 * Returns an error message, or undefined if the request may proceed.
 *
 * - `allowedHostnames` undefined: no Host check (bound to a non-loopback interface without a configured list).
 * - Origin: browsers send it, other clients don't. A present Origin must be listed in `allowedOrigins` when that
 *   is configured; otherwise its hostname must pass the same hostname list as Host.
 */
export function checkHostAndOrigin(
  req: IncomingMessage,
  allowedHostnames: readonly string[] | undefined,
  allowedOrigins: readonly string[] | undefined,
): string | undefined {
  if (allowedHostnames !== undefined) {
    const hostHeader = req.headers.host;
    if (!hostHeader) return 'Missing Host header';
    let hostname: string;
    try {
      hostname = new URL(`http://${hostHeader}`).hostname;
    } catch {
      return `Invalid Host header: ${hostHeader}`;
    }
    if (!allowedHostnames.includes(hostname.toLowerCase())) return `Invalid Host: ${hostname}`;
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    if (allowedOrigins !== undefined) {
      if (!allowedOrigins.includes(origin)) return `Invalid Origin header: ${origin}`;
    } else if (allowedHostnames !== undefined) {
      let hostname: string;
      try {
        hostname = new URL(origin).hostname;
      } catch {
        return `Invalid Origin header: ${origin}`;
      }
      if (!allowedHostnames.includes(hostname.toLowerCase())) return `Invalid Origin header: ${origin}`;
    }
  }
  return undefined;
}

/** True if the Accept header lists both media types a Streamable HTTP POST must accept (SDK rule). */
export function acceptsPostResponse(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && accept.includes('text/event-stream');
}

export function isJsonContentType(req: IncomingMessage): boolean {
  const ct = req.headers['content-type'];
  if (!ct) return false;
  return ct.split(';')[0]!.trim().toLowerCase() === 'application/json';
}

/**
 * Exponential backoff for repeated spawn failures of the one command a bridge serves. While blocked, new
 * sessions are refused with 503 + Retry-After instead of spawning again, so a crash-looping command costs at
 * most one spawn per delay window however many clients retry. A successful initialize resets it.
 */
export class SpawnBackoff {
  private failures = 0;
  private blockedUntil = 0;
  private lastErrorMsg: string | undefined;
  readonly initialMs: number;
  readonly maxMs: number;
  private readonly now: () => number;

  constructor(initialMs = 500, maxMs = 30_000, now: () => number = Date.now) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.now = now;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  get lastError(): string | undefined {
    return this.lastErrorMsg;
  }

  /** Milliseconds until the next spawn is allowed (0 = allowed now). */
  remainingMs(): number {
    return Math.max(0, this.blockedUntil - this.now());
  }

  /** Records a failure; returns the delay now imposed. */
  failure(message: string): number {
    this.failures++;
    this.lastErrorMsg = message;
    const delay = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures - 1, 30));
    this.blockedUntil = this.now() + delay;
    return delay;
  }

  success(): void {
    this.failures = 0;
    this.blockedUntil = 0;
    this.lastErrorMsg = undefined;
  }
}
