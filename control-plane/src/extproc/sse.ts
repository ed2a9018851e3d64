// Incremental Server-Sent Events framing, byte-exact.
//
// The splitter cuts a byte stream (arriving in arbitrary chunks) into whole SSE events without decoding
// anything: line terminators (CRLF, LF, CR, per the WHATWG event-stream grammar) are ASCII bytes that never
// occur inside a UTF-8 multi-byte sequence, so a chunk boundary in the middle of a character or of a CRLF
// is harmless. Every byte that goes in comes out exactly once, in order: either inside a complete event
// (all its lines plus the blank line that ends it) or as a "gap" (the LF of a CRLF whose CR already ended
// the previous event). Only the bytes of the event currently being received are held back.

const CR = 0x0d;
const LF = 0x0a;

export interface SsePiece {
  /** Raw bytes, exactly as received. */
  readonly raw: Buffer;
  /** True for a complete event (ends with a blank line); false for a gap or an unterminated tail. */
  readonly complete: boolean;
}

export class SseSplitter {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private atLineStart = true;
  private afterCR = false;

  /** Bytes of the event still being received. */
  get pendingBytes(): number {
    return this.heldBytes;
  }

  /** Feeds one chunk; returns the pieces it completed (possibly none). */
  push(chunk: Uint8Array): SsePiece[] {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: SsePiece[] = [];
    let segStart = 0;
    for (let i = 0; i < buf.length; i++) {
      const b = buf[i];
      if (this.afterCR && b === LF) {
        this.afterCR = false;
        // The LF of a CRLF whose CR ended an event: it belongs to no event; hand it on as a gap.
        if (this.heldBytes === 0 && segStart === i) {
          out.push({ raw: buf.subarray(i, i + 1), complete: false });
          segStart = i + 1;
        }
        continue;
      }
      this.afterCR = b === CR;
      if (b === CR || b === LF) {
        if (this.atLineStart) {
          // A blank line: the event is complete.
          const tail = buf.subarray(segStart, i + 1);
          const raw = this.heldBytes === 0 ? tail : Buffer.concat([...this.held, tail]);
          this.held = [];
          this.heldBytes = 0;
          out.push({ raw, complete: true });
          segStart = i + 1;
        }
        this.atLineStart = true;
      } else {
        this.atLineStart = false;
      }
    }
    if (segStart < buf.length) {
      // Copy: the caller may reuse its chunk buffer.
      const rest = Buffer.from(buf.subarray(segStart));
      this.held.push(rest);
      this.heldBytes += rest.length;
    }
    return out;
  }

  /** Ends the stream: returns the unterminated tail, if any, and resets. */
  end(): Buffer | undefined {
    const rest = this.take();
    this.atLineStart = true;
    this.afterCR = false;
    return rest;
  }

  /** Hands back the held bytes without ending the stream (used when giving up on parsing). */
  take(): Buffer | undefined {
    if (this.heldBytes === 0) return undefined;
    const rest = Buffer.concat(this.held);
    this.held = [];
    this.heldBytes = 0;
    return rest;
  }
}

export interface SseLine {
  /** The line without its terminator. */
  readonly text: string;
  /** Its terminator: "\r\n", "\n", "\r" or "" (last line of an unterminated tail). */
  readonly eol: string;
}

/** Splits one raw event into lines, keeping each line's own terminator. */
export function eventLines(raw: string): SseLine[] {
  const lines: SseLine[] = [];
  const re = /\r\n|\r|\n/g;
  let start = 0;
  for (let m = re.exec(raw); m; m = re.exec(raw)) {
    lines.push({ text: raw.slice(start, m.index), eol: m[0] });
    start = m.index + m[0].length;
  }
  if (start < raw.length) lines.push({ text: raw.slice(start), eol: '' });
  return lines;
}

/** A field line's name and value (one leading space of the value is dropped); undefined for comments. */
export function fieldOf(line: string): { name: string; value: string } | undefined {
  if (line.startsWith(':')) return undefined;
  const colon = line.indexOf(':');
  if (colon < 0) return { name: line, value: '' };
  const value = line.slice(colon + 1);
  return { name: line.slice(0, colon), value: value.startsWith(' ') ? value.slice(1) : value };
}

export interface ParsedEvent {
  readonly lines: readonly SseLine[];
  /** Data lines joined with "\n", or undefined when the event has no data field. */
  readonly data: string | undefined;
  readonly id: string | undefined;
  readonly event: string | undefined;
}

const BOM = '\uFEFF';

/** Parses a complete event (as produced by SseSplitter). */
export function parseEvent(raw: Buffer): ParsedEvent {
  const lines = eventLines(raw.toString('utf8'));
  const data: string[] = [];
  let id: string | undefined;
  let event: string | undefined;
  lines.forEach((line, i) => {
    const f = fieldOf(i === 0 && line.text.startsWith(BOM) ? line.text.slice(1) : line.text);
    if (!f) return;
    if (f.name === 'data') data.push(f.value);
    else if (f.name === 'id' && !f.value.includes('\0')) id = f.value;
    else if (f.name === 'event') event = f.value;
  });
  return { lines, data: data.length > 0 ? data.join('\n') : undefined, id, event };
}

/**
 * Rebuilds an event with new data: every line other than data lines (id, event, retry, comments, the blank
 * line) stays where it was, byte for byte; the data lines are replaced, at the position of the first one,
 * by one `data:` line per line of the new data, using the first data line's terminator.
 */
export function replaceEventData(ev: ParsedEvent, data: string): Buffer {
  let out = '';
  let written = false;
  ev.lines.forEach((line, i) => {
    const f = fieldOf(i === 0 && line.text.startsWith(BOM) ? line.text.slice(1) : line.text);
    if (f?.name !== 'data') {
      out += line.text + line.eol;
      return;
    }
    if (written) return;
    written = true;
    const eol = line.eol || '\n';
    const bom = i === 0 && line.text.startsWith(BOM) ? BOM : '';
    out +=
      bom +
      data
        .split(/\r\n|\r|\n/)
        .map((l) => `data: ${l}${eol}`)
        .join('');
  });
  return Buffer.from(out, 'utf8');
}
