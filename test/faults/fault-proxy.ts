// FAULT PROXY FOR TESTS: an HTTP proxy in front of a Consul (the stand-in, or a real agent) that makes the
// answers go wrong the ways an operator's worst day does. Faults, each optionally for the next `times`
// answers only and for catalog or health queries only:
//   no-index   the answer without its X-Consul-Index header
//   status     an HTTP error (400, 500...) with Consul-like text
//   shape      a 200 with the wrong JSON shape: catalog `[]`, health `{}` (the real index is kept)
//   garbage    a 200 whose body is not JSON
//   hang       never answers (the client must give up on its own)
//   reset      the connection is destroyed without an answer
// Setting a fault also applies it to the queries already blocked upstream (they are re-asked without their
// index), so a test does not wait a whole blocking wait for the fault to bite.
// Besides faults, shiftIndex(n) makes Consul look restarted or restored: every X-Consul-Index the client sees is
// n lower than the real one (and the index it sends back is raised by n before it goes upstream, so blocking
// still works). Raising n by the number of writes made during an outage brings the client the same index with
// different state; raising it further makes the index go backwards. Works in front of real Consul too.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultKind = 'no-index' | 'status' | 'shape' | 'garbage' | 'hang' | 'reset';
export type FaultTarget = 'catalog' | 'health' | 'all';

export interface Fault {
  kind: FaultKind;
  on?: FaultTarget;
  /** For 'status'. Default 500. */
  status?: number;
  /** Faulted answers before the proxy heals itself; default: until heal(). */
  times?: number;
}

interface InFlight {
  target: Exclude<FaultTarget, 'all'>;
  retry: () => void;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad request: invalid index',
  403: 'Permission denied',
  429: 'Your IP is issuing too many concurrent connections, please rate limit your calls',
  500: 'rpc error making call: No cluster leader',
  503: 'No known Consul servers',
};

export class FaultProxy {
  readonly upstream: URL;
  /** Answers that carried a fault, by kind. */
  readonly faulted: Record<FaultKind, number> = { 'no-index': 0, status: 0, shape: 0, garbage: 0, hang: 0, reset: 0 };
  requests = 0;
  private server: http.Server | undefined;
  private fault: Fault | undefined;
  private readonly inflight = new Set<InFlight>();
  private readonly hung = new Set<http.ServerResponse>();
  private shift = 0n;

  constructor(upstream: string) {
    this.upstream = new URL(upstream);
  }

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    return this.address;
  }

  get address(): string {
    if (!this.server) throw new TypeError('fault proxy is not listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Starts a fault (replacing any other). */
  set(fault: Fault): void {
    this.fault = { ...fault };
    for (const f of [...this.inflight]) if (this.applies(f.target)) f.retry();
  }

  /**
   * From now on the client sees every index `by` lower than Consul's (never below 1). Queries blocked upstream
   * are answered at once with the shifted index, as Consul answers them when it restores a snapshot.
   */
  shiftIndex(by: bigint): void {
    this.shift = by;
    for (const f of [...this.inflight]) f.retry();
  }

  /** Ends the fault; hung answers are released (the client may have given up on them already). */
  heal(): void {
    this.fault = undefined;
    for (const res of this.hung) res.destroy();
    this.hung.clear();
  }

  async stop(): Promise<void> {
    this.heal();
    for (const f of this.inflight) f.retry = () => {};
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private applies(target: Exclude<FaultTarget, 'all'>): boolean {
    const on = this.fault?.on ?? 'all';
    return this.fault !== undefined && (on === 'all' || on === target);
  }

  /** The fault for this answer, counting it against `times`. */
  private take(target: Exclude<FaultTarget, 'all'> | undefined): Fault | undefined {
    const f = this.fault;
    if (!f || !target || !this.applies(target)) return undefined;
    if (f.times !== undefined && --f.times <= 0) this.fault = undefined;
    this.faulted[f.kind] += 1;
    return f;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests += 1;
    const path = req.url ?? '/';
    const target = path.startsWith('/v1/catalog/services') ? 'catalog' : path.startsWith('/v1/health/service/') ? 'health' : undefined;
    const forward = (url: string): void => {
      const abort = new AbortController();
      const entry: InFlight | undefined = target
        ? {
            target,
            retry: () => {
              // Re-ask without the index: an immediate answer, to which the new fault applies.
              this.inflight.delete(entry as InFlight);
              abort.abort();
              const u = new URL(url, this.upstream);
              u.searchParams.delete('index');
              u.searchParams.delete('wait');
              forward(u.pathname + u.search);
            },
          }
        : undefined;
      if (entry) this.inflight.add(entry);
      // The client gave up (its own timeout): so does the upstream query.
      res.on('close', () => {
        if (res.writableEnded) return;
        if (entry) this.inflight.delete(entry);
        abort.abort();
      });
      const up = http.request(
        new URL(url, this.upstream),
        { method: req.method, headers: { ...req.headers, host: this.upstream.host }, signal: abort.signal },
        (ur) => {
          const chunks: Buffer[] = [];
          ur.on('data', (c: Buffer) => chunks.push(c));
          ur.on('end', () => {
            if (entry) this.inflight.delete(entry);
            this.answer(res, ur, Buffer.concat(chunks), this.take(target), target);
          });
          ur.on('error', () => undefined);
        },
      );
      up.on('error', (err) => {
        if (abort.signal.aborted) return;
        if (entry) this.inflight.delete(entry);
        if (!res.headersSent) res.writeHead(502).end(`fault proxy: upstream ${err.message}`);
      });
      if (req.readableEnded) up.end();
      else req.pipe(up);
    };
    // Faults that need no upstream answer bite at once.
    const f = this.fault;
    if (f && target && this.applies(target) && (f.kind === 'status' || f.kind === 'hang' || f.kind === 'reset')) {
      this.answer(res, undefined, Buffer.alloc(0), this.take(target), target);
      return;
    }
    forward(this.upstreamPath(path));
  }

  /** The request's path with its index raised by the shift. */
  private upstreamPath(p: string): string {
    const u = new URL(p, this.upstream);
    const index = u.searchParams.get('index');
    if (this.shift === 0n || index === null || !/^\d+$/.test(index)) return p;
    u.searchParams.set('index', String(BigInt(index) + this.shift));
    return u.pathname + u.search;
  }

  private answer(
    res: http.ServerResponse,
    ur: http.IncomingMessage | undefined,
    body: Buffer,
    f: Fault | undefined,
    target: Exclude<FaultTarget, 'all'> | undefined,
  ): void {
    if (res.destroyed) return;
    if (f?.kind === 'hang') {
      this.hung.add(res);
      return;
    }
    if (f?.kind === 'reset') {
      res.socket?.destroy();
      return;
    }
    if (f?.kind === 'status') {
      const status = f.status ?? 500;
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(STATUS_TEXT[status] ?? `HTTP ${status}`);
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(ur?.headers ?? {}))
      if (typeof v === 'string' && k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection') headers[k] = v;
    let out = body;
    const index = headers['x-consul-index'];
    if (index !== undefined && /^\d+$/.test(index) && this.shift > 0n) {
      const shifted = BigInt(index) - this.shift;
      headers['x-consul-index'] = String(shifted < 1n ? 1n : shifted);
    }
    if (f?.kind === 'no-index') delete headers['x-consul-index'];
    if (f?.kind === 'shape') out = Buffer.from(target === 'catalog' ? '[]' : '{}');
    if (f?.kind === 'garbage') out = Buffer.from('<html>502 Bad Gateway</html>');
    res.writeHead(ur?.statusCode ?? 502, { ...headers, 'Content-Length': String(out.length) }).end(out);
  }
}
