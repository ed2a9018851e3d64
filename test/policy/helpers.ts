// Test helpers: Envoy ext_authz CheckRequests built with protobufjs from Envoy's own protos, and decoded
// CheckResponses; unsigned JWT payload headers as jwt_authn's forward_payload_header writes them.
import { lookupType } from '../../control-plane/src/xds/proto.ts';

export interface CheckSpec {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** JSON value (stringified) or raw text. */
  body?: unknown;
  /** Send the body as raw_body bytes (with_request_body.pack_as_bytes). */
  asBytes?: boolean;
  service?: string;
  size?: number;
  /** Claims to put in x-jwt-payload (base64url JSON). */
  claims?: Record<string, unknown>;
  /** Use header_map (encode_raw_headers) instead of the headers map. */
  rawHeaders?: boolean;
  /** Claims in jwt_authn dynamic metadata (payload_in_metadata: jwt_payload). */
  metadataClaims?: Record<string, unknown>;
  /** Default headers to leave out (e.g. content-type). */
  omitHeaders?: string[];
  /** More header entries, repeats allowed (with rawHeaders: each its own header_map entry, as encode_raw_headers sends them). */
  extraHeaders?: Array<[string, string]>;
  /** The body as these exact bytes (raw_body), e.g. bytes that are not UTF-8. */
  bodyBytes?: Uint8Array;
  /** More context extensions (the route's check_settings), e.g. mcp_protocol. */
  contextExtensions?: Record<string, string>;
}

export function payloadHeader(claims: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(claims)).toString('base64url');
}

function toValue(v: unknown): object {
  // protobufjs's built-in struct.proto names these fields in camelCase.
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

function toStruct(o: Record<string, unknown>): object {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])) };
}

export function checkRequestObject(s: CheckSpec): Record<string, unknown> {
  const method = s.method ?? 'POST';
  const bodyText = s.body === undefined ? '' : typeof s.body === 'string' ? s.body : JSON.stringify(s.body);
  const headers: Record<string, string> = {
    ':method': method,
    ':path': s.path ?? '/mcp/weather',
    ':authority': 'gateway.local',
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    'x-request-id': 'req-1',
    ...(s.claims ? { 'x-jwt-payload': payloadHeader(s.claims) } : {}),
    ...s.headers,
  };
  for (const h of s.omitHeaders ?? []) delete headers[h];
  const http: Record<string, unknown> = {
    id: '1234',
    method,
    path: s.path ?? '/mcp/weather',
    host: 'gateway.local',
    scheme: 'http',
    protocol: 'HTTP/1.1',
    size: s.size ?? (s.bodyBytes ? s.bodyBytes.length : Buffer.byteLength(bodyText)),
  };
  const entries = [...Object.entries(headers), ...(s.extraHeaders ?? [])];
  if (s.rawHeaders) http['header_map'] = { headers: entries.map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) };
  else {
    // The headers map, as Envoy fills it without encode_raw_headers: copies of a header joined with ",".
    const joined: Record<string, string> = {};
    for (const [k, v] of entries) joined[k] = joined[k] === undefined ? v : `${joined[k]},${v}`;
    http['headers'] = joined;
  }
  if (s.bodyBytes) http['raw_body'] = Buffer.from(s.bodyBytes);
  else if (s.asBytes) http['raw_body'] = Buffer.from(bodyText);
  else http['body'] = bodyText;
  return {
    attributes: {
      source: { address: { socket_address: { address: '10.0.0.7', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.0.1', port_value: 8080 } } },
      request: { time: { seconds: 1_764_000_000, nanos: 0 }, http },
      ...(s.service !== undefined || s.contextExtensions
        ? { context_extensions: { ...(s.service !== undefined ? { mcp_service: s.service } : {}), ...s.contextExtensions } }
        : {}),
      ...(s.metadataClaims
        ? { metadata_context: { filter_metadata: { 'envoy.filters.http.jwt_authn': toStruct({ jwt_payload: s.metadataClaims }) } } }
        : {}),
    },
  };
}

export function encodeCheckRequest(s: CheckSpec): Buffer {
  const t = lookupType('envoy.service.auth.v3.CheckRequest');
  const obj = checkRequestObject(s);
  const err = t.verify(t.fromObject(obj));
  if (err) throw new Error(`bad CheckRequest: ${err}`);
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}

export interface DecodedCheckResponse {
  status?: { code?: number; message?: string };
  ok_response?: { headers?: HeaderOpt[]; response_headers_to_add?: HeaderOpt[]; headers_to_remove?: string[] };
  denied_response?: { status?: { code?: string | number }; headers?: HeaderOpt[]; body?: string };
  dynamic_metadata?: PbStruct;
}
interface PbStruct {
  fields?: Record<string, { stringValue?: string }>;
}

/** A decoded google.protobuf.Struct of strings as a plain object. */
export function structJson(s: PbStruct | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(s?.fields ?? {}).map(([k, v]) => [k, v.stringValue ?? '']));
}
export interface HeaderOpt {
  header?: { key?: string; value?: string };
}

export function decodeCheckResponse(b: Buffer | Uint8Array): DecodedCheckResponse {
  const t = lookupType('envoy.service.auth.v3.CheckResponse');
  return t.toObject(t.decode(b), { enums: Number, longs: Number, defaults: false, arrays: true, objects: true }) as DecodedCheckResponse;
}

export function headerOf(list: HeaderOpt[] | undefined, name: string): string | undefined {
  return list?.find((h) => h.header?.key === name)?.header?.value;
}

/** An unsigned JWT (alg none) for the CLI, which reads the payload without verifying. */
export function unsignedJwt(claims: Record<string, unknown>): string {
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
}
