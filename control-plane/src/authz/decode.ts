// Decoding an ext_authz CheckRequest into what the authorizer reads (CheckInput), on the hot path.
//
// A full protobufjs decode builds every field of Envoy's CheckRequest (peer addresses, timestamps, TLS info...)
// and validates each string as UTF-8 in JavaScript; the authorizer needs a handful of fields. This walks the
// wire format with protobufjs's Reader and keeps only those, taking field numbers from Envoy's own protos by
// reflection (so a renumbering there cannot silently desynchronise it) and decoding strings with Node's native
// UTF-8 decoder. Proto3 semantics hold: unknown fields are skipped, a repeated scalar field's last value wins
// and a repeated message field is merged. `decodeCheckInputReference` does the same with a full protobufjs
// decode; tests check that both agree.
import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';
import { lookupType } from '../xds/proto.ts';
import { RESOURCE_METADATA_CONTEXT_KEY } from '../translate/naming.ts';
import {
  ClaimsMetadataError,
  HEADERS_READ,
  JWT_AUTHN_NAMESPACE,
  PROTOCOL_CONTEXT_KEY,
  REQUEST_ID_HEADER,
  SERVICE_CONTEXT_KEY,
  type CheckInput,
  type MetadataKey,
} from './check.ts';

export interface DecodedCheck extends CheckInput {
  readonly path: string;
  readonly requestId: string;
  headerCount(name: string): number | undefined;
}

function fieldIds<K extends string>(typeName: string, names: readonly K[]): Record<K, number> {
  const t = lookupType(typeName);
  const out = {} as Record<K, number>;
  for (const n of names) {
    const f = t.fields[n];
    if (!f) throw new Error(`${typeName} has no field ${n}`);
    out[n] = f.id;
  }
  return out;
}

let ids: ReturnType<typeof loadIds> | undefined;
function loadIds() {
  return {
    check: fieldIds('envoy.service.auth.v3.CheckRequest', ['attributes']),
    attrs: fieldIds('envoy.service.auth.v3.AttributeContext', ['request', 'context_extensions', 'metadata_context']),
    request: fieldIds('envoy.service.auth.v3.AttributeContext.Request', ['http']),
    http: fieldIds('envoy.service.auth.v3.AttributeContext.HttpRequest', [
      'id',
      'method',
      'headers',
      'header_map',
      'path',
      'size',
      'body',
      'raw_body',
    ]),
    headerMap: fieldIds('envoy.config.core.v3.HeaderMap', ['headers']),
    headerValue: fieldIds('envoy.config.core.v3.HeaderValue', ['key', 'value', 'raw_value']),
    metadata: fieldIds('envoy.config.core.v3.Metadata', ['filter_metadata']),
    struct: lookupType('google.protobuf.Struct'),
  };
}

const LEN = 2;
const VARINT = 0;

/**
 * Moves past a length-delimited field and returns where its bytes start; they end at the new `r.pos`. (Not a
 * [start, end] pair: one small array per header entry was a good part of the decoder's garbage.)
 */
function skipBytes(r: protobuf.Reader): number {
  const len = r.uint32();
  const start = r.pos;
  if (start + len > r.len) throw new Error(`field length ${len} beyond the end of the message`);
  r.pos = start + len;
  return start;
}

/** An int64 varint as a number (two's complement; Envoy sends -1 for an unknown size). */
function int64(r: protobuf.Reader): number {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 10; i++) {
    if (r.pos >= r.len) throw new Error('truncated varint');
    const b = r.buf[r.pos++] as number;
    const shift = i * 7;
    if (shift < 28) lo |= (b & 0x7f) << shift;
    else if (shift === 28) {
      lo |= (b & 0x0f) << 28;
      hi |= (b & 0x7f) >>> 4;
    } else hi |= (b & 0x7f) << (shift - 32);
    if (b < 0x80) {
      lo >>>= 0;
      hi >>>= 0;
      return hi & 0x80000000 ? -((~hi >>> 0) * 4294967296 + (~lo >>> 0) + 1) : hi * 4294967296 + lo;
    }
  }
  throw new Error('varint longer than 10 bytes');
}

/** Enters a length-delimited sub-message: returns where it ends, the reader at its first byte. */
function enter(r: protobuf.Reader): number {
  const len = r.uint32();
  const end = r.pos + len;
  if (end > r.len) throw new Error(`field length ${len} beyond the end of the message`);
  return end;
}

/** Reads a length-delimited string with Node's native UTF-8 decoder. */
function str(r: protobuf.Reader): string {
  const len = r.uint32();
  const s = r.pos;
  const e = s + len;
  if (e > r.len) throw new Error(`field length ${len} beyond the end of the message`);
  r.pos = e;
  // protobufjs reads a Buffer with a BufferReader whose buf is that Buffer: slice natively, without a copy.
  return slice(r.buf, s, e);
}

/**
 * The `body` string field. A proto3 string must be UTF-8, but Envoy puts the client's bytes there as they
 * came: if they are not UTF-8 they are kept as bytes, so that the check refuses them instead of deciding on
 * the U+FFFD a decoder would substitute.
 */
function bodyField(r: protobuf.Reader): string | Uint8Array {
  const s = skipBytes(r);
  const e = r.pos;
  const bytes = r.buf.subarray(s, e);
  return isUtf8(bytes) ? slice(r.buf, s, e) : bytes;
}

const WANTED = HEADERS_READ.map((h) => Buffer.from(h, 'latin1'));

/** Which of `table` the bytes [s, e) spell (ignoring ASCII case with `fold`); -1 for none. */
function known(table: readonly Buffer[], fold: boolean, buf: Uint8Array, s: number, e: number): number {
  const len = e - s;
  for (let w = 0; w < table.length; w++) {
    const want = table[w] as Buffer;
    if (want.length !== len) continue;
    let i = 0;
    for (; i < len; i++) {
      const b = buf[s + i] as number;
      if ((fold && b >= 65 && b <= 90 ? b | 32 : b) !== want[i]) break;
    }
    if (i === len) return w;
  }
  return -1;
}

/** Which of HEADERS_READ the key bytes [s, e) name, ignoring ASCII case; -1 for any other header. */
function wantedHeader(buf: Uint8Array, s: number, e: number): number {
  return known(WANTED, true, buf, s, e);
}

// The context extension keys the authorizer reads. Matched on the bytes so that their names are the constant
// strings: a freshly decoded string used as a property key must be looked up in V8's string table first,
// which cost more than the rest of the entry.
const EXT_KEYS: readonly string[] = [SERVICE_CONTEXT_KEY, PROTOCOL_CONTEXT_KEY, RESOURCE_METADATA_CONTEXT_KEY];
const EXT_KEY_BYTES = EXT_KEYS.map((k) => Buffer.from(k, 'utf8'));
const JWT_AUTHN_BYTES = [Buffer.from(JWT_AUTHN_NAMESPACE, 'utf8')];

/** A map<string, string> context extension entry (key 1, value 2) into `ext`. */
function extEntry(r: protobuf.Reader, end: number, ext: Record<string, string>): void {
  let k = '';
  let v = '';
  while (r.pos < end) {
    const tag = r.uint32();
    const f = tag >>> 3;
    if (f === 1 && (tag & 7) === LEN) {
      const s = skipBytes(r);
      const w = known(EXT_KEY_BYTES, false, r.buf, s, r.pos);
      k = w >= 0 ? (EXT_KEYS[w] as string) : slice(r.buf, s, r.pos);
    } else if (f === 2 && (tag & 7) === LEN) v = str(r);
    else r.skipType(tag & 7);
  }
  ext[k] = v;
}

/** A map<string, string> header entry (key 1, value 2): stored only if it is one of HEADERS_READ. */
function headerEntry(r: protobuf.Reader, end: number, headers: Record<string, string>): void {
  let w = -1;
  let vs = 0;
  let ve = 0;
  while (r.pos < end) {
    const tag = r.uint32();
    const f = tag >>> 3;
    if ((f === 1 || f === 2) && (tag & 7) === LEN) {
      const len = r.uint32();
      const s = r.pos;
      if (s + len > r.len) throw new Error(`field length ${len} beyond the end of the message`);
      r.pos = s + len;
      if (f === 1) w = wantedHeader(r.buf, s, s + len);
      else {
        vs = s;
        ve = s + len;
      }
    } else r.skipType(tag & 7);
  }
  if (w >= 0) headers[HEADERS_READ[w] as string] = slice(r.buf, vs, ve);
}

function slice(buf: Uint8Array, s: number, e: number): string {
  if (e === s) return '';
  return buf instanceof Buffer ? buf.toString('utf8', s, e) : Buffer.from(buf.buffer, buf.byteOffset + s, e - s).toString('utf8');
}

interface Acc {
  method: string;
  path: string;
  id: string;
  size: number;
  body: string | Uint8Array;
  rawBody: Uint8Array | undefined;
  /** Envoy sent a header_map (encode_raw_headers): each copy of a header is its own entry. */
  rawMode: boolean;
  headers: Record<string, string>;
  /** header_map entries of HEADERS_READ, copies joined with ",", and how many copies. */
  rawHeaders: Record<string, string>;
  rawCounts: Record<string, number>;
  ext: Record<string, string>;
  jwtStructs: Uint8Array[];
}

function readHttp(r: protobuf.Reader, end: number, a: Acc, F: ReturnType<typeof loadIds>): void {
  const h = F.http;
  while (r.pos < end) {
    const tag = r.uint32();
    const f = tag >>> 3;
    const wt = tag & 7;
    if (wt === LEN) {
      if (f === h.method) a.method = str(r);
      else if (f === h.path) a.path = str(r);
      else if (f === h.id) a.id = str(r);
      else if (f === h.body) a.body = bodyField(r);
      else if (f === h.raw_body) {
        const s = skipBytes(r);
        a.rawBody = r.buf.subarray(s, r.pos);
      } else if (f === h.headers) headerEntry(r, enter(r), a.headers);
      else if (f === h.header_map) {
        a.rawMode = true;
        readHeaderMap(r, enter(r), a, F);
      } else r.skipType(wt);
    } else if (wt === VARINT && f === h.size) {
      a.size = int64(r);
    } else r.skipType(wt);
  }
}

function readHeaderMap(r: protobuf.Reader, end: number, a: Acc, F: ReturnType<typeof loadIds>): void {
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 === F.headerMap.headers && (tag & 7) === LEN) {
      const e = enter(r);
      let w = -1;
      // Value bounds only: most headers (the bearer token above all) are not read, so not decoded.
      let vs = 0;
      let ve = 0;
      let rs = 0;
      let re = 0;
      while (r.pos < e) {
        const t = r.uint32();
        const f = t >>> 3;
        if ((t & 7) !== LEN) r.skipType(t & 7);
        else if (f === F.headerValue.key) {
          const ks = skipBytes(r);
          w = wantedHeader(r.buf, ks, r.pos);
        } else if (f === F.headerValue.value) {
          vs = skipBytes(r);
          ve = r.pos;
        } else if (f === F.headerValue.raw_value) {
          rs = skipBytes(r);
          re = r.pos;
        } else r.skipType(LEN);
      }
      if (w >= 0) {
        // Each copy is its own entry: joined as HTTP joins them, and counted.
        const name = HEADERS_READ[w] as string;
        const v = re > rs ? slice(r.buf, rs, re) : slice(r.buf, vs, ve);
        const prev = a.rawHeaders[name];
        a.rawHeaders[name] = prev === undefined ? v : `${prev},${v}`;
        a.rawCounts[name] = (a.rawCounts[name] ?? 0) + 1;
      }
    } else r.skipType(tag & 7);
  }
}

function readMetadata(r: protobuf.Reader, end: number, a: Acc, F: ReturnType<typeof loadIds>): void {
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 === F.metadata.filter_metadata && (tag & 7) === LEN) {
      // map<string, Struct> entry: key 1, value 2.
      const e = enter(r);
      // Other filters' namespaces are skipped without decoding their names.
      let jwt = false;
      let vs = -1;
      let ve = -1;
      while (r.pos < e) {
        const t = r.uint32();
        const f = t >>> 3;
        if (f === 1 && (t & 7) === LEN) {
          const ks = skipBytes(r);
          jwt = known(JWT_AUTHN_BYTES, false, r.buf, ks, r.pos) === 0;
        } else if (f === 2 && (t & 7) === LEN) {
          vs = skipBytes(r);
          ve = r.pos;
        } else r.skipType(t & 7);
      }
      if (jwt && vs >= 0) a.jwtStructs.push(r.buf.subarray(vs, ve));
    } else r.skipType(tag & 7);
  }
}

function readAttributes(r: protobuf.Reader, end: number, a: Acc, F: ReturnType<typeof loadIds>): void {
  while (r.pos < end) {
    const tag = r.uint32();
    const f = tag >>> 3;
    if ((tag & 7) !== LEN) {
      r.skipType(tag & 7);
      continue;
    }
    if (f === F.attrs.request) {
      const e = enter(r);
      while (r.pos < e) {
        const t = r.uint32();
        if (t >>> 3 === F.request.http && (t & 7) === LEN) readHttp(r, enter(r), a, F);
        else r.skipType(t & 7);
      }
    } else if (f === F.attrs.context_extensions) extEntry(r, enter(r), a.ext);
    else if (f === F.attrs.metadata_context) readMetadata(r, enter(r), a, F);
    else r.skipType(LEN);
  }
}

// google.protobuf.Struct as decoded by protobufjs. Its struct.proto is protobufjs's built-in copy, whose field
// names are camelCase even with keepCase; snake_case is accepted too, should the protos come from files.
interface PbValue {
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
  number_value?: number;
  string_value?: string;
  bool_value?: boolean;
  struct_value?: PbStruct;
  list_value?: { values?: PbValue[] };
}
interface PbStruct {
  fields?: Record<string, PbValue>;
}

/** google.protobuf.Value to plain JSON. */
export function valueToJson(v: PbValue | undefined): unknown {
  if (!v) return null;
  const has = (k: keyof PbValue): boolean => Object.hasOwn(v, k);
  if (has('stringValue') || has('string_value')) return v.stringValue ?? v.string_value;
  if (has('numberValue') || has('number_value')) return v.numberValue ?? v.number_value;
  if (has('boolValue') || has('bool_value')) return v.boolValue ?? v.bool_value;
  if (has('structValue') || has('struct_value')) return structToJson(v.structValue ?? v.struct_value);
  if (has('listValue') || has('list_value')) return ((v.listValue ?? v.list_value)?.values ?? []).map(valueToJson);
  return null;
}

/** google.protobuf.Struct to a plain object. */
export function structToJson(s: PbStruct | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function claimsFrom(ns: PbStruct | undefined, payloadKey: string): unknown {
  const payload = ns?.fields?.[payloadKey];
  if (payload === undefined) return undefined;
  const claims = payload.structValue ?? payload.struct_value;
  // jwt_authn writes the payload as a Struct: anything else there is not a token's claims.
  if (!claims) throw new ClaimsMetadataError(`"${payloadKey}" under ${JWT_AUTHN_NAMESPACE} is not a Struct of claims`);
  return structToJson(claims);
}

/** jwt_authn's metadata, decoded only when needed: `key` (its encoded bytes) lets callers be cached. */
interface ClaimsSource {
  readonly key?: MetadataKey;
  load(): unknown;
}

function finish(a: Omit<Acc, 'jwtStructs'>, claims: ClaimsSource | undefined): DecodedCheck {
  let headers = a.headers;
  let counts: Record<string, number> | undefined;
  if (a.rawMode) {
    // encode_raw_headers: a header map (values as bytes), repeated names joined as HTTP does, and counted.
    // Envoy sends one or the other; should both come, the headers map's value goes first.
    headers = a.rawHeaders;
    counts = a.rawCounts;
    for (const k in a.headers) {
      const v = a.headers[k] as string;
      const raw = headers[k];
      headers[k] = raw === undefined ? v : `${v},${raw}`;
      counts[k] = (counts[k] ?? 0) + 1;
    }
  }
  return new Decoded(a, headers, counts, claims);
}

class Decoded implements DecodedCheck {
  readonly method: string;
  readonly contextExtensions: Readonly<Record<string, string>>;
  readonly body: string | Uint8Array;
  readonly size: number;
  readonly metadataKey?: MetadataKey;
  readonly path: string;
  readonly requestId: string;
  private readonly headers: Readonly<Record<string, string>>;
  private readonly counts: Readonly<Record<string, number>> | undefined;
  private readonly claims: ClaimsSource | undefined;
  private claimsLoaded = false;
  private claimsValue: unknown;
  constructor(
    a: Omit<Acc, 'jwtStructs'>,
    headers: Record<string, string>,
    counts: Record<string, number> | undefined,
    claims: ClaimsSource | undefined,
  ) {
    this.method = a.method.toUpperCase();
    this.contextExtensions = a.ext;
    this.body = a.rawBody && a.rawBody.length > 0 ? a.rawBody : a.body;
    this.size = a.size;
    if (claims?.key !== undefined) this.metadataKey = claims.key;
    this.claims = claims;
    this.path = a.path;
    this.headers = headers;
    this.counts = counts;
    this.requestId = headers[REQUEST_ID_HEADER] ?? a.id;
  }
  get metadataClaims(): unknown {
    if (!this.claimsLoaded) {
      this.claimsValue = this.claims?.load();
      this.claimsLoaded = true;
    }
    return this.claimsValue;
  }
  header(name: string): string | undefined {
    return this.headers[name];
  }
  headerCount(name: string): number | undefined {
    return this.counts === undefined ? undefined : (this.counts[name] ?? 0);
  }
}

/** Decodes the fields of an encoded CheckRequest the authorizer reads. Throws on malformed protobuf. */
export function decodeCheckInput(buf: Uint8Array, metadataPayloadKey: string): DecodedCheck {
  const F = (ids ??= loadIds());
  const r = protobuf.Reader.create(buf);
  const a: Acc = {
    method: '',
    path: '',
    id: '',
    size: 0,
    body: '',
    rawBody: undefined,
    rawMode: false,
    headers: {},
    rawHeaders: {},
    rawCounts: {},
    ext: {},
    jwtStructs: [],
  };
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === F.check.attributes && (tag & 7) === LEN) readAttributes(r, enter(r), a, F);
    else r.skipType(tag & 7);
  }
  let claims: ClaimsSource | undefined;
  if (a.jwtStructs.length > 0) {
    // Repeated occurrences of a message merge; decode them concatenated, as protobuf does.
    const bytes = a.jwtStructs.length === 1 ? (a.jwtStructs[0] as Uint8Array) : Buffer.concat(a.jwtStructs);
    claims = {
      key: { payloadKey: metadataPayloadKey, bytes },
      load: () => claimsFrom(F.struct.decode(bytes) as unknown as PbStruct, metadataPayloadKey),
    };
  }
  return finish(a, claims);
}

// ---------------------------------------------------------------------------- reference (full decode)

interface PbCheckRequest {
  attributes?: {
    request?: {
      http?: {
        id?: string;
        method?: string;
        path?: string;
        size?: number | { toString(): string };
        headers?: Record<string, string>;
        header_map?: { headers?: Array<{ key?: string; value?: string; raw_value?: Uint8Array }> };
        body?: string;
        raw_body?: Uint8Array;
      };
    };
    context_extensions?: Record<string, string>;
    metadata_context?: { filter_metadata?: Record<string, PbStruct> };
  };
}

/** The same result through a full protobufjs decode of Envoy's CheckRequest (slower; the reference for tests). */
export function decodeCheckInputReference(buf: Uint8Array, metadataPayloadKey: string): DecodedCheck {
  const req = lookupType('envoy.service.auth.v3.CheckRequest').decode(buf) as unknown as PbCheckRequest;
  const attrs = req.attributes;
  const http = attrs?.request?.http;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(http?.headers ?? {})) if (HEADERS_READ.includes(k.toLowerCase())) headers[k.toLowerCase()] = v;
  const rawHeaders: Record<string, string> = {};
  const rawCounts: Record<string, number> = {};
  for (const x of http?.header_map?.headers ?? []) {
    if (!x.key || !HEADERS_READ.includes(x.key.toLowerCase())) continue;
    const k = x.key.toLowerCase();
    const v = x.raw_value && x.raw_value.length > 0 ? Buffer.from(x.raw_value).toString('utf8') : (x.value ?? '');
    rawHeaders[k] = rawHeaders[k] === undefined ? v : `${rawHeaders[k]},${v}`;
    rawCounts[k] = (rawCounts[k] ?? 0) + 1;
  }
  const size = http?.size;
  return finish(
    {
      method: http?.method ?? '',
      path: http?.path ?? '',
      id: http?.id ?? '',
      size: typeof size === 'number' ? size : size ? Number(size.toString()) : 0,
      body: http?.body ?? '',
      rawBody: http?.raw_body,
      rawMode: http?.header_map != null,
      headers,
      rawHeaders,
      rawCounts,
      ext: { ...(attrs?.context_extensions ?? {}) },
    },
    { load: () => claimsFrom(attrs?.metadata_context?.filter_metadata?.[JWT_AUTHN_NAMESPACE], metadataPayloadKey) },
  );
}
