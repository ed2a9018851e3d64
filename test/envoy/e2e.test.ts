// The whole mesh with REAL Envoys, end to end:
//
//   MCP SDK client (StreamableHTTPClientTransport, dev token from the control plane's OAuth endpoint)
//     -> gateway Envoy, run by the project's gateway CLI (`mcpmesh gateway`, sidecar/src/gateway-cli.ts):
//        jwt_authn, RBAC, ext_authz + ext_proc (the control plane's authorizer and tools/list filter),
//        MCP session affinity (envelope stateful session), mTLS to the sidecars with SDS certificates
//     -> sidecar Envoy x2 (bootstrap from sidecar/src/bootstrap.ts, the agent's own), mTLS inbound
//     -> server-everything x2 (Streamable HTTP on loopback), each stamped with MCPMESH_E2E_REPLICA=a|b so
//        its `get-env` tool says which replica answered.
//
// The control plane runs in-process on a registry listing both replicas (sidecar-fronted) with the security
// policy on; every Envoy gets its config over ADS from it. What is proven: initialize; tools/list shows only
// what the token's role may call; an allowed tools/call works; a denied one is refused (403, JSON-RPC error)
// and the session goes on; 401 + challenge without a token; a session's calls all reach one replica while
// new sessions spread over both; after the replica that owns a new session is killed (server and sidecar),
// a fresh session succeeds through the other one.
//
// Ephemeral ports everywhere; every wait is bounded; every process started here is stopped in `after`.
// Several Envoys on one host: each runs with --disable-hot-restart (no shared hot-restart socket); the gateway
// CLI's supervisor passes it itself. Needs Envoy >= 1.35 (envelope session state).
// Skips cleanly without Envoy (envoy-bin.ts). MCPMESH_TEST_LOG=1 prints the control plane's log.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { createLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { renderBootstrap } from '../../sidecar/src/bootstrap.ts';
import { EVERYTHING_BIN, freePort } from '../helpers/everything.ts';
import { allToolNames } from '../helpers/forward.ts';
import { envoySkip, findEnvoyBinary } from './envoy-bin.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const MCPMESH_CLI = path.join(repo, 'control-plane/src/cli.ts');
const LOOPBACK_PRELOAD = path.join(repo, 'test/helpers/loopback-preload.ts');

const SERVICE = 'everything';
const TRUST_DOMAIN = 'mcpmesh.local';
const AUDIENCE = 'mcp-mesh';
const ROLE = 'tester';
const ALLOWED_TOOLS = ['echo', 'get-env'];
const DENIED_TOOL = 'get-sum';
const REPLICA_ENV = 'MCPMESH_E2E_REPLICA';
const REQUEST = { timeout: 20_000 } as const;

const lookup = findEnvoyBinary();
const skip = envoySkip(lookup, [1, 35]);

// ---------------------------------------------------------------------------------------------------------
// Child processes: output kept (tail) for diagnostics, stopped politely then firmly, never waited on forever.

const OUTPUT_TAIL = 64 * 1024;

class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** Set before a deliberate kill: its exit is then not a failure. */
  expectExit = false;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;
  private out = '';
  private readonly group: boolean;

  /** `group`: the child leads its own process group (it starts children of its own), killed as a whole. */
  constructor(name: string, cmd: string, args: readonly string[], opts: SpawnOptions & { group?: boolean } = {}) {
    this.name = name;
    this.group = opts.group ?? false;
    this.child = spawn(cmd, [...args], { ...opts, detached: this.group, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer): void => {
      this.out = (this.out + d.toString()).slice(-OUTPUT_TAIL);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
      this.child.once('error', (err) => {
        this.out += `\nspawn error: ${err.message}`;
        this.exit ??= { code: null, signal: null };
        resolve();
      });
    });
  }

  get output(): string {
    return this.out;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.alive || this.child.pid === undefined) return;
    try {
      if (this.group) process.kill(-this.child.pid, sig);
      else this.child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** Resolves once `re` appears in the output; rejects if the process exits first or after `ms`. */
  async waitForOutput(re: RegExp, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!re.test(this.out)) {
      if (!this.alive) throw new Error(`${this.describe()}\nexited before printing ${re}`);
      if (Date.now() > deadline) throw new Error(`${this.describe()}\ndid not print ${re} within ${ms} ms`);
      await sleep(50);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; bounded either way. */
  async stop(graceMs = 8_000): Promise<void> {
    this.expectExit = true;
    if (!this.alive) return;
    this.signal('SIGTERM');
    await Promise.race([this.exited, sleep(graceMs)]);
    // A group leader may be gone while its children (Envoy under the gateway CLI) linger: kill the group.
    if (this.alive || this.group) this.signal('SIGKILL');
    if (this.group && this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // the group is empty
      }
    }
    await Promise.race([this.exited, sleep(3_000)]);
  }

  describe(): string {
    const status = this.exit ? `exited (code ${this.exit.code}, signal ${this.exit.signal})` : `running (pid ${this.child.pid})`;
    return `--- ${this.name}: ${status}; last output:\n${this.out.slice(-8_000) || '(none)'}`;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function httpText(url: string, init: RequestInit = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

// ---------------------------------------------------------------------------------------------------------

interface Replica {
  readonly name: string;
  readonly appPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly statsPort: number;
  server?: Proc;
  sidecar?: Proc;
}

// Each test carries the skip (so a run without Envoy counts them as skipped); the hooks return at once then.
describe(`real Envoy end to end: SDK client -> gateway Envoy -> 2 x (sidecar Envoy -> server-everything)${lookup.envoy ? ` (${lookup.envoy.version})` : ''}`, () => {
  const envoyBin = lookup.envoy?.path ?? '';
  let dir = '';
  const procs: Proc[] = [];
  const clients: Client[] = [];
  const cpLog: string[] = [];
  let cp: ControlPlane | undefined;
  let issuer: DevIssuer;
  let cpAdminPort = 0;
  let gatewayPort = 0;
  let gatewayAdminPort = 0;
  let gateway: Proc | undefined;
  let token = '';
  const clientSecret = `e2e-${Math.random().toString(36).slice(2)}`;
  const replicas: Replica[] = [];

  const start = (p: Proc): Proc => {
    procs.push(p);
    return p;
  };

  /** Why waiting is pointless: a process that should run has exited, or a proxy refused its config. */
  function fatal(): string | undefined {
    const dead = procs.filter((p) => !p.alive && !p.expectExit);
    if (dead.length > 0) return `process exited unexpectedly:\n${dead.map((p) => p.describe()).join('\n')}`;
    // The gateway CLI outlives its Envoy and restarts it: an Envoy that exits (bad bootstrap, crash) shows here.
    if (gateway?.output.includes('envoy exited; restarting')) return `the gateway's Envoy exited:\n${gateway.describe()}`;
    const nacks = (cp?.tracker.list() ?? []).flatMap((s) => Object.entries(s.types)
      .filter(([, t]) => t !== undefined && t.nacks > 0)
      .map(([kind, t]) => `${s.proxy.id} NACKed ${kind}: ${t?.lastNack ?? '(no detail)'}`));
    if (nacks.length > 0) return `Envoy refused config from the control plane:\n  ${nacks.join('\n  ')}`;
    return undefined;
  }

  function diagnostics(): string {
    const proxies = (cp?.tracker.list() ?? []).map((s) => `${s.proxy.id} (${s.proxy.role}): ${JSON.stringify(s.types)}`);
    return [
      '', '=== diagnostics', ...procs.map((p) => p.describe()),
      '--- control plane: connected proxies', ...(proxies.length > 0 ? proxies : ['(none)']),
      '--- control plane log (last lines)', ...cpLog.slice(-60),
    ].join('\n');
  }

  /** Polls `check` until it returns something truthy; fails at once when fatal() says so, or after `ms`. */
  async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms: number): Promise<T> {
    const deadline = Date.now() + ms;
    let last: unknown;
    for (;;) {
      const f = fatal();
      if (f) throw new Error(`${what}: ${f}`);
      try {
        const v = await check();
        if (v) return v;
        last = v;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
      await sleep(250);
    }
  }

  /** Runs a test body; a failure carries every process's output tail and the control plane's view. */
  const withDiagnostics = (fn: () => Promise<void>) => async (): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      if (err instanceof Error) err.message += diagnostics();
      throw err;
    }
  };

  const gatewayUrl = (): URL => new URL(`http://127.0.0.1:${gatewayPort}/mcp/${SERVICE}`);

  async function connect(bearer: string | undefined = token): Promise<Client> {
    const client = new Client({ name: 'mcpmesh-envoy-e2e', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(gatewayUrl(), bearer ? { requestInit: { headers: { authorization: `Bearer ${bearer}` } } } : {});
    clients.push(client);
    await client.connect(transport, REQUEST);
    return client;
  }

  /** Which replica answered: server-everything's get-env shows its environment, MCPMESH_E2E_REPLICA included. */
  async function replicaOf(client: Client): Promise<string> {
    const r = await client.callTool({ name: 'get-env', arguments: {} }, undefined, REQUEST);
    const text = (r.content as Array<{ type: string; text?: string }>)[0]?.text ?? '';
    const env = JSON.parse(text) as Record<string, string>;
    const name = env[REPLICA_ENV];
    assert.ok(name, `get-env answered without ${REPLICA_ENV}: ${text.slice(0, 300)}`);
    return name;
  }

  async function closeClient(client: Client): Promise<void> {
    await Promise.race([client.close().catch(() => {}), sleep(3_000)]);
  }

  before(withDiagnostics(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-envoy-e2e-'));
    // Ports first: the policy (JWKS URL, authorizer address) and the bootstraps name them.
    cpAdminPort = await freePort();
    const authzPort = await freePort();
    gatewayPort = await freePort();
    gatewayAdminPort = await freePort();
    const gatewayStatsPort = await freePort();
    for (const name of ['a', 'b']) {
      replicas.push({ name, appPort: await freePort(), inboundPort: await freePort(), adminPort: await freePort(), statsPort: await freePort() });
    }

    // The control plane: dev OAuth issuer on its admin port, policy on, registry with both replicas.
    const issuerUrl = `http://127.0.0.1:${cpAdminPort}/oauth`;
    issuer = await DevIssuer.create({ issuer: issuerUrl, audience: AUDIENCE, clients: { 'e2e-agent': { secret: clientSecret, roles: [ROLE] } } });
    const policyText = [
      `trustDomain: ${TRUST_DOMAIN}`,
      'providers:',
      `  - { name: dev, issuer: "${issuerUrl}", audiences: [${AUDIENCE}], jwksUri: "${issuerUrl}/jwks" }`,
      'roles:',
      `  ${ROLE}:`,
      '    allow:',
      `      - { service: ${SERVICE}, tools: [${ALLOWED_TOOLS.join(', ')}] }`,
      '',
    ].join('\n');
    const registryFile = path.join(dir, 'registry.yaml');
    writeFileSync(registryFile, [
      'services:',
      `  - name: ${SERVICE}`,
      '    protocol: "2025-11-25"',
      '    sidecar: true',
      '    endpoints:',
      ...replicas.map((r) => `      - { address: 127.0.0.1, port: ${r.inboundPort}, locality: { region: local, zone: ${r.name} } }`),
      '',
    ].join('\n'));
    const log = createLogger({ level: 'info', component: 'control-plane', write: (line) => {
      cpLog.push(line);
      if (cpLog.length > 500) cpLog.shift();
      if (process.env['MCPMESH_TEST_LOG']) process.stderr.write(`${line}\n`);
    } });
    cp = await new ControlPlane({
      registryFile, xdsHost: '127.0.0.1', xdsPort: 0, adminHost: '127.0.0.1', adminPort: cpAdminPort,
      authzHost: '127.0.0.1', authzPort, devIssuer: issuer, quietMs: 20, maxDelayMs: 200,
      security: { policy: parsePolicy(policyText, 'e2e-policy.yaml'), publicUrl: `http://127.0.0.1:${gatewayPort}`, authz: { host: '127.0.0.1', port: authzPort } },
      log, metrics: new Metrics({ processMetrics: false }),
    }).start();
    const xds = { host: '127.0.0.1', port: cp.xdsPort };

    // Two replicas: server-everything on loopback (minimal environment: get-env prints all of it), each
    // behind its own sidecar Envoy with the bootstrap the sidecar agent writes.
    for (const r of replicas) {
      r.server = start(new Proc(`server-everything ${r.name} (:${r.appPort})`, process.execPath, ['--import', LOOPBACK_PRELOAD, EVERYTHING_BIN, 'streamableHttp'], {
        env: { PATH: process.env['PATH'] ?? '', PORT: String(r.appPort), [REPLICA_ENV]: r.name },
      }));
      await r.server.waitForOutput(/listening on port/, 20_000);
      const bootstrap = path.join(dir, `sidecar-${r.name}.json`);
      writeFileSync(bootstrap, renderBootstrap({
        nodeId: `${SERVICE}-${r.name}`, service: SERVICE, inboundPort: r.inboundPort, appPort: r.appPort, region: 'local', zone: r.name,
        controlPlane: xds, adminPort: r.adminPort, statsPort: r.statsPort, metadata: { 'mcp-protocol': '2025-11-25' },
      }));
      r.sidecar = start(new Proc(`sidecar envoy ${r.name} (inbound :${r.inboundPort}, admin :${r.adminPort})`, envoyBin,
        ['-c', bootstrap, '--disable-hot-restart', '--drain-time-s', '1', '--log-level', 'warn']));
    }

    // The gateway, through the project's CLI. Its EnvoySupervisor starts `<--envoy-bin> -c <bootstrap> ...
    // --disable-hot-restart`; the wrapper only quiets Envoy's log.
    const wrapper = path.join(dir, 'envoy-quiet.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec '${envoyBin.replaceAll("'", "'\\''")}' "$@" --log-level warn\n`);
    chmodSync(wrapper, 0o755);
    gateway = start(new Proc(`gateway CLI + envoy (:${gatewayPort}, admin :${gatewayAdminPort})`, process.execPath, [
      MCPMESH_CLI, 'gateway', '--name', 'e2e', '--id', 'gateway-e2e', '--listener-port', String(gatewayPort),
      '--control-plane', `${xds.host}:${xds.port}`, '--admin-port', String(gatewayAdminPort), '--stats-port', String(gatewayStatsPort),
      '--envoy-bin', wrapper, '--bootstrap-out', path.join(dir, 'gateway.json'), '--drain', '1s',
    ], { env: { ...process.env, MCPMESH_LOG_LEVEL: 'info' }, group: true }));

    // Ready means: each sidecar has its listener and its local cluster, the gateway its listener, and the
    // gateway's active health checks (through mTLS and each sidecar, to each server) pass for both replicas.
    for (const r of replicas) {
      await until(`sidecar ${r.name}: listener sidecar.inbound and cluster local.${SERVICE}`, async () => {
        const listeners = await httpText(`http://127.0.0.1:${r.adminPort}/listeners`);
        const clusters = await httpText(`http://127.0.0.1:${r.adminPort}/clusters`);
        return listeners.text.includes('sidecar.inbound::') && clusters.text.includes(`local.${SERVICE}::127.0.0.1:${r.appPort}::`);
      }, 60_000);
    }
    await until('gateway: listener gateway.http', async () => (await httpText(`http://127.0.0.1:${gatewayAdminPort}/listeners`)).text.includes('gateway.http::'), 60_000);
    await until(`gateway: both replicas of mcp.${SERVICE} healthy`, async () => {
      const { text } = await httpText(`http://127.0.0.1:${gatewayAdminPort}/clusters`);
      return replicas.every((r) => text.split('\n').includes(`mcp.${SERVICE}::127.0.0.1:${r.inboundPort}::health_flags::healthy`)) || undefined;
    }, 60_000);
    await until('gateway and sidecars ready (/ready)', async () => {
      const ports = [gatewayAdminPort, ...replicas.map((r) => r.adminPort)];
      const answers = await Promise.all(ports.map((p) => httpText(`http://127.0.0.1:${p}/ready`)));
      return answers.every((a) => a.status === 200);
    }, 30_000);

    // A dev token, the way an agent gets one: client-credentials grant at the control plane's token endpoint.
    const t = await httpText(`http://127.0.0.1:${cpAdminPort}/oauth/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'e2e-agent', client_secret: clientSecret, scope: ROLE }).toString(),
    });
    assert.equal(t.status, 200, t.text);
    token = (JSON.parse(t.text) as { access_token: string }).access_token;
  }), { timeout: 240_000 });

  after(async () => {
    for (const c of clients) await closeClient(c);
    // Gateway first (its CLI drains and stops its Envoy), then sidecars, then servers.
    const order = [...procs].sort((a, b) => (a === gateway ? -1 : b === gateway ? 1 : 0));
    for (const p of order) await p.stop();
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, { timeout: 90_000 });

  it('without a token: 401 with the MCP challenge; the RFC 9728 metadata stays public', { skip, timeout: 60_000 }, withDiagnostics(async () => {
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'no-token', version: '1' } } });
    const r = await httpText(gatewayUrl().href, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: init });
    assert.equal(r.status, 401, r.text);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer .*resource_metadata="[^"]*\/\.well-known\/oauth-protected-resource[^"]*"/);
    const meta = await httpText(`http://127.0.0.1:${gatewayPort}/.well-known/oauth-protected-resource/mcp/${SERVICE}`);
    assert.equal(meta.status, 200, meta.text);
    assert.ok((JSON.parse(meta.text) as { authorization_servers: string[] }).authorization_servers.includes(issuer.issuer), meta.text);
  }));

  it('initialize; tools/list shows only the tools the role may call', { skip, timeout: 60_000 }, withDiagnostics(async () => {
    const client = await connect();
    assert.equal(client.getServerVersion()?.name !== undefined, true, 'initialize answered with server info');
    assert.deepEqual(await allToolNames(client), [...ALLOWED_TOOLS].sort());
    await closeClient(client);
  }));

  it('an allowed tools/call succeeds; a denied one is refused (403, JSON-RPC error) and the session goes on', { skip, timeout: 60_000 }, withDiagnostics(async () => {
    const client = await connect();
    const ok = await client.callTool({ name: 'echo', arguments: { message: 'through real Envoys' } }, undefined, REQUEST);
    assert.deepEqual(ok.content, [{ type: 'text', text: 'Echo: through real Envoys' }]);
    await assert.rejects(client.callTool({ name: DENIED_TOOL, arguments: { a: 1, b: 2 } }, undefined, REQUEST), (err: Error & { code?: number }) => {
      assert.equal(err.code, 403, err.message);
      const body = JSON.parse(err.message.slice(err.message.indexOf('{'))) as { error?: { code?: number; message?: string } };
      assert.equal(typeof body.error?.code, 'number', err.message);
      assert.match(body.error?.message ?? '', new RegExp(DENIED_TOOL), err.message);
      return true;
    });
    const again = await client.callTool({ name: 'echo', arguments: { message: 'still here' } }, undefined, REQUEST);
    assert.deepEqual(again.content, [{ type: 'text', text: 'Echo: still here' }]);
    await closeClient(client);
  }));

  it('a session sticks to the replica that answered initialize', { skip, timeout: 90_000 }, withDiagnostics(async () => {
    const client = await connect();
    const seen: string[] = [];
    for (let i = 0; i < 8; i++) {
      seen.push(await replicaOf(client));
      const echo = await client.callTool({ name: 'echo', arguments: { message: `call ${i}` } }, undefined, REQUEST);
      assert.deepEqual(echo.content, [{ type: 'text', text: `Echo: call ${i}` }]);
    }
    // The other replica does not know this session: a single stray request would have failed above.
    assert.deepEqual(new Set(seen).size, 1, `one session, several replicas: ${seen.join(', ')}`);
    await closeClient(client);
  }));

  it('new sessions are spread over both replicas', { skip, timeout: 120_000 }, withDiagnostics(async () => {
    // Sessions stay open (each holds its GET event stream, an active request for least_request) while more open.
    const open: Client[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < 12 && seen.size < replicas.length; i++) {
      const client = await connect();
      open.push(client);
      seen.add(await replicaOf(client));
    }
    assert.deepEqual([...seen].sort(), replicas.map((r) => r.name).sort(), 'both replicas serve sessions');
    for (const c of open) await closeClient(c);
  }));

  it('failover: the replica owning a new session dies; a fresh session succeeds through the other', { skip, timeout: 120_000 }, withDiagnostics(async () => {
    const client = await connect();
    const owner = await replicaOf(client);
    const victim = replicas.find((r) => r.name === owner);
    assert.ok(victim?.server && victim.sidecar, `replica ${owner} is known`);
    // The whole replica goes: its server and its sidecar (a node or pod dying).
    victim.server.expectExit = true;
    victim.sidecar.expectExit = true;
    victim.server.signal('SIGKILL');
    victim.sidecar.signal('SIGKILL');
    await Promise.race([Promise.all([victim.server.exited, victim.sidecar.exited]), sleep(5_000)]);
    assert.equal(victim.server.alive || victim.sidecar.alive, false, `replica ${owner} did not die`);
    await closeClient(client);

    // Until outlier detection (consecutive gateway failures) or health checks take the dead endpoint out, a new
    // session may still be tried there first (connect failures are retried); bounded.
    const failures: string[] = [];
    const deadline = Date.now() + 45_000;
    let survivor: string | undefined;
    let fresh: Client | undefined;
    while (Date.now() < deadline) {
      try {
        fresh = await connect();
        survivor = await replicaOf(fresh);
        break;
      } catch (err) {
        failures.push((err as Error).message.slice(0, 200));
        if (fresh) await closeClient(fresh);
        fresh = undefined;
        await sleep(500);
      }
    }
    assert.ok(fresh && survivor, `no fresh session succeeded within 45 s after replica ${owner} died; failures:\n  ${failures.join('\n  ')}`);
    assert.notEqual(survivor, owner);
    // And it is a working session, on the survivor.
    for (let i = 0; i < 3; i++) assert.equal(await replicaOf(fresh), survivor);
    const echo = await fresh.callTool({ name: 'echo', arguments: { message: 'after failover' } }, undefined, REQUEST);
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: after failover' }]);
    await closeClient(fresh);
  }));
});
