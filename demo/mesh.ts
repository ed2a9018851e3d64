// A whole mesh on one machine, for `npm run demo` and the real-Envoy end-to-end test (test/envoy/e2e.test.ts
// uses its child-process handling): the control plane in-process (embedded registry, secured: policy, mesh
// CA, mTLS xDS, dev OAuth issuer), MCP servers, each behind a sidecar Envoy with its agent's identity half
// (key, CSR with a join token, certificate over SDS), and the gateway through the project's own CLI
// (`mcpmesh gateway`). Without an Envoy binary everything but the Envoys runs (`envoy: undefined`).
//
// Topology (one region "local"; the gateway sits in zone-a):
//   everything   server-everything, Streamable HTTP   replica a (zone-a), replica b (zone-b)
//   notes        server-everything over stdio, served as Streamable HTTP by the stdio bridge (zone-a)
//
// Every port is picked free at start; every process is started by a Proc and stopped by stop(), bounded.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DevIssuer } from '../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../control-plane/src/control-plane.ts';
import { controlPlaneId } from '../control-plane/src/identity/serving.ts';
import { sidecarId } from '../control-plane/src/identity/spiffe.ts';
import { createLogger } from '../control-plane/src/log.ts';
import { Metrics } from '../control-plane/src/metrics.ts';
import { parsePolicy } from '../control-plane/src/policy/parse.ts';
import { renderBootstrap } from '../sidecar/src/bootstrap.ts';
import { StdioBridge } from '../sidecar/src/bridge/stdio-bridge.ts';
import { findEnvoy, type Log } from '../sidecar/src/envoy.ts';
import { AgentIdentity, identityFromArgs } from '../sidecar/src/identity-agent.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const require = createRequire(import.meta.url);
export const MCPMESH_CLI = path.join(repo, 'control-plane/src/cli.ts');
export const LOOPBACK_PRELOAD = path.join(here, 'loopback-preload.ts');
export const EVERYTHING_BIN = path.join(
  path.dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist/index.js',
);
/** The Envoy image the demo runs through Docker when there is no binary (the version deploy/ pins). */
export const ENVOY_IMAGE = 'envoyproxy/envoy:v1.38.8';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function httpText(
  url: string,
  init: RequestInit = {},
  timeoutMs = 5_000,
): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

/** A free loopback port (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Child processes: output kept (tail) for diagnostics, stopped politely then firmly, never waited on forever.

const OUTPUT_TAIL = 64 * 1024;

export class Proc {
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

// ---------------------------------------------------------------------------------------------------------
// Envoy: ENVOY_BIN, PATH, or Docker's official image when a Docker engine answers.

export type EnvoyChoice = { readonly bin: string; readonly how: string } | { readonly missing: string };

export const GET_ENVOY = `No Envoy found. The demo runs real Envoys (a gateway and three sidecars); get one of:
  - an Envoy binary: ENVOY_BIN=/path/to/envoy npm run demo   (or put \`envoy\` on PATH)
      Linux/macOS builds: https://www.envoyproxy.io/docs/envoy/latest/start/install
      (e.g. \`brew install envoy\`, or Debian/Ubuntu packages from apt.envoyproxy.io / func-e: \`func-e use 1.38.8\`)
  - Docker: with a running Docker engine the demo runs ${ENVOY_IMAGE} itself (docker run --network host)
  - no Envoy at all: npm run demo -- --no-envoy  (control plane, servers, identities and tokens; no traffic path)`;

const DOCKER_LABEL = 'mcpmesh.demo';

/** Removes the Envoy containers of the demo in `dir` (Docker mode), if any are left. */
export function removeDockerEnvoys(dir: string): void {
  const r = spawnSync('docker', ['ps', '-aq', '--filter', `label=${DOCKER_LABEL}=${dir}`], { encoding: 'utf8', timeout: 10_000 });
  const ids = (r.stdout ?? '').split('\n').filter(Boolean);
  if (ids.length > 0) spawnSync('docker', ['rm', '-f', ...ids], { timeout: 30_000 });
}

/** Whether a Docker engine answers (`docker info`), within a few seconds. */
function dockerAnswers(env: NodeJS.ProcessEnv): boolean {
  const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 5_000, env });
  return r.status === 0 && r.stdout.trim() !== '';
}

/**
 * The Envoy to run. Docker: a wrapper script that runs the official image with the host's network (the demo's
 * ports are on loopback) and the demo's folder mounted at the same path (bootstraps, SDS sockets).
 */
export function chooseEnvoy(env: NodeJS.ProcessEnv, dir: string): EnvoyChoice {
  const bin = findEnvoy(env);
  if (bin) return { bin, how: env['ENVOY_BIN'] ? `ENVOY_BIN (${bin})` : `envoy on PATH (${bin})` };
  if (dockerAnswers(env)) {
    const wrapper = path.join(dir, 'envoy-docker.sh');
    // Labelled with the demo's folder: stop() removes any container a killed `docker run` client left behind.
    writeFileSync(
      wrapper,
      `#!/bin/sh\nexec docker run --rm --init --network host --label '${DOCKER_LABEL}=${dir}' -u "$(id -u):$(id -g)" -v '${dir}:${dir}' ${ENVOY_IMAGE} envoy "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
    return { bin: wrapper, how: `Docker (${ENVOY_IMAGE}, --network host)` };
  }
  return { missing: GET_ENVOY };
}

// ---------------------------------------------------------------------------------------------------------
// Steps, shared with the real-Envoy end-to-end test (test/envoy/e2e.test.ts): each does what the project's
// agents do, so the demo and the test run the mesh the same way.

type Xds = { readonly host: string; readonly port: number };

/**
 * The sidecar agent's identity half, as `mcpmesh sidecar --join-token T --sds-socket S` sets it up: the flags
 * read by identityFromArgs, a single-use join token for the service's SPIFFE ID, an AgentIdentity that makes
 * the key, gets the certificate and serves it on the socket. Not started yet.
 */
export async function sidecarIdentity(o: {
  cp: ControlPlane;
  trustDomain: string;
  service: string;
  nodeId: string;
  sdsSocket: string;
  xds: Xds;
  log: Log;
}): Promise<AgentIdentity> {
  const minted = await o.cp.mintJoinToken(sidecarId(o.trustDomain, o.service));
  const problems: string[] = [];
  const config = identityFromArgs(
    { 'join-token': minted.token, 'sds-socket': o.sdsSocket },
    {},
    { role: 'sidecar', name: o.service, nodeId: o.nodeId },
    problems,
  );
  if (!config || problems.length > 0)
    throw new Error(`sidecar ${o.nodeId}: identity flags: ${problems.join('; ') || 'a join token did not make a secured agent'}`);
  return new AgentIdentity(config, o.xds, o.log);
}

/** Writes the bootstrap the sidecar agent writes (mTLS xDS through its agent's SDS socket) and starts Envoy on it. */
export function startSidecarEnvoy(o: {
  envoyBin: string;
  bootstrapPath: string;
  name: string;
  nodeId: string;
  service: string;
  zone: string;
  inboundPort: number;
  appPort: number;
  adminPort: number;
  statsPort: number;
  xds: Xds;
  agent: AgentIdentity;
}): Proc {
  writeFileSync(
    o.bootstrapPath,
    renderBootstrap({
      nodeId: o.nodeId,
      service: o.service,
      inboundPort: o.inboundPort,
      appPort: o.appPort,
      region: 'local',
      zone: o.zone,
      controlPlane: o.xds,
      adminPort: o.adminPort,
      statsPort: o.statsPort,
      metadata: { 'mcp-protocol': '2025-11-25' },
      identity: { sdsSocket: o.agent.config.sdsSocket, controlPlaneId: controlPlaneId(o.agent.config.trustDomain) },
    }),
  );
  return new Proc(o.name, o.envoyBin, ['-c', o.bootstrapPath, '--disable-hot-restart', '--drain-time-s', '1', '--log-level', 'warn']);
}

/** A gateway join token through the admin port (POST /admin/join-token, as `mcpmesh join-token --gateway` asks). */
export async function mintGatewayJoinToken(adminPort: number, gateway: string): Promise<{ token: string; spiffeId: string }> {
  const minted = await httpText(`http://127.0.0.1:${adminPort}/admin/join-token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ gateway, ttl: '10m' }),
  });
  if (minted.status !== 200) throw new Error(`join token for gateway ${gateway}: HTTP ${minted.status} ${minted.text}`);
  const body = JSON.parse(minted.text) as { token: string; spiffe_id: string };
  return { token: body.token, spiffeId: body.spiffe_id };
}

/**
 * The gateway through the project's CLI (`mcpmesh gateway --join-token ...`), which runs the gateway's
 * AgentIdentity, serves its SDS socket and supervises its Envoy. Identity settings come from the flags only,
 * never from this process's environment. Its own process group: stop() takes its Envoy down with it.
 */
export function startGatewayCli(o: {
  name: string;
  procName: string;
  nodeId: string;
  listenerPort: number;
  xds: Xds;
  adminPort: number;
  statsPort: number;
  envoyBin: string;
  bootstrapPath: string;
  joinToken: string;
  sdsSocket: string;
  region?: string;
  zone?: string;
}): Proc {
  const env: NodeJS.ProcessEnv = { ...process.env, MCPMESH_LOG_LEVEL: 'info' };
  for (const v of ['MCPMESH_JOIN_TOKEN', 'MCPMESH_JOIN_TOKEN_FILE', 'MCPMESH_K8S_TOKEN_FILE', 'MCPMESH_TRUST_DOMAIN', 'MCPMESH_CA_BUNDLE'])
    delete env[v];
  return new Proc(
    o.procName,
    process.execPath,
    [
      MCPMESH_CLI,
      'gateway',
      '--name',
      o.name,
      '--id',
      o.nodeId,
      '--listener-port',
      String(o.listenerPort),
      ...(o.region ? ['--region', o.region] : []),
      ...(o.zone ? ['--zone', o.zone] : []),
      '--control-plane',
      `${o.xds.host}:${o.xds.port}`,
      '--admin-port',
      String(o.adminPort),
      '--stats-port',
      String(o.statsPort),
      '--envoy-bin',
      o.envoyBin,
      '--bootstrap-out',
      o.bootstrapPath,
      '--drain',
      '1s',
      '--join-token',
      o.joinToken,
      '--sds-socket',
      o.sdsSocket,
    ],
    { env, group: true },
  );
}

/** A dev access token, the way an agent gets one: client-credentials grant at the control plane's token endpoint. */
export async function devToken(adminPort: number, clientId: string, clientSecret: string, roles: readonly string[]): Promise<string> {
  const t = await httpText(`http://127.0.0.1:${adminPort}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: clientId,
      client_secret: clientSecret,
      scope: roles.join(' '),
    }).toString(),
  });
  if (t.status !== 200) throw new Error(`token for ${roles.join(' ') || 'no role'}: HTTP ${t.status} ${t.text}`);
  return (JSON.parse(t.text) as { access_token: string }).access_token;
}

// ---------------------------------------------------------------------------------------------------------
// The mesh.

export const TRUST_DOMAIN = 'mcpmesh.local';
export const AUDIENCE = 'mcp-mesh';
export const GATEWAY_NAME = 'demo';
/** Env var server-everything's `get-env` tool shows: which replica answered. */
export const REPLICA_ENV = 'MCPMESH_DEMO_REPLICA';
export const DEV_CLIENT = 'demo';

export interface Replica {
  readonly service: string;
  readonly name: string;
  readonly zone: string;
  readonly nodeId: string;
  readonly kind: 'http' | 'stdio';
  appPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly statsPort: number;
  server?: Proc;
  bridge?: StdioBridge;
  envoy?: Proc;
  agent?: AgentIdentity;
}

export interface DemoMeshOptions {
  /** Envoy binary (or wrapper); undefined runs everything but the Envoys. */
  readonly envoyBin?: string;
  /** Where bootstraps, sockets and the registry go (made when absent; removed by stop() only if made). */
  readonly dir?: string;
  /** Control-plane and agent log lines (JSON); default: dropped. */
  readonly log?: (line: string) => void;
}

export function demoPolicy(issuerUrl: string): string {
  return `# The demo's policy: who may call what (format: deploy/policy.example.yaml).
trustDomain: ${TRUST_DOMAIN}
providers:
  - { name: dev, issuer: "${issuerUrl}", audiences: [${AUDIENCE}], jwksUri: "${issuerUrl}/jwks" }
roles:
  viewer:
    allow:
      - { service: everything, tools: ["*"] }
      - { service: notes, tools: [echo] }
    deny:
      # get-env prints the server's environment: not for viewers.
      - { service: everything, tools: [get-env] }
  admin:
    allow:
      - { service: "*", tools: ["*"], resources: ["*"], prompts: ["*"] }
`;
}

/** Polls `check` until truthy; fails at once when `fatal()` names a reason (a process died), or after `ms`. */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  ms: number,
  fatal: () => string | undefined,
): Promise<T> {
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
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(250);
  }
}

export class DemoMesh {
  readonly dir: string;
  readonly replicas: Replica[] = [];
  readonly procs: Proc[] = [];
  cp: ControlPlane | undefined;
  gateway: Proc | undefined;
  cpAdminPort = 0;
  gatewayPort = 0;
  gatewayAdminPort = 0;
  gatewayStatsPort = 0;
  readonly clientSecret = `demo-${Math.random().toString(36).slice(2)}`;
  private readonly madeDir: boolean;
  private readonly opts: DemoMeshOptions;
  private readonly agentLog: Log;

  private constructor(opts: DemoMeshOptions) {
    this.opts = opts;
    this.madeDir = opts.dir === undefined;
    this.dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'mcpmesh-demo-'));
    this.agentLog = (level, msg, fields) =>
      opts.log?.(JSON.stringify({ time: new Date().toISOString(), level, component: 'agent', msg, ...fields }));
  }

  /** Starts everything; on a failure, stops what was started and throws. */
  static async start(opts: DemoMeshOptions): Promise<DemoMesh> {
    const mesh = new DemoMesh(opts);
    try {
      await mesh.startAll();
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    return mesh;
  }

  private track(p: Proc): Proc {
    this.procs.push(p);
    return p;
  }

  private async startAll(): Promise<void> {
    this.cpAdminPort = await freePort();
    const authzPort = await freePort();
    this.gatewayPort = await freePort();
    this.gatewayAdminPort = await freePort();
    this.gatewayStatsPort = await freePort();
    const ports = async (): Promise<{ appPort: number; inboundPort: number; adminPort: number; statsPort: number }> => ({
      appPort: await freePort(),
      inboundPort: await freePort(),
      adminPort: await freePort(),
      statsPort: await freePort(),
    });
    for (const [service, name, zone, kind] of [
      ['everything', 'a', 'zone-a', 'http'],
      ['everything', 'b', 'zone-b', 'http'],
      ['notes', 'a', 'zone-a', 'stdio'],
    ] as const) {
      this.replicas.push({ service, name, zone, kind, nodeId: `${service}-${name}`, ...(await ports()) });
    }

    const issuerUrl = `http://127.0.0.1:${this.cpAdminPort}/oauth`;
    const issuer = await DevIssuer.create({
      issuer: issuerUrl,
      audience: AUDIENCE,
      clients: { [DEV_CLIENT]: { secret: this.clientSecret, roles: ['*'] } },
      grantableRoles: () => new Set(this.cp?.policy?.roles.map((r) => r.name) ?? []),
    });
    const policyFile = path.join(this.dir, 'policy.yaml');
    writeFileSync(policyFile, demoPolicy(issuerUrl));
    const registryFile = path.join(this.dir, 'registry.yaml');
    writeFileSync(registryFile, this.registryYaml());
    const log = createLogger({ level: 'info', component: 'control-plane', write: (line) => this.opts.log?.(line) });
    this.cp = await new ControlPlane({
      registryFile,
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: this.cpAdminPort,
      authzHost: '127.0.0.1',
      authzPort,
      devIssuer: issuer,
      quietMs: 20,
      maxDelayMs: 200,
      security: {
        policy: parsePolicy(demoPolicy(issuerUrl), policyFile),
        publicUrl: `http://127.0.0.1:${this.gatewayPort}`,
        authz: { host: '127.0.0.1', port: authzPort },
      },
      log,
      metrics: new Metrics({ processMetrics: false }),
    }).start();
    const xds = { host: '127.0.0.1', port: this.cp.xdsPort };

    for (const r of this.replicas) {
      if (r.kind === 'http') {
        r.server = this.track(
          new Proc(
            `server-everything ${r.service}/${r.name} (:${r.appPort})`,
            process.execPath,
            ['--import', LOOPBACK_PRELOAD, EVERYTHING_BIN, 'streamableHttp'],
            {
              env: { PATH: process.env['PATH'] ?? '', PORT: String(r.appPort), [REPLICA_ENV]: `${r.name} (${r.zone})` },
            },
          ),
        );
      } else {
        // The stdio bridge, as `mcpmesh sidecar --stdio` runs it: one server-everything (stdio) per MCP session.
        r.bridge = new StdioBridge({
          command: process.execPath,
          args: [EVERYTHING_BIN, 'stdio'],
          path: '/mcp',
          host: '127.0.0.1',
          log: this.agentLog,
          env: { [REPLICA_ENV]: `${r.name} (${r.zone}, stdio)` },
        });
        r.appPort = (await r.bridge.start()).port;
      }
      r.agent = await sidecarIdentity({
        cp: this.cp,
        trustDomain: TRUST_DOMAIN,
        service: r.service,
        nodeId: r.nodeId,
        sdsSocket: path.join(this.dir, `sds-${r.nodeId}.sock`),
        xds,
        log: this.agentLog,
      });
    }
    for (const r of this.replicas) await r.server?.waitForOutput(/listening on port/, 30_000);
    for (const r of this.replicas) await r.agent?.start();
    // The bridge's port is known only now: the registry names each sidecar's inbound port, the bootstrap the app port.
    if (this.opts.envoyBin) {
      const envoyBin = this.opts.envoyBin;
      for (const r of this.replicas) {
        r.envoy = this.track(
          startSidecarEnvoy({
            envoyBin,
            bootstrapPath: path.join(this.dir, `sidecar-${r.nodeId}.json`),
            name: `sidecar envoy ${r.nodeId} (inbound :${r.inboundPort}, admin :${r.adminPort})`,
            nodeId: r.nodeId,
            service: r.service,
            zone: r.zone,
            inboundPort: r.inboundPort,
            appPort: r.appPort,
            adminPort: r.adminPort,
            statsPort: r.statsPort,
            xds,
            agent: r.agent as AgentIdentity,
          }),
        );
      }
      const { token } = await mintGatewayJoinToken(this.cpAdminPort, GATEWAY_NAME);
      this.gateway = this.track(
        startGatewayCli({
          name: GATEWAY_NAME,
          procName: `gateway CLI + envoy (:${this.gatewayPort}, admin :${this.gatewayAdminPort})`,
          nodeId: `gateway-${GATEWAY_NAME}`,
          listenerPort: this.gatewayPort,
          region: 'local',
          zone: 'zone-a',
          xds,
          adminPort: this.gatewayAdminPort,
          statsPort: this.gatewayStatsPort,
          envoyBin,
          bootstrapPath: path.join(this.dir, 'gateway.json'),
          joinToken: token,
          sdsSocket: path.join(this.dir, 'sds-gateway.sock'),
        }),
      );
    }
  }

  private registryYaml(): string {
    const lines = ['services:'];
    for (const service of [...new Set(this.replicas.map((r) => r.service))]) {
      lines.push(`  - name: ${service}`, '    protocol: "2025-11-25"', '    sidecar: true', '    endpoints:');
      for (const r of this.replicas.filter((x) => x.service === service))
        lines.push(`      - { address: 127.0.0.1, port: ${r.inboundPort}, locality: { region: local, zone: ${r.zone} } }`);
    }
    return `${lines.join('\n')}\n`;
  }

  /** Why waiting is pointless: a process that should run has exited, or a proxy refused its config. */
  fatal(): string | undefined {
    const dead = this.procs.filter((p) => !p.alive && !p.expectExit);
    if (dead.length > 0) return `process exited unexpectedly:\n${dead.map((p) => p.describe()).join('\n')}`;
    if (this.gateway?.output.includes('envoy exited; restarting')) return `the gateway's Envoy exited:\n${this.gateway.describe()}`;
    const nacks = (this.cp?.tracker.list() ?? []).flatMap((s) =>
      Object.entries(s.types)
        .filter(([, t]) => t !== undefined && t.nacks > 0)
        .map(([kind, t]) => `${s.proxy.id} NACKed ${kind}: ${t?.lastNack ?? ''}`),
    );
    return nacks.length > 0 ? `Envoy refused config from the control plane:\n  ${nacks.join('\n  ')}` : undefined;
  }

  /** Polls `check` until truthy; fails at once when fatal() says so, or after `ms`. */
  until<T>(what: string, check: () => Promise<T | undefined | false>, ms: number): Promise<T> {
    return pollUntil(what, check, ms, () => this.fatal());
  }

  /** With Envoy: every sidecar has its listener, the gateway its listener and healthy endpoints, all /ready. */
  async ready(ms = 120_000): Promise<void> {
    for (const r of this.replicas) await this.until(`${r.nodeId}: a workload certificate`, async () => r.agent?.held !== undefined, 30_000);
    if (!this.opts.envoyBin) return;
    await this.until(
      'gateway: listener gateway.http',
      async () => (await httpText(`http://127.0.0.1:${this.gatewayAdminPort}/listeners`)).text.includes('gateway.http::'),
      ms,
    );
    await this.until(
      'gateway: every endpoint healthy',
      async () => {
        const { text } = await httpText(`http://127.0.0.1:${this.gatewayAdminPort}/clusters`);
        return (
          this.replicas.every((r) => text.split('\n').includes(`mcp.${r.service}::127.0.0.1:${r.inboundPort}::health_flags::healthy`)) ||
          undefined
        );
      },
      ms,
    );
    await this.until(
      'gateway and sidecars ready (/ready)',
      async () => {
        const answers = await Promise.all(
          [this.gatewayAdminPort, ...this.replicas.map((r) => r.adminPort)].map((p) => httpText(`http://127.0.0.1:${p}/ready`)),
        );
        return answers.every((a) => a.status === 200);
      },
      ms,
    );
  }

  /** A dev access token with `roles`, from the control plane's token endpoint (client-credentials grant). */
  token(roles: readonly string[]): Promise<string> {
    return devToken(this.cpAdminPort, DEV_CLIENT, this.clientSecret, roles);
  }

  gatewayUrl(service: string): URL {
    return new URL(`http://127.0.0.1:${this.gatewayPort}/mcp/${service}`);
  }

  /** Kills one replica: its server (or bridge), its sidecar Envoy, its agent. */
  async kill(r: Replica): Promise<void> {
    if (r.server) r.server.expectExit = true;
    if (r.envoy) r.envoy.expectExit = true;
    r.server?.signal('SIGKILL');
    // SIGTERM, not SIGKILL: through Docker, the `docker run` client forwards it to the container.
    r.envoy?.signal('SIGTERM');
    await r.bridge?.stop();
    await r.agent?.stop();
    r.agent = undefined;
  }

  /** Stops everything started, gateway first; bounded. */
  async stop(): Promise<void> {
    const order = [...this.procs].sort((a, b) => (a === this.gateway ? -1 : b === this.gateway ? 1 : 0));
    for (const p of order) await p.stop();
    for (const r of this.replicas) {
      await r.bridge?.stop().catch(() => {});
      await r.agent?.stop().catch(() => {});
    }
    await this.cp?.stop();
    if (this.opts.envoyBin?.endsWith('envoy-docker.sh')) removeDockerEnvoys(this.dir);
    if (this.madeDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
