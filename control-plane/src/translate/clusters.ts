import { isIP } from 'node:net';
import { protoDuration } from '../model/duration.ts';
import type { MeshService, OutlierDetection, HealthCheck, Routing } from '../model/types.ts';
import { localAppCluster, serviceCluster, serviceEndpoints, statName } from './naming.ts';
import { ADS_CONFIG_SOURCE, any, struct, u32, type ProtoObject, type XdsResource } from './resource.ts';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

// Long-lived MCP streams (SSE, slow tool calls) hold requests open: Envoy's default of 1024
// concurrent requests per cluster is too low for a gateway.
const CIRCUIT_BREAKERS: ProtoObject = {
  thresholds: [{ priority: 'DEFAULT', max_connections: u32(100_000), max_pending_requests: u32(100_000), max_requests: u32(100_000), max_retries: u32(1_000) }],
};

function protocolOptions(routing: Routing): ProtoObject {
  const common = { common_http_protocol_options: { idle_timeout: protoDuration(routing.streamIdleTimeoutMs) } };
  const http1 = { http_protocol_options: {} };
  const http2 = { http2_protocol_options: { initial_stream_window_size: u32(1 << 20), initial_connection_window_size: u32(1 << 24) } };
  const config =
    routing.upstreamProtocol === 'http1' ? { explicit_http_config: http1 }
    : routing.upstreamProtocol === 'http2' ? { explicit_http_config: http2 }
    : { auto_config: { ...http1, ...http2 } };
  return { [HTTP_PROTOCOL_OPTIONS]: any(HTTP_PROTOCOL_OPTIONS, { ...common, ...config }) };
}

// Envoy takes the first policy it supports; proxyless gRPC, which has no least_request, falls through to round_robin.
function lbPolicy(routing: Routing): ProtoObject {
  const roundRobin = {
    typed_extension_config: {
      name: 'envoy.load_balancing_policies.round_robin',
      typed_config: any('envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin', {}),
    },
  };
  const leastRequest = {
    typed_extension_config: {
      name: 'envoy.load_balancing_policies.least_request',
      typed_config: any('envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest', { choice_count: u32(2) }),
    },
  };
  return { policies: routing.lbPolicy === 'least_request' ? [leastRequest, roundRobin] : [roundRobin] };
}

function outlierDetection(o: OutlierDetection): ProtoObject {
  return {
    consecutive_5xx: u32(Math.max(o.consecutive5xx, 1)),
    enforcing_consecutive_5xx: u32(o.consecutive5xx > 0 ? 100 : 0),
    consecutive_gateway_failure: u32(Math.max(o.consecutiveGatewayFailure, 1)),
    enforcing_consecutive_gateway_failure: u32(o.consecutiveGatewayFailure > 0 ? 100 : 0),
    interval: protoDuration(o.intervalMs),
    base_ejection_time: protoDuration(o.baseEjectionTimeMs),
    max_ejection_percent: u32(o.maxEjectionPercent),
    // Success-rate ejection needs large samples and is hard to reason about: off unless asked for.
    enforcing_success_rate: u32(0),
    failure_percentage_threshold: u32(o.failurePercentageThreshold),
    enforcing_failure_percentage: u32(o.failurePercentageThreshold > 0 ? 100 : 0),
    failure_percentage_minimum_hosts: u32(o.failurePercentageMinimumHosts),
    failure_percentage_request_volume: u32(o.failurePercentageRequestVolume),
  };
}

function healthChecks(h: HealthCheck): ProtoObject[] {
  if (h.path === '') return [];
  return [{
    timeout: protoDuration(h.timeoutMs),
    interval: protoDuration(h.intervalMs),
    unhealthy_threshold: u32(h.unhealthyThreshold),
    healthy_threshold: u32(h.healthyThreshold),
    http_health_check: {
      path: h.path,
      // 200..499: a live MCP server answers a bare GET with 200/400/405/406; only 5xx or no answer is sick.
      expected_statuses: [{ start: 200, end: 500 }],
    },
  }];
}

/** Gateway -> an MCP service's endpoints, delivered by EDS over ADS. */
export function serviceClusterResource(svc: MeshService, transportSocket?: ProtoObject): XdsResource {
  const name = serviceCluster(svc.name);
  return {
    kind: 'cluster',
    name,
    wildcard: true,
    body: {
      name,
      alt_stat_name: statName(name),
      type: 'EDS',
      eds_cluster_config: { eds_config: ADS_CONFIG_SOURCE, service_name: serviceEndpoints(svc.name, svc.incarnation) },
      connect_timeout: protoDuration(svc.routing.connectTimeoutMs),
      load_balancing_policy: lbPolicy(svc.routing),
      circuit_breakers: CIRCUIT_BREAKERS,
      outlier_detection: outlierDetection(svc.outlierDetection),
      health_checks: healthChecks(svc.healthCheck),
      typed_extension_protocol_options: protocolOptions(svc.routing),
      metadata: { filter_metadata: { mcpmesh: struct({ service: svc.name, protocol: svc.protocol, transport: svc.transport }) } },
      ...(transportSocket ? { transport_socket: transportSocket } : {}),
    },
  };
}

/**
 * A cluster of one host:port outside the mesh model (the control plane, Envoy's admin, the authorizer):
 * STATIC for an IP, STRICT_DNS for a name, which is re-resolved as a Kubernetes or Compose service moves.
 * `http2` (HTTP/2 protocol options) is for gRPC upstreams.
 */
export function singleHostCluster(name: string, host: string, port: number, opts: { connectTimeoutMs: number; http2?: ProtoObject }): ProtoObject {
  return {
    name,
    alt_stat_name: statName(name),
    type: isIP(host) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: protoDuration(opts.connectTimeoutMs),
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }] },
    ...(opts.http2 ? {
      typed_extension_protocol_options: {
        [HTTP_PROTOCOL_OPTIONS]: any(HTTP_PROTOCOL_OPTIONS, { explicit_http_config: { http2_protocol_options: opts.http2 } }),
      },
    } : {}),
  };
}

/** Sidecar -> the MCP server beside it on loopback. */
export function localAppClusterResource(service: string, appPort: number, routing: Routing): XdsResource {
  const name = localAppCluster(service);
  return {
    kind: 'cluster',
    name,
    wildcard: true,
    body: {
      ...singleHostCluster(name, '127.0.0.1', appPort, { connectTimeoutMs: routing.connectTimeoutMs }),
      circuit_breakers: CIRCUIT_BREAKERS,
      typed_extension_protocol_options: protocolOptions(routing),
      metadata: { filter_metadata: { mcpmesh: struct({ service }) } },
    },
  };
}
