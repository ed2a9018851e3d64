// The sidecar agent beside one MCP server: registers it in Consul with an MCP-level TTL health check,
// writes and supervises the Envoy sidecar, optionally bridges a stdio-only server to HTTP, and on
// shutdown drains (check critical -> the mesh stops routing here) before deregistering.
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type Consul from 'consul';
import type { McpProtocol, McpTransport } from '../../control-plane/src/model/types.ts';
import { consulClient, CONSUL_META, DEFAULT_MCP_TAG, type ConsulSourceOptions } from '../../control-plane/src/sources/consul.ts';
import { renderBootstrap } from './bootstrap.ts';
import { AgentIdentity, type IdentityConfig } from './identity-agent.ts';
import { controlPlaneId } from '../../control-plane/src/identity/serving.ts';
import { EnvoySupervisor, type Log } from './envoy.ts';
import { McpHealthChecker, type HealthResult } from './mcp-health.ts';

export interface SidecarAgentOptions {
  service: string;
  /** Consul service ID; default `<service>-<hostname>-<advertised port>`. */
  serviceId?: string;
  /** Address other proxies reach this node at (an IP). */
  address: string;
  /** Local MCP server port on 127.0.0.1 (ignored with `stdio`: the bridge's port is used). */
  appPort: number;
  /** Envoy's mesh-facing port; advertised in Consul when Envoy runs. */
  inboundPort: number;
  mcpPath: string;
  protocol: McpProtocol;
  transport: McpTransport;
  region?: string;
  zone?: string;
  tags?: string[];
  consul: Pick<ConsulSourceOptions, 'address' | 'token' | 'datacenter' | 'tls' | 'tag'>;
  controlPlane: { host: string; port: number };
  healthIntervalMs?: number;
  healthTimeoutMs?: number;
  /** Time between marking the check critical and deregistering, so proxies stop routing here first. */
  drainMs?: number;
  /** Where to write the Envoy bootstrap (default: a temp dir). */
  bootstrapPath?: string;
  /** Envoy binary; undefined runs the agent without a proxy (the app port is advertised instead). */
  envoyBin?: string;
  /**
   * Envoy runs beside the agent but is not its child (another container of the pod): the agent writes the
   * bootstrap and advertises the inbound port, but starts nothing.
   */
  externalEnvoy?: boolean;
  /** Serve /healthz and /readyz on this port (0: any free port; undefined: no health server). */
  healthPort?: number;
  healthHost?: string;
  /** Serve a stdio-only MCP server as Streamable HTTP on 127.0.0.1 through the bridge. */
  stdio?: { command: string; args: string[] };
  /**
   * A secured mesh: the agent gets the workload certificate (its own key, a CSR, the credential) and serves
   * it to Envoy over SDS; the xDS channel is mTLS. Absent: development mode, plain xDS.
   */
  identity?: IdentityConfig;
  log: Log;
}

/** The minimal bridge surface the agent needs (implemented by sidecar/src/bridge). */
export interface BridgeLike {
  start(): Promise<{ port: number; url: string }>;
  stop(): Promise<void>;
}
export type BridgeFactory = (o: { command: string; args: string[]; path: string; host: string; log: Log }) => BridgeLike;

export function defaultServiceId(service: string, port: number): string {
  return `${service}-${os.hostname()}-${port}`;
}

/** The first non-internal IPv4 address: what other nodes most likely reach us at. */
export function defaultAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

type Placement = Pick<SidecarAgentOptions, 'service' | 'serviceId' | 'envoyBin' | 'externalEnvoy' | 'inboundPort'>;

/** Whether Envoy fronts the MCP server (supervised by the agent or run beside it). */
function proxied(o: Placement): boolean {
  return o.envoyBin !== undefined || o.externalEnvoy === true;
}

/** The port Consul advertises: Envoy's inbound port when Envoy fronts the server, else the server's own. */
export function advertisedPortOf(o: Placement, appPort: number): number {
  return proxied(o) ? o.inboundPort : appPort;
}

/** The Consul service ID, which is also the sidecar's xDS node id. */
export function serviceIdOf(o: Placement, appPort: number): string {
  return o.serviceId ?? defaultServiceId(o.service, advertisedPortOf(o, appPort));
}

/**
 * The sidecar's Envoy bootstrap, as the agent writes it at start and `--print-bootstrap` prints it for an
 * init container: the same function, so the two cannot disagree (node id included).
 */
export function sidecarBootstrapJson(
  o: Placement & Pick<SidecarAgentOptions, 'region' | 'zone' | 'controlPlane' | 'protocol' | 'identity'>,
  appPort: number,
): string {
  return renderBootstrap({
    nodeId: serviceIdOf(o, appPort),
    service: o.service,
    ...(o.region ? { region: o.region } : {}),
    ...(o.zone ? { zone: o.zone } : {}),
    inboundPort: o.inboundPort,
    appPort,
    controlPlane: o.controlPlane,
    metadata: { 'mcp-protocol': o.protocol },
    ...(o.identity ? { identity: { sdsSocket: o.identity.sdsSocket, controlPlaneId: controlPlaneId(o.identity.trustDomain) } } : {}),
  });
}

export class SidecarAgent {
  private readonly o: SidecarAgentOptions;
  private readonly consul: Consul;
  private readonly bridgeFactory: BridgeFactory | undefined;
  private bridge: BridgeLike | undefined;
  private envoy: EnvoySupervisor | undefined;
  private identity: AgentIdentity | undefined;
  private checker: McpHealthChecker | undefined;
  private timer: NodeJS.Timeout | undefined;
  private healthServer: http.Server | undefined;
  private stopped = false;
  private registered = false;
  serviceId = '';
  checkId = '';
  appPort = 0;
  /** Where the agent reaches the MCP server: 127.0.0.1, or the bridge's bind address without Envoy. */
  appHost = '127.0.0.1';
  advertisedPort = 0;
  bootstrapPath: string | undefined;
  last: HealthResult | undefined;

  constructor(o: SidecarAgentOptions, bridgeFactory?: BridgeFactory) {
    this.o = o;
    this.consul = consulClient(o.consul);
    this.bridgeFactory = bridgeFactory;
  }

  /** Port of the /healthz and /readyz server, once started. */
  get healthPort(): number | undefined {
    return (this.healthServer?.address() as AddressInfo | null)?.port;
  }

  /**
   * Ready means the mesh may route here: registered in Consul and the last MCP check passed (the same
   * condition as the Consul check's status, so Kubernetes and Consul agree). Draining is not ready.
   */
  readiness(): { ready: boolean; reason: string } {
    if (this.stopped) return { ready: false, reason: 'draining: the agent is shutting down' };
    if (this.identity && !this.identity.held)
      return { ready: false, reason: `no workload certificate yet (${this.identity.config.spiffeId})` };
    const envoy = this.envoyDown();
    if (envoy) return { ready: false, reason: envoy };
    if (!this.registered) return { ready: false, reason: 'not registered in consul yet' };
    if (!this.last) return { ready: false, reason: 'no MCP health check has run yet' };
    return this.last.ok ? { ready: true, reason: this.last.output } : { ready: false, reason: `MCP server unhealthy: ${this.last.output}` };
  }

  /** Why the Envoy this agent supervises is not serving; undefined when it runs or is not ours to run. */
  private envoyDown(): string | undefined {
    if (!this.envoy || this.envoy.running) return undefined;
    return `envoy is not running (${this.envoy.lastFailure ?? 'starting'}); the mesh reaches this service through it`;
  }

  private async startHealthServer(port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      if (url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (url === '/readyz') {
        const r = this.readiness();
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${r.ready ? 'ready' : 'not ready'}: ${r.reason}\n`);
      } else {
        res
          .writeHead(404, { 'content-type': 'text/plain' })
          .end('not found: /healthz (agent alive), /readyz (registered and MCP server healthy)\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.o.healthHost ?? '0.0.0.0', () => resolve());
    });
    this.healthServer = server;
  }

  private get intervalMs(): number {
    return this.o.healthIntervalMs ?? 10_000;
  }

  /** The Consul registration body (exported for tests and `--dry-run`). */
  registration(): Record<string, unknown> {
    const meta: Record<string, string> = {
      [CONSUL_META.protocol]: this.o.protocol,
      [CONSUL_META.path]: this.o.mcpPath,
      [CONSUL_META.transport]: this.o.transport,
      ...(proxied(this.o) ? { [CONSUL_META.sidecar]: 'envoy' } : {}),
      ...(this.o.region ? { [CONSUL_META.region]: this.o.region } : {}),
      ...(this.o.zone ? { [CONSUL_META.zone]: this.o.zone } : {}),
    };
    return {
      name: this.o.service,
      id: this.serviceId,
      address: this.o.address,
      port: this.advertisedPort,
      tags: [...new Set([this.o.consul.tag ?? DEFAULT_MCP_TAG, ...(this.o.tags ?? [])])],
      meta,
      check: {
        checkid: this.checkId,
        name: `MCP ${this.o.protocol} health of ${this.o.service}`,
        notes: `MCP-level check by the mcpmesh sidecar agent against ${this.appHost}:${this.appPort}${this.o.mcpPath}${this.o.envoyBin && !this.o.externalEnvoy ? ', critical while its Envoy is not running' : ''}`,
        // Three missed updates: the agent itself is gone, not just one slow check.
        ttl: `${Math.ceil((this.intervalMs * 3) / 1000)}s`,
        status: 'critical',
        deregistercriticalserviceafter: '10m',
      },
    };
  }

  async start(): Promise<void> {
    const { log } = this.o;
    this.appPort = this.o.appPort;
    if (this.o.stdio) {
      if (!this.bridgeFactory) throw new Error('stdio mode needs the stdio bridge');
      // Without Envoy in front the bridge is what the mesh calls, at the advertised address: bind there
      // (loopback only behind Envoy, which is then the only caller).
      this.appHost = proxied(this.o) ? '127.0.0.1' : this.o.address;
      this.bridge = this.bridgeFactory({ ...this.o.stdio, path: this.o.mcpPath, host: this.appHost, log });
      this.appPort = (await this.bridge.start()).port;
      log('info', 'stdio bridge serving', { command: this.o.stdio.command, host: this.appHost, port: this.appPort });
    }
    this.advertisedPort = advertisedPortOf(this.o, this.appPort);
    this.serviceId = serviceIdOf(this.o, this.appPort);
    this.checkId = `mcp:${this.serviceId}`;
    if (this.o.healthPort !== undefined) await this.startHealthServer(this.o.healthPort);
    if (this.o.identity && proxied(this.o)) {
      // Before Envoy: its bootstrap points at this socket (Envoy waits for the secret if it comes later).
      this.identity = new AgentIdentity(this.o.identity, this.o.controlPlane, log);
      await this.identity.start();
    }
    if (proxied(this.o)) {
      this.bootstrapPath = this.o.bootstrapPath ?? path.join(os.tmpdir(), `mcpmesh-envoy-${this.serviceId}.json`);
      mkdirSync(path.dirname(this.bootstrapPath), { recursive: true });
      writeFileSync(this.bootstrapPath, sidecarBootstrapJson(this.o, this.appPort));
    }
    if (this.o.envoyBin && !this.o.externalEnvoy) {
      this.envoy = new EnvoySupervisor({ bin: this.o.envoyBin, bootstrapPath: this.bootstrapPath as string, log });
      this.envoy.start();
    } else if (this.o.externalEnvoy) {
      log('info', 'envoy runs beside the agent; bootstrap written', { bootstrap: this.bootstrapPath });
    } else {
      log('warn', 'no Envoy binary (ENVOY_BIN or envoy on PATH): advertising the MCP server port directly, without a sidecar proxy', {
        port: this.advertisedPort,
      });
    }
    this.checker = new McpHealthChecker({
      url: `http://${this.appHost.includes(':') ? `[${this.appHost}]` : this.appHost}:${this.appPort}${this.o.mcpPath}`,
      protocol: this.o.protocol,
      transport: this.o.transport,
      timeoutMs: this.o.healthTimeoutMs ?? 5_000,
    });
    await this.tick();
  }

  private async register(): Promise<void> {
    await this.consul.agent.service.register(this.registration() as unknown as Parameters<Consul['agent']['service']['register']>[0]);
    this.registered = true;
    this.o.log('info', 'registered in consul', {
      service: this.o.service,
      id: this.serviceId,
      address: this.o.address,
      port: this.advertisedPort,
    });
  }

  /** One health round: (re)register if needed, probe MCP, report to the TTL check. Never throws. */
  async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      if (!this.registered) await this.register();
      const probed = await (this.checker as McpHealthChecker).check();
      // The mesh reaches the server through Envoy: a healthy server behind a dead Envoy is not reachable.
      const envoy = this.envoyDown();
      const r: HealthResult = envoy && probed.ok ? { ...probed, ok: false, output: envoy } : probed;
      if (this.last?.ok !== r.ok)
        this.o.log(r.ok ? 'info' : 'warn', r.ok ? 'MCP server healthy' : 'MCP server unhealthy', { output: r.output });
      this.last = r;
      const note = r.output.slice(0, 4000);
      try {
        if (r.ok) await this.consul.agent.check.pass({ id: this.checkId, note });
        else await this.consul.agent.check.fail({ id: this.checkId, note });
      } catch (err) {
        // The Consul agent lost our registration (restart, deregistered as critical): register again.
        this.registered = false;
        throw err;
      }
    } catch (err) {
      this.o.log('warn', 'consul update failed; will retry', { error: (err as Error).message, consul: this.o.consul.address });
    } finally {
      if (!this.stopped)
        this.timer = setTimeout(() => void this.tick(), this.registered ? this.intervalMs : Math.min(this.intervalMs, 2_000));
    }
  }

  /** Drain, deregister, stop Envoy and the bridge. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const { log } = this.o;
    if (this.registered) {
      try {
        await this.consul.agent.check.fail({ id: this.checkId, note: 'draining: the sidecar agent is shutting down' });
        log('info', 'draining', { ms: this.o.drainMs ?? 5_000 });
        await new Promise((r) => setTimeout(r, this.o.drainMs ?? 5_000));
        await this.consul.agent.service.deregister(this.serviceId);
        log('info', 'deregistered from consul', { id: this.serviceId });
      } catch (err) {
        log('error', 'could not deregister from consul', { error: (err as Error).message });
      }
    }
    await this.envoy?.stop();
    await this.identity?.stop();
    if (this.healthServer) {
      const server = this.healthServer;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await this.checker?.close();
    await this.bridge?.stop();
    this.consul.destroy();
  }
}
