// A blocking-query watch loop for Consul-style HTTP APIs (https://developer.hashicorp.com/consul/api-docs/features/blocking),
// independent of what is watched. It replaces the `consul` library's `watch`, which ends for good on a missing
// X-Consul-Index or a 400 and casts whatever shape it is given.
//
// API (everything else is private):
//   const q = new BlockingQuery({ name, url, validate, onChange, onError, onRecover?, headers?, agent?, wait?,
//                                 backoffBaseMs?, backoffMaxMs?, timeoutMarginMs?, maxBodyBytes?, signal? });
//   q.start();  q.stop();  q.state()  // a plain object for /debug
//
// What it guarantees:
// - The loop never ends on its own. Every failure (network error, timeout of a hung answer, non-2xx status,
//   missing/invalid/zero X-Consul-Index, undecodable body, a body `validate` refuses) is reported to `onError`
//   as a BlockingQueryError and retried after a jittered, capped exponential backoff. Only stop() (or the
//   abort signal) ends it.
// - After any failure the next query starts from index 0 (answers at once with the current state): a restarted
//   agent may come back with the same index and different data, and only a fresh read can tell.
//   An index that goes backwards (a snapshot restore, another server) is Consul's documented reset: the answer
//   is used and the next query is again a fresh, non-blocking read, with no backoff.
// - `onChange` gets every validated answer whose index differs from the last one delivered, and always the first
//   answer after start or a reset, even when its index is the same. Callers compare content themselves.
// - `onRecover` runs on the first good answer after one or more failures (after `onChange`), whether or not the
//   data changed, so whoever shows an error can clear it.
// - A blocking query that returns at once with an unchanged index (a server that does not block) is followed by
//   a short pause (the backoff base) instead of a hot loop.
import http from 'node:http';
import https from 'node:https';
import { parseDurationMs } from '../model/duration.ts';

export type BlockingQueryErrorKind = 'network' | 'timeout' | 'status' | 'index' | 'decode' | 'shape';

/** A failed query. The loop has already scheduled its retry when this is reported. */
export class BlockingQueryError extends Error {
  readonly query: string;
  readonly kind: BlockingQueryErrorKind;
  /** The HTTP status, for kind 'status'. */
  readonly status: number | undefined;
  /** What went wrong, without the query's name (the message is `<query>: <detail>`). */
  readonly detail: string;
  constructor(query: string, kind: BlockingQueryErrorKind, detail: string, status?: number) {
    super(`${query}: ${detail}`);
    this.name = 'BlockingQueryError';
    this.query = query;
    this.kind = kind;
    this.detail = detail;
    this.status = status;
  }
}

export interface ChangeInfo {
  /** The X-Consul-Index of the answer. */
  readonly index: string;
  /** performance.now() when the answer arrived. */
  readonly observedAt: number;
  /** True for a read from index 0 (start, after a failure, after the index went backwards). */
  readonly fresh: boolean;
}

export interface BlockingQueryOptions<T> {
  /** Names the query in errors, logs and state, e.g. `catalog` or `health weather`. */
  name: string;
  /** The endpoint; `index` and `wait` are added to its query string. */
  url: string | URL;
  /** Checks an answer's shape and returns it typed; throws (any Error) to refuse it. */
  validate: (body: unknown) => T;
  onChange: (value: T, info: ChangeInfo) => void;
  onError: (err: BlockingQueryError) => void;
  onRecover?: () => void;
  /** E.g. X-Consul-Token. Never shown by state(). */
  headers?: Record<string, string>;
  /** For TLS settings and keep-alive; Node's global agent otherwise. */
  agent?: http.Agent;
  /** The blocking wait, a duration such as '30s' or '5m'. Default '30s'. */
  wait?: string;
  /** First retry delay. Default 100 ms. */
  backoffBaseMs?: number;
  /** Longest retry delay (before jitter). Default 2000 ms: recovery within one short cycle. */
  backoffMaxMs?: number;
  /** A query is abandoned as hung after wait + wait/16 (Consul's own jitter) + this. Default 5000 ms. */
  timeoutMarginMs?: number;
  /** Larger answers are refused (kind 'decode'). Default 64 MiB. */
  maxBodyBytes?: number;
  signal?: AbortSignal;
}

/** What /debug shows about a query. Times are ms since the epoch. */
export interface BlockingQueryState {
  readonly name: string;
  readonly url: string;
  readonly healthy: boolean;
  /** Index of the last good answer, the one the next blocking query waits on (undefined: next read is fresh). */
  readonly index: string | undefined;
  readonly lastSuccessAt: number | undefined;
  readonly lastError: string | undefined;
  readonly lastErrorKind: BlockingQueryErrorKind | undefined;
  readonly lastErrorAt: number | undefined;
  readonly consecutiveFailures: number;
  readonly requests: number;
  readonly errors: number;
  /** Times the index went backwards. */
  readonly resets: number;
  readonly startedAt: number | undefined;
}

/** Milliseconds of a Consul wait ('30s', '5m', '1500ms'); Consul itself caps it at 10 minutes. */
export function waitMs(wait: string): number {
  const ms = parseDurationMs(wait);
  if (ms === undefined || ms <= 0) throw new Error(`wait ${JSON.stringify(wait)} is not a Consul wait such as "30s" or "5m"`);
  return Math.min(ms, 600_000);
}

/** Jittered exponential backoff: between half and all of min(max, base * 2^(failures-1)). */
export function backoffDelay(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

// Consul indexes are uint64: compare as BigInt, never as floats.
const INDEX = /^[0-9]{1,20}$/;

interface Answer {
  status: number;
  index: string | undefined;
  body: string;
}

export class BlockingQuery<T> {
  private readonly o: BlockingQueryOptions<T>;
  private readonly waitMs: number;
  private readonly abort = new AbortController();
  private index: bigint | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private s: {
    lastSuccessAt?: number;
    lastError?: string;
    lastErrorKind?: BlockingQueryErrorKind;
    lastErrorAt?: number;
    requests: number;
    errors: number;
    resets: number;
    startedAt?: number;
  } = { requests: 0, errors: 0, resets: 0 };

  constructor(o: BlockingQueryOptions<T>) {
    this.o = o;
    this.waitMs = waitMs(o.wait ?? '30s');
    o.signal?.addEventListener('abort', () => this.stop(), { once: true });
  }

  start(): void {
    if (this.running || this.abort.signal.aborted) return;
    this.running = true;
    this.s.startedAt = Date.now();
    void this.loop();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
  }

  state(): BlockingQueryState {
    const url = new URL(String(this.o.url));
    url.searchParams.delete('token');
    return {
      name: this.o.name,
      url: url.toString(),
      healthy: this.failures === 0 && this.s.lastSuccessAt !== undefined,
      index: this.index?.toString(),
      lastSuccessAt: this.s.lastSuccessAt,
      lastError: this.s.lastError,
      lastErrorKind: this.s.lastErrorKind,
      lastErrorAt: this.s.lastErrorAt,
      consecutiveFailures: this.failures,
      requests: this.s.requests,
      errors: this.s.errors,
      resets: this.s.resets,
      startedAt: this.s.startedAt,
    };
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let delay = 0;
      const blocking = this.index !== undefined;
      const started = performance.now();
      try {
        const changed = this.once(await this.fetch(this.index));
        // A blocking query that comes back at once with nothing new is a server not blocking (Consul's docs warn
        // of such bugs): pause a little rather than spin.
        if (blocking && !changed && performance.now() - started < this.waitMs / 10) delay = this.o.backoffBaseMs ?? 100;
      } catch (err) {
        if (!this.running) return;
        const e = err instanceof BlockingQueryError ? err : new BlockingQueryError(this.o.name, 'network', (err as Error).message);
        this.index = undefined;
        this.failures += 1;
        this.s.errors += 1;
        this.s.lastError = e.message;
        this.s.lastErrorKind = e.kind;
        this.s.lastErrorAt = Date.now();
        delay = backoffDelay(this.failures, this.o.backoffBaseMs ?? 100, this.o.backoffMaxMs ?? 2000);
        try {
          this.o.onError(e);
        } catch {
          /* a throwing listener must not end the loop */
        }
      }
      if (delay > 0 && this.running)
        await new Promise<void>((resolve) => {
          this.timer = setTimeout(resolve, delay);
        });
    }
  }

  /** Handles one answer (true when it was delivered); throws a BlockingQueryError for anything the loop must retry. */
  private once(a: Answer): boolean {
    const fail = (kind: BlockingQueryErrorKind, msg: string, status?: number): never => {
      throw new BlockingQueryError(this.o.name, kind, msg, status);
    };
    if (a.status < 200 || a.status > 299) fail('status', `HTTP ${a.status}: ${a.body.slice(0, 200).trim()}`, a.status);
    if (a.index === undefined) fail('index', 'answer has no X-Consul-Index header');
    if (!INDEX.test(a.index ?? '') || BigInt(a.index ?? '0') === 0n)
      fail('index', `X-Consul-Index ${JSON.stringify(a.index)} is not a positive integer`);
    const index = BigInt(a.index ?? '0');
    let body: unknown;
    try {
      body = JSON.parse(a.body);
    } catch (err) {
      fail('decode', `body is not JSON (${(err as Error).message})`);
    }
    let value: T;
    try {
      value = this.o.validate(body);
    } catch (err) {
      return fail('shape', `unexpected answer: ${(err as Error).message}`);
    }
    const fresh = this.index === undefined;
    const backwards = !fresh && index < (this.index ?? 0n);
    const changed = fresh || index !== this.index;
    const recovered = this.failures > 0;
    this.failures = 0;
    this.s.lastSuccessAt = Date.now();
    // Consul: "reset the index if it goes backwards" — this answer is the current state, and the next read
    // starts from 0 rather than trusting either index.
    if (backwards) this.s.resets += 1;
    this.index = backwards ? undefined : index;
    if (changed) {
      try {
        this.o.onChange(value, { index: index.toString(), observedAt: performance.now(), fresh: fresh || backwards });
      } catch (err) {
        // The caller could not use it: an error like any other, and the next read is fresh, so it is offered again.
        this.index = undefined;
        fail('shape', `answer refused by its consumer: ${(err as Error).message}`);
      }
    }
    if (recovered) this.o.onRecover?.();
    return changed;
  }

  private fetch(index: bigint | undefined): Promise<Answer> {
    const url = new URL(String(this.o.url));
    if (index !== undefined) {
      url.searchParams.set('index', index.toString());
      url.searchParams.set('wait', this.o.wait ?? '30s');
    }
    this.s.requests += 1;
    const blockingMs = index === undefined ? 0 : this.waitMs + this.waitMs / 16;
    const timeoutMs = blockingMs + (this.o.timeoutMarginMs ?? 5000);
    const max = this.o.maxBodyBytes ?? 64 * 1024 * 1024;
    const get = url.protocol === 'https:' ? https.get : http.get;
    return new Promise<Answer>((resolve, reject) => {
      const req = get(
        url,
        {
          headers: { Accept: 'application/json', ...this.o.headers },
          ...(this.o.agent ? { agent: this.o.agent } : {}),
          signal: this.abort.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > max) req.destroy(new BlockingQueryError(this.o.name, 'decode', `answer larger than ${max} bytes`));
            else chunks.push(c);
          });
          res.on('end', () => {
            clearTimeout(timer);
            const h = res.headers['x-consul-index'];
            resolve({ status: res.statusCode ?? 0, index: Array.isArray(h) ? h[0] : h, body: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        },
      );
      const timer = setTimeout(
        () => req.destroy(new BlockingQueryError(this.o.name, 'timeout', `no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }
}
