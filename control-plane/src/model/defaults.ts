// Defaults chosen for MCP traffic: long-lived tool calls and SSE streams must not be cut by the
// proxy (Envoy's own 15 s route timeout and 5 min stream idle timeout would do exactly that).
import type { CircuitBreakers, HealthCheck, OutlierDetection, Routing } from './types.ts';

export const DEFAULT_ROUTING: Routing = {
  mcpPath: '/mcp',
  hosts: [],
  maxStreamDurationMs: 0,
  streamIdleTimeoutMs: 3_600_000,
  connectTimeoutMs: 5_000,
  upstreamProtocol: 'auto',
  lbPolicy: 'least_request',
  retries: 2,
};

export const DEFAULT_OUTLIER_DETECTION: OutlierDetection = {
  consecutive5xx: 5,
  consecutiveGatewayFailure: 3,
  intervalMs: 5_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 50,
  failurePercentageThreshold: 50,
  failurePercentageMinimumHosts: 3,
  failurePercentageRequestVolume: 20,
};

// GET on an MCP endpoint without a session answers 400/405 (or opens SSE when asked to): any answer
// below 500 proves the server is up, so that is what the default HTTP check accepts.
export const DEFAULT_HEALTH_CHECK: HealthCheck = {
  path: '/mcp',
  intervalMs: 10_000,
  timeoutMs: 2_000,
  unhealthyThreshold: 3,
  healthyThreshold: 2,
};

// Long-lived MCP streams (SSE, slow tool calls) hold requests open, and so do the gRPC streams of the
// filters that watch them: Envoy's default of 1024 concurrent requests per cluster is too low for a gateway.
export const DEFAULT_CIRCUIT_BREAKERS: CircuitBreakers = {
  maxConnections: 100_000,
  maxPendingRequests: 100_000,
  maxRequests: 100_000,
  maxRetries: 1_000,
};

export const DEFAULT_GATEWAY_PORT = 8080;
export const DEFAULT_SIDECAR_INBOUND_PORT = 15006;
export const DEFAULT_SIDECAR_APP_PORT = 8080;
