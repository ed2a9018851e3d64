// The Envoy side of per-identity tools/list: the ext_proc HTTP filter a gateway or sidecar listener must
// carry so that Envoy talks to the processor in control-plane/src/extproc/server.ts, and the per-route
// override that names the service. Plain objects in protobufjs form, like control-plane/src/translate/*.
import { protoDuration } from '../model/duration.ts';
import { any, type ProtoObject } from '../translate/resource.ts';
import { JWT_AUTHN_NAMESPACE, METADATA_NAMESPACE, SERVICE_HEADER } from './context.ts';

export const EXT_PROC_FILTER_NAME = 'envoy.filters.http.ext_proc';
export const EXT_PROC_TYPE = 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
export const EXT_PROC_PER_ROUTE_TYPE = 'envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute';
export const HTTP_FILTER_TYPE = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter';

export type HeaderSendMode = 'DEFAULT' | 'SEND' | 'SKIP';
export type BodySendMode = 'NONE' | 'STREAMED' | 'BUFFERED' | 'BUFFERED_PARTIAL';

/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode, all six fields spelled out. */
export interface ProcessingMode {
  readonly request_header_mode: HeaderSendMode;
  readonly response_header_mode: HeaderSendMode;
  readonly request_body_mode: BodySendMode;
  readonly response_body_mode: BodySendMode;
  readonly request_trailer_mode: HeaderSendMode;
  readonly response_trailer_mode: HeaderSendMode;
}

/**
 * The filter's default mode: every request's headers and its whole (small, JSON-RPC) body, because in
 * 2025-11-25 only the body says whether a POST is tools/list; the response headers, because only they say
 * JSON or SSE. No response body by default: the processor asks for it per stream with mode_override, and
 * only for a tools/list response (BUFFERED for application/json, STREAMED for text/event-stream).
 */
export const FILTER_PROCESSING_MODE: ProcessingMode = {
  request_header_mode: 'SEND',
  response_header_mode: 'SEND',
  request_body_mode: 'BUFFERED',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
};

export interface ExtProcFilterOptions {
  /**
   * Let traffic through unfiltered when the processor is unreachable, overloaded or late (default true).
   * The filter only trims what a caller *sees*: what it may *call* is decided by ext_authz and RBAC, which
   * fail closed. Failing closed here would make every request, and every chunk of a filtered SSE stream
   * (one message_timeout each), depend on the processor; a processor outage would take the mesh down.
   */
  readonly failureModeAllow?: boolean;
  /** Per-message timeout (Envoy's default is 200 ms). Default 1 s. */
  readonly messageTimeoutMs?: number;
  /** Stats prefix for this filter instance. */
  readonly statPrefix?: string;
}

/**
 * The HttpFilter (HttpConnectionManager.http_filters entry, before the router) that sends MCP traffic
 * through the tools/list processor served by ExtProcServer on the cluster `clusterName` (an HTTP/2
 * cluster, e.g. the control plane's xDS cluster or a dedicated one).
 *
 * - processing_mode: FILTER_PROCESSING_MODE (see there).
 * - allow_mode_override: true. Required: the processor answers request headers with a mode that skips
 *   the body and the response for callers it does not filter and for requests that are not tools/list
 *   (GET/DELETE, or a 2026-07-28 POST whose Mcp-Method header names another method), and answers response
 *   headers of a tools/list request with BUFFERED (JSON) or STREAMED (SSE) response body mode.
 * - request_attributes xds.cluster_name and metadata_options forwarding the `mcpmesh` namespace: two of the
 *   sources serviceOf() reads; and jwt_authn's namespace: the verified claims (verifiedClaims()).
 * - No grpc_service.timeout: the ext_proc stream lives as long as the HTTP stream (SSE can last hours);
 *   message_timeout bounds each exchange instead.
 * - HTTP/1 buffer note: BUFFERED bodies are bounded by the listener's per_connection_buffer_limit_bytes;
 *   a tools/list request or JSON response above it fails with 413/500 in Envoy.
 */
export function extProcFilterConfig(clusterName: string, opts: ExtProcFilterOptions = {}): ProtoObject {
  return {
    name: EXT_PROC_FILTER_NAME,
    typed_config: any(EXT_PROC_TYPE, {
      grpc_service: { envoy_grpc: { cluster_name: clusterName } },
      failure_mode_allow: opts.failureModeAllow ?? true,
      processing_mode: { ...FILTER_PROCESSING_MODE },
      allow_mode_override: true,
      request_attributes: ['xds.cluster_name'],
      message_timeout: protoDuration(opts.messageTimeoutMs ?? 1000),
      metadata_options: { forwarding_namespaces: { untyped: [METADATA_NAMESPACE, JWT_AUTHN_NAMESPACE] } },
      stat_prefix: opts.statPrefix ?? 'mcp_tools_filter',
    }),
  };
}

/**
 * Route.typed_per_filter_config entry (key EXT_PROC_FILTER_NAME) that tells the processor which service a
 * route serves: Envoy adds `x-mcp-service: <service>` to the ext_proc stream's gRPC initial metadata.
 */
export function extProcRouteOverride(service: string): ProtoObject {
  return any(EXT_PROC_PER_ROUTE_TYPE, {
    overrides: { grpc_initial_metadata: [{ key: SERVICE_HEADER, value: service }] },
  });
}
