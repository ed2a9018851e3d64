// Load generator for test/bench/authz.ts, run in its own process: Envoy-like ext_authz clients sending one
// pre-encoded CheckRequest over a few HTTP/2 connections. gRPC is spoken directly over node:http2 (length-
// prefixed message, grpc-status trailer), as lean as Envoy's own client: a @grpc/grpc-js client costs more CPU
// per call than the server under test and would measure itself. Each answer is checked (HTTP 200,
// grpc-status 0, the expected CheckResponse length).
//
// IPC: parent -> { type: 'run', phase }  child -> { type: 'measuring' } when the warm-up is over, then
// { type: 'result', ... } with latencies (ms, sorted) and the count; { type: 'error', message } on failure.
import http2 from 'node:http2';

export interface Phase {
  address: string;
  /** Base64 of the encoded CheckRequest. */
  request: string;
  /** Closed loop: this many calls always in flight. */
  concurrency?: number;
  /** Open loop: this many calls per second, whatever the answers' pace. */
  rate?: number;
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** Every response must have this length (the expected CheckResponse). */
  expectLength: number;
}

export type ToAuthzClients = { type: 'run'; phase: Phase } | { type: 'close' };
export type FromAuthzClients =
  | { type: 'measuring' }
  | { type: 'result'; count: number; errors: number; elapsedMs: number; latencies: number[] }
  | { type: 'error'; message: string };

const CHECK = '/envoy.service.auth.v3.Authorization/Check';

/** One unary gRPC call on an HTTP/2 session; calls back with the response message or an error. */
function unary(session: http2.ClientHttp2Session, framed: Buffer, cb: (err: Error | undefined, msg?: Buffer) => void): void {
  const stream = session.request({ ':method': 'POST', ':path': CHECK, 'content-type': 'application/grpc', te: 'trailers' });
  const chunks: Buffer[] = [];
  let status = 0;
  let grpcStatus: string | undefined;
  stream.on('response', (h) => {
    status = Number(h[':status']);
    const gs = h['grpc-status'];
    if (gs !== undefined) grpcStatus = String(gs); // trailers-only response
  });
  stream.on('trailers', (t) => {
    grpcStatus = String(t['grpc-status']);
  });
  stream.on('data', (d: Buffer) => chunks.push(d));
  stream.on('error', (e) => cb(e));
  stream.on('end', () => {
    if (status !== 200 || grpcStatus !== '0') return cb(new Error(`HTTP ${status}, grpc-status ${grpcStatus}`));
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) return cb(new Error(`bad gRPC framing (${body.length} bytes)`));
    cb(undefined, body.subarray(5));
  });
  stream.end(framed);
}

function send(m: FromAuthzClients): void {
  process.send?.(m);
}

async function run(p: Phase): Promise<void> {
  const msg = Buffer.from(p.request, 'base64');
  const framed = Buffer.alloc(5 + msg.length);
  framed.writeUInt32BE(msg.length, 1);
  msg.copy(framed, 5);
  const clients: http2.ClientHttp2Session[] = [];
  for (let i = 0; i < p.connections; i++) {
    const s = http2.connect(`http://${p.address}`, { settings: { initialWindowSize: 4 * 1024 * 1024 } });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    s.on('error', () => {
      /* reported by the calls */
    });
    clients.push(s);
  }
  let measuring = false;
  let stopped = false;
  let count = 0;
  let errors = 0;
  let firstError = '';
  const latencies: number[] = [];
  let next = 0;
  let inFlight = 0;
  let drained: (() => void) | undefined;

  const one = (): void => {
    const c = clients[next++ % clients.length] as http2.ClientHttp2Session;
    const t0 = performance.now();
    const counted = measuring;
    inFlight += 1;
    unary(c, framed, (err, resp) => {
      inFlight -= 1;
      const ms = performance.now() - t0;
      if (err || !resp || resp.length !== p.expectLength) {
        errors += 1;
        if (!firstError) firstError = err ? err.message : `unexpected response length ${resp?.length} (expected ${p.expectLength})`;
      } else if (counted && measuring) {
        count += 1;
        latencies.push(ms);
      }
      if (stopped) {
        if (inFlight === 0) drained?.();
        return;
      }
      if (p.concurrency !== undefined) one();
    });
  };

  const start = performance.now();
  let measureStart = 0;
  const beginMeasuring = setTimeout(() => {
    measuring = true;
    measureStart = performance.now();
    send({ type: 'measuring' });
  }, p.warmupMs);

  if (p.concurrency !== undefined) {
    for (let i = 0; i < p.concurrency; i++) one();
  } else if (p.rate !== undefined) {
    // Open loop: every millisecond tick, send what is owed at this rate since the start.
    let sent = 0;
    const rate = p.rate;
    const tick = (): void => {
      if (stopped) return;
      const owed = Math.floor(((performance.now() - start) / 1000) * rate);
      while (sent < owed) {
        sent += 1;
        one();
      }
      setTimeout(tick, 1);
    };
    tick();
  }

  await new Promise<void>((resolve) => setTimeout(resolve, p.warmupMs + p.durationMs));
  clearTimeout(beginMeasuring);
  const elapsedMs = performance.now() - measureStart;
  measuring = false;
  stopped = true;
  if (inFlight > 0)
    await new Promise<void>((resolve) => {
      drained = resolve;
    });
  await Promise.all(clients.map((c) => new Promise<void>((r) => c.close(() => r()))));
  if (errors > 0) {
    send({ type: 'error', message: `${errors} failed call(s); first: ${firstError}` });
    return;
  }
  latencies.sort((a, b) => a - b);
  send({ type: 'result', count, errors, elapsedMs, latencies });
}

process.on('message', (m: ToAuthzClients) => {
  if (m.type === 'close') process.exit(0);
  if (m.type === 'run') run(m.phase).catch((err: Error) => send({ type: 'error', message: err.stack ?? err.message }));
});
