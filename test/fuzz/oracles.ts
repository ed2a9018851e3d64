// The fuzz's oracles, seen from the harness: two real MCP SDK servers (oracle-servers.ts: the SDK's plain
// Streamable HTTP transport and createMcpExpressApp()) running in a worker thread, so that they use the
// second core and the SDK patch they need (accepting the 2026-07-28 version header) stays in that thread.
// A replay sends exactly the given method, header lines (names as written, duplicates kept, in order) and
// body bytes, plus the oracle's Host and the Content-Length; what the handlers ran comes back in RAN_HEADER.
import http from 'node:http';
import { Worker } from 'node:worker_threads';
import type { McpAction } from '../../control-plane/src/policy/types.ts';

/** Tools every oracle serves (the fuzz policy allows some of them per role and denies the others). */
export const ORACLE_TOOLS = ['get_forecast', 'get_tide', 'warm_cache', 'drop_cache', 'admin_reset', 'admin_x'] as const;
/** Prompts every oracle serves. */
export const ORACLE_PROMPTS = ['summary_daily', 'secret_prompt'] as const;
/** Resource templates, in the order the SDK tries them (the last one takes every other file: URI). */
export const ORACLE_RESOURCE_TEMPLATES = ['file:///reports/{+path}', 'file:///etc/{+path}', 'file:///{+path}'] as const;
export const ORACLE_PATH = '/mcp';
/** Response header carrying what the handlers ran (base64 of a JSON RanAction[]). */
export const RAN_HEADER = 'x-fuzz-ran';

/** What one handler ran (a tool, a resource or a prompt). */
export type RanAction = Extract<McpAction, { kind: 'tool' | 'resource' | 'prompt' }>;

export interface ReplayRequest {
  readonly method: string;
  /** Header lines exactly as the client sent them (name as written, value), duplicates kept, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Uint8Array;
}

export interface OracleReply {
  readonly oracle: string;
  /** HTTP status, or 0 when the request failed (error says why). */
  readonly status: number;
  readonly ran: readonly RanAction[];
  readonly error?: string;
}

export interface Oracle {
  readonly name: string;
  readonly port: number;
  replay(req: ReplayRequest): Promise<OracleReply>;
}

export interface OracleSet {
  readonly oracles: readonly Oracle[];
  close(): Promise<void>;
}

const REPLAY_TIMEOUT_MS = 10_000;
const MAX_REPLY_BYTES = 1 << 20;

function decodeRan(value: string | string[] | undefined): RanAction[] | undefined {
  if (typeof value !== 'string') return undefined;
  const parsed: unknown = JSON.parse(Buffer.from(value, 'base64').toString('utf8'));
  return Array.isArray(parsed) ? (parsed as RanAction[]) : undefined;
}

function replayTo(name: string, port: number, agent: http.Agent): Oracle['replay'] {
  return (r) =>
    new Promise<OracleReply>((resolve) => {
      const flat: string[] = [];
      for (const [k, v] of r.headers) flat.push(k, v);
      flat.push('Host', `127.0.0.1:${port}`, 'Content-Length', String(r.body.length));
      let settled = false;
      const done = (status: number, ran: RanAction[] | undefined, error?: string): void => {
        if (settled) return;
        settled = true;
        // No record header: the harness cannot tell what ran, which it reports as an error (never as "nothing ran").
        const err = error ?? (ran === undefined ? `no ${RAN_HEADER} header in the answer` : undefined);
        resolve({
          oracle: name,
          status: err !== undefined && error !== undefined ? 0 : status,
          ran: ran ?? [],
          ...(err !== undefined ? { error: err } : {}),
        });
      };
      const req = http.request(
        { host: '127.0.0.1', port, method: r.method, path: ORACLE_PATH, headers: flat, agent, setHost: false },
        (res) => {
          let ran: RanAction[] | undefined;
          try {
            ran = decodeRan(res.headers[RAN_HEADER]);
          } catch (err) {
            done(0, undefined, `bad ${RAN_HEADER}: ${(err as Error).message}`);
          }
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_REPLY_BYTES) res.destroy();
          });
          res.on('end', () => done(res.statusCode ?? 0, ran));
          res.on('close', () => done(res.statusCode ?? 0, ran));
          res.on('error', (err) => done(res.statusCode ?? 0, ran, err.message));
        },
      );
      req.setTimeout(REPLAY_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REPLAY_TIMEOUT_MS} ms`)));
      req.on('error', (err) => done(0, undefined, err.message));
      req.end(Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength));
    });
}

/** Starts both oracles (in a worker thread) on loopback, ephemeral ports. */
export async function startOracles(): Promise<OracleSet> {
  const worker = new Worker(new URL('./oracle-worker.ts', import.meta.url));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  let ports: Record<string, number>;
  try {
    ports = await new Promise<Record<string, number>>((resolve, reject) => {
      worker.once('message', (m: { ports: Record<string, number> }) => resolve(m.ports));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`oracle worker exited (${code}) before it started`)));
    });
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  return {
    oracles: Object.entries(ports).map(([name, port]) => ({ name, port, replay: replayTo(name, port, agent) })),
    async close() {
      agent.destroy();
      worker.postMessage('close');
      const timer = setTimeout(() => void worker.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
