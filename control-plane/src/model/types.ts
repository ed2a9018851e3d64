import type { Policy } from '../policy/types.ts';

// The mesh model (IR): what every source (YAML registry, Consul) produces and every translator consumes.
// Plain, immutable data with all defaults filled in, so translators never guess.

/** MCP protocol revisions the mesh knows how to carry. */
export const MCP_PROTOCOLS = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25', '2026-07-28'] as const;
export type McpProtocol = (typeof MCP_PROTOCOLS)[number];

/**
 * How the server speaks MCP over HTTP: Streamable HTTP (one endpoint, 2025-03-26 and later) or the
 * deprecated HTTP+SSE transport (2024-11-05: GET /sse + POST endpoint announced in the stream). An SSE
 * server announces an absolute POST path, so route it by host; path-prefix routing cannot rewrite it.
 */
export const MCP_TRANSPORTS = ['streamable-http', 'sse'] as const;
export type McpTransport = (typeof MCP_TRANSPORTS)[number];

export interface Locality {
  readonly region: string;
  readonly zone: string;
}

export interface MeshEndpoint {
  readonly address: string;
  readonly port: number;
  readonly locality: Locality;
  /** Relative load-balancing weight, 1..128. */
  readonly weight: number;
  /** False when a health source (registry flag, Consul check) says the endpoint must get no traffic. */
  readonly healthy: boolean;
  /** Who said `healthy`, for the operator views; absent on endpoints built by hand (tests, benchmarks). */
  readonly healthFrom?: HealthOrigin;
}

/**
 * Where an endpoint's health came from. The registry's is what the file says (or its default, healthy):
 * nothing checked it. Consul's is the aggregate of the instance's checks (none registered means passing).
 * Translators read `healthy` only.
 */
export type HealthOrigin =
  | { readonly source: 'registry'; readonly declared: boolean }
  | { readonly source: 'consul'; readonly status: 'passing' | 'warning' | 'critical'; readonly checks: number };

export interface OutlierDetection {
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailure: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  /** Failure-percentage ejection (the kind proxyless gRPC clients implement). 0 disables it. */
  readonly failurePercentageThreshold: number;
  readonly failurePercentageMinimumHosts: number;
  readonly failurePercentageRequestVolume: number;
}

export interface HealthCheck {
  /** HTTP path probed on each endpoint; empty disables active health checking. */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

/** Envoy circuit-breaker thresholds (priority DEFAULT) on the gateway's cluster for the service. */
export interface CircuitBreakers {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
}

export type UpstreamProtocol = 'http1' | 'http2' | 'auto';
export type LbPolicy = 'least_request' | 'round_robin';

export interface Routing {
  /** Path of the MCP endpoint on the server, e.g. `/mcp`. Gateway requests to `/mcp/<service>` are rewritten to it. */
  readonly mcpPath: string;
  /** Extra host names routed to this service at the gateway (the service name itself always is). */
  readonly hosts: readonly string[];
  /** 0 = no limit: a tool call or SSE stream may run as long as it needs. */
  readonly maxStreamDurationMs: number;
  readonly streamIdleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly upstreamProtocol: UpstreamProtocol;
  readonly lbPolicy: LbPolicy;
  readonly retries: number;
}

export interface MeshService {
  readonly name: string;
  readonly protocol: McpProtocol;
  readonly transport: McpTransport;
  /** The endpoints are MCP Mesh sidecars (Envoy): in a secured mesh the gateway talks mTLS to them. */
  readonly sidecar: boolean;
  /**
   * Differs each time the service reappears after having been removed. Some xDS clients (grpc-js-xds) keep a
   * removed resource cached and ignore an identical re-add, so a re-added service must look different.
   * Consul: the CreateIndex of the service's oldest instance (the same on every replica and after a restart);
   * registry file: 0, then 1, 2... per re-add seen by this process (a file has no history to derive it from).
   */
  readonly incarnation: number;
  readonly endpoints: readonly MeshEndpoint[];
  readonly routing: Routing;
  readonly outlierDetection: OutlierDetection;
  readonly healthCheck: HealthCheck;
  readonly circuitBreakers: CircuitBreakers;
}

/** Security settings of the mesh; absent = no authentication at the gateway (the development default). */
export interface MeshSecurity {
  readonly policy: Policy;
  /** Public base URL of the gateway (scheme://host[:port]), used in RFC 9728 metadata and 401 challenges. */
  readonly publicUrl: string;
  /** The control plane's MCP authorizer (ext_authz gRPC), reachable from gateways. */
  readonly authz: { readonly host: string; readonly port: number };
}

export interface Mesh {
  /** Sorted by name. */
  readonly services: readonly MeshService[];
  readonly security?: MeshSecurity;
}

export type ProxyRole = 'gateway' | 'sidecar';

/** What the control plane knows about a proxy from its xDS node (id, cluster, locality, metadata). */
export interface ProxyInfo {
  readonly id: string;
  readonly role: ProxyRole;
  readonly locality?: Locality;
  /** Sidecar: the MCP service it fronts. */
  readonly service?: string;
  /** Gateway: port of the HTTP listener. Sidecar: port of the inbound (mesh-facing) listener. */
  readonly listenerPort: number;
  /** Sidecar: port of the local MCP server on 127.0.0.1. */
  readonly appPort?: number;
  /**
   * A proxyless gRPC client (grpc-js-xds and friends) rather than Envoy: it gets API listeners and
   * per-service route tables instead of a socket listener.
   */
  readonly proxyless?: boolean;
  /** Gateway: its name, part of its workload identity (spiffe://<td>/gateway/<name>). */
  readonly gatewayName?: string;
  /**
   * Gateway: its agent runs the MCP authorizer and the tools/list processor beside it (`mcpmesh gateway
   * --policy`), and its bootstrap holds the static clusters its filters name; the control plane sends it
   * neither of those clusters (Envoy would not let CDS replace a static cluster anyway).
   */
  readonly localAuthz?: boolean;
}

/**
 * What the control plane tells a proxy about mesh identity: the trust bundle (over ADS). The proxy's own
 * certificate and key never come from the control plane: its agent makes the key, has the CA sign a CSR and
 * serves the certificate to its Envoy over SDS on a local socket (see sidecar/src/identity).
 */
export interface TrustBundle {
  readonly bundlePem: string;
}
