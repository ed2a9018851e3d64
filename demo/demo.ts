// `npm run demo`: a whole mesh on one machine, no Docker needed (demo/mesh.ts), then a narrated tour:
// a tool call through the gateway, a call the policy denies (403 and the rule), tools/list per role, one
// replica killed and calls going on through the other, and the metrics that moved.
//
//   npm run demo                      Envoy from ENVOY_BIN, PATH, or Docker's official image; none: says how
//                                     to get one and exits 2 at once
//   npm run demo -- --no-envoy        everything but the Envoys (control plane, servers, identities, tokens)
//   npm run demo -- --once            tour, then stop everything and exit (default: keep running until Ctrl-C)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ParseArgsOptionsConfig } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DECISION_HEADER } from '../control-plane/src/authz/check.ts';
import { isEntryPoint } from '../control-plane/src/entry.ts';
import { fetchStatus, renderStatus } from '../control-plane/src/status-cli.ts';
import { chooseEnvoy, DemoMesh, httpText, REPLICA_ENV, sleep, type Replica } from './mesh.ts';
import { parseCli } from '../control-plane/src/cli-args.ts';

const USAGE = `usage: npm run demo [-- --no-envoy] [-- --once] [-- --verbose]
  --no-envoy   run everything but the Envoys: control plane (secured), servers, stdio bridge, identities, tokens
  --once       stop everything and exit after the tour (default: keep the mesh running until Ctrl-C)
  --verbose    print the control plane's and agents' logs
  env: ENVOY_BIN (the Envoy binary; else envoy on PATH, else Docker's official image), PATH
`;

/** Prints lines (none: an empty line). */
type Out = (...lines: string[]) => void;
const REQUEST = { timeout: 20_000 } as const;

async function connect(mesh: DemoMesh, service: string, token: string): Promise<Client> {
  const client = new Client({ name: 'mcpmesh-demo', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(mesh.gatewayUrl(service), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
    REQUEST,
  );
  return client;
}

const close = async (c: Client): Promise<void> => void (await Promise.race([c.close().catch(() => {}), sleep(3_000)]));

function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? `[${c.type}]`).join(' ');
}

/** Counters of a Prometheus text page, by series. */
function counters(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.trim()) continue;
    const i = line.lastIndexOf(' ');
    const v = Number(line.slice(i + 1));
    if (Number.isFinite(v)) out.set(line.slice(0, i), v);
  }
  return out;
}

async function scrape(mesh: DemoMesh): Promise<Map<string, number>> {
  const cp = await httpText(`http://127.0.0.1:${mesh.cpAdminPort}/metrics`);
  const gw = await httpText(`http://127.0.0.1:${mesh.gatewayStatsPort}/stats/prometheus`).catch(() => ({ text: '' }));
  return new Map([...counters(cp.text), ...counters(gw.text)]);
}

/** The series that grew, the mesh's own and the gateway's per-service request counters first. */
function moved(before: Map<string, number>, after: Map<string, number>): string[] {
  const interesting =
    /^(mcpmesh_(authz|xds_pushes|certificates|extproc)|envoy_cluster_upstream_rq_total\{[^}]*mcp\.|envoy_http_downstream_rq_xx\{[^}]*gateway|envoy_http_rbac|envoy_cluster_upstream_cx_destroy_remote)/;
  return [...after]
    .filter(([k, v]) => interesting.test(k) && v > (before.get(k) ?? 0))
    .map(([k, v]) => `  ${k}  ${before.get(k) ?? 0} -> ${v}`)
    .sort()
    .slice(0, 25);
}

async function tour(mesh: DemoMesh, out: Out): Promise<void> {
  const viewer = await mesh.token(['viewer']);
  const admin = await mesh.token(['admin']);
  const before = await scrape(mesh);

  out('1. A tool call through the gateway (role viewer: JWT checked, MCP authorization, mTLS to a sidecar)');
  const c1 = await connect(mesh, 'everything', viewer);
  out(`   everything/echo -> ${textOf(await c1.callTool({ name: 'echo', arguments: { message: 'hello, mesh' } }, undefined, REQUEST))}`);
  const c2 = await connect(mesh, 'notes', viewer);
  out(
    `   notes/echo (a stdio server behind the bridge) -> ${textOf(await c2.callTool({ name: 'echo', arguments: { message: 'hello, stdio' } }, undefined, REQUEST))}`,
  );
  await close(c2);

  out('', '2. A call the policy denies: viewer asks for everything/get-env');
  const denied = await httpText(
    mesh.gatewayUrl('everything').href,
    {
      method: 'POST',
      headers: {
        authorization: `Bearer ${viewer}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get-env', arguments: {} } }),
    },
    20_000,
  );
  out(`   HTTP ${denied.status}  ${DECISION_HEADER}: ${denied.headers.get(DECISION_HEADER) ?? '(none)'}`);
  out(`   ${denied.text.slice(0, 300)}`);
  out(
    `   the same session goes on: echo -> ${textOf(await c1.callTool({ name: 'echo', arguments: { message: 'still here' } }, undefined, REQUEST))}`,
  );
  await close(c1);

  out('', '3. tools/list per role (the gateway filters the list by the policy)');
  for (const [role, token] of [
    ['viewer', viewer],
    ['admin', admin],
  ] as const) {
    const c = await connect(mesh, 'everything', token);
    const names = (await c.listTools(undefined, REQUEST)).tools.map((t) => t.name).sort();
    out(`   ${role.padEnd(7)} ${names.length} tools: ${names.join(', ')}`);
    await close(c);
  }

  out('', '4. One replica killed: calls go on through the other');
  const whoAnswers = async (): Promise<string> => {
    const c = await connect(mesh, 'everything', admin);
    try {
      const env = JSON.parse(textOf(await c.callTool({ name: 'get-env', arguments: {} }, undefined, REQUEST))) as Record<string, string>;
      return env[REPLICA_ENV] ?? '?';
    } finally {
      await close(c);
    }
  };
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add(await whoAnswers());
  out(`   new sessions answered by: ${[...seen].sort().join(', ')}`);
  const victim = mesh.replicas.find((r) => r.service === 'everything' && r.name === 'a') as Replica;
  out(`   killing replica ${victim.name} (${victim.zone}): its server, its sidecar Envoy, its agent`);
  await mesh.kill(victim);
  const after: string[] = [];
  const deadline = Date.now() + 60_000;
  while (after.length < 5 && Date.now() < deadline) {
    try {
      after.push(await whoAnswers());
    } catch (err) {
      out(`   (a call failed while the gateway noticed: ${(err as Error).message.slice(0, 120)})`);
      await sleep(1_000);
    }
  }
  out(`   then answered by: ${after.join(', ') || 'nobody within 60 s'}`);

  out('', "5. Metrics that moved (control plane /metrics and the gateway Envoy's /stats/prometheus)");
  const lines = moved(before, await scrape(mesh));
  for (const l of lines.length > 0 ? lines : ['  (none)']) out(l);
}

async function tourWithoutEnvoy(mesh: DemoMesh, out: Out): Promise<void> {
  out('Without Envoy there is no traffic path through the mesh; what runs:');
  out(renderStatus(await fetchStatus(`http://127.0.0.1:${mesh.cpAdminPort}`)));
  for (const role of ['viewer', 'admin']) out(`dev token (${role}): ${(await mesh.token([role])).slice(0, 24)}...`);
  for (const r of mesh.replicas)
    out(
      `${r.nodeId}: ${r.kind === 'http' ? `server-everything pid ${r.server?.child.pid}` : 'stdio bridge'} on 127.0.0.1:${r.appPort}, workload certificate ${r.agent?.held?.spiffeId ?? 'none'}`,
    );
}

export async function demoMain(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  out: Out = (...lines) => void process.stdout.write(`${(lines.length > 0 ? lines : ['']).join('\n')}\n`),
): Promise<number> {
  const options = {
    'no-envoy': { type: 'boolean', default: false },
    once: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const args = parseCli('demo', argv, options, USAGE, { out });
  if (typeof args === 'number') return args;
  const { values } = args;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-demo-'));
  let envoyBin: string | undefined;
  if (!values['no-envoy']) {
    const choice = chooseEnvoy(env, dir);
    if ('missing' in choice) {
      rmSync(dir, { recursive: true, force: true });
      process.stderr.write(`${choice.missing}\n`);
      return 2;
    }
    envoyBin = choice.bin;
    out(`Envoy: ${choice.how}`);
  }
  out(
    `Starting the mesh in ${dir}: control plane (secured), ${envoyBin ? 'gateway Envoy, 3 sidecar Envoys, ' : ''}3 MCP servers (everything x2 in two zones, notes over stdio)...`,
  );
  let mesh: DemoMesh | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await mesh?.stop();
      rmSync(dir, { recursive: true, force: true });
    })());
  // Ctrl-C at any point stops everything started so far.
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    out(`\n${sig}: stopping everything the demo started...`);
    void stop().then(() => process.exit(0));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    mesh = await DemoMesh.start({ envoyBin, dir, ...(values.verbose ? { log: (l: string) => void process.stderr.write(`${l}\n`) } : {}) });
    await mesh.ready();
    out(
      `Mesh ready. Control plane admin: http://127.0.0.1:${mesh.cpAdminPort}  (npx mcpmesh status --admin http://127.0.0.1:${mesh.cpAdminPort})`,
    );
    for (const p of mesh.procs) out(`  started ${p.name}: pid ${p.child.pid}`);
    if (envoyBin)
      out(
        `Gateway: ${mesh.gatewayUrl('everything').href} (and /mcp/notes); token: curl -d grant_type=client_credentials -d client_id=demo -d client_secret=${mesh.clientSecret} -d scope=viewer http://127.0.0.1:${mesh.cpAdminPort}/oauth/token`,
      );
    out();
    if (envoyBin) await tour(mesh, out);
    else await tourWithoutEnvoy(mesh, out);
  } catch (err) {
    if (interrupted) return 0;
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    await stop();
    return 1;
  }
  if (values.once) {
    out('\nStopping everything the demo started.');
    await stop();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    return 0;
  }
  out('\nThe mesh keeps running: Ctrl-C stops everything the demo started.');
  await new Promise<never>(() => {});
  return 0;
}

if (isEntryPoint(import.meta.url)) {
  process.exitCode = await demoMain(process.argv.slice(2));
}
