// Graceful drain of a control plane process started as operators start it: SIGTERM -> /readyz 503 at once ->
// streams kept for --drain-delay -> streams closed with UNAVAILABLE spread over --drain-window -> exit 0.
// Proxies: raw ADS streams (one connection each, as separate Envoys) and a real grpc-js-xds client.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';
import { EchoClient, startBackend, who, type Backend, type EchoClientInstance } from '../helpers/grpc-backends.ts';
import { waitFor } from '../helpers/wait.ts';
import { LONG, registryYaml } from './helpers.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/main.ts');
const RAW_STREAMS = LONG ? 60 : 12;
const DELAY_MS = 700;
const WINDOW_MS = LONG ? 5000 : 2000;

interface Running {
  child: ChildProcess;
  xdsPort: number;
  adminPort: number;
  lines: Array<{ at: number; entry: Record<string, unknown> }>;
  exited: Promise<number | null>;
}

function startMain(dir: string, args: string[]): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [MAIN, '--registry', path.join(dir, 'registry.yaml'), '--host', '127.0.0.1', '--xds-port', '0', '--admin-port', '0', ...args],
      { env: { ...process.env, MCPMESH_DEV_ISSUER: 'off', MCPMESH_LOG_LEVEL: 'info' } },
    );
    const lines: Running['lines'] = [];
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const x = /xDS \(ADS, gRPC\): 127\.0\.0\.1:(\d+)/.exec(out);
      const a = /admin: +http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (x && a) resolve({ child, xdsPort: Number(x[1]), adminPort: Number(a[1]), lines, exited });
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      const parts = err.split('\n');
      err = parts.pop() ?? '';
      for (const l of parts) {
        try {
          lines.push({ at: performance.now(), entry: JSON.parse(l) as Record<string, unknown> });
        } catch {
          // not a log line
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`control plane exited ${code} before listening:\n${out}\n${err}`)));
  });
}

describe('ADS fault: graceful drain on SIGTERM', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-drain-'));
  let running: Running | undefined;
  let backend: Backend | undefined;
  const clients: RawAdsClient[] = [];
  let echo: EchoClientInstance | undefined;

  after(async () => {
    echo?.close();
    for (const c of clients) c.close();
    running?.child.kill('SIGKILL');
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
    // grpc-js-xds's xDS client is process-wide, has no close() and keeps reconnecting: exit once results are written.
    setTimeout(() => process.exit(process.exitCode ?? 0), 1000);
  });

  it(`turns unready first, keeps streams for the delay, closes ${RAW_STREAMS} raw streams and a grpc-js-xds client spread over the window, exits 0`, async () => {
    backend = await startBackend('b1');
    writeFileSync(
      path.join(dir, 'registry.yaml'),
      `services:\n  - name: weather\n    protocol: "2025-11-25"\n    endpoints:\n      - { address: 127.0.0.1, port: ${backend.port} }\n`,
    );
    running = await startMain(dir, ['--drain-delay', `${DELAY_MS}ms`, '--drain-window', `${WINDOW_MS}ms`]);
    const r = running;
    const readyz = async (): Promise<number> => (await fetch(`http://127.0.0.1:${r.adminPort}/readyz`)).status;
    assert.equal(await readyz(), 200);

    const streams: AdsStream[] = [];
    for (let i = 0; i < RAW_STREAMS; i++) {
      // Separate connections, as separate proxies have.
      const c = new RawAdsClient(`127.0.0.1:${r.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(c);
      const s = c.sotw();
      s.send({ node: node(`raw-${i}`, { role: 'gateway' }), type_url: TYPE_URLS.cluster, resource_names: [] });
      streams.push(s);
    }
    await Promise.all(streams.map((s) => s.next('cluster')));
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${r.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-drain-1', cluster: 'test', locality: {}, metadata: { role: 'gateway' } },
    });
    const xds = await import('@grpc/grpc-js-xds');
    xds.register();
    echo = new EchoClient('xds:///weather', grpc.credentials.createInsecure()) as EchoClientInstance;
    const e = echo;
    assert.equal(await waitFor('a call through xDS', () => who(e)), 'b1');

    const closedAt: number[] = [];
    const codes: Array<grpc.status | undefined> = [];
    for (const s of streams)
      s.call.on('status', (st: grpc.StatusObject) => {
        closedAt.push(performance.now());
        codes.push(st.code);
      });
    const t0 = performance.now();
    r.child.kill('SIGTERM');
    let unreadyAt = 0;
    await waitFor(
      '/readyz 503',
      async () => {
        if ((await readyz()) !== 503) return false;
        unreadyAt = performance.now();
        return true;
      },
      5000,
      10,
    );
    assert.equal(closedAt.length, 0, 'no stream may close before readiness turned');

    // A proxy arriving during the drain goes elsewhere: refused with UNAVAILABLE at once, not held until the window.
    const late = new RawAdsClient(`127.0.0.1:${r.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(late);
    const lateStream = late.sotw();
    lateStream.send({ node: node('late', { role: 'gateway' }), type_url: TYPE_URLS.cluster, resource_names: [] });
    const lateErr = await lateStream.closedWithError(5000);
    assert.equal(lateErr.code, grpc.status.UNAVAILABLE, `late stream: ${lateErr.details}`);
    assert.match(lateErr.details, /shutting down; connect to another replica/);

    const code = await r.exited;
    assert.equal(code, 0, 'the process exits 0 after draining');
    await waitFor('every raw stream closed', () => closedAt.length === RAW_STREAMS, 5000);
    assert.ok(
      codes.every((c) => c === grpc.status.UNAVAILABLE),
      `streams closed with ${JSON.stringify(codes)} (UNAVAILABLE makes proxies reconnect)`,
    );
    const first = Math.min(...closedAt);
    const last = Math.max(...closedAt);
    assert.ok(unreadyAt < first, 'readiness turns before the first stream closes');
    assert.ok(first - t0 >= DELAY_MS, `first stream closed ${Math.round(first - t0)} ms after SIGTERM, before the ${DELAY_MS} ms delay`);
    // Uniform over the window: with 12 streams a spread under a quarter of it has odds of about 1 in 25,000.
    assert.ok(
      last - first >= WINDOW_MS / 4,
      `closes spread over ${Math.round(last - first)} ms only (window ${WINDOW_MS} ms): a thundering herd`,
    );
    const xdsGone = r.lines.find((l) => l.entry['msg'] === 'proxy disconnected' && l.entry['proxy'] === 'grpc-drain-1');
    assert.ok(xdsGone, "the grpc-js-xds client's stream was closed by the drain");
    const draining = r.lines.find((l) => l.entry['msg'] === 'draining xDS streams');
    assert.equal(draining?.entry['streams'], RAW_STREAMS + 1, "the drain closed every stream: the raw ones and grpc-js-xds's");
    console.log(
      `drain: unready after ${Math.round(unreadyAt - t0)} ms, streams closed from +${Math.round(first - t0)} to +${Math.round(last - t0)} ms (delay ${DELAY_MS}, window ${WINDOW_MS})`,
    );
  });

  it('exits even when a proxy has stopped reading (its status can never get out)', async () => {
    writeFileSync(path.join(dir, 'registry.yaml'), registryYaml(150, 0));
    const r = await startMain(dir, ['--drain-delay', '100ms', '--drain-window', '300ms']);
    running = r;
    const c = new RawAdsClient(`127.0.0.1:${r.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(c);
    const s = c.sotw();
    s.send({ node: node('stuck', { role: 'gateway' }), type_url: TYPE_URLS.cluster, resource_names: [] });
    await s.next('cluster');
    s.send({ type_url: TYPE_URLS.endpoint, resource_names: ['*'] });
    s.call.pause();
    // Edits until the server holds unsent data for it (its flow-control window is full).
    for (let g = 1; g <= 12; g++) {
      const tmp = path.join(dir, `.edit-${g}`);
      writeFileSync(tmp, registryYaml(150, g));
      renameSync(tmp, path.join(dir, 'registry.yaml'));
      await waitFor(`edit ${g} published`, () => r.lines.filter((l) => l.entry['msg'] === 'mesh published').length >= g + 1, 20_000);
    }
    r.child.kill('SIGTERM');
    const exited = await Promise.race([r.exited, new Promise<string>((res) => setTimeout(() => res('still running'), 20_000))]);
    assert.equal(exited, 0, 'the process exits 0 despite the stuck proxy (well before its 60 s stall limit)');
  });
});
