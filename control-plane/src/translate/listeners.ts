import { protoDuration } from '../model/duration.ts';
import type { MeshService } from '../model/types.ts';
import { apiListener, apiRoutes, STAT_PREFIX } from './naming.ts';
import { SERVER_SESSION_HEADER } from './sessions.ts';
import { ADS_CONFIG_SOURCE, any, struct, type ProtoObject, type XdsResource } from './resource.ts';

const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/** Idle timeout of a stream before its route is known (Envoy's own default, 5 min). */
export const LISTENER_STREAM_IDLE_TIMEOUT_MS = 300_000;

export interface HcmOptions {
  readonly statPrefix: string;
  readonly routeConfigName: string;
  /** Gateways face clients directly: trust no X-Forwarded-For from outside. */
  readonly edge: boolean;
  /** HTTP filters that run before the router (authentication, authorization). */
  readonly filters?: readonly ProtoObject[];
  readonly localReplyConfig?: ProtoObject;
  /** TLS on the listener's filter chain (mTLS for sidecars). */
  readonly transportSocket?: ProtoObject;
}

function httpConnectionManager(o: HcmOptions): ProtoObject {
  return any(HCM, {
    stat_prefix: o.statPrefix,
    codec_type: 'AUTO',
    rds: { config_source: ADS_CONFIG_SOURCE, route_config_name: o.routeConfigName },
    http_filters: [
      ...(o.filters ?? []),
      { name: 'envoy.filters.http.router', typed_config: any('envoy.extensions.filters.http.router.v3.Router', {}) },
    ],
    ...(o.localReplyConfig ? { local_reply_config: o.localReplyConfig } : {}),
    // Only until a route is chosen: each route's idle_timeout then replaces it (a route's 0 disables it). A
    // constant, so a service's timeout edit changes RDS, not the listener (which Envoy would drain).
    stream_idle_timeout: protoDuration(LISTENER_STREAM_IDLE_TIMEOUT_MS),
    request_timeout: protoDuration(0),
    strip_any_host_port: true,
    use_remote_address: { value: o.edge },
    normalize_path: { value: true },
    merge_slashes: true,
    path_with_escaped_slashes_action: 'UNESCAPE_AND_REDIRECT',
    access_log: [
      {
        name: 'envoy.access_loggers.stdout',
        typed_config: any('envoy.extensions.access_loggers.stream.v3.StdoutAccessLog', {
          log_format: { json_format: accessLogFormat(o.statPrefix) },
        }),
      },
    ],
  });
}

/**
 * One JSON object per request, with the MCP fields, for ELK/Loki (field reference: docs/logging.md).
 * 2026-07-28 callers name the method and target in Mcp-Method/Mcp-Name; for 2025-11-25 services the
 * MCP authorizer reads them from the body and returns them (with its decision) under `authz`.
 */
export function accessLogFormat(listener: string): ProtoObject {
  return struct({
    time: '%START_TIME%',
    log: 'access',
    listener,
    method: '%REQ(:METHOD)%',
    path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
    authority: '%REQ(:AUTHORITY)%',
    protocol: '%PROTOCOL%',
    response_code: '%RESPONSE_CODE%',
    response_flags: '%RESPONSE_FLAGS%',
    response_code_details: '%RESPONSE_CODE_DETAILS%',
    duration_ms: '%DURATION%',
    upstream_service_time_ms: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%',
    bytes_received: '%BYTES_RECEIVED%',
    bytes_sent: '%BYTES_SENT%',
    upstream_cluster: '%UPSTREAM_CLUSTER%',
    upstream_host: '%UPSTREAM_HOST%',
    upstream_locality: '%UPSTREAM_METADATA(mcpmesh:locality)%',
    downstream_peer: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
    request_id: '%REQ(X-REQUEST-ID)%',
    mcp_protocol_version: '%REQ(MCP-PROTOCOL-VERSION)%',
    mcp_method: '%REQ(MCP-METHOD)%',
    mcp_name: '%REQ(MCP-NAME)%',
    mcp_session_id: '%REQ(MCP-SESSION-ID)%',
    mcp_session_assigned: `%RESP(${SERVER_SESSION_HEADER.toUpperCase()})%`,
    authz: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%',
    // Header RBAC (2026-07-28 services): effective policy and result, enforced and shadow, of both filters.
    rbac: '%DYNAMIC_METADATA(envoy.filters.http.rbac)%',
  });
}

export function socketListener(name: string, port: number, hcm: HcmOptions): XdsResource {
  return {
    kind: 'listener',
    name,
    wildcard: true,
    body: {
      name,
      address: { socket_address: { address: '0.0.0.0', port_value: port } },
      filter_chains: [
        {
          name: `${name}.http`,
          filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: httpConnectionManager(hcm) }],
          ...(hcm.transportSocket ? { transport_socket: hcm.transportSocket } : {}),
        },
      ],
      // MCP bodies are small JSON-RPC; bound what one slow connection may pin in memory.
      per_connection_buffer_limit_bytes: { value: 1 << 20 },
    },
  };
}

/** A listener without a socket for proxyless gRPC clients dialing `xds:///<service>`. */
export function apiListenerResource(svc: MeshService): XdsResource {
  const name = apiListener(svc.name);
  const hcm = httpConnectionManager({
    statPrefix: STAT_PREFIX.apiListener(svc.name),
    routeConfigName: apiRoutes(svc.name, svc.incarnation),
    edge: false,
  });
  // gRPC ignores access logs but rejects nothing it does not use; keep its listener minimal all the same.
  const { access_log: _unused, ...minimal } = hcm as { access_log?: unknown } & ProtoObject;
  return {
    kind: 'listener',
    name,
    wildcard: false,
    body: {
      name,
      api_listener: { api_listener: minimal },
    },
  };
}
