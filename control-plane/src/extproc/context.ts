// What the processor knows about an HTTP stream from Envoy's messages: its headers, and which mesh
// service it is for. Decoded ext_proc messages are protobufjs plain objects (keepCase: snake_case fields;
// google.protobuf.Struct values in their camelCase object form).
import { JWT_PAYLOAD_METADATA_KEY, localAppCluster, serviceCluster } from '../translate/naming.ts';
import { structToJson } from '../xds/node.ts';

export interface PbHeaderValue {
  key?: string;
  value?: string;
  raw_value?: Uint8Array;
}

export interface PbHeaderMap {
  headers?: PbHeaderValue[];
}

export interface PbValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
}

export interface PbStruct {
  fields?: Record<string, PbValue>;
}

/**
 * Header map as Envoy sends it: lower-case names, pseudo-headers (`:method`, `:path`, `:status`, ...)
 * included; the value is in `raw_value` (runtime guard send_header_raw_value, the default) or in `value`
 * (older Envoys). Repeated headers are joined with ", ".
 */
export function headerRecord(map: PbHeaderMap | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of map?.headers ?? []) {
    if (!h.key) continue;
    const key = h.key.toLowerCase();
    const value = h.raw_value && h.raw_value.length > 0 ? Buffer.from(h.raw_value).toString('utf8') : (h.value ?? '');
    out[key] = key in out ? `${out[key]}, ${value}` : value;
  }
  return out;
}

/** Name of the gRPC initial-metadata entry / request header / metadata field that names the service. */
export const SERVICE_HEADER = 'x-mcp-service';
/** Dynamic-metadata namespace forwarded to the processor (its `service` field names the service). */
export const METADATA_NAMESPACE = 'mcpmesh';

export interface ServiceSources {
  /** Initial metadata of the ext_proc gRPC stream (lower-case keys). */
  readonly grpcMetadata?: Record<string, string>;
  readonly metadataContext?: { filter_metadata?: Record<string, PbStruct> } | null;
  readonly attributes?: Record<string, PbStruct> | null;
  readonly headers: Record<string, string>;
}

function clusterService(cluster: string): string | undefined {
  for (const prefix of [serviceCluster(''), localAppCluster('')]) {
    if (cluster.startsWith(prefix) && cluster.length > prefix.length) return cluster.slice(prefix.length);
  }
  return undefined;
}

/**
 * The mesh service an HTTP stream is for. The one place that decides it; sources, most trusted first:
 *
 * 1. `x-mcp-service` in the ext_proc stream's gRPC initial metadata. The control plane sets it per route
 *    with `extProcRouteOverride(service)` (ExtProcPerRoute.overrides.grpc_initial_metadata), so Envoy's
 *    route, not the client, names the service.
 * 2. Dynamic metadata `mcpmesh.service`, forwarded by the filter's
 *    metadata_options.forwarding_namespaces.untyped = ["mcpmesh"] when an earlier filter set it.
 * 3. The `xds.cluster_name` attribute (request_attributes in the filter config): the routed cluster,
 *    `mcp.<service>` on a gateway, `local.<service>` on a sidecar.
 * 4. The `x-mcp-service` request header. Clients can send it: only meaningful when a trusted hop in front
 *    sets (and strips) it.
 *
 * Returns "" when no source names one.
 */
export function serviceOf(src: ServiceSources): string {
  const fromGrpc = src.grpcMetadata?.[SERVICE_HEADER];
  if (fromGrpc) return fromGrpc;
  const fromMetadata = src.metadataContext?.filter_metadata?.[METADATA_NAMESPACE]?.fields?.['service']?.stringValue;
  if (fromMetadata) return fromMetadata;
  for (const attrs of Object.values(src.attributes ?? {})) {
    const cluster = attrs.fields?.['xds.cluster_name']?.stringValue;
    const svc = cluster ? clusterService(cluster) : undefined;
    if (svc) return svc;
  }
  return src.headers[SERVICE_HEADER] ?? '';
}

/** Dynamic-metadata namespace of jwt_authn, forwarded to the processor for the verified claims. */
export const JWT_AUTHN_NAMESPACE = 'envoy.filters.http.jwt_authn';

/** The verified JWT payload jwt_authn wrote (payload_in_metadata) in the forwarded metadata, if any. */
export function verifiedClaims(metadataContext: ServiceSources['metadataContext']): Record<string, unknown> | undefined {
  const payload = metadataContext?.filter_metadata?.[JWT_AUTHN_NAMESPACE]?.fields?.[JWT_PAYLOAD_METADATA_KEY]?.structValue;
  return payload ? structToJson(payload) : undefined;
}

/** The media type of a Content-Type value, lower-cased, without parameters. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}
