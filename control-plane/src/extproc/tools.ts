// JSON-RPC side of per-identity tools/list: which requests are tools/list, which responses answer them,
// and how a response's `tools` array is cut down to what the caller may call. Pure functions and a small
// incremental SSE rewriter; no gRPC here.
import { parseEvent, replaceEventData, SseSplitter } from './sse.ts';

/** Decides per tool name; true = the caller may see (and call) it. */
export type ToolPredicate = (toolName: string) => boolean;

/**
 * Which responses to rewrite: those answering the tools/list requests with these ids, or (when the id is
 * not known: 2026-07-28 requests routed by their Mcp-Method header, resumed streams) any response whose
 * result carries a `tools` array. `single`: at most one such response can come (one request per POST).
 */
export type ResponseMatch =
  | { readonly kind: 'ids'; readonly ids: ReadonlySet<string> }
  | { readonly kind: 'any'; readonly single?: boolean };

/** JSON-RPC ids compared by type and value: 1 and "1" are different requests. */
export function idKey(id: unknown): string | undefined {
  if (typeof id === 'number' || typeof id === 'string') return JSON.stringify(id);
  return undefined;
}

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON.parse as a fetch-based client reads a body: a leading UTF-8 BOM is dropped first. */
export function parseJson(text: string): unknown {
  return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
}

export interface ToolsListRequests {
  /** Keys (idKey) of the tools/list requests' ids. */
  readonly ids: Set<string>;
  /** A tools/list request whose id is neither a string nor a number (e.g. null): match by shape instead. */
  readonly oddId: boolean;
}

/**
 * The tools/list requests in a POST body (one message or a batch array). Undefined when the body is not
 * JSON or holds no tools/list request (a tools/list without an id is a notification: nothing answers it).
 */
export function toolsListRequests(body: string): ToolsListRequests | undefined {
  let value: Json;
  try {
    value = parseJson(body);
  } catch {
    return undefined;
  }
  const ids = new Set<string>();
  let oddId = false;
  for (const m of Array.isArray(value) ? value : [value]) {
    if (!isObject(m) || m['method'] !== 'tools/list' || !('id' in m)) continue;
    const key = idKey(m['id']);
    if (key !== undefined) ids.add(key);
    else oddId = true;
  }
  return ids.size > 0 || oddId ? { ids, oddId } : undefined;
}

/** Just the ids (see toolsListRequests). */
export function toolsListRequestIds(body: string): Set<string> | undefined {
  const r = toolsListRequests(body);
  return r && r.ids.size > 0 ? r.ids : undefined;
}

export interface FilterOutcome {
  /** The (possibly) rewritten value. */
  readonly value: Json;
  /** Responses that matched (and were inspected). */
  readonly matched: number;
  /** Tools removed over all matched responses. */
  readonly hidden: number;
  /** Ids (keys) of the matched responses, to know when a stream has delivered them all. */
  readonly answered: readonly string[];
}

function isResponse(m: Record<string, Json>): boolean {
  return !('method' in m) && ('result' in m || 'error' in m);
}

/** A tool stays when it has a string name the predicate allows; anything malformed is dropped. */
function keepTool(tool: Json, allow: ToolPredicate): boolean {
  if (!isObject(tool) || typeof tool['name'] !== 'string') return false;
  try {
    return allow(tool['name']) === true;
  } catch {
    return false; // a decider that throws hides rather than reveals
  }
}

/** Filters every matching JSON-RPC response in a parsed message or batch. The input is not modified. */
export function filterToolsResponses(value: Json, match: ResponseMatch, allow: ToolPredicate): FilterOutcome {
  let matched = 0;
  let hidden = 0;
  const answered: string[] = [];
  const one = (m: Json): Json => {
    if (!isObject(m) || !isResponse(m)) return m;
    const key = idKey(m['id']);
    const result = m['result'];
    if (match.kind === 'ids') {
      if (key === undefined || !match.ids.has(key)) return m;
    } else if (!isObject(result) || !Array.isArray(result['tools'])) {
      return m;
    }
    matched += 1;
    if (key !== undefined) answered.push(key);
    if (!isObject(result) || !Array.isArray(result['tools'])) return m; // an error, or not a tools result
    const tools = result['tools'] as Json[];
    const kept = tools.filter((t) => keepTool(t, allow));
    hidden += tools.length - kept.length;
    return { ...m, result: { ...result, tools: kept } };
  };
  const out = Array.isArray(value) ? value.map(one) : one(value);
  return { value: out, matched, hidden, answered };
}

export type RewriteResult =
  | { readonly kind: 'unchanged'; readonly matched: number; readonly answered: readonly string[] }
  | {
      readonly kind: 'rewritten';
      readonly text: string;
      readonly matched: number;
      readonly hidden: number;
      readonly answered: readonly string[];
    }
  | { readonly kind: 'malformed'; readonly error: string };

/** Rewrites a JSON text (a whole application/json body, or one SSE event's data). */
export function rewriteJsonText(text: string, match: ResponseMatch, allow: ToolPredicate): RewriteResult {
  let value: Json;
  try {
    value = parseJson(text);
  } catch (err) {
    return { kind: 'malformed', error: (err as Error).message };
  }
  const r = filterToolsResponses(value, match, allow);
  if (r.matched === 0) return { kind: 'unchanged', matched: 0, answered: [] };
  if (r.hidden === 0) return { kind: 'unchanged', matched: r.matched, answered: r.answered };
  return { kind: 'rewritten', text: JSON.stringify(r.value), matched: r.matched, hidden: r.hidden, answered: r.answered };
}

export interface SseRewriteEvents {
  onMatched?(hidden: number): void;
  onMalformed?(error: string): void;
  onOversize?(bytes: number): void;
}

/**
 * Streams an SSE body through, rewriting only the event(s) that carry the awaited tools/list response(s).
 * Other events come out byte for byte, as soon as they are complete; once every awaited id has been seen
 * the rewriter stops parsing and passes chunks straight through.
 */
export class SseToolsRewriter {
  private readonly splitter = new SseSplitter();
  private readonly pending: Set<string> | undefined;
  private readonly match: ResponseMatch;
  private readonly allow: ToolPredicate;
  private readonly maxEventBytes: number;
  private readonly events: SseRewriteEvents;
  private passthrough = false;

  constructor(match: ResponseMatch, allow: ToolPredicate, opts: { maxEventBytes?: number; events?: SseRewriteEvents } = {}) {
    this.match = match;
    this.allow = allow;
    this.pending = match.kind === 'ids' ? new Set(match.ids) : undefined;
    this.maxEventBytes = opts.maxEventBytes ?? 8 * 1024 * 1024;
    this.events = opts.events ?? {};
  }

  /** True once nothing more will be rewritten. */
  get done(): boolean {
    return this.passthrough;
  }

  /** Bytes held back (an event not yet complete). */
  get heldBytes(): number {
    return this.splitter.pendingBytes;
  }

  push(chunk: Uint8Array): Buffer {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    if (this.passthrough) return buf;
    const parts: Buffer[] = [];
    for (const piece of this.splitter.push(buf)) {
      parts.push(piece.complete && !this.passthrough ? this.event(piece.raw) : piece.raw);
    }
    if (this.passthrough) {
      const rest = this.splitter.take();
      if (rest) parts.push(rest);
    } else if (this.splitter.pendingBytes > this.maxEventBytes) {
      // Not going to hold an unbounded event in memory: give up on this stream, unchanged.
      this.events.onOversize?.(this.splitter.pendingBytes);
      this.passthrough = true;
      const rest = this.splitter.take();
      if (rest) parts.push(rest);
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** End of the body: whatever is held (an unterminated last event) goes out unchanged. */
  end(): Buffer {
    this.passthrough = true;
    return this.splitter.end() ?? Buffer.alloc(0);
  }

  /** One complete event: rewritten, or (for anything unexpected) its original bytes. Never throws. */
  private event(raw: Buffer): Buffer {
    try {
      return this.rewriteEvent(raw);
    } catch (err) {
      this.events.onMalformed?.(`unexpected: ${(err as Error).message}`);
      return raw;
    }
  }

  private rewriteEvent(raw: Buffer): Buffer {
    const ev = parseEvent(raw);
    if (ev.data === undefined || ev.data.trim() === '') return raw; // priming events, keep-alives, comments
    const r = rewriteJsonText(ev.data, this.match, this.allow);
    if (r.kind === 'malformed') {
      this.events.onMalformed?.(r.error);
      return raw;
    }
    if (r.matched > 0) {
      this.events.onMatched?.(r.kind === 'rewritten' ? r.hidden : 0);
      if (this.pending) {
        for (const id of r.answered) this.pending.delete(id);
        if (this.pending.size === 0) this.passthrough = true;
      } else if (this.match.kind === 'any' && this.match.single === true) {
        this.passthrough = true;
      }
    }
    return r.kind === 'rewritten' ? replaceEventData(ev, r.text) : raw;
  }
}
