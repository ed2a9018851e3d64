// The control plane's Prometheus metrics. Names are part of the public contract (dashboards, alerts).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly connectedProxies = new Gauge({
    name: 'mcpmesh_xds_connected_proxies',
    help: 'xDS streams currently open, by proxy role and xDS flavour',
    labelNames: ['role', 'mode'] as const,
    registers: [this.registry],
  });
  readonly pushes = new Counter({
    name: 'mcpmesh_xds_pushes_total',
    help: 'DiscoveryResponses sent, by resource type and xDS flavour',
    labelNames: ['type', 'mode'] as const,
    registers: [this.registry],
  });
  readonly pushDuration = new Histogram({
    name: 'mcpmesh_xds_push_ack_seconds',
    help: 'Time from sending a response to the proxy ACKing or NACKing it',
    labelNames: ['type'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly nacks = new Counter({
    name: 'mcpmesh_xds_nacks_total',
    help: 'Responses a proxy rejected (NACK), by resource type and proxy role',
    labelNames: ['type', 'role'] as const,
    registers: [this.registry],
  });
  readonly streamErrors = new Counter({
    name: 'mcpmesh_xds_stream_errors_total',
    help: 'xDS streams closed by the control plane because of a bad request, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: 'mcpmesh_xds_refused_total',
    help: 'xDS streams, requests and responses refused by a limit, by reason: streams_per_connection, streams_per_peer, resource_names, node_size, response_size (a response larger than the client accepts, not sent), draining',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly stalledStreams = new Counter({
    name: 'mcpmesh_xds_stalled_streams_closed_total',
    help: 'xDS streams closed because the client read nothing for the stall timeout while responses waited',
    registers: [this.registry],
  });
  readonly coalesced = new Counter({
    name: 'mcpmesh_xds_coalesced_pushes_total',
    help: 'Pushes folded into a later one because the stream was not draining (only the newest config per type is sent), by type and xDS flavour',
    labelNames: ['type', 'mode'] as const,
    registers: [this.registry],
  });
  readonly draining = new Gauge({
    name: 'mcpmesh_draining',
    help: '1 while the control plane drains (not ready, closing xDS streams before exit)',
    registers: [this.registry],
  });
  readonly convergence = new Histogram({
    name: 'mcpmesh_convergence_seconds',
    help: 'Time from a source change (Consul index change, registry edit) to the last affected proxy ACKing the new config',
    labelNames: ['source'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly convergenceTimeouts = new Counter({
    name: 'mcpmesh_convergence_timeouts_total',
    help: 'Changes after which some affected proxy had not answered within 60 s',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly consulSkipped = new Counter({
    name: 'mcpmesh_consul_instances_skipped_total',
    help: 'Consul service instances left out of the mesh because their data is malformed (reason in the log), by service',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });
  readonly consulConfigUnsupported = new Counter({
    name: 'mcpmesh_consul_config_unsupported_total',
    help: 'Fields of Consul config entries MCP Mesh does not map (reported once per entry version, field in the log), by entry kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly snapshotBuild = new Histogram({
    name: 'mcpmesh_snapshot_build_seconds',
    help: 'Time to translate, validate and encode the snapshots for one mesh update',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly snapshotsRejected = new Counter({
    name: 'mcpmesh_snapshot_rejected_total',
    help: 'Mesh updates refused because a generated resource failed validation or consistency checks',
    registers: [this.registry],
  });
  readonly snapshotKeys = new Gauge({
    name: 'mcpmesh_snapshot_keys',
    help: 'Distinct snapshots held (proxies with the same role and placement share one)',
    registers: [this.registry],
  });
  readonly sourceErrors = new Counter({
    name: 'mcpmesh_source_errors_total',
    help: 'Registry or discovery updates rejected as invalid, by source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly sourceUp = new Gauge({
    name: 'mcpmesh_source_up',
    help: 'By source: 1 once its last read succeeded, 0 while it fails (the last good mesh is served; the error is in /debug/sources)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly meshServices = new Gauge({
    name: 'mcpmesh_mesh_services',
    help: 'MCP services in the last accepted mesh',
    registers: [this.registry],
  });
  readonly meshEndpoints = new Gauge({
    name: 'mcpmesh_mesh_endpoints',
    help: 'Endpoints in the last accepted mesh, by health',
    labelNames: ['health'] as const,
    registers: [this.registry],
  });

  readonly proxyNacked = new Gauge({
    name: 'mcpmesh_xds_proxy_nacked',
    help: "Set to 1 while a proxy's latest response of a resource type is rejected (the proxy runs an older config); removed when it ACKs or disconnects",
    labelNames: ['proxy', 'type'] as const,
    registers: [this.registry],
  });
  readonly consulWatchErrors = new Counter({
    name: 'mcpmesh_consul_watch_errors_total',
    help: "Failed Consul blocking queries (retried with backoff), by watch: catalog (the MCP service list), service (one service's health) or config (routing config entries)",
    labelNames: ['watch'] as const,
    registers: [this.registry],
  });
  /** Set by the Consul source: seconds since its catalog watch last got an answer. */
  consulLag: (() => number) | undefined;
  readonly consulWatchLag: Gauge;
  readonly certificatesIssued = new Counter({
    name: 'mcpmesh_certificates_issued_total',
    help: 'Workload certificates issued (first issue and renewals), by proxy role',
    labelNames: ['role'] as const,
    registers: [this.registry],
  });
  readonly certificateErrors = new Counter({
    name: 'mcpmesh_certificate_errors_total',
    help: 'Certificate issuances or renewals that failed (the current certificate is kept; retried with backoff)',
    registers: [this.registry],
  });
  /** Set when identities are on: the certificates in use and the CA's expiry. */
  certificates: (() => { identity: string; notAfter: Date }[]) | undefined;
  caNotAfter: Date | undefined;
  readonly certificateExpiry: Gauge;
  readonly caExpiry: Gauge;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const self = this;
    // Computed at scrape time, so they are exact whenever Prometheus looks and cost nothing in between.
    this.consulWatchLag = new Gauge({
      name: 'mcpmesh_consul_watch_lag_seconds',
      help: 'Seconds since the Consul catalog watch last got an answer; blocking queries answer at least once per wait (30 s), so more means Consul is unreachable or slow',
      registers: [this.registry],
      collect() {
        if (self.consulLag) this.set(self.consulLag());
      },
    });
    this.certificateExpiry = new Gauge({
      name: 'mcpmesh_certificate_expiry_timestamp_seconds',
      help: 'Expiry (Unix time) of each workload certificate in use, by SPIFFE identity',
      labelNames: ['identity'] as const,
      registers: [this.registry],
      collect() {
        if (!self.certificates) return;
        this.reset();
        for (const c of self.certificates()) this.set({ identity: c.identity }, c.notAfter.getTime() / 1000);
      },
    });
    this.caExpiry = new Gauge({
      name: 'mcpmesh_ca_expiry_timestamp_seconds',
      help: 'Expiry (Unix time) of the CA certificate that signs workload certificates',
      registers: [this.registry],
      collect() {
        if (self.caNotAfter) this.set(self.caNotAfter.getTime() / 1000);
      },
    });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'mcpmesh_' });
  }
}
