// The whole mesh with REAL Envoys, end to end, secured the way it ships:
//
//   MCP SDK client (StreamableHTTPClientTransport, dev token from the control plane's OAuth endpoint)
//     -> gateway Envoy, run by the project's gateway CLI (`mcpmesh gateway --join-token ...`,
//        sidecar/src/gateway-cli.ts, which runs the gateway's AgentIdentity and serves its SDS socket):
//        jwt_authn, RBAC, ext_authz + ext_proc (the control plane's authorizer and tools/list filter),
//        MCP session affinity (envelope stateful session), mTLS to the sidecars with the agents' certificates
//     -> sidecar Envoy x2 (bootstrap from sidecar/src/bootstrap.ts with `identity: { sdsSocket,
//        controlPlaneId }`, beside it an AgentIdentity serving that socket, as the sidecar agent runs them),
//        mTLS inbound
//     -> server-everything x2 (Streamable HTTP on loopback), each stamped with MCPMESH_E2E_REPLICA=a|b so
//        its `get-env` tool says which replica answered.
//
// The control plane runs in-process, secured: a policy, the dev issuer granting only the policy's roles, and
// xDS over TLS that requires a workload certificate on every ADS stream (no `xdsInsecure`). Every agent makes
// its own key and gets its certificate from the mesh CA with a single-use join token (`cp.mintJoinToken` for
// the sidecars, POST /admin/join-token, as `mcpmesh join-token --gateway` does, for the gateway); each Envoy
// reads that certificate from its agent's Unix socket and speaks mTLS to the control plane with it.
//
// What is proven: an Envoy started before its agent stays unready, without listeners and without an xDS
// stream, until the certificate arrives; every proxy's first ADS stream (and its ACKs) come after its agent
// installed the certificate, and the Envoy then holds exactly that certificate (/certs); nothing on the
// control plane's /debug/config_dump contains a private key (and it never holds a workload's identity secret);
// initialize; tools/list shows only what the token's role may call; an allowed tools/call works; a denied
// one is refused (403, JSON-RPC error) and the session goes on; 401 + challenge without a token; the dev
// issuer grants no role the policy does not define; a session's calls all reach one replica while new
// sessions spread over both; after the replica that owns a new session is killed (server, sidecar Envoy and
// its agent), a fresh session succeeds through the other one.
//
// Ephemeral ports everywhere; every wait is bounded; every process and agent started here is stopped in
// `after`. Several Envoys on one host: each runs with --disable-hot-restart (no shared hot-restart socket);
// the gateway CLI's supervisor passes it itself. Needs Envoy >= 1.35 (envelope session state).
// Skips cleanly without Envoy (envoy-bin.ts). MCPMESH_TEST_LOG=1 prints the control plane's and agents' logs.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { createLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { Log } from '../../sidecar/src/envoy.ts';
import type { AgentIdentity } from '../../sidecar/src/identity-agent.ts';
import { EVERYTHING_BIN, freePort } from '../helpers/everything.ts';
// Child processes, the agents' steps (sidecar identity and Envoy, the gateway CLI, dev tokens): what `npm run demo` runs.
import {
  devToken,
  httpText,
  LOOPBACK_PRELOAD,
  mintGatewayJoinToken,
  pollUntil,
  Proc,
  sidecarIdentity,
  sleep,
  startGatewayCli,
  startSidecarEnvoy,
} from '../../demo/mesh.ts';
import { allToolNames } from '../helpers/forward.ts';
import { envoySkip, findEnvoyBinary } from './envoy-bin.ts';

const SERVICE = 'everything';
const TRUST_DOMAIN = 'mcpmesh.local';
const AUDIENCE = 'mcp-mesh';
const ROLE = 'tester';
const GATEWAY_NAME = 'e2e';
const GATEWAY_NODE = 'gateway-e2e';
const ALLOWED_TOOLS = ['echo', 'get-env'];
const DENIED_TOOL = 'get-sum';
const REPLICA_ENV = 'MCPMESH_E2E_REPLICA';
const REQUEST = { timeout: 20_000 } as const;
/** What agents log when a certificate is in place (sidecar/src/identity.ts): the moment Envoy can have it. */
const CERT_INSTALLED = 'workload certificate installed';
/**
 * Envoy's default initial_fetch_timeout (15 s): past it, an Envoy still without its secret finishes
 * initializing anyway. Observations of an Envoy waiting for its certificate end well before that.
 */
const OBSERVE_UNTIL_MS = 11_000;
/** How long an Envoy started before its agent is watched staying unready (after its admin API answers). */
const HOLD_UNREADY_MS = 2_500;

const lookup = findEnvoyBinary();
const skip = envoySkip(lookup, [1, 35]);

// ---------------------------------------------------------------------------------------------------------

interface Replica {
  readonly name: string;
  readonly nodeId: string;
  readonly appPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly statsPort: number;
  server?: Proc;
  sidecar?: Proc;
  /** The sidecar agent's identity half: its key, its certificate, the SDS socket its Envoy reads. */
  agent?: AgentIdentity;
  readonly agentLog: string[];
  /** When the agent installed its certificate (and pushed it to its SDS socket). */
  certAt?: number;
}

/** What an Envoy started before its agent did while it had no certificate to read. */
interface WithoutCertificate {
  /** /ready answers (HTTP status) while the agent was not running yet. */
  readonly readyStatuses: number[];
  /** Whether its listener from the control plane showed up meanwhile. */
  listenerSeen: boolean;
  /** Whether the control plane saw an xDS stream from it meanwhile. */
  connected: boolean;
  windowMs: number;
}

// Each test carries the skip (so a run without Envoy counts them as skipped); the hooks return at once then.
describe(`real Envoy end to end, secured: SDK client -> gateway Envoy -> 2 x (sidecar Envoy -> server-everything), workload certificates over SDS, mTLS xDS${lookup.envoy ? ` (${lookup.envoy.version})` : ''}`, () => {
  const envoyBin = lookup.envoy?.path ?? '';
  let dir = '';
  const procs: Proc[] = [];
  const clients: Client[] = [];
  const cpLog: string[] = [];
  /** Every ADS stream the control plane accepted: which node, when (in this process's clock). */
  const connections: Array<{ node: string; at: number }> = [];
  /** ADS streams the control plane refused (no certificate, or claims that are not the certificate's). */
  const refusedStreams: string[] = [];
  let cp: ControlPlane | undefined;
  let issuer: DevIssuer;
  let cpAdminPort = 0;
  let gatewayPort = 0;
  let gatewayAdminPort = 0;
  let gateway: Proc | undefined;
  /** When the gateway CLI's agent installed its certificate (from its log). */
  let gatewayCertAt: number | undefined;
  /** What replica a's Envoy, started before its agent, did meanwhile. */
  let withoutCert: WithoutCertificate | undefined;
  let token = '';
  const clientSecret = `e2e-${Math.random().toString(36).slice(2)}`;
  const replicas: Replica[] = [];

  const start = (p: Proc): Proc => {
    procs.push(p);
    return p;
  };

  /** The gateway CLI's log lines (JSON) with message `msg`. */
  function gatewayLogs(msg: string): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of (gateway?.output ?? '').split('\n')) {
      if (!line.startsWith('{') || !line.includes(msg)) continue;
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (o['msg'] === msg) out.push(o);
      } catch {
        // a line cut by the output tail, or Envoy's own
      }
    }
    return out;
  }

  /** Why waiting is pointless: a process that should run has exited, or a proxy refused its config. */
  function fatal(): string | undefined {
    const dead = procs.filter((p) => !p.alive && !p.expectExit);
    if (dead.length > 0) return `process exited unexpectedly:\n${dead.map((p) => p.describe()).join('\n')}`;
    // The gateway CLI outlives its Envoy and restarts it: an Envoy that exits (bad bootstrap, crash) shows here.
    if (gateway?.output.includes('envoy exited; restarting')) return `the gateway's Envoy exited:\n${gateway.describe()}`;
    // Nothing here is transient: the control plane is up before any agent asks, with valid tokens.
    if (gateway?.output.includes('could not get a workload certificate'))
      return `the gateway's agent got no certificate:\n${gateway.describe()}`;
    for (const r of replicas) {
      const bad = r.agentLog.filter((l) => l.includes('could not get a workload certificate') || l.includes('envoy refused a secret'));
      if (bad.length > 0) return `sidecar ${r.name}'s agent: ${bad.join('\n  ')}`;
    }
    if (refusedStreams.length > 0) return `the control plane refused xDS streams:\n  ${refusedStreams.join('\n  ')}`;
    const nacks = (cp?.tracker.list() ?? []).flatMap((s) =>
      Object.entries(s.types)
        .filter(([, t]) => t !== undefined && t.nacks > 0)
        .map(([kind, t]) => `${s.proxy.id} NACKed ${kind}: ${t?.lastNack ?? '(no detail)'}`),
    );
    if (nacks.length > 0) return `Envoy refused config from the control plane:\n  ${nacks.join('\n  ')}`;
    return undefined;
  }

  function diagnostics(): string {
    const proxies = (cp?.tracker.list() ?? []).map((s) => `${s.proxy.id} (${s.proxy.role}): ${JSON.stringify(s.types)}`);
    return [
      '',
      '=== diagnostics',
      ...procs.map((p) => p.describe()),
      ...replicas.map(
        (r) =>
          `--- sidecar ${r.name}'s agent (certificate ${r.certAt ? `installed at ${new Date(r.certAt).toISOString()}` : 'not installed'}):\n${r.agentLog.slice(-20).join('\n') || '(no output)'}`,
      ),
      '--- control plane: connected proxies',
      ...(proxies.length > 0 ? proxies : ['(none)']),
      '--- control plane log (last lines)',
      ...cpLog.slice(-60),
    ].join('\n');
  }

  /** Polls `check` until it returns something truthy; fails at once when fatal() says so, or after `ms`. */
  function until<T>(what: string, check: () => Promise<T | undefined | false>, ms: number): Promise<T> {
    return pollUntil(what, check, ms, fatal);
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
    const transport = new StreamableHTTPClientTransport(
      gatewayUrl(),
      bearer ? { requestInit: { headers: { authorization: `Bearer ${bearer}` } } } : {},
    );
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

  /** Stops a sidecar's agent (once): its SDS socket closes. */
  async function stopAgent(r: Replica): Promise<void> {
    const agent = r.agent;
    r.agent = undefined;
    if (agent) await Promise.race([agent.stop().catch(() => {}), sleep(3_000)]);
  }

  /** The sidecar agent's identity half (demo/mesh.ts sidecarIdentity), its log kept for diagnostics. Not started yet. */
  async function sidecarAgent(r: Replica, xds: { host: string; port: number }): Promise<AgentIdentity> {
    const log: Log = (level, msg, fields) => {
      if (msg === CERT_INSTALLED) r.certAt ??= Date.now();
      const line = JSON.stringify({ time: new Date().toISOString(), level, component: `agent-${r.name}`, msg, ...fields });
      r.agentLog.push(line);
      if (r.agentLog.length > 200) r.agentLog.shift();
      if (process.env['MCPMESH_TEST_LOG']) process.stderr.write(`${line}\n`);
    };
    return sidecarIdentity({
      cp: cp as ControlPlane,
      trustDomain: TRUST_DOMAIN,
      service: SERVICE,
      nodeId: r.nodeId,
      sdsSocket: path.join(dir, `sds-${r.name}.sock`),
      xds,
      log,
    });
  }

  /** Starts a sidecar Envoy on the bootstrap the agent writes: mTLS xDS through the agent's SDS socket. */
  function startSidecar(r: Replica, xds: { host: string; port: number }, agent: AgentIdentity): Proc {
    return start(
      startSidecarEnvoy({
        envoyBin,
        bootstrapPath: path.join(dir, `sidecar-${r.name}.json`),
        name: `sidecar envoy ${r.name} (inbound :${r.inboundPort}, admin :${r.adminPort})`,
        nodeId: r.nodeId,
        service: SERVICE,
        zone: r.name,
        inboundPort: r.inboundPort,
        appPort: r.appPort,
        adminPort: r.adminPort,
        statsPort: r.statsPort,
        xds,
        agent,
      }),
    );
  }

  /**
   * Watches an Envoy whose agent is not running (no SDS socket, so no certificate): once its admin API
   * answers, for HOLD_UNREADY_MS, what /ready says, whether its listener arrived and whether the control plane
   * saw it. All before Envoy's 15 s initial fetch timeout, after which it would initialize without the secret.
   */
  async function watchWithoutCertificate(r: Replica, startedAt: number): Promise<WithoutCertificate> {
    const seen: WithoutCertificate = { readyStatuses: [], listenerSeen: false, connected: false, windowMs: 0 };
    const limit = startedAt + OBSERVE_UNTIL_MS;
    let adminUpAt: number | undefined;
    while (Date.now() < limit && (adminUpAt === undefined || Date.now() < adminUpAt + HOLD_UNREADY_MS)) {
      const f = fatal();
      if (f) throw new Error(`sidecar ${r.name} without its certificate: ${f}`);
      try {
        const ready = await httpText(`http://127.0.0.1:${r.adminPort}/ready`, {}, 1_000);
        adminUpAt ??= Date.now();
        seen.readyStatuses.push(ready.status);
        const listeners = await httpText(`http://127.0.0.1:${r.adminPort}/listeners`, {}, 1_000);
        if (listeners.text.includes('sidecar.inbound::')) seen.listenerSeen = true;
      } catch {
        // the admin API is not up yet
      }
      if (cp?.tracker.byNodeId(r.nodeId) || connections.some((c) => c.node === r.nodeId)) seen.connected = true;
      await sleep(200);
    }
    if (adminUpAt === undefined)
      throw new Error(`sidecar ${r.name}: Envoy's admin API did not answer within ${OBSERVE_UNTIL_MS} ms of its start`);
    seen.windowMs = Date.now() - adminUpAt;
    return seen;
  }

  before(
    withDiagnostics(async () => {
      if (skip) return;
      dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-envoy-e2e-'));
      // Ports first: the policy (JWKS URL, authorizer address) and the bootstraps name them.
      cpAdminPort = await freePort();
      const authzPort = await freePort();
      gatewayPort = await freePort();
      gatewayAdminPort = await freePort();
      const gatewayStatsPort = await freePort();
      for (const name of ['a', 'b']) {
        replicas.push({
          name,
          nodeId: `${SERVICE}-${name}`,
          appPort: await freePort(),
          inboundPort: await freePort(),
          adminPort: await freePort(),
          statsPort: await freePort(),
          agentLog: [],
        });
      }

      // The control plane: dev OAuth issuer on its admin port (granting only the policy's roles, as main.ts
      // sets it up), policy on, registry with both replicas.
      const issuerUrl = `http://127.0.0.1:${cpAdminPort}/oauth`;
      issuer = await DevIssuer.create({
        issuer: issuerUrl,
        audience: AUDIENCE,
        clients: { 'e2e-agent': { secret: clientSecret, roles: ['*'] } },
        grantableRoles: () => new Set(cp?.policy?.roles.map((r) => r.name) ?? []),
      });
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
      writeFileSync(
        registryFile,
        [
          'services:',
          `  - name: ${SERVICE}`,
          '    protocol: "2025-11-25"',
          '    sidecar: true',
          '    endpoints:',
          ...replicas.map((r) => `      - { address: 127.0.0.1, port: ${r.inboundPort}, locality: { region: local, zone: ${r.name} } }`),
          '',
        ].join('\n'),
      );
      const log = createLogger({
        level: 'info',
        component: 'control-plane',
        write: (line) => {
          // Synchronous with the event: `proxy connected` is logged as the ADS stream is accepted.
          if (line.includes('"proxy connected"') || line.includes('"closing xDS stream"')) {
            const o = JSON.parse(line) as { msg?: string; proxy?: string; reason?: string; details?: string };
            if (o.msg === 'proxy connected' && o.proxy) connections.push({ node: o.proxy, at: Date.now() });
            if (o.msg === 'closing xDS stream' && (o.reason === 'unauthenticated' || o.reason === 'identity_mismatch'))
              refusedStreams.push(`${o.reason}: ${o.details ?? ''}`);
          }
          cpLog.push(line);
          if (cpLog.length > 500) cpLog.shift();
          if (process.env['MCPMESH_TEST_LOG']) process.stderr.write(`${line}\n`);
        },
      });
      // Secured as shipped: no xdsInsecure, so ADS is TLS and every stream must present a workload certificate.
      cp = await new ControlPlane({
        registryFile,
        xdsHost: '127.0.0.1',
        xdsPort: 0,
        adminHost: '127.0.0.1',
        adminPort: cpAdminPort,
        authzHost: '127.0.0.1',
        authzPort,
        devIssuer: issuer,
        quietMs: 20,
        maxDelayMs: 200,
        security: {
          policy: parsePolicy(policyText, 'e2e-policy.yaml'),
          publicUrl: `http://127.0.0.1:${gatewayPort}`,
          authz: { host: '127.0.0.1', port: authzPort },
        },
        log,
        metrics: new Metrics({ processMetrics: false }),
      }).start();
      const xds = { host: '127.0.0.1', port: cp.xdsPort };

      // Two replicas: server-everything on loopback (minimal environment: get-env prints all of it), each
      // behind its own sidecar Envoy with the bootstrap the sidecar agent writes, beside it the agent's identity.
      for (const r of replicas) {
        r.server = start(
          new Proc(
            `server-everything ${r.name} (:${r.appPort})`,
            process.execPath,
            ['--import', LOOPBACK_PRELOAD, EVERYTHING_BIN, 'streamableHttp'],
            {
              env: { PATH: process.env['PATH'] ?? '', PORT: String(r.appPort), [REPLICA_ENV]: r.name },
            },
          ),
        );
        await r.server.waitForOutput(/listening on port/, 20_000);
        r.agent = await sidecarAgent(r, xds);
      }
      const [first, second] = replicas as [Replica, Replica];
      // Replica a: its Envoy first (a container that starts before the agent's), watched while it has no
      // certificate to read; only then its agent.
      const startedAt = Date.now();
      first.sidecar = startSidecar(first, xds, first.agent as AgentIdentity);
      withoutCert = await watchWithoutCertificate(first, startedAt);
      await first.agent?.start();
      // Replica b: the sidecar agent's own order: its identity (socket open, certificate on the way), then Envoy.
      await second.agent?.start();
      second.sidecar = startSidecar(second, xds, second.agent as AgentIdentity);

      // The gateway, through the project's CLI, with a join token for its name (minted the way `mcpmesh
      // join-token --gateway` asks the control plane for one) and its SDS socket in the test's directory. Its
      // EnvoySupervisor starts `<--envoy-bin> -c <bootstrap> ... --disable-hot-restart`; the wrapper only quiets
      // Envoy's log.
      const gatewayToken = await mintGatewayJoinToken(cpAdminPort, GATEWAY_NAME);
      assert.equal(gatewayToken.spiffeId, gatewayId(TRUST_DOMAIN, GATEWAY_NAME));
      const wrapper = path.join(dir, 'envoy-quiet.sh');
      writeFileSync(wrapper, `#!/bin/sh\nexec '${envoyBin.replaceAll("'", "'\\''")}' "$@" --log-level warn\n`);
      chmodSync(wrapper, 0o755);
      gateway = start(
        startGatewayCli({
          name: GATEWAY_NAME,
          procName: `gateway CLI + envoy (:${gatewayPort}, admin :${gatewayAdminPort})`,
          nodeId: GATEWAY_NODE,
          listenerPort: gatewayPort,
          xds,
          adminPort: gatewayAdminPort,
          statsPort: gatewayStatsPort,
          envoyBin: wrapper,
          bootstrapPath: path.join(dir, 'gateway.json'),
          joinToken: gatewayToken.token,
          sdsSocket: path.join(dir, 'sds-gateway.sock'),
        }),
      );

      // Ready means: each agent holds its certificate; each sidecar has its listener and its local cluster, the
      // gateway its listener, and the gateway's active health checks (through mTLS and each sidecar, to each
      // server) pass for both replicas.
      for (const r of replicas)
        await until(
          `sidecar ${r.name}'s agent: a workload certificate`,
          async () => r.certAt !== undefined && r.agent?.held !== undefined,
          30_000,
        );
      gatewayCertAt = await until(
        "the gateway CLI's agent: a workload certificate",
        async () => {
          const installed = gatewayLogs(CERT_INSTALLED)[0];
          return installed ? Date.parse(String(installed['time'])) : undefined;
        },
        30_000,
      );
      for (const r of replicas) {
        await until(
          `sidecar ${r.name}: listener sidecar.inbound and cluster local.${SERVICE}`,
          async () => {
            const listeners = await httpText(`http://127.0.0.1:${r.adminPort}/listeners`);
            const clusters = await httpText(`http://127.0.0.1:${r.adminPort}/clusters`);
            return listeners.text.includes('sidecar.inbound::') && clusters.text.includes(`local.${SERVICE}::127.0.0.1:${r.appPort}::`);
          },
          60_000,
        );
      }
      await until(
        'gateway: listener gateway.http',
        async () => (await httpText(`http://127.0.0.1:${gatewayAdminPort}/listeners`)).text.includes('gateway.http::'),
        60_000,
      );
      await until(
        `gateway: both replicas of mcp.${SERVICE} healthy`,
        async () => {
          const { text } = await httpText(`http://127.0.0.1:${gatewayAdminPort}/clusters`);
          return (
            replicas.every((r) => text.split('\n').includes(`mcp.${SERVICE}::127.0.0.1:${r.inboundPort}::health_flags::healthy`)) ||
            undefined
          );
        },
        60_000,
      );
      await until(
        'gateway and sidecars ready (/ready)',
        async () => {
          const ports = [gatewayAdminPort, ...replicas.map((r) => r.adminPort)];
          const answers = await Promise.all(ports.map((p) => httpText(`http://127.0.0.1:${p}/ready`)));
          return answers.every((a) => a.status === 200);
        },
        30_000,
      );

      // A dev token, the way an agent gets one: client-credentials grant at the control plane's token endpoint.
      token = await devToken(cpAdminPort, 'e2e-agent', clientSecret, [ROLE]);
    }),
    { timeout: 300_000 },
  );

  after(
    async () => {
      for (const c of clients) await closeClient(c);
      // Gateway first (its CLI drains and stops its Envoy, then its agent), then sidecars, then servers; the
      // sidecar agents once their Envoys are gone.
      const order = [...procs].sort((a, b) => (a === gateway ? -1 : b === gateway ? 1 : 0));
      for (const p of order) await p.stop();
      for (const r of replicas) await stopAgent(r);
      await cp?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    { timeout: 90_000 },
  );

  it(
    "an Envoy is ready only once its agent's certificate arrived: no listener and no xDS stream before, ACKed config and that certificate after",
    { skip, timeout: 60_000 },
    withDiagnostics(async () => {
      // Replica a's Envoy ran for a while with no agent beside it: up (its admin API answered), never ready,
      // no listener from the control plane, and no ADS stream (it cannot do mTLS without its certificate).
      const [first] = replicas as [Replica];
      assert.ok(withoutCert, 'replica a was watched before its agent started');
      assert.ok(withoutCert.readyStatuses.length >= 3, `Envoy's admin API answered during the window: ${JSON.stringify(withoutCert)}`);
      assert.ok(
        withoutCert.readyStatuses.every((s) => s !== 200),
        `/ready said 200 without a certificate: ${JSON.stringify(withoutCert)}`,
      );
      assert.equal(withoutCert.listenerSeen, false, 'a listener arrived without a certificate');
      assert.equal(withoutCert.connected, false, 'the control plane saw an xDS stream from an Envoy without a certificate');
      assert.ok(first.certAt !== undefined, "replica a's agent installed its certificate after the window");

      // Every proxy: its first ADS stream was accepted, and its config ACKed, only after its agent installed
      // the certificate; now it is ready.
      const proxies: Array<{ node: string; certAt: number | undefined; adminPort: number; spiffeId: string; serial?: string }> = [
        ...replicas.map((r) => ({
          node: r.nodeId,
          certAt: r.certAt,
          adminPort: r.adminPort,
          spiffeId: sidecarId(TRUST_DOMAIN, SERVICE),
          ...(r.agent?.held ? { serial: new X509Certificate(r.agent.held.certChainPem).serialNumber } : {}),
        })),
        { node: GATEWAY_NODE, certAt: gatewayCertAt, adminPort: gatewayAdminPort, spiffeId: gatewayId(TRUST_DOMAIN, GATEWAY_NAME) },
      ];
      for (const p of proxies) {
        assert.ok(p.certAt !== undefined, `${p.node}: its agent installed a certificate`);
        const firstStream = connections.find((c) => c.node === p.node);
        assert.ok(firstStream, `${p.node}: the control plane accepted an ADS stream from it`);
        assert.ok(
          firstStream.at >= p.certAt,
          `${p.node}: ADS stream at ${new Date(firstStream.at).toISOString()}, before its certificate (${new Date(p.certAt).toISOString()})`,
        );
        const status = cp?.tracker.byNodeId(p.node);
        assert.ok(status, `${p.node}: connected`);
        for (const kind of ['cluster', 'listener'] as const) {
          const acked = status.types[kind]?.ackedAt;
          assert.ok(acked !== undefined && acked >= p.certAt, `${p.node}: ${kind} ACKed at ${acked}, certificate at ${p.certAt}`);
        }
        const ready = await httpText(`http://127.0.0.1:${p.adminPort}/ready`);
        assert.equal(ready.status, 200, `${p.node}: /ready ${ready.text}`);
        // The certificate Envoy uses is its agent's: its SPIFFE ID, and for the sidecars the very serial the agent holds.
        const certs = (await httpText(`http://127.0.0.1:${p.adminPort}/certs`)).text;
        assert.ok(certs.includes(p.spiffeId), `${p.node}: Envoy's /certs has no ${p.spiffeId}:\n${certs.slice(0, 2_000)}`);
        if (p.serial) {
          const serial = p.serial.toLowerCase().replace(/^0+/, '');
          assert.ok(
            certs.toLowerCase().includes(serial),
            `${p.node}: Envoy's /certs has not its agent's certificate (serial ${p.serial}):\n${certs.slice(0, 2_000)}`,
          );
        }
      }
    }),
  );

  it(
    'nothing the control plane shows on /debug/config_dump contains a private key; it holds no workload identity secret',
    { skip, timeout: 60_000 },
    withDiagnostics(async () => {
      const nodes = (cp?.tracker.list() ?? []).map((s) => s.proxy.id);
      for (const n of [GATEWAY_NODE, ...replicas.map((r) => r.nodeId)])
        assert.ok(nodes.includes(n), `${n} is connected: ${nodes.join(', ')}`);
      const queries = [
        ...nodes.map((n) => `node=${encodeURIComponent(n)}`),
        `role=gateway&port=${gatewayPort}`,
        `role=sidecar&service=${SERVICE}&port=${replicas[0]?.inboundPort ?? 15006}&app_port=${replicas[0]?.appPort ?? 8080}`,
      ];
      for (const q of queries) {
        const r = await httpText(`http://127.0.0.1:${cpAdminPort}/debug/config_dump?${q}`);
        assert.equal(r.status, 200, `${q}: ${r.text.slice(0, 500)}`);
        assert.ok(!r.text.includes('PRIVATE KEY'), `/debug/config_dump?${q} contains a private key`);
        const dump = JSON.parse(r.text) as { secret: Array<{ name: string; resource: { tls_certificate?: unknown } }> };
        const names = dump.secret.map((s) => s.name);
        assert.ok(names.includes('mcpmesh.trust'), `${q}: the trust bundle is there (secrets: ${names.join(', ')})`);
        assert.ok(!names.includes('mcpmesh.identity'), `${q}: the control plane has a workload identity secret; only the agent may`);
        assert.ok(
          dump.secret.every((s) => s.resource.tls_certificate === undefined),
          `${q}: a secret with a certificate and key`,
        );
      }
      const proxies = await httpText(`http://127.0.0.1:${cpAdminPort}/debug/proxies`);
      assert.equal(proxies.status, 200, proxies.text);
      assert.ok(!proxies.text.includes('PRIVATE KEY'), '/debug/proxies contains a private key');
    }),
  );

  it(
    'the dev issuer grants only the roles the policy defines',
    { skip, timeout: 30_000 },
    withDiagnostics(async () => {
      const r = await httpText(`http://127.0.0.1:${cpAdminPort}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_id: 'e2e-agent',
          client_secret: clientSecret,
          scope: 'admin',
        }).toString(),
      });
      assert.equal(r.status, 400, r.text);
      const body = JSON.parse(r.text) as { error: string; error_description: string };
      assert.equal(body.error, 'invalid_scope', r.text);
      assert.match(body.error_description, new RegExp(`it may be granted: "${ROLE}"`), r.text);
    }),
  );

  it(
    'without a token: 401 with the MCP challenge; the RFC 9728 metadata stays public',
    { skip, timeout: 60_000 },
    withDiagnostics(async () => {
      const init = JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'no-token', version: '1' } },
      });
      const r = await httpText(gatewayUrl().href, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: init,
      });
      assert.equal(r.status, 401, r.text);
      assert.match(
        r.headers.get('www-authenticate') ?? '',
        /^Bearer .*resource_metadata="[^"]*\/\.well-known\/oauth-protected-resource[^"]*"/,
      );
      const meta = await httpText(`http://127.0.0.1:${gatewayPort}/.well-known/oauth-protected-resource/mcp/${SERVICE}`);
      assert.equal(meta.status, 200, meta.text);
      assert.ok((JSON.parse(meta.text) as { authorization_servers: string[] }).authorization_servers.includes(issuer.issuer), meta.text);
    }),
  );

  it(
    'initialize; tools/list shows only the tools the role may call',
    { skip, timeout: 60_000 },
    withDiagnostics(async () => {
      const client = await connect();
      assert.equal(client.getServerVersion()?.name !== undefined, true, 'initialize answered with server info');
      assert.deepEqual(await allToolNames(client), [...ALLOWED_TOOLS].sort());
      await closeClient(client);
    }),
  );

  it(
    'an allowed tools/call succeeds; a denied one is refused (403, JSON-RPC error) and the session goes on',
    { skip, timeout: 60_000 },
    withDiagnostics(async () => {
      const client = await connect();
      const ok = await client.callTool({ name: 'echo', arguments: { message: 'through real Envoys' } }, undefined, REQUEST);
      assert.deepEqual(ok.content, [{ type: 'text', text: 'Echo: through real Envoys' }]);
      await assert.rejects(
        client.callTool({ name: DENIED_TOOL, arguments: { a: 1, b: 2 } }, undefined, REQUEST),
        (err: Error & { code?: number }) => {
          assert.equal(err.code, 403, err.message);
          const body = JSON.parse(err.message.slice(err.message.indexOf('{'))) as { error?: { code?: number; message?: string } };
          assert.equal(typeof body.error?.code, 'number', err.message);
          assert.match(body.error?.message ?? '', new RegExp(DENIED_TOOL), err.message);
          return true;
        },
      );
      const again = await client.callTool({ name: 'echo', arguments: { message: 'still here' } }, undefined, REQUEST);
      assert.deepEqual(again.content, [{ type: 'text', text: 'Echo: still here' }]);
      await closeClient(client);
    }),
  );

  it(
    'a session sticks to the replica that answered initialize',
    { skip, timeout: 90_000 },
    withDiagnostics(async () => {
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
    }),
  );

  it(
    'new sessions are spread over both replicas',
    { skip, timeout: 120_000 },
    withDiagnostics(async () => {
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
    }),
  );

  it(
    'failover: the replica owning a new session dies; a fresh session succeeds through the other',
    { skip, timeout: 120_000 },
    withDiagnostics(async () => {
      const client = await connect();
      const owner = await replicaOf(client);
      const victim = replicas.find((r) => r.name === owner);
      assert.ok(victim?.server && victim.sidecar, `replica ${owner} is known`);
      // The whole replica goes: its server, its sidecar Envoy and its agent (a node or pod dying).
      victim.server.expectExit = true;
      victim.sidecar.expectExit = true;
      victim.server.signal('SIGKILL');
      victim.sidecar.signal('SIGKILL');
      await Promise.race([Promise.all([victim.server.exited, victim.sidecar.exited]), sleep(5_000)]);
      assert.equal(victim.server.alive || victim.sidecar.alive, false, `replica ${owner} did not die`);
      await stopAgent(victim);
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
      assert.ok(
        fresh && survivor,
        `no fresh session succeeded within 45 s after replica ${owner} died; failures:\n  ${failures.join('\n  ')}`,
      );
      assert.notEqual(survivor, owner);
      // And it is a working session, on the survivor.
      for (let i = 0; i < 3; i++) assert.equal(await replicaOf(fresh), survivor);
      const echo = await fresh.callTool({ name: 'echo', arguments: { message: 'after failover' } }, undefined, REQUEST);
      assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: after failover' }]);
      await closeClient(fresh);
    }),
  );
});
