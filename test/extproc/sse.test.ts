// The incremental SSE splitter/rewriter behind per-identity tools/list: byte-exact passthrough of every
// event but the tools/list response, whatever the chunking (inside CRLF, inside a UTF-8 character, one
// byte at a time), with CRLF/CR/LF line endings and multi-line data.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEvent, SseSplitter } from '../../control-plane/src/extproc/sse.ts';
import {
  filterToolsResponses,
  idKey,
  rewriteJsonText,
  SseToolsRewriter,
  toolsListRequestIds,
  toolsListRequests,
  type ResponseMatch,
} from '../../control-plane/src/extproc/tools.ts';

const allow = (name: string): boolean => name === 'echo' || name === 'get-sum';
const TOOLS = [
  { name: 'echo', description: 'Echoes' },
  { name: 'secret', description: 'Très secret 🙂' },
  { name: 'get-sum', description: 'Adds' },
  { name: 'rm-rf', description: 'no' },
];
const ids = (...list: unknown[]): ResponseMatch => ({ kind: 'ids', ids: new Set(list.map((i) => idKey(i) as string)) });

/** A realistic SDK 1.x SSE stream: priming event, a notification, the tools/list response, a trailing comment. */
function stream(eol: string, opts: { multiline?: boolean } = {}): { input: string; expected: string } {
  const response = { jsonrpc: '2.0', id: 2, result: { tools: TOOLS, nextCursor: 'c1' } };
  const filtered = { jsonrpc: '2.0', id: 2, result: { tools: TOOLS.filter((t) => allow(t.name)), nextCursor: 'c1' } };
  const note = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'tools/list seen: é' } };
  const other = { jsonrpc: '2.0', id: 3, result: { tools: TOOLS } }; // not the awaited id: untouched
  const data = opts.multiline
    ? JSON.stringify(response, null, 2)
        .split('\n')
        .map((l) => `data:${l}${eol}`)
        .join('')
    : `data: ${JSON.stringify(response)}${eol}`;
  const head = [
    `id: prime-1${eol}data: ${eol}${eol}`,
    `: keep-alive comment${eol}${eol}`,
    `event: message${eol}id: ev-1${eol}data: ${JSON.stringify(note)}${eol}${eol}`,
    `event: message${eol}id: ev-x${eol}data: ${JSON.stringify(other)}${eol}${eol}`,
  ].join('');
  const tail = `: after${eol}${eol}event: message${eol}id: ev-3${eol}data: ${JSON.stringify(note)}${eol}${eol}`;
  const input = `${head}event: message${eol}: a comment inside the event${eol}id: ev-2${eol}${data}retry: 500${eol}${eol}${tail}`;
  const expected = `${head}event: message${eol}: a comment inside the event${eol}id: ev-2${eol}data: ${JSON.stringify(filtered)}${eol}retry: 500${eol}${eol}${tail}`;
  return { input, expected };
}

function run(chunks: Buffer[], match: ResponseMatch = ids(2)): string {
  const rw = new SseToolsRewriter(match, allow);
  const out = chunks.map((c) => rw.push(c));
  out.push(rw.end());
  return Buffer.concat(out).toString('utf8');
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('SseSplitter', () => {
  it('returns every byte exactly once, in order, at any chunking, and cuts events at blank lines', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const input = Buffer.from(stream(eol).input, 'utf8');
      const whole = new SseSplitter().push(input);
      const events = whole.filter((p) => p.complete).map((p) => p.raw.toString('utf8'));
      assert.equal(events.length, 7, `7 events with ${JSON.stringify(eol)}`);
      for (let cut = 0; cut <= input.length; cut++) {
        const s = new SseSplitter();
        const pieces = [...s.push(input.subarray(0, cut)), ...s.push(input.subarray(cut))];
        const tail = s.end();
        assert.equal(tail, undefined);
        assert.equal(Buffer.concat(pieces.map((p) => p.raw)).toString('utf8'), input.toString('utf8'));
        assert.deepEqual(
          pieces.filter((p) => p.complete).map((p) => p.raw.toString('utf8')),
          events,
          `cut at ${cut}`,
        );
      }
    }
  });

  it('keeps an unterminated last event for end()', () => {
    const s = new SseSplitter();
    assert.deepEqual(
      s.push(Buffer.from('data: 1\n\ndata: 2\n')).map((p) => p.raw.toString()),
      ['data: 1\n\n'],
    );
    assert.equal(s.pendingBytes, 8);
    assert.equal(s.end()?.toString(), 'data: 2\n');
  });

  it('parses fields the WHATWG way: optional single space, multi-line data, comments, bare field names', () => {
    const ev = parseEvent(Buffer.from('id:7\r\nevent:  x\r\n: comment\r\ndata\r\ndata:  two\r\ndata:three\r\n\r\n'));
    assert.equal(ev.id, '7');
    assert.equal(ev.event, ' x');
    assert.equal(ev.data, '\n two\nthree');
  });
});

describe('SseToolsRewriter', () => {
  it('rewrites only the tools/list response event (LF), whole stream in one chunk', () => {
    const { input, expected } = stream('\n');
    assert.equal(run([Buffer.from(input)]), expected);
  });

  for (const [label, eol] of [
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ] as const) {
    it(`${label}: identical output for a cut at every byte position, and one byte at a time`, () => {
      const { input, expected } = stream(eol);
      const buf = Buffer.from(input, 'utf8');
      for (let cut = 0; cut <= buf.length; cut++) assert.equal(run(splitAt(buf, [cut])), expected, `cut at ${cut}`);
      assert.equal(run([...buf].map((b) => Buffer.from([b]))), expected);
    });
  }

  it('random multi-cut chunkings (CRLF, multi-line pretty-printed data)', () => {
    const { input, expected } = stream('\r\n', { multiline: true });
    assert.match(input, /data:\{\r\ndata: {2}"jsonrpc"/);
    const buf = Buffer.from(input, 'utf8');
    const rand = rng(42);
    for (let i = 0; i < 400; i++) {
      const n = 1 + Math.floor(rand() * 12);
      const cuts = Array.from({ length: n }, () => Math.floor(rand() * (buf.length + 1)));
      assert.equal(run(splitAt(buf, cuts)), expected);
    }
  });

  it('a chunk boundary inside a multi-byte UTF-8 character of the rewritten event is harmless', () => {
    const { input, expected } = stream('\n');
    const buf = Buffer.from(input, 'utf8');
    const emoji = buf.indexOf(Buffer.from('🙂', 'utf8'), buf.indexOf('ev-2'));
    assert.ok(emoji > 0);
    for (let k = 1; k < 4; k++) assert.equal(run(splitAt(buf, [emoji + k])), expected);
  });

  it('passes other events on as soon as they are complete (holds only the event being received)', () => {
    const rw = new SseToolsRewriter(ids(2), allow);
    const first = 'event: message\nid: 1\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n';
    const out = rw.push(Buffer.from(`${first}event: message\nid: 2\ndata: {"jsonrpc":`));
    assert.equal(out.toString(), first);
    assert.ok(rw.heldBytes > 0);
    const rest = rw.push(Buffer.from('"2.0","id":2,"result":{"tools":[{"name":"secret"},{"name":"echo"}]}}\n\n'));
    assert.equal(rest.toString(), 'event: message\nid: 2\ndata: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"}]}}\n\n');
    // Done: later chunks go straight through, even half events.
    assert.equal(rw.done, true);
    assert.equal(rw.push(Buffer.from('data: {"half')).toString(), 'data: {"half');
    assert.equal(rw.heldBytes, 0);
  });

  it('keeps a non-matching id, an error response and a batch element it does not await untouched', () => {
    const events = [
      'data: {"jsonrpc":"2.0","id":"2","result":{"tools":[{"name":"secret"}]}}\n\n', // "2" is not 2
      'data: {"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"boom"}}\n\n',
    ].join('');
    assert.equal(run([Buffer.from(events)]), events);
    const batch =
      'data: [{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"secret"},{"name":"echo"}]}},{"jsonrpc":"2.0","id":6,"result":{"tools":[{"name":"secret"}]}}]\n\n';
    assert.equal(
      run([Buffer.from(batch)], ids(6)),
      'data: [{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"secret"},{"name":"echo"}]}},{"jsonrpc":"2.0","id":6,"result":{"tools":[]}}]\n\n',
    );
  });

  it('waits for every awaited id (batched request answered in separate events)', () => {
    const rw = new SseToolsRewriter(ids(1, 'b'), allow);
    const a = rw.push(Buffer.from('data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"}]}}\n\n'));
    assert.equal(a.toString(), 'data: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\n\n');
    assert.equal(rw.done, false);
    const b = rw.push(Buffer.from('data: {"jsonrpc":"2.0","id":"b","result":{"tools":[{"name":"echo"},{"name":"y"}]}}\n\n'));
    assert.equal(b.toString(), 'data: {"jsonrpc":"2.0","id":"b","result":{"tools":[{"name":"echo"}]}}\n\n');
    assert.equal(rw.done, true);
  });

  it('malformed JSON in the awaited event passes unchanged and is reported', () => {
    const errors: string[] = [];
    const rw = new SseToolsRewriter(ids(2), allow, { events: { onMalformed: (e) => errors.push(e) } });
    const bad = 'id: 9\ndata: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secret"}\n\n';
    assert.equal(rw.push(Buffer.from(bad)).toString(), bad);
    assert.equal(errors.length, 1);
  });

  it('an event above maxEventBytes gives up: everything passes unchanged, reported once', () => {
    let oversize = 0;
    const rw = new SseToolsRewriter(ids(2), allow, {
      maxEventBytes: 64,
      events: {
        onOversize: () => {
          oversize += 1;
        },
      },
    });
    const big = `data: {"jsonrpc":"2.0","id":2,"result":{"tools":[${'{"name":"secret"},'.repeat(10)}{"name":"echo"}]}}\n\n`;
    const out = Buffer.concat([rw.push(Buffer.from(big.slice(0, 100))), rw.push(Buffer.from(big.slice(100))), rw.end()]);
    assert.equal(out.toString(), big);
    assert.equal(oversize, 1);
  });

  it('an unterminated final event is flushed unchanged at end of stream', () => {
    const rw = new SseToolsRewriter(ids(2), allow);
    const partial = 'data: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secret"}]}}';
    assert.equal(rw.push(Buffer.from(partial)).length, 0);
    assert.equal(rw.end().toString(), partial);
  });

  it("'any' matching (ids unknown) filters every tools result; single stops after the first", () => {
    const ev = 'data: {"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"secret"},{"name":"echo"}]}}\n\n';
    const filtered = 'data: {"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"}]}}\n\n';
    const prompts = 'data: {"jsonrpc":"2.0","id":8,"result":{"prompts":[{"name":"secret"}]}}\n\n';
    assert.equal(run([Buffer.from(ev + prompts + ev)], { kind: 'any' }), filtered + prompts + filtered);
    assert.equal(run([Buffer.from(ev + ev)], { kind: 'any', single: true }), filtered + ev);
  });
});

describe('JSON-RPC helpers', () => {
  it('finds tools/list ids in single messages and batches, by type', () => {
    assert.deepEqual(toolsListRequestIds('{"jsonrpc":"2.0","id":1,"method":"tools/list"}'), new Set(['1']));
    assert.deepEqual(
      toolsListRequestIds(
        '[{"jsonrpc":"2.0","id":"1","method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call"},{"jsonrpc":"2.0","id":3,"method":"tools/list"}]',
      ),
      new Set(['"1"', '3']),
    );
    assert.equal(toolsListRequestIds('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools/list"}}'), undefined);
    assert.equal(toolsListRequestIds('not json'), undefined);
    assert.equal(toolsListRequestIds('{"jsonrpc":"2.0","method":"tools/list"}'), undefined); // a notification gets no response
    // What a fetch-based server accepts, this accepts too: a leading BOM cannot hide a tools/list.
    assert.deepEqual(toolsListRequestIds('\uFEFF{"jsonrpc":"2.0","id":1,"method":"tools/list"}'), new Set(['1']));
    // An id that cannot be matched exactly (null) falls back to matching responses by shape.
    assert.deepEqual(toolsListRequests('{"jsonrpc":"2.0","id":null,"method":"tools/list"}'), { ids: new Set(), oddId: true });
  });

  it('filters without mutating its input; malformed tool entries and throwing predicates hide', () => {
    const input = { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'echo' }, { nome: 'x' }, 'str', { name: 'boom' }], _meta: { k: 1 } } };
    const copy = structuredClone(input);
    const r = filterToolsResponses(input, ids(1), (n) => {
      if (n === 'boom') throw new Error('x');
      return true;
    });
    assert.deepEqual(input, copy);
    assert.deepEqual(r.value, { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'echo' }], _meta: { k: 1 } } });
    assert.equal(r.hidden, 3);
  });

  it('rewriteJsonText leaves text byte-identical when nothing is hidden', () => {
    const text = '{ "jsonrpc": "2.0", "id": 1, "result": { "tools": [ { "name": "echo" } ] } }';
    assert.deepEqual(rewriteJsonText(text, ids(1), allow), { kind: 'unchanged', matched: 1, answered: ['1'] });
    assert.equal(rewriteJsonText('{"id":1', ids(1), allow).kind, 'malformed');
    const bom = rewriteJsonText('\uFEFF{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}]}}', ids(1), allow);
    assert.equal(bom.kind === 'rewritten' && bom.text, '{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}');
  });
});
