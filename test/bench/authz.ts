// MCP authorizer benchmark (standalone: `node test/bench/authz.ts`; BENCH_QUICK=1 for a short run).
//
// Server side, in this process (one JS thread, i.e. one core): the real AuthzServer with a realistic policy
// (the example policy plus 30 generated team roles over 40 services; the service called has requiredScopes)
// and, measured in the same run, a do-nothing Check server: same gRPC plumbing (authorizationServiceDefinition,
// AUTHZ_GRPC_SERVER_OPTIONS), no decoding, one pre-encoded OK answer. Client side, in a second process
// (test/bench/authz-clients.ts): a tools/call CheckRequest for a 2026-07-28 service as the gateway's Envoy
// sends it (encode_raw_headers: a header map of 16 headers incl. a 1 KB bearer token, jwt_authn's
// x-jwt-payload and MCP-Protocol-Version / Mcp-Method / Mcp-Name; the verified claims as jwt_authn dynamic
// metadata; the JSON-RPC body as bytes; peer addresses; the route's context extensions mcp_service,
// mcp_protocol and resource_metadata) over 4 HTTP/2 connections. So every check the authorizer now makes runs:
// media type, UTF-8, JSON-RPC, canonical names, the header/body agreement of 2026-07-28 (each header once, the
// version on the allow-list, Mcp-Method / Mcp-Name / _meta protocol version equal to the body's), requiredScopes,
// the roles.
//
//  1. Throughput: closed loop, 64 calls in flight: decisions/s and p50/p99. At saturation, latency is mostly
//     queueing (Little's law: 64 / throughput), for the baseline as much as for the authorizer. Server CPU use
//     is sampled over the window, so the figures are also given per server CPU-second.
//  2. Latency: closed loop with 8 in flight (an Envoy worker's ext_authz calls in a busy moment), and open
//     loop at a fixed 5,000 checks/s (sent in 1 ms ticks, whatever the answers' pace).
// Each phase runs the baseline, the authorizer, and the authorizer on the same request without the 2026-07-28
// header check (the route's mcp_protocol left out, as for a 2025-11-25 service), ROUNDS times alternating;
// the table shows medians. Until 2026-07-28 services went through the authorizer they paid no ext_authz hop
// at all: the whole round trip is what such a call now pays, and the last two of the three split it.
//  3. Work per check in process (no gRPC, no load): AuthzServer.check() (decode, decide, encode) on both
//     requests, alternating batches; medians.
//
// Targets (../shared/docs/performance.md): >= 10,000 decisions/s on one core, >= 0.8x the do-nothing
// throughput, p99 at 8 in flight <= 1.2x the do-nothing p99.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { AUTHZ_GRPC_SERVER_OPTIONS, authorizationServiceDefinition, AuthzServer } from '../../control-plane/src/authz/server.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { META_PROTOCOL_VERSION } from '../../control-plane/src/policy/mcp-http.ts';
import type { Policy, Role } from '../../control-plane/src/policy/types.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import { decodeCheckResponse, encodeCheckRequest } from '../policy/helpers.ts';
import type { FromAuthzClients, Phase, ToAuthzClients } from './authz-clients.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const QUICK = process.env['BENCH_QUICK'] === '1';
const ROUNDS = QUICK ? 1 : 3;
const TIMING = { connections: 4, warmupMs: QUICK ? 500 : 1000, durationMs: QUICK ? 1500 : 3000 };
const PHASES = [
  { name: '64 in flight', load: { concurrency: 64 } },
  { name: '8 in flight', load: { concurrency: 8 } },
  { name: '5,000/s open loop', load: { rate: 5000 } },
] as const;
const V = '2026-07-28';
const SCOPE = 'weather.read';

function benchPolicy(): Policy {
  const base = parsePolicy(readFileSync(path.join(here, '../../deploy/policy.example.yaml'), 'utf8'), 'deploy/policy.example.yaml');
  const teams: Role[] = [];
  for (let t = 0; t < 30; t++) {
    teams.push({
      name: `team-${t}`,
      allow: [
        { service: `svc-${t}`, tools: ['*'], resources: ['*'] },
        { service: `svc-${(t + 1) % 40}`, tools: [`read_*`, `list_*`, `tool_${t}`], prompts: ['*'] },
        { service: `svc-${(t + 7) % 40}-*`, tools: ['get_*'] },
      ],
      deny: [{ service: `svc-${t}`, tools: ['drop_*', 'delete_*'] }, { service: 'billing' }],
    });
  }
  // The service called requires a scope: that check runs on every request too.
  const services = base.services.map((s) => (s.service === 'weather' ? { ...s, requiredScopes: [SCOPE] } : s));
  return { ...base, roles: [...teams, ...base.roles], services };
}

/** The CheckRequest for a tools/call to a 2026-07-28 service; `headerCheck: false` leaves out the route's mcp_protocol. */
function request(headerCheck: boolean): Buffer {
  const fakeToken = `eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.${Buffer.from('x'.repeat(500)).toString('base64url')}.${'s'.repeat(342)}`;
  const claims = {
    iss: 'http://127.0.0.1:18001/oauth',
    sub: 'agent-42',
    aud: 'mcp-mesh',
    iat: 1_764_000_000,
    exp: 1_764_003_600,
    jti: '6f1c2a4e-0d7b-4e8a-9c1f-3b2d5e6f7a8b',
    roles: ['team-3', 'team-17', 'analyst'],
    scope: `roles ${SCOPE}`,
  };
  // As the gateway's jwt_authn sends them: the verified payload both as dynamic metadata (what the authorizer
  // reads) and as the x-jwt-payload header (forward_payload_header).
  return encodeCheckRequest({
    path: '/mcp/weather',
    claims,
    metadataClaims: { ...claims, scope: ['roles', SCOPE] },
    headers: {
      authorization: `Bearer ${fakeToken}`,
      'user-agent': 'node',
      'x-forwarded-proto': 'http',
      'x-envoy-expected-rq-timeout-ms': '200',
      'mcp-protocol-version': V,
      'mcp-method': 'tools/call',
      'mcp-name': 'get_forecast',
    },
    rawHeaders: true,
    contextExtensions: {
      mcp_service: 'weather',
      ...(headerCheck ? { mcp_protocol: V } : {}),
      resource_metadata: 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp/weather',
    },
    asBytes: true,
    body: {
      jsonrpc: '2.0',
      id: 42,
      method: 'tools/call',
      params: {
        name: 'get_forecast',
        arguments: { city: 'Paris', days: 3, units: 'metric' },
        _meta: { progressToken: 42, [META_PROTOCOL_VERSION]: V },
      },
    },
  });
}

// ----------------------------------------------------------------------------------------------- stats

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

interface Result {
  rate: number;
  p50: number;
  p99: number;
  p999: number;
  cpu: number; // server CPU share over the window (1 = one core busy)
}

// ------------------------------------------------------------------------------------------ load runner

class Load {
  private readonly child: ChildProcess;
  private waiter: ((m: FromAuthzClients) => void) | undefined;
  private readonly exited: Promise<void>;

  constructor() {
    this.child = fork(path.join(here, 'authz-clients.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.exited = new Promise((r) => this.child.once('exit', () => r()));
    this.child.on('message', (m: FromAuthzClients) => this.waiter?.(m));
  }

  async run(phase: Phase): Promise<Result> {
    let cpuStart: NodeJS.CpuUsage | undefined;
    let tStart = 0;
    let cpuEnd: NodeJS.CpuUsage | undefined;
    let tEnd = 0;
    const result = await new Promise<FromAuthzClients>((resolve) => {
      this.waiter = (m) => {
        if (m.type === 'measuring') {
          cpuStart = process.cpuUsage();
          tStart = performance.now();
        } else {
          cpuEnd = process.cpuUsage(cpuStart);
          tEnd = performance.now();
          resolve(m);
        }
      };
      this.child.send({ type: 'run', phase } satisfies ToAuthzClients);
    });
    if (result.type === 'error') throw new Error(`load generator: ${result.message}`);
    if (result.type !== 'result') throw new Error(`unexpected message ${result.type}`);
    const cpuMs = cpuEnd ? (cpuEnd.user + cpuEnd.system) / 1000 : NaN;
    return {
      rate: result.count / (result.elapsedMs / 1000),
      p50: pct(result.latencies, 50),
      p99: pct(result.latencies, 99),
      p999: pct(result.latencies, 99.9),
      cpu: cpuMs / (tEnd - tStart),
    };
  }

  async close(): Promise<void> {
    this.child.send({ type: 'close' } satisfies ToAuthzClients);
    await this.exited;
  }
}

async function floorServer(okBytes: Buffer): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server(AUTHZ_GRPC_SERVER_OPTIONS);
  server.addService(authorizationServiceDefinition(), {
    Check: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, okBytes),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    port,
    close: async () => {
      await new Promise<void>((r) => server.tryShutdown(() => r()));
      server.forceShutdown();
    },
  };
}

function fmt(r: Result): string {
  return `${Math.round(r.rate).toLocaleString('en-US').padStart(7)} /s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   p99.9 ${r.p999.toFixed(2)} ms   server CPU ${(r.cpu * 100).toFixed(0)}%   ${Math.round(r.rate / r.cpu).toLocaleString('en-US')} per CPU-s`;
}

/** AuthzServer.check() in process on each request, alternating batches: median µs per check. */
function workPerCheck(authz: AuthzServer, requests: readonly Buffer[]): number[] {
  const batches = QUICK ? 5 : 15;
  const perBatch = QUICK ? 5_000 : 20_000;
  const times: number[][] = requests.map(() => []);
  for (let b = 0; b < batches + 2; b++) {
    requests.forEach((req, i) => {
      const t0 = performance.now();
      for (let n = 0; n < perBatch; n++) authz.check(req);
      // The first two batches warm the JIT up.
      if (b >= 2) times[i]?.push(((performance.now() - t0) * 1000) / perBatch);
    });
  }
  return times.map(median);
}

async function main(): Promise<void> {
  const policy = benchPolicy();
  const withCheck = request(true);
  const noCheck = request(false);
  const registry = new Registry();
  const authz = new AuthzServer({ policy, registry });
  const authzPort = await authz.listen('127.0.0.1', 0);
  const okBytes = authz.check(withCheck);
  const decoded = decodeCheckResponse(okBytes);
  if (!decoded.ok_response) throw new Error(`bench request is not allowed: ${JSON.stringify(decoded)}`);
  // Sanity: the header check runs (a mismatched Mcp-Name is refused) and only with the route's mcp_protocol,
  // and both requests get the same answer, so the client does the same work for all three servers.
  const mismatch = decodeCheckResponse(
    authz.check(Buffer.from(withCheck.toString('latin1').replace('get_forecast', 'get_f0recast'), 'latin1')),
  );
  if (!/header-mismatch/.test(mismatch.status?.message ?? ''))
    throw new Error(`the header check did not run: ${JSON.stringify(mismatch.status)}`);
  if (!authz.check(noCheck).equals(okBytes)) throw new Error('the two requests are not answered alike');
  const floor = await floorServer(okBytes);
  lookupType('envoy.service.auth.v3.CheckResponse').decode(okBytes);

  console.log(
    `MCP authorizer benchmark${QUICK ? ' (quick)' : ''}: node ${process.version}, ${policy.roles.length} roles, ${policy.roles.reduce((n, r) => n + r.allow.length + r.deny.length, 0)} rules; request ${withCheck.length} bytes (2026-07-28 tools/call get_forecast with Mcp-* headers, roles team-3, team-17, analyst, requiredScopes ${SCOPE}) -> ${decoded.ok_response.response_headers_to_add?.[0]?.header?.value}`,
  );
  const servers = [
    { key: 'floor', label: 'do-nothing', port: floor.port, req: withCheck },
    { key: 'authz', label: 'authorizer', port: authzPort, req: withCheck },
    { key: 'nocheck', label: 'no hdr check', port: authzPort, req: noCheck },
  ] as const;
  type Key = (typeof servers)[number]['key'];
  const load = new Load();
  const results = PHASES.map(
    () => ({ authz: [] as Result[], floor: [] as Result[], nocheck: [] as Result[] }) satisfies Record<Key, Result[]>,
  );
  const common = (port: number, req: Buffer) => ({
    address: `127.0.0.1:${port}`,
    request: req.toString('base64'),
    expectLength: okBytes.length,
    ...TIMING,
  });
  let work: number[];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, phase] of PHASES.entries()) {
        for (const srv of servers) {
          const r = await load.run({ ...common(srv.port, srv.req), ...phase.load });
          results[i]?.[srv.key].push(r);
          console.log(`  round ${round + 1}  ${phase.name.padEnd(17)}  ${srv.label.padEnd(12)}: ${fmt(r)}`);
        }
      }
    }
    work = workPerCheck(authz, [withCheck, noCheck]);
  } finally {
    await load.close();
    await authz.close();
    await floor.close();
  }
  const med = (rs: readonly Result[], f: (r: Result) => number): number => median(rs.map(f));
  const row = (figure: string, value: string, baseline: string, ratio: string, target: string, ok?: boolean): void =>
    console.log(`| ${figure} | ${value} | ${baseline} | ${ratio} | ${target}${ok === false ? ': miss' : ''} |`);
  const n = (x: number): string => Math.round(x).toLocaleString('en-US');
  const ms = (rs: readonly Result[]): string => `${med(rs, (r) => r.p50).toFixed(2)} / ${med(rs, (r) => r.p99).toFixed(2)} ms`;
  const [l1, l5] = os.loadavg();
  console.log(
    `\nMedians of ${ROUNDS} round(s); servers in this process (one JS thread each, one at a time), load from a second process; ${os.cpus().length} CPUs, load average now ${l1?.toFixed(2)} (1 min) / ${l5?.toFixed(2)} (5 min): other work on the machine shows as server CPU below 100% at saturation.\n`,
  );
  console.log('| Figure | Authorizer (2026-07-28, every check) | Do-nothing Check | Ratio | Target |');
  console.log('|---|---|---|---|---|');
  const sat = results[0] as Record<Key, Result[]>;
  const aRate = med(sat.authz, (r) => r.rate);
  const fRate = med(sat.floor, (r) => r.rate);
  row(
    'decisions/s, 64 in flight',
    n(aRate),
    n(fRate),
    `${(aRate / fRate).toFixed(2)}x`,
    '>= 10,000/s, >= 0.8x',
    aRate >= 10_000 && aRate / fRate >= 0.8,
  );
  const aCpu = med(sat.authz, (r) => r.rate / r.cpu);
  const fCpu = med(sat.floor, (r) => r.rate / r.cpu);
  row('decisions per server CPU-second, 64 in flight', n(aCpu), n(fCpu), `${(aCpu / fCpu).toFixed(2)}x`, '');
  for (const [i, phase] of PHASES.entries()) {
    const r = results[i] as Record<Key, Result[]>;
    const a99 = med(r.authz, (x) => x.p99);
    const f99 = med(r.floor, (x) => x.p99);
    const gated = phase.name === '8 in flight';
    row(
      `p50 / p99, ${phase.name} (${n(med(r.authz, (x) => x.rate))}/s vs ${n(med(r.floor, (x) => x.rate))}/s)`,
      ms(r.authz),
      ms(r.floor),
      `${(a99 / f99).toFixed(2)}x p99`,
      gated ? 'p99 <= 1.2x' : '',
      gated ? a99 / f99 <= 1.2 : undefined,
    );
  }

  console.log('\nWhat a 2026-07-28 call now pays (until now it went through header RBAC only, with no ext_authz hop):\n');
  console.log('| Figure | Authorizer with the header check | Same request, no header check | Difference | Do-nothing Check |');
  console.log('|---|---|---|---|---|');
  for (const [i, phase] of PHASES.entries()) {
    const r = results[i] as Record<Key, Result[]>;
    const p = (rs: readonly Result[], q: 'p50' | 'p99'): number => med(rs, (x) => x[q]);
    const d = (q: 'p50' | 'p99'): string => {
      const us = Math.round((p(r.authz, q) - p(r.nocheck, q)) * 1000);
      return `${us >= 0 ? '+' : '-'}${Math.abs(us)} µs`;
    };
    console.log(`| p50 / p99, ${phase.name} | ${ms(r.authz)} | ${ms(r.nocheck)} | ${d('p50')} / ${d('p99')} | ${ms(r.floor)} |`);
  }
  const rate = (k: Key): number => med(sat[k], (x) => x.rate);
  console.log(
    `| decisions/s, 64 in flight | ${n(rate('authz'))} | ${n(rate('nocheck'))} | ${(rate('authz') / rate('nocheck')).toFixed(2)}x | ${n(rate('floor'))} |`,
  );
  const [wWith, wWithout] = work as [number, number];
  console.log(
    `| server work per check, in process (decode, decide, encode; median) | ${wWith.toFixed(1)} µs | ${wWithout.toFixed(1)} µs | ${wWith >= wWithout ? '+' : '-'}${Math.abs(wWith - wWithout).toFixed(1)} µs (${((wWith / wWithout - 1) * 100).toFixed(0)}%) | |`,
  );
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  },
);
