// Wires the pipeline: source -> mesh model -> translators -> snapshot cache -> ADS, plus admin HTTP.
import { Coalescer } from './cache/coalesce.ts';
import { SnapshotCache } from './cache/cache.ts';
import { SnapshotError } from './cache/snapshot.ts';
import type { DevIssuer } from './auth/dev-issuer.ts';
import { createLogger, type Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { MeshBuilder, type ServiceSpec } from './model/mesh.ts';
import { AdminServer } from './server/admin.ts';
import { AdsServer, type AdsLimits } from './server/ads.ts';
import { ProxyTracker } from './server/proxies.ts';
import { DecisionServices } from './authz/services.ts';
import type { Policy } from './policy/types.ts';
import * as grpc from '@grpc/grpc-js';
import type { Attestor } from './identity/attest.ts';
import { CertificateAuthority, DEFAULT_LEAF_TTL_MS } from './identity/ca.ts';
import { JoinTokens, type MintedToken } from './identity/join-token.ts';
import { controlPlaneId, ServingIdentity } from './identity/serving.ts';
import { IdentityService } from './server/identity.ts';
import type { Mesh, MeshSecurity } from './model/types.ts';
import { meshServicesView, type MeshStatusView } from './server/status.ts';
import { gatewayId, sidecarId } from './identity/spiffe.ts';
import { ConvergenceTracker } from './server/convergence.ts';
import { ConsulSource, type ConsulWatchError, type ConsulSourceOptions } from './sources/consul.ts';
import { RegistryFileSource } from './sources/registry-file.ts';
import { FileWatch } from './sources/file-watch.ts';
import { parsePolicy } from './policy/parse.ts';
import { RoutingLayers } from './routing.ts';
import { ConsoleServer } from './console/server.ts';

export interface ControlPlaneOptions {
  /** The embedded registry; used when no Consul is configured. */
  registryFile: string;
  /** Largest registry file read (default DEFAULT_REGISTRY_MAX_BYTES, 8 MiB); a larger one is refused unread. */
  registryMaxBytes?: number;
  /** When set, Consul is the source and the registry file is not read. */
  consul?: ConsulSourceOptions;
  /** Routing file (GitOps) tuning services of either source; watched. */
  routingFile?: string;
  /** With Consul: the service name whose service-defaults UpstreamConfig tunes how gateways reach MCP services. */
  consulGatewayService?: string;
  xdsHost?: string;
  xdsPort?: number;
  adminHost?: string;
  adminPort?: number;
  /** Quiet window before a burst of source changes is turned into one rebuild. */
  quietMs?: number;
  /** Longest a change waits for the burst to end. */
  maxDelayMs?: number;
  log?: Logger;
  metrics?: Metrics;
  /** Enables the development OAuth issuer (token endpoint + JWKS on the admin port). */
  devIssuer?: DevIssuer;
  /** Secures the mesh: JWT at the gateway, MCP-aware authorization, workload certificates over SDS. */
  security?: MeshSecurity;
  /**
   * The file `security.policy` was parsed from, and the text parsed: watched, and a valid edit is applied
   * without a restart (an edit made after `text` was read counts as one).
   */
  policyFile?: { path: string; text: string };
  /** The CA for workload certificates; default: a self-signed root for the policy's trust domain. */
  ca?: CertificateAuthority;
  /** Lifetime of workload certificates (default 24 h; agents renew at half-life). */
  certTtlMs?: number;
  /** Attestation methods besides join tokens (e.g. Kubernetes ServiceAccount tokens). */
  attestors?: readonly Attestor[];
  /**
   * Serve ADS (and the CA) without TLS in a secured mesh: development only, so bound to loopback unless
   * xdsHost says otherwise, and logged as insecure. Proxies then authenticate with nothing.
   */
  xdsInsecure?: boolean;
  /** DNS names proxies dial the control plane by (DNS SANs of its serving certificate). */
  xdsDnsNames?: readonly string[];
  /** Bearer token for the admin port's /debug, join tokens and dev token endpoint beyond loopback. */
  adminToken?: string;
  /** Port of the MCP authorizer + tools/list processor (gRPC) when the mesh is secured. Default 18002; 0 = any. */
  authzPort?: number;
  authzHost?: string;
  /** What one xDS client may take (stream counts, names, node size, unread data); defaults in DEFAULT_ADS_LIMITS. */
  adsLimits?: Partial<AdsLimits>;
}

export const DEFAULT_AUTHZ_PORT = 18002;

// Where it has always been imported from; it lives with the services that use it (a gateway agent runs them too).
export { toolFilterFor } from './authz/services.ts';

export const DEFAULT_XDS_PORT = 18000;
export const DEFAULT_ADMIN_PORT = 18001;

/** A first registry mesh of this many services or more is validated and encoded yielding to the event loop. */
const YIELDING_BUILD_SERVICES = 500;

/** A mesh built (not yet published) by applyFirst, handed to apply. */
interface PreparedMesh {
  readonly started: number;
  readonly tuned: readonly ServiceSpec[];
  readonly mesh: Mesh;
  readonly commit: () => void;
}

export class ControlPlane {
  readonly cache = new SnapshotCache();
  readonly tracker = new ProxyTracker();
  readonly metrics: Metrics;
  readonly log: Logger;
  xdsPort = 0;
  adminPort = 0;
  private readonly builder = new MeshBuilder();
  private readonly coalescer: Coalescer<{ specs: ServiceSpec[]; observedAt: number }>;
  private readonly source: RegistryFileSource | ConsulSource;
  private readonly convergence: ConvergenceTracker;
  private readonly ads: AdsServer;
  private readonly admin: AdminServer;
  private readonly console: ConsoleServer;
  private readonly sourceErrors: Record<string, string | undefined> = {};
  /** Sources whose last mesh was refused: a source that recovers without a change does not clear that. */
  private readonly rejected = new Set<string>();
  private readonly opts: ControlPlaneOptions;
  private serving: ServingIdentity | undefined;
  private joinTokens: JoinTokens | undefined;
  private decisions: DecisionServices | undefined;
  private identity: IdentityService | undefined;
  private security: MeshSecurity | undefined;
  /** The specs of the last published mesh: a policy change rebuilds from them. */
  private lastSpecs: readonly ServiceSpec[] | undefined;
  /** The mesh now served, and when it was published: what /debug/mesh shows. */
  private lastMesh: { mesh: Mesh; at: Date } | undefined;
  private ca: CertificateAuthority | undefined;
  private policyWatch: FileWatch | undefined;
  /** Routing tuned beside the source (routing file, Consul config entries): see routing.ts. */
  readonly routing: RoutingLayers;
  private draining = false;
  /** Set while applyFirst yields: a routing change meanwhile marks it stale. */
  private warming: { stale: boolean } | undefined;
  /** Set by stop(): a first build still yielding then publishes nothing. */
  private stopped = false;
  authzPort = 0;

  constructor(opts: ControlPlaneOptions) {
    this.opts = opts;
    this.security = opts.security;
    this.log = opts.log ?? createLogger();
    this.metrics = opts.metrics ?? new Metrics();
    this.coalescer = new Coalescer(
      opts.quietMs ?? 100,
      opts.maxDelayMs ?? 1000,
      (c) => this.apply(c.specs, this.sourceName, c.observedAt),
      (prev, next) => ({
        specs: next.specs,
        // Convergence counts from the first change of a burst: that is what a user waits from.
        observedAt: Math.min(prev.observedAt, next.observedAt),
      }),
    );
    this.source = opts.consul
      ? new ConsulSource(opts.consul)
      : new RegistryFileSource(opts.registryFile, opts.registryMaxBytes !== undefined ? { maxBytes: opts.registryMaxBytes } : {});
    this.routing = new RoutingLayers({
      rebuild: () => {
        // A first build in progress picks the change up when it publishes (applyFirst).
        if (this.warming) this.warming.stale = true;
        return !this.lastSpecs || this.apply(this.lastSpecs, 'routing');
      },
      errors: this.sourceErrors,
      failed: (source, err, msg, fields) => this.sourceFailed(source, err, msg, fields),
      ok: (source) => this.sourceOk(source),
      metrics: this.metrics,
      log: this.log,
    });
    this.convergence = new ConvergenceTracker(this.tracker, this.metrics.convergence, this.metrics.convergenceTimeouts);
    this.ads = new AdsServer({
      cache: this.cache,
      tracker: this.tracker,
      convergence: this.convergence,
      metrics: this.metrics,
      log: this.log.child('ads'),
      requireIdentity: opts.security !== undefined && opts.xdsInsecure !== true,
      ...(opts.adsLimits ? { limits: opts.adsLimits } : {}),
    });
    const td = opts.security?.policy.trustDomain;
    this.console = new ConsoleServer({
      cache: this.cache,
      tracker: this.tracker,
      metrics: this.metrics,
      sourceErrors: () => ({ ...this.sourceErrors }),
      sourceDescription: () => this.sourceDescription,
      policy: () => this.policy,
      routing: this.routing,
      workloadCertificates: () => (this.identity?.issued() ?? []).map((c) => ({ identity: c.spiffeId, notAfter: new Date(c.notAfter) })),
    });
    this.admin = new AdminServer({
      console: this.console,
      cache: this.cache,
      tracker: this.tracker,
      metrics: this.metrics,
      sourceErrors: () => ({ ...this.sourceErrors }),
      meshStatus: () => this.meshStatus(),
      sourceWatches: () => (this.source instanceof ConsulSource ? [...this.source.watches(), ...this.routing.watches()] : []),
      draining: () => this.draining,
      host: opts.adminHost ?? '127.0.0.1',
      ...(opts.adminToken ? { debugToken: opts.adminToken } : {}),
      ...(opts.devIssuer ? { oauth: opts.devIssuer } : {}),
      routing: (service) => this.routing.debug(service),
      ...(td
        ? {
            joinTokens: (kind: 'service' | 'gateway', name: string, ttlMs: number | undefined) =>
              this.mintJoinToken(kind === 'service' ? sidecarId(td, name) : gatewayId(td, name), ttlMs),
          }
        : {}),
    });
  }

  /**
   * Builds and publishes the mesh described by `specs`. Returns false (and publishes nothing) when a
   * generated resource is invalid; proxies keep their last good config.
   */
  get sourceName(): 'consul' | 'registry' {
    return this.source instanceof ConsulSource ? 'consul' : 'registry';
  }

  /** What the control plane reads its mesh from, for humans. */
  get sourceDescription(): string {
    return this.source instanceof ConsulSource ? this.source.description : `registry file ${this.opts.registryFile}`;
  }

  apply(specs: readonly ServiceSpec[], source: string, observedAt?: number, prepared?: PreparedMesh): boolean {
    const started = prepared?.started ?? performance.now();
    const tuned = prepared?.tuned ?? this.routing.tune(specs);
    const { mesh, commit } = prepared ?? this.builder.build(tuned, this.security);
    try {
      const { changed, proxies } = this.cache.setMesh(mesh);
      commit();
      this.lastSpecs = specs;
      this.lastMesh = { mesh, at: new Date() };
      this.routing.published(tuned);
      const seconds = (performance.now() - started) / 1000;
      this.metrics.snapshotBuild.observe(seconds);
      this.metrics.snapshotKeys.set(this.cache.size);
      this.metrics.meshServices.set(mesh.services.length);
      const eps = mesh.services.flatMap((s) => s.endpoints);
      this.metrics.meshEndpoints.set({ health: 'healthy' }, eps.filter((e) => e.healthy).length);
      this.metrics.meshEndpoints.set({ health: 'unhealthy' }, eps.filter((e) => !e.healthy).length);
      this.rejected.delete(source);
      // A Consul update can arrive while another of its watches is still failing: that error stays shown.
      if (!(source === 'consul' && this.source instanceof ConsulSource && !this.source.healthy)) this.sourceOk(source);
      if (changed > 0) this.convergence.begin(source, observedAt ?? started);
      this.log.info('mesh published', {
        source,
        services: mesh.services.length,
        endpoints: eps.length,
        snapshots_changed: changed,
        proxies_pushed: proxies,
        build_ms: Math.round(seconds * 1000),
      });
      return true;
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
      this.metrics.snapshotsRejected.inc();
      this.rejected.add(source);
      this.sourceErrors[source] = err.message;
      this.log.error('mesh update rejected; proxies keep their last good config', { source, error: err.message });
      return false;
    }
  }

  /**
   * apply() for the registry's first mesh: a big one is validated and encoded first in slices that let the event
   * loop run (probes, xDS streams), then published by the usual synchronous apply, which finds that work done.
   * Nothing else applies meanwhile (the file is watched only after this); a routing or policy change that lands
   * while it yields makes the publish rebuild from scratch, synchronously, so the newest inputs win.
   */
  private async applyFirst(specs: readonly ServiceSpec[], source: string): Promise<boolean> {
    if (specs.length < YIELDING_BUILD_SERVICES) return this.apply(specs, source);
    const started = performance.now();
    const security = this.security;
    const tuned = this.routing.tune(specs);
    const built = this.builder.build(tuned, security);
    const warming = { stale: false };
    this.warming = warming;
    try {
      await this.cache.warm(built.mesh);
    } finally {
      this.warming = undefined;
    }
    if (this.stopped) return false;
    if (warming.stale || this.security !== security) return this.apply(specs, source);
    return this.apply(specs, source, undefined, { started, tuned, ...built });
  }

  /**
   * Swaps the security policy at runtime: the mesh is rebuilt with it (RBAC, JWT providers, allowed callers)
   * and, only if that mesh is valid, the authorizer and the tools/list filter switch too. Returns false when
   * nothing changed. The trust domain cannot change at runtime (every certificate would), nor can a mesh
   * started without a policy become secured (no CA, no authorizer): both throw.
   */
  setPolicy(policy: Policy): boolean {
    const current = this.security;
    if (!current) throw new Error('the control plane was started without a policy; restart it with --policy to secure the mesh');
    if (policy.trustDomain !== current.policy.trustDomain) {
      throw new Error(
        `trustDomain: changed from "${current.policy.trustDomain}" to "${policy.trustDomain}"; every workload certificate would change, so restart the control plane to change it`,
      );
    }
    this.security = { ...current, policy };
    if (this.lastSpecs && !this.apply(this.lastSpecs, 'policy')) {
      this.security = current;
      return false;
    }
    this.decisions?.setPolicy(policy);
    this.log.info('policy applied', { roles: policy.roles.length, services: policy.services.length, providers: policy.providers.length });
    return true;
  }

  private watchPolicy(file: string, parsedText: string): void {
    const w = new FileWatch(file, {
      change: (text) => {
        let policy: Policy;
        try {
          policy = parsePolicy(text, file);
          if (!this.setPolicy(policy)) throw new Error('the mesh built with it is invalid (see "mesh update rejected")');
        } catch (err) {
          this.sourceFailed('policy', err as Error, 'policy update rejected; the last good policy stays in force', { file });
          return;
        }
        this.sourceOk('policy');
      },
      error: (err) =>
        this.sourceFailed('policy', new Error(`${file}: ${err.message}`), 'policy file unreadable; the last good policy stays in force', {
          file,
        }),
    });
    w.seen(parsedText);
    w.start();
    this.policyWatch = w;
  }

  private sourceFailed(source: string, err: Error, msg?: string, fields: Record<string, string> = {}): void {
    this.metrics.sourceErrors.inc({ source });
    this.metrics.sourceUp.set({ source }, 0);
    this.sourceErrors[source] = err.message;
    const kept = this.lastSpecs ? 'serving the last good mesh' : 'no mesh yet, not ready';
    this.log.error(msg ?? `${source} update rejected; ${kept}`, { source, ...fields, error: err.message });
  }

  /** The source reads fine again (whether or not the mesh changed): its error is cleared unless its mesh was refused. */
  private sourceOk(source: string): void {
    this.metrics.sourceUp.set({ source }, 1);
    if (!this.rejected.has(source)) this.sourceErrors[source] = undefined;
  }

  /**
   * Workload identities. The control plane is the mesh CA: it signs CSRs from agents that prove the identity
   * (join tokens, platform attestors, or the current certificate for a renewal) on its xDS port, and serves
   * that port with its own certificate. It never makes or holds a proxy's key; proxies get the trust bundle.
   */
  private async startIdentities(security: MeshSecurity): Promise<void> {
    const td = security.policy.trustDomain;
    const ca = this.opts.ca ?? (await CertificateAuthority.selfSigned({ trustDomain: td }));
    this.joinTokens = new JoinTokens(ca);
    this.ca = ca;
    const serving = await ServingIdentity.start({
      ca,
      dnsNames: this.opts.xdsDnsNames ?? [],
      onError: (err) => {
        this.metrics.certificateErrors.inc();
        this.log.error('control plane certificate renewal failed; keeping the current one', { error: err.message });
      },
    });
    this.serving = serving;
    this.metrics.certificatesIssued.inc({ role: 'control-plane' });
    this.metrics.certificates = () => (serving.notAfter ? [{ identity: serving.spiffeId, notAfter: serving.notAfter }] : []);
    this.metrics.caNotAfter = ca.notAfter;
    this.cache.setTrustResolver(() => ({ bundlePem: ca.bundlePem }));
    const identity = new IdentityService({
      ca,
      attestors: [this.joinTokens, ...(this.opts.attestors ?? [])],
      ttlMs: this.opts.certTtlMs ?? DEFAULT_LEAF_TTL_MS,
      metrics: this.metrics,
      log: this.log.child('ca'),
    });
    this.ads.mount((server) => identity.addTo(server));
    this.identity = identity;
  }

  /** The published mesh and certificate expiry, for /debug/mesh (`mcpmesh status`). */
  meshStatus(): MeshStatusView {
    const ca = this.ca;
    return {
      source: this.sourceDescription,
      publishedAt: this.lastMesh?.at.toISOString() ?? null,
      services: meshServicesView(this.lastMesh?.mesh),
      certificates: ca
        ? {
            trustDomain: ca.trustDomain,
            ca: { notAfter: ca.notAfter.toISOString() },
            controlPlane: {
              spiffeId: this.serving?.spiffeId ?? controlPlaneId(ca.trustDomain),
              notAfter: this.serving?.notAfter?.toISOString() ?? null,
            },
            issued: this.identity?.issued() ?? [],
          }
        : null,
    };
  }

  /** The policy in force (after any hot reload), or undefined when the mesh is not secured. */
  get policy(): Policy | undefined {
    return this.security?.policy;
  }

  /** A join token for `spiffeId` (an operator's `mcpmesh join-token`), signed by the mesh CA. */
  async mintJoinToken(spiffeId: string, ttlMs?: number): Promise<MintedToken> {
    if (!this.joinTokens) throw new Error('the mesh is not secured (no policy): there is no CA to join');
    return this.joinTokens.mint(spiffeId, ttlMs);
  }

  /** How the xDS port is served: mTLS with the control plane's certificate, or plain (development). */
  private xdsCredentials(): grpc.ServerCredentials {
    if (!this.serving || this.opts.xdsInsecure) return grpc.ServerCredentials.createInsecure();
    // Client certificates are asked for, not required: the CA's Sign method serves agents that have none yet.
    // Every ADS stream then checks the certificate itself (AdsServer requireIdentity).
    return grpc.experimental.createCertificateProviderServerCredentials(this.serving.provider, this.serving.provider, false);
  }

  async start(): Promise<this> {
    if (this.opts.security) {
      await this.startIdentities(this.opts.security);
      const decisions = new DecisionServices({
        policy: this.opts.security.policy,
        registry: this.metrics.registry,
        log: this.log,
        publicUrl: this.opts.security.publicUrl,
      });
      this.decisions = decisions;
      // Where the gateways reach it and nowhere else: loopback unless told (the gateway beside the control plane).
      // Gateways started with their own policy (mcpmesh gateway --policy) decide beside their Envoy instead.
      this.authzPort = await decisions.listen(this.opts.authzHost ?? '127.0.0.1', this.opts.authzPort ?? DEFAULT_AUTHZ_PORT);
    }
    if (this.opts.routingFile) this.routing.watchFile(this.opts.routingFile);
    const src = this.source;
    if (src instanceof ConsulSource && this.opts.consul) this.routing.watchConsul(this.opts.consul, this.opts.consulGatewayService);
    if (src instanceof ConsulSource) {
      src.on('update', (u) => {
        for (const s of u.skipped) {
          this.metrics.consulSkipped.inc({ service: s.service });
          this.log.warn('consul instance skipped', { service: s.service, instance: s.instance, reason: s.reason, index: u.index });
        }
        this.coalescer.push({ specs: u.specs, observedAt: u.observedAt });
      });
      src.on('error', (err: ConsulWatchError) => {
        this.metrics.consulWatchErrors.inc({ watch: err.watch });
        this.sourceFailed(
          'consul',
          err,
          `consul watch failed, retrying; ${this.lastSpecs ? 'serving the last good mesh' : 'no mesh yet, not ready'}`,
          { watch: err.watch, kind: err.kind },
        );
      });
      src.on('healthy', () => this.sourceOk('consul'));
      this.metrics.consulLag = () => src.catalogLagSeconds();
      src.start();
    } else {
      src.on('update', (specs, observedAt) => this.coalescer.push({ specs, observedAt }));
      src.on('error', (err) => this.sourceFailed('registry', err));
    }
    if (this.opts.policyFile && this.security) this.watchPolicy(this.opts.policyFile.path, this.opts.policyFile.text);
    const plain = !this.serving || this.opts.xdsInsecure === true;
    const xdsHost = this.opts.xdsHost ?? (plain ? '127.0.0.1' : '0.0.0.0');
    this.xdsPort = await this.ads.listen(xdsHost, this.opts.xdsPort ?? DEFAULT_XDS_PORT, this.xdsCredentials());
    // gRPC loads the TLS certificate a moment after binding: be ready only once a handshake can succeed.
    if (!plain) await this.serving?.provider.delivered();
    if (plain) {
      this.log.warn('xDS is served WITHOUT TLS or authentication: development only', {
        host: xdsHost,
        port: this.xdsPort,
        why: this.serving
          ? '--xds-insecure'
          : 'no policy: the mesh is not secured (start with --policy for mTLS, attested workload certificates and authorization)',
      });
    }
    this.adminPort = await this.admin.listen(this.opts.adminPort ?? DEFAULT_ADMIN_PORT);
    if (this.admin.debugAccess === 'disabled') {
      this.log.warn(
        'admin port listens beyond loopback without an admin token: /debug, join tokens and the dev token endpoint answer 403 there',
        { host: this.opts.adminHost },
      );
    }
    // The registry is read once both ports listen: however big or broken the file, the process answers
    // probes (/readyz says why it is not ready) and ADS from the first moment, and never crash-loops on it.
    if (src instanceof RegistryFileSource) await this.loadRegistry(src);
    return this;
  }

  private async loadRegistry(src: RegistryFileSource): Promise<void> {
    // What /readyz and /debug/sources say while a big file is parsed.
    this.sourceErrors['registry'] = `loading ${src.file}`;
    try {
      const specs = await src.load();
      await this.applyFirst(specs, 'registry');
    } catch (err) {
      // Not fatal: stay up, unready, and pick up the fix when the file is edited.
      this.sourceFailed('registry', err as Error);
    }
    // Watched even when the first version was refused: fixing the file is how the mesh starts.
    src.start();
  }

  /**
   * Graceful exit: /readyz says 503 at once, then after `delayMs` (time for load balancers to notice and stop
   * sending new proxies here) the xDS streams are closed with UNAVAILABLE at random moments over `windowMs`, so
   * proxies reconnect to other replicas spread out instead of all at once; then everything stops.
   */
  async drain(opts: { delayMs: number; windowMs: number }): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.metrics.draining.set(1);
    this.ads.refuseNewStreams();
    this.log.info('draining: not ready; waiting for load balancers, then closing xDS streams', {
      delay_ms: opts.delayMs,
      window_ms: opts.windowMs,
      streams: this.ads.streamCount,
    });
    await new Promise((r) => setTimeout(r, opts.delayMs));
    await this.ads.drain(opts.windowMs);
    await this.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.policyWatch?.stop();
    this.routing.stop();
    this.source.stop();
    this.coalescer.stop();
    this.convergence.stop();
    this.console.close();
    this.serving?.stop();
    await this.decisions?.close();
    await Promise.all([this.ads.close(), this.admin.close()]);
  }
}
