// Test-side stand-ins for Envoy's half of ext_proc (no Envoy binary can be installed here):
//
// - ProcessClient: one `Process` stream, ProcessingRequests encoded with Envoy's own protos (protobufjs),
//   responses decoded the same way; one exchange at a time, as Envoy's filter waits for each answer.
// - EnvoyExtProcProxy: an HTTP/1.1 proxy that runs every request through the processor the way Envoy's
//   ext_proc filter does under a given filter config (the object extProcFilterConfig() returns) and per-route
//   override (extProcRouteOverride()): request headers (with pseudo-headers, raw_value), the body when the
//   mode says BUFFERED, response headers, response body BUFFERED (whole, held headers) or STREAMED (chunk by
//   chunk, Content-Length dropped), mode_override honoured only on header responses and only with
//   allow_mode_override, header/body mutations applied, a clean close from the processor meaning "carry
//   on without it", and an error status failing the request (failure_mode_allow false).
import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import type net from 'node:net';
import { PROCESS_PATH } from '../../control-plane/src/extproc/server.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import { struct, type JsonValue } from '../../control-plane/src/translate/resource.ts';

export type Obj = Record<string, unknown>;

export interface DecodedResponse {
  response?: string;
  request_headers?: { response?: Common };
  response_headers?: { response?: Common };
  request_body?: { response?: Common };
  response_body?: { response?: Common };
  request_trailers?: Obj;
  response_trailers?: Obj;
  immediate_response?: Obj;
  mode_override?: Record<string, string>;
}

export interface Common {
  status?: string;
  header_mutation?: {
    set_headers?: Array<{ header?: { key?: string; value?: string; raw_value?: Buffer }; append_action?: string }>;
    remove_headers?: string[];
  };
  body_mutation?: { body?: Buffer; clear_body?: boolean; mutation?: string };
}

const REQ = 'envoy.service.ext_proc.v3.ProcessingRequest';
const RES = 'envoy.service.ext_proc.v3.ProcessingResponse';

export function encodeRequest(msg: Obj): Buffer {
  const t = lookupType(REQ);
  const err = t.verify(t.fromObject(msg));
  if (err) throw new Error(`bad ProcessingRequest: ${err}`);
  return Buffer.from(t.encode(t.fromObject(msg)).finish());
}

export function decodeResponse(b: Buffer): DecodedResponse {
  const t = lookupType(RES);
  const msg = t.toObject(t.decode(b), { enums: String, longs: String, oneofs: true }) as DecodedResponse;
  // proto3 leaves zero enums (NONE, DEFAULT) off the wire: spell them out as Envoy reads them.
  if (msg.mode_override) {
    const m = msg.mode_override;
    for (const k of ['request_header_mode', 'response_header_mode', 'request_trailer_mode', 'response_trailer_mode']) m[k] ??= 'DEFAULT';
    for (const k of ['request_body_mode', 'response_body_mode']) m[k] ??= 'NONE';
  }
  return msg;
}

/** HeaderMap as Envoy sends it (runtime guard send_header_raw_value: values in raw_value). */
export function headerMap(headers: Record<string, string>): Obj {
  return { headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) };
}

export type Outcome = { kind: 'response'; msg: DecodedResponse } | { kind: 'closed' } | { kind: 'error'; code: number; details: string };

export class ProcessClient {
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  private readonly client: grpc.Client;
  private readonly inbox: Outcome[] = [];
  private readonly waiting: Array<(o: Outcome) => void> = [];
  private ended: Outcome | undefined;
  readonly status: Promise<grpc.StatusObject>;

  /** `at`: a port on 127.0.0.1, or a gRPC target such as `unix:/path` (a gateway agent's socket). */
  constructor(at: number | string, metadata: Record<string, string> = {}) {
    this.client = new grpc.Client(typeof at === 'number' ? `127.0.0.1:${at}` : at, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    this.call = this.client.makeBidiStreamRequest(
      PROCESS_PATH,
      (b: Buffer) => b,
      (b: Buffer) => b,
      md,
    );
    this.call.on('data', (b: Buffer) => this.deliver({ kind: 'response', msg: decodeResponse(b) }));
    this.status = new Promise((resolve) =>
      this.call.on('status', (s: grpc.StatusObject) => {
        this.finish(s.code === grpc.status.OK ? { kind: 'closed' } : { kind: 'error', code: s.code, details: s.details });
        resolve(s);
      }),
    );
    this.call.on('error', () => {
      /* reported through 'status' */
    });
  }

  private deliver(o: Outcome): void {
    const w = this.waiting.shift();
    if (w) w(o);
    else this.inbox.push(o);
  }

  private finish(o: Outcome): void {
    this.ended = o;
    while (this.waiting.length > 0) (this.waiting.shift() as (o: Outcome) => void)(o);
  }

  next(): Promise<Outcome> {
    const o = this.inbox.shift();
    if (o) return Promise.resolve(o);
    if (this.ended) return Promise.resolve(this.ended);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Sends one ProcessingRequest (plain object) and waits for the answer (or the end of the stream). */
  async exchange(msg: Obj): Promise<Outcome> {
    if (!this.ended) this.call.write(encodeRequest(msg));
    return this.next();
  }

  /** Like exchange, but insists on a response. */
  async send(msg: Obj): Promise<DecodedResponse> {
    const o = await this.exchange(msg);
    if (o.kind !== 'response') throw new Error(`expected a response, got ${JSON.stringify(o)}`);
    return o.msg;
  }

  sendRaw(bytes: Buffer): void {
    this.call.write(bytes);
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Envoy's ext_proc filter, as an HTTP proxy.

interface Mode {
  request_header_mode: string;
  response_header_mode: string;
  request_body_mode: string;
  response_body_mode: string;
  request_trailer_mode: string;
  response_trailer_mode: string;
}

const DEFAULT_MODE: Mode = {
  request_header_mode: 'SEND',
  response_header_mode: 'SEND',
  request_body_mode: 'NONE',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
};

/** A header mode value as Envoy reads it: DEFAULT means SEND for headers. */
function sends(mode: string | undefined): boolean {
  return mode !== 'SKIP';
}

function normalizeMode(m: Record<string, string | number> | undefined): Mode {
  const names = ['DEFAULT', 'SEND', 'SKIP'];
  const bodies = ['NONE', 'STREAMED', 'BUFFERED', 'BUFFERED_PARTIAL', 'FULL_DUPLEX_STREAMED'];
  const out: Record<string, string> = { ...DEFAULT_MODE };
  for (const [k, v] of Object.entries(m ?? {}))
    out[k] = typeof v === 'number' ? ((k.includes('body') ? bodies : names)[v] ?? String(v)) : v;
  return out as unknown as Mode;
}

export interface ExchangeLog {
  path: string;
  method: string;
  sent: string[];
  responseContentType?: string;
  responseBodyMode?: string;
  bodyMutations: number;
  closedEarly: boolean;
}

export interface EnvoyProxyOptions {
  /** The HttpFilter object from extProcFilterConfig(). */
  readonly filter: Obj;
  /** The route's typed_per_filter_config entry from extProcRouteOverride(), if any. */
  readonly routeOverride?: Obj;
  /** The processor (the filter's cluster): a port on 127.0.0.1, or a gRPC target such as `unix:/path`. */
  readonly processorPort: number | string;
  /** Upstream MCP server base URL (http://host:port). */
  readonly upstream: string;
  /** Attribute values Envoy would compute (e.g. xds.cluster_name). */
  readonly attributeValues?: Record<string, string>;
}

/**
 * The harness splits one Envoy across two HTTP hops (a gateway stand-in, then this proxy), so dynamic metadata
 * an earlier filter wrote (jwt_authn's verified payload) crosses between them in this private header: JSON of
 * namespace -> object. The proxy removes it and forwards only the namespaces the filter config names
 * (metadata_options.forwarding_namespaces.untyped), as Envoy does. A client-sent copy is a test bug.
 */
export const HARNESS_METADATA_HEADER = 'x-harness-dynamic-metadata';

export function harnessMetadataHeader(metadata: Record<string, Record<string, JsonValue>>): string {
  return Buffer.from(JSON.stringify(metadata)).toString('base64url');
}

class ProcessorGone extends Error {}

function applyHeaderMutation(headers: Record<string, string>, common: Common | undefined): void {
  const hm = common?.header_mutation;
  if (!hm) return;
  for (const name of hm.remove_headers ?? []) {
    const n = name.toLowerCase();
    if (n.startsWith(':') || n === 'host') continue; // system headers cannot be removed
    delete headers[n];
  }
  for (const opt of hm.set_headers ?? []) {
    const key = (opt.header?.key ?? '').toLowerCase();
    const value =
      opt.header?.raw_value && opt.header.raw_value.length > 0 ? opt.header.raw_value.toString('utf8') : (opt.header?.value ?? '');
    if (!key || key.startsWith(':') || key === 'host') continue;
    const action = opt.append_action ?? 'APPEND_IF_EXISTS_OR_ADD';
    if (action === 'OVERWRITE_IF_EXISTS_OR_ADD' || !(key in headers)) headers[key] = value;
    else if (action === 'APPEND_IF_EXISTS_OR_ADD') headers[key] = `${headers[key]}, ${value}`;
  }
}

function applyBodyMutation(body: Buffer, common: Common | undefined): Buffer {
  const bm = common?.body_mutation;
  if (!bm) return body;
  if (bm.mutation === 'clear_body' || bm.clear_body) return Buffer.alloc(0);
  if (bm.mutation === 'body') return bm.body ?? Buffer.alloc(0);
  return body;
}

export class EnvoyExtProcProxy {
  readonly log: ExchangeLog[] = [];
  private readonly opts: EnvoyProxyOptions;
  private readonly cfg: Obj;
  private readonly server: http.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(opts: EnvoyProxyOptions) {
    this.opts = opts;
    this.cfg = (opts.filter['typed_config'] ?? {}) as Obj;
    if (this.cfg['@type'] !== 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor')
      throw new Error('not an ext_proc filter');
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`ext_proc emulator: ${(err as Error).message}`);
        } else {
          res.destroy(err as Error);
        }
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private initialMetadata(): Record<string, string> {
    const md: Record<string, string> = {};
    const overrides = (this.opts.routeOverride?.['overrides'] ?? {}) as { grpc_initial_metadata?: Array<{ key: string; value: string }> };
    for (const h of overrides.grpc_initial_metadata ?? []) md[h.key] = h.value;
    return md;
  }

  private forwardedMetadata(header: string | string[] | undefined): Obj | undefined {
    if (typeof header !== 'string') return undefined;
    const all = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as Record<string, Record<string, JsonValue>>;
    const options = (this.cfg['metadata_options'] ?? {}) as { forwarding_namespaces?: { untyped?: string[] } };
    const wanted = options.forwarding_namespaces?.untyped ?? [];
    const filterMetadata = Object.fromEntries(
      Object.entries(all)
        .filter(([ns]) => wanted.includes(ns))
        .map(([ns, v]) => [ns, struct(v)]),
    );
    return Object.keys(filterMetadata).length > 0 ? { filter_metadata: filterMetadata } : undefined;
  }

  private attributes(): Obj | undefined {
    const wanted = (this.cfg['request_attributes'] ?? []) as string[];
    const fields: Obj = {};
    for (const name of wanted) {
      const v = this.opts.attributeValues?.[name];
      if (v !== undefined) fields[name] = { stringValue: v };
    }
    return Object.keys(fields).length > 0 ? { 'envoy.filters.http.ext_proc': { fields } } : undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const entry: ExchangeLog = { path: req.url ?? '/', method: req.method ?? 'GET', sent: [], bodyMutations: 0, closedEarly: false };
    this.log.push(entry);
    const allowOverride = this.cfg['allow_mode_override'] === true;
    let mode = normalizeMode(this.cfg['processing_mode'] as Record<string, string> | undefined);
    const proc = new ProcessClient(this.opts.processorPort, this.initialMetadata());
    let gone = false; // processor closed the stream cleanly: Envoy carries on without it
    const ask = async (kind: string, msg: Obj): Promise<Common | undefined> => {
      if (gone) return undefined;
      entry.sent.push(kind);
      const o = await proc.exchange(msg);
      if (o.kind === 'closed') {
        gone = true;
        entry.closedEarly = true;
        return undefined;
      }
      if (o.kind === 'error') {
        if (this.cfg['failure_mode_allow'] === true) {
          gone = true;
          return undefined;
        }
        throw new ProcessorGone(`ext_proc failed: ${o.code} ${o.details}`);
      }
      const r = o.msg;
      if (r.response === 'immediate_response') throw new Error('immediate_response not expected');
      if (r.response !== kind) throw new Error(`answered ${kind} with ${r.response}`);
      const common = r[kind as 'request_headers']?.response;
      if (common?.status === 'CONTINUE_AND_REPLACE') throw new Error('CONTINUE_AND_REPLACE not expected');
      // mode_override: honoured only on header responses, only when the filter allows it.
      if (r.mode_override && allowOverride && kind.endsWith('_headers')) mode = normalizeMode(r.mode_override);
      return common;
    };
    try {
      // --- request headers
      const reqHeaders: Record<string, string> = {
        ':method': req.method ?? 'GET',
        ':path': req.url ?? '/',
        ':authority': req.headers.host ?? '',
        ':scheme': 'http',
      };
      for (const [k, v] of Object.entries(req.headers)) {
        if (k === 'host' || k === HARNESS_METADATA_HEADER || v === undefined) continue;
        reqHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
      const attributes = this.attributes();
      const metadataContext = this.forwardedMetadata(req.headers[HARNESS_METADATA_HEADER]);
      if (sends(mode.request_header_mode)) {
        const c = await ask('request_headers', {
          request_headers: { headers: headerMap(reqHeaders), end_of_stream: !hasBody },
          ...(attributes ? { attributes } : {}),
          ...(metadataContext ? { metadata_context: metadataContext } : {}),
        });
        applyHeaderMutation(reqHeaders, c);
      }
      // --- request body
      let upstreamBody: Buffer | undefined;
      if (hasBody && !gone && mode.request_body_mode !== 'NONE') {
        if (mode.request_body_mode !== 'BUFFERED') throw new Error(`request body mode ${mode.request_body_mode} not emulated`);
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        upstreamBody = Buffer.concat(chunks);
        const c = await ask('request_body', { request_body: { body: upstreamBody, end_of_stream: true } });
        applyHeaderMutation(reqHeaders, c); // BUFFERED: the held headers may still change
        upstreamBody = applyBodyMutation(upstreamBody, c);
        if (c?.body_mutation) reqHeaders['content-length'] = String(upstreamBody.length);
      }
      // --- upstream
      const up = new URL(this.opts.upstream);
      const outHeaders: Record<string, string> = {};
      for (const [k, v] of Object.entries(reqHeaders)) if (!k.startsWith(':')) outHeaders[k] = v;
      outHeaders['host'] = up.host;
      if (upstreamBody !== undefined) {
        delete outHeaders['transfer-encoding'];
        outHeaders['content-length'] = String(upstreamBody.length);
      }
      const upstreamRes = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const u = http.request(
          { host: up.hostname, port: up.port, method: reqHeaders[':method'], path: reqHeaders[':path'], headers: outHeaders },
          resolve,
        );
        u.on('error', reject);
        res.on('close', () => u.destroy());
        if (upstreamBody !== undefined) u.end(upstreamBody);
        else req.pipe(u);
      });
      // --- response headers
      const status = upstreamRes.statusCode ?? 502;
      const respHeaders: Record<string, string> = { ':status': String(status) };
      for (const [k, v] of Object.entries(upstreamRes.headers)) {
        if (v === undefined || k === 'transfer-encoding' || k === 'connection') continue;
        respHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      entry.responseContentType = respHeaders['content-type'];
      const responseHasBody = !(status === 204 || status === 304 || req.method === 'HEAD' || respHeaders['content-length'] === '0');
      if (!gone && sends(mode.response_header_mode)) {
        const c = await ask('response_headers', { response_headers: { headers: headerMap(respHeaders), end_of_stream: !responseHasBody } });
        applyHeaderMutation(respHeaders, c);
      }
      const bodyMode = gone || !responseHasBody ? 'NONE' : mode.response_body_mode;
      entry.responseBodyMode = bodyMode;
      const writeHead = (): void => {
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(respHeaders)) if (!k.startsWith(':')) h[k] = v;
        res.writeHead(Number(respHeaders[':status']), h);
        res.flushHeaders();
      };
      if (bodyMode === 'NONE') {
        writeHead();
        upstreamRes.pipe(res);
        await new Promise<void>((resolve) => res.on('close', resolve));
        return;
      }
      if (bodyMode === 'BUFFERED') {
        const chunks: Buffer[] = [];
        for await (const c of upstreamRes) chunks.push(c as Buffer);
        let bodyBytes: Buffer = Buffer.concat(chunks);
        const c = await ask('response_body', { response_body: { body: bodyBytes, end_of_stream: true } });
        applyHeaderMutation(respHeaders, c); // the headers were held with the body
        if (c?.body_mutation) entry.bodyMutations += 1;
        bodyBytes = applyBodyMutation(bodyBytes, c);
        if (respHeaders['content-length'] !== undefined && Number(respHeaders['content-length']) !== bodyBytes.length) {
          throw new Error(`content-length ${respHeaders['content-length']} does not match the mutated body (${bodyBytes.length})`); // Envoy rejects this
        }
        writeHead();
        res.end(bodyBytes);
        return;
      }
      if (bodyMode !== 'STREAMED') throw new Error(`response body mode ${bodyMode} not emulated`);
      // STREAMED with mutations possible: Envoy drops Content-Length and sends the headers on.
      delete respHeaders['content-length'];
      writeHead();
      for await (const c of upstreamRes) {
        const chunk = c as Buffer;
        if (gone) {
          res.write(chunk);
          continue;
        }
        const common = await ask('response_body', { response_body: { body: chunk, end_of_stream: false } });
        if (common?.body_mutation) entry.bodyMutations += 1;
        const out = applyBodyMutation(chunk, common);
        if (out.length > 0) res.write(out);
      }
      if (!gone) {
        const common = await ask('response_body', { response_body: { body: Buffer.alloc(0), end_of_stream: true } });
        const out = applyBodyMutation(Buffer.alloc(0), common);
        if (out.length > 0) res.write(out);
      }
      res.end();
    } finally {
      proc.close();
    }
  }
}
