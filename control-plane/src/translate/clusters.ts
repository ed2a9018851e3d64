import { isIP } from 'node:net';
import { protoDuration } from '../model/duration.ts';
import { DEFAULT_CIRCUIT_BREAKERS } from '../model/defaults.ts';
import type {
  CircuitBreakers,
  McpTransport,
  MeshService,
  OutlierDetection,
  HealthCheck,
  Routing,
  UpstreamProtocol,
} from '../model/types.ts';
import { localAppCluster, serviceCluster, serviceEndpoints, statName } from './naming.ts';
import { ADS_CONFIG_SOURCE, any, struct, u32, type ProtoObject, type XdsResource } from './resource.ts';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export function circuitBreakers(c: CircuitBreakers): ProtoObject {
  return {
    thresholds: [
      {
        priority: 'DEFAULT',
        max_connections: u32(c.maxConnections),
        max_pending_requests: u32(c.maxPendingRequests),
        max_requests: u32(c.maxRequests),
        max_retries: u32(c.maxRetries),
      },
    ],
  };
}

/** For clusters outside the mesh model (control plane, authorizer): the mesh's defaults. */
export const CIRCUIT_BREAKERS: ProtoObject = circuitBreakers(DEFAULT_CIRCUIT_BREAKERS);

/**
 * `auto` means "let ALPN decide", which only a TLS transport socket can do: Envoy refuses auto_config on a
 * cluster whose transport socket does not support ALPN (upstream_impl.cc, see xds/envoy-rules.ts). On a
 * plaintext cluster `auto` is HTTP/1.1, the one protocol every MCP server speaks (h2c needs prior knowledge).
 */
export function upstreamHttpConfig(protocol: UpstreamProtocol, tls: boolean): 'http1' | 'http2' | 'alpn' {
  if (protocol === 'auto') return tls ? 'alpn' : 'http1';
  return protocol;
}

const HTTP1_OPTIONS = { http_protocol_options: {} };
const HTTP2_OPTIONS = {
  http2_protocol_options: { initial_stream_window_size: u32(1 << 20), initial_connection_window_size: u32(1 << 24) },
};

function protocolOptions(routing: Routing, tls: boolean): ProtoObject {
  const common = { common_http_protocol_options: { idle_timeout: protoDuration(routing.streamIdleTimeoutMs) } };
  const mode = upstreamHttpConfig(routing.upstreamProtocol, tls);
  const config =
    mode === 'http1'
      ? { explicit_http_config: HTTP1_OPTIONS }
      : mode === 'http2'
        ? { explicit_http_config: HTTP2_OPTIONS }
        : { auto_config: { ...HTTP1_OPTIONS, ...HTTP2_OPTIONS } };
  return { [HTTP_PROTOCOL_OPTIONS]: any(HTTP_PROTOCOL_OPTIONS, { ...common, ...config }) };
}

// Envoy takes the first policy it supports; proxyless gRPC, which has no least_request, falls through to round_robin.
// A 2024-11-05 SSE service hashes each request to a replica (the route hashes the client's address, see
// sessionAffinityHash): its POSTs must reach the replica that holds the client's /sse stream.
function lbPolicy(routing: Routing, transport: McpTransport): ProtoObject {
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
  const ringHash = {
    typed_extension_config: {
      name: 'envoy.load_balancing_policies.ring_hash',
      typed_config: any('envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash', {}),
    },
  };
  if (transport === 'sse') return { policies: [ringHash, roundRobin] };
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

/**
 * Active HTTP health check. Envoy decides only at the end of the response, so it asks with HEAD, whose
 * answer ends with its headers: a GET on an MCP endpoint may open an SSE stream that never ends (the
 * 2024-11-05 `/sse` endpoint always does) and would time out forever. Envoy's checker speaks HTTP/1 unless
 * told otherwise, whatever the cluster speaks: it uses the cluster's protocol, and over TLS pins the ALPN
 * offer to it so the sidecar cannot pick the other.
 */
function healthChecks(h: HealthCheck, http: 'http1' | 'http2' | 'alpn'): ProtoObject[] {
  if (h.path === '') return [];
  const h2 = http !== 'http1';
  return [
    {
      timeout: protoDuration(h.timeoutMs),
      interval: protoDuration(h.intervalMs),
      unhealthy_threshold: u32(h.unhealthyThreshold),
      healthy_threshold: u32(h.healthyThreshold),
      http_health_check: {
        path: h.path,
        method: 'HEAD',
        // 200..499: a live MCP server answers HEAD with 200/400/405/406; only 5xx or no answer is sick.
        expected_statuses: [{ start: 200, end: 500 }],
        codec_client_type: h2 ? 'HTTP2' : 'HTTP1',
      },
      ...(http === 'alpn' ? { tls_options: { alpn_protocols: ['h2'] } } : {}),
    },
  ];
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
      load_balancing_policy: lbPolicy(svc.routing, svc.transport),
      circuit_breakers: circuitBreakers(svc.circuitBreakers),
      outlier_detection: outlierDetection(svc.outlierDetection),
      health_checks: healthChecks(svc.healthCheck, upstreamHttpConfig(svc.routing.upstreamProtocol, transportSocket !== undefined)),
      typed_extension_protocol_options: protocolOptions(svc.routing, transportSocket !== undefined),
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
export function singleHostCluster(
  name: string,
  host: string,
  port: number,
  opts: { connectTimeoutMs: number; http2?: ProtoObject },
): ProtoObject {
  return {
    name,
    alt_stat_name: statName(name),
    type: isIP(host) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: protoDuration(opts.connectTimeoutMs),
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
    },
    ...(opts.http2
      ? {
          typed_extension_protocol_options: {
            [HTTP_PROTOCOL_OPTIONS]: any(HTTP_PROTOCOL_OPTIONS, { explicit_http_config: { http2_protocol_options: opts.http2 } }),
          },
        }
      : {}),
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
      typed_extension_protocol_options: protocolOptions(routing, false),
      metadata: { filter_metadata: { mcpmesh: struct({ service }) } },
    },
  };
}
