// One HTTP stream's conversation with Envoy's ext_proc filter: decoded ProcessingRequests in, plain
// ProcessingResponse objects out (protobufjs form). No gRPC here; server.ts carries the messages.
//
// Flow for a caller the ToolFilterFactory filters:
//   request_headers   decide identity/service; decide "maybe tools/list" (POST with a body, unless a trusted
//                     2026-07-28 Mcp-Method header already says), else skip everything via mode_override
//   request_body      (BUFFERED, whole body) JSON-RPC message or batch: ids of the tools/list requests
//   response_headers  200 + application/json -> response body BUFFERED; text/event-stream -> STREAMED
//   response_body     JSON: filter result.tools of every matching response (batches too), drop the stale
//                     Content-Length. SSE: rewrite only the event with the matching response, everything
//                     else byte for byte and without waiting for the end of the stream.
import type { Logger } from '../log.ts';
import { FILTER_PROCESSING_MODE, type ProcessingMode } from './config.ts';
import { headerRecord, mediaType, serviceOf, verifiedClaims, type PbHeaderMap, type PbStruct } from './context.ts';
import type { ExtProcStats } from './stats.ts';
import { rewriteJsonText, SseToolsRewriter, toolsListRequests, type ResponseMatch, type ToolPredicate } from './tools.ts';

export interface ToolFilterContext {
  /** The mesh service the request is for (see serviceOf in context.ts); "" when unknown. */
  readonly service: string;
  /** Request headers, lower-case names, pseudo-headers included (`:method`, `:path`, `:authority`). */
  readonly headers: Record<string, string>;
  /**
   * The caller's verified JWT claims: jwt_authn's payload from the dynamic metadata Envoy forwards (never a
   * request header, which a client could have sent itself). Undefined when no token was verified.
   */
  readonly claims?: Readonly<Record<string, unknown>>;
}

/**
 * Decides, per HTTP request, which tools the caller may see. Returns a predicate over tool names, or
 * undefined for "no filtering for this caller". A factory that throws hides every tool for that request.
 */
export type ToolFilterFactory = (ctx: ToolFilterContext) => ((toolName: string) => boolean) | undefined;

export interface PbHttpHeaders {
  headers?: PbHeaderMap | null;
  end_of_stream?: boolean;
}

export interface PbHttpBody {
  body?: Uint8Array;
  end_of_stream?: boolean;
}

/** envoy.service.ext_proc.v3.ProcessingRequest as decoded (toObject with oneofs: true). */
export interface ProcessingRequest {
  request?: string;
  request_headers?: PbHttpHeaders | null;
  response_headers?: PbHttpHeaders | null;
  request_body?: PbHttpBody | null;
  response_body?: PbHttpBody | null;
  request_trailers?: { trailers?: PbHeaderMap | null } | null;
  response_trailers?: { trailers?: PbHeaderMap | null } | null;
  metadata_context?: { filter_metadata?: Record<string, PbStruct> } | null;
  attributes?: Record<string, PbStruct> | null;
  observability_mode?: boolean;
}

export type ProcessingResponse = Record<string, unknown>;

export interface HandleResult {
  /** The response to send (absent in observability mode, where Envoy expects none). */
  readonly response?: ProcessingResponse;
  /** Nothing more needs processing on this HTTP stream: close the ext_proc stream cleanly (Envoy then proceeds without the processor). */
  readonly close?: boolean;
}

/** The message breaks the ext_proc protocol (e.g. no request set): the gRPC stream ends with INVALID_ARGUMENT. */
export class ProtocolError extends Error {}

/** Every part skipped after the request headers: the stream passes Envoy untouched. */
const PASSTHROUGH_MODE: ProcessingMode = {
  request_header_mode: 'SEND',
  response_header_mode: 'SKIP',
  request_body_mode: 'NONE',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
};

/** First MCP revision whose POSTs carry Mcp-Method and whose servers reject a header/body mismatch. */
const HEADER_METHOD_REVISION = '2026-07-28';

/**
 * Whether the Mcp-Method header may stand in for the body. Only when the request claims a revision that
 * requires servers to reject a header that contradicts the body; an older server would refuse that
 * MCP-Protocol-Version outright. Otherwise a client could label a tools/list body "Mcp-Method: ping".
 */
function methodHeaderTrusted(headers: Record<string, string>): boolean {
  const version = (headers['mcp-protocol-version'] ?? '').trim();
  return /^\d{4}-\d{2}-\d{2}$/.test(version) && version >= HEADER_METHOD_REVISION;
}

type BodyKind = 'request_body' | 'response_body';
type HeadersKind = 'request_headers' | 'response_headers';

interface CommonResponse {
  header_mutation?: { set_headers?: unknown[]; remove_headers?: string[] };
  body_mutation?: { body: Buffer } | { clear_body: true };
}

export interface StreamProcessorOptions {
  readonly toolFilter: ToolFilterFactory;
  readonly stats: ExtProcStats;
  readonly log: Logger;
  /** The ext_proc gRPC stream's initial metadata (lower-case keys). */
  readonly grpcMetadata?: Record<string, string>;
  /** Largest SSE event held while looking for the tools/list response (default 8 MiB). */
  readonly maxEventBytes?: number;
  /** Largest request body inspected for tools/list (default 4 MiB). */
  readonly maxRequestBodyBytes?: number;
  /**
   * A resumed SSE stream (GET with Last-Event-ID) is inspected for a replayed tools/list response in its
   * first this many bytes only (default 256 KiB); then the processor lets go of it, so an hour-long stream
   * does not hold an ext_proc stream, and a circuit-breaker slot, with every chunk waiting on the processor.
   */
  readonly maxResumeInspectBytes?: number;
}

export class HttpStreamProcessor {
  private readonly opts: StreamProcessorOptions;
  private mode: ProcessingMode = FILTER_PROCESSING_MODE;
  private service = '';
  private path = '';
  private allow: ToolPredicate | undefined;
  private match: ResponseMatch | undefined;
  private requestBody: Buffer[] = [];
  private requestBodyBytes = 0;
  private requestBodyDone = false;
  private json: { partial: boolean } | undefined;
  private sse: SseToolsRewriter | undefined;
  /** Bytes of a resumed stream still to inspect (undefined: not a resumed stream). */
  private resumeBudget: number | undefined;

  constructor(opts: StreamProcessorOptions) {
    this.opts = opts;
  }

  handle(req: ProcessingRequest): HandleResult {
    const kind =
      req.request ??
      (['request_headers', 'response_headers', 'request_body', 'response_body', 'request_trailers', 'response_trailers'] as const).find(
        (k) => req[k] !== undefined && req[k] !== null,
      );
    let result: HandleResult;
    switch (kind) {
      case 'request_headers':
        result = this.guard(kind, () => this.requestHeaders(req, req.request_headers ?? {}));
        break;
      case 'response_headers':
        result = this.guard(kind, () => this.responseHeaders(req.response_headers ?? {}));
        break;
      case 'request_body':
        result = this.guard(kind, () => this.requestBodyChunk(req.request_body ?? {}));
        break;
      case 'response_body':
        result = this.guard(kind, () => this.responseBodyChunk(req.response_body ?? {}));
        break;
      case 'request_trailers':
        result = { response: { request_trailers: {} } };
        break;
      case 'response_trailers':
        result = { response: { response_trailers: {} } };
        break;
      default:
        throw new ProtocolError(`ProcessingRequest without a known request (got ${String(kind)})`);
    }
    // Observability mode: Envoy ignores (and does not wait for) responses.
    return req.observability_mode ? (result.close ? { close: true } : {}) : result;
  }

  /** A bug must not break the HTTP stream: log, count, and let the message through unchanged. */
  private guard(kind: HeadersKind | BodyKind, fn: () => HandleResult): HandleResult {
    try {
      return fn();
    } catch (err) {
      this.opts.stats.inc('errors');
      this.opts.log.error('ext_proc message failed; passing it unchanged', {
        kind,
        service: this.service,
        path: this.path,
        error: (err as Error).stack ?? String(err),
      });
      // No more rewriting on this stream (SseToolsRewriter itself never throws on content, see tools.ts).
      this.sse = undefined;
      this.json = undefined;
      return { response: kind.endsWith('headers') ? headers(kind as HeadersKind, {}) : body(kind as BodyKind, {}) };
    }
  }

  private setMode(change: Partial<ProcessingMode>): ProcessingMode {
    this.mode = { ...this.mode, ...change };
    return this.mode;
  }

  private passthrough(why: string): HandleResult {
    this.opts.stats.inc('passthrough');
    this.opts.log.debug('ext_proc passthrough', { why, service: this.service, path: this.path });
    this.mode = PASSTHROUGH_MODE;
    return { response: headers('request_headers', {}, PASSTHROUGH_MODE), close: true };
  }

  private requestHeaders(req: ProcessingRequest, h: PbHttpHeaders): HandleResult {
    const hdrs = headerRecord(h.headers);
    this.path = hdrs[':path'] ?? '';
    this.service = serviceOf({
      grpcMetadata: this.opts.grpcMetadata,
      metadataContext: req.metadata_context,
      attributes: req.attributes,
      headers: hdrs,
    });
    let allow: ToolPredicate | undefined;
    try {
      const claims = verifiedClaims(req.metadata_context);
      allow = this.opts.toolFilter({ service: this.service, headers: hdrs, ...(claims ? { claims } : {}) }) ?? undefined;
    } catch (err) {
      this.opts.stats.inc('errors');
      this.opts.log.error('tool filter factory failed; hiding every tool for this request', {
        service: this.service,
        error: (err as Error).message,
      });
      allow = () => false;
    }
    if (!allow) return this.passthrough('caller not filtered');
    this.allow = allow;
    const method = (hdrs[':method'] ?? '').toUpperCase();
    const noCompression = { header_mutation: { remove_headers: ['accept-encoding'] } };
    if (method === 'GET' && hdrs['last-event-id'] !== undefined) {
      // Resumption replays stored events first, possibly the one tools/list response of the resumed stream.
      this.match = { kind: 'any', single: true };
      this.resumeBudget = this.opts.maxResumeInspectBytes ?? 256 * 1024;
      return {
        response: headers(
          'request_headers',
          noCompression,
          this.setMode({ request_body_mode: 'NONE', response_header_mode: 'SEND', response_body_mode: 'NONE' }),
        ),
      };
    }
    const mcpMethod = hdrs['mcp-method'];
    if (mcpMethod !== undefined && methodHeaderTrusted(hdrs)) {
      if (mcpMethod.trim() !== 'tools/list') return this.passthrough(`Mcp-Method ${mcpMethod}`);
      // One request per POST in this revision: the response to match is the only one in the stream.
      this.opts.stats.inc('tools_list_requests');
      this.match = { kind: 'any', single: true };
      return {
        response: headers(
          'request_headers',
          noCompression,
          this.setMode({ request_body_mode: 'NONE', response_header_mode: 'SEND', response_body_mode: 'NONE' }),
        ),
      };
    }
    if (method !== 'POST' || h.end_of_stream) return this.passthrough(`${method} without a body`);
    // Only the body can tell: ask for it whole (and for the response headers, in case it is tools/list).
    return {
      response: headers(
        'request_headers',
        {},
        this.setMode({ request_body_mode: 'BUFFERED', response_header_mode: 'SEND', response_body_mode: 'NONE' }),
      ),
    };
  }

  private requestBodyChunk(b: PbHttpBody): HandleResult {
    if (!this.allow || this.match || this.requestBodyDone) return { response: body('request_body', {}) };
    const chunk = b.body ?? new Uint8Array();
    this.requestBodyBytes += chunk.length;
    if (this.requestBodyBytes > (this.opts.maxRequestBodyBytes ?? 4 * 1024 * 1024)) {
      this.requestBodyDone = true;
      this.requestBody = [];
      return { response: body('request_body', {}) };
    }
    this.requestBody.push(Buffer.from(chunk));
    if (!b.end_of_stream) return { response: body('request_body', {}) };
    this.requestBodyDone = true;
    const text = Buffer.concat(this.requestBody).toString('utf8');
    this.requestBody = [];
    const found = toolsListRequests(text);
    if (!found) return { response: body('request_body', {}) };
    this.opts.stats.inc('tools_list_requests', found.ids.size + (found.oddId ? 1 : 0));
    // An id that cannot be keyed (null, an object) still gets an answer from some servers: match by shape.
    this.match = found.oddId ? { kind: 'any' } : { kind: 'ids', ids: found.ids };
    // A compressed answer could not be filtered; headers held with a BUFFERED body can still be changed.
    return { response: body('request_body', { header_mutation: { remove_headers: ['accept-encoding'] } }) };
  }

  private noResponseBody(): HandleResult {
    return { response: headers('response_headers', {}, this.setMode({ response_body_mode: 'NONE' })), close: true };
  }

  private responseHeaders(h: PbHttpHeaders): HandleResult {
    if (!this.allow || !this.match) return this.noResponseBody();
    const hdrs = headerRecord(h.headers);
    if (hdrs[':status'] !== '200' || h.end_of_stream) return this.noResponseBody();
    const encoding = (hdrs['content-encoding'] ?? '').trim().toLowerCase();
    if (encoding !== '' && encoding !== 'identity') {
      this.opts.stats.inc('encoded');
      this.opts.log.warn('tools/list response is content-encoded; passing it unfiltered', {
        service: this.service,
        path: this.path,
        encoding,
      });
      return this.noResponseBody();
    }
    const type = mediaType(hdrs['content-type']);
    if (type === 'application/json') {
      this.json = { partial: false };
      return { response: headers('response_headers', {}, this.setMode({ response_body_mode: 'BUFFERED' })) };
    }
    if (type === 'text/event-stream') {
      const { stats, log } = this.opts;
      this.sse = new SseToolsRewriter(this.match, this.allow, {
        ...(this.opts.maxEventBytes !== undefined ? { maxEventBytes: this.opts.maxEventBytes } : {}),
        events: {
          onMatched: (hidden) => {
            stats.inc('responses_filtered');
            stats.inc('tools_hidden', hidden);
          },
          onMalformed: (error) => {
            stats.inc('malformed');
            log.warn('SSE event on a tools/list stream is not JSON; passing it unchanged', {
              service: this.service,
              path: this.path,
              error,
            });
          },
          onOversize: (bytes) => {
            stats.inc('oversize');
            log.warn('SSE event too large to inspect; passing the rest of the stream unchanged', {
              service: this.service,
              path: this.path,
              bytes,
            });
          },
        },
      });
      // Envoy drops Content-Length itself when a STREAMED body may be mutated; say so explicitly anyway.
      return {
        response: headers(
          'response_headers',
          { header_mutation: { remove_headers: ['content-length'] } },
          this.setMode({ response_body_mode: 'STREAMED' }),
        ),
      };
    }
    return this.noResponseBody();
  }

  private responseBodyChunk(b: PbHttpBody): HandleResult {
    const chunk = Buffer.from(b.body ?? new Uint8Array());
    const eos = b.end_of_stream === true;
    if (this.sse) {
      let out = this.sse.push(chunk);
      if (eos) {
        const tail = this.sse.end();
        if (tail.length > 0) out = Buffer.concat([out, tail]);
      }
      const mutation: CommonResponse = out.equals(chunk)
        ? {}
        : out.length > 0
          ? { body_mutation: { body: out } }
          : { body_mutation: { clear_body: true } };
      // Once the awaited response went by, nothing is held: let Envoy stream the rest without us. A resumed
      // stream is let go once its replay budget is spent, at an event boundary (nothing held back).
      if (this.resumeBudget !== undefined) this.resumeBudget -= chunk.length;
      const budgetSpent = this.resumeBudget !== undefined && this.resumeBudget <= 0 && this.sse.heldBytes === 0;
      if (budgetSpent && !this.sse.done)
        this.opts.log.debug('resumed stream inspected up to its budget; letting go', { service: this.service, path: this.path });
      return { response: body('response_body', mutation), close: this.sse.done || budgetSpent };
    }
    if (this.json && this.allow && this.match) {
      if (!eos) {
        // BUFFERED sends the whole body at once; a partial body (buffer limit) cannot be rewritten safely.
        this.json.partial = true;
        return { response: body('response_body', {}) };
      }
      if (this.json.partial) return { response: body('response_body', {}), close: true };
      const r = rewriteJsonText(chunk.toString('utf8'), this.match, this.allow);
      if (r.kind === 'malformed') {
        this.opts.stats.inc('malformed');
        this.opts.log.warn('tools/list response is not JSON; passing it unchanged', {
          service: this.service,
          path: this.path,
          error: r.error,
        });
        return { response: body('response_body', {}), close: true };
      }
      if (r.matched > 0) this.opts.stats.inc('responses_filtered', r.matched);
      if (r.kind === 'unchanged') return { response: body('response_body', {}), close: true };
      this.opts.stats.inc('tools_hidden', r.hidden);
      const replaced = Buffer.from(r.text, 'utf8');
      // The held headers' Content-Length no longer fits; Envoy re-frames (chunked on HTTP/1.1).
      return {
        response: body('response_body', { header_mutation: { remove_headers: ['content-length'] }, body_mutation: { body: replaced } }),
        close: true,
      };
    }
    return { response: body('response_body', {}) };
  }
}

function headers(kind: HeadersKind, common: CommonResponse, mode?: ProcessingMode): ProcessingResponse {
  return { [kind]: { response: { status: 'CONTINUE', ...common } }, ...(mode ? { mode_override: { ...mode } } : {}) };
}

function body(kind: BodyKind, common: CommonResponse): ProcessingResponse {
  return { [kind]: { response: { status: 'CONTINUE', ...common } } };
}
