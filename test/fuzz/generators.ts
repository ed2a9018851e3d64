// Case generators for the authorizer fuzz: bodies and header sets aimed at the attack classes of issue 11
// (charset parameters and UTF-7 polyglots, BOMs, duplicate keys, batches, \u escapes, control characters and
// trailing spaces in names, method case, resource URIs with dot segments and percent-encoding, Mcp-* headers
// that disagree with the body or repeat, protocol version games, =?base64?...?= names), plus plain valid calls
// so that both outcomes occur. Bodies are written as JSON text by hand (duplicate keys, escapes), then encoded
// to bytes (UTF-8, UTF-7, UTF-16, UTF-32, latin1, gzip). Everything comes from the case's own Rng.
import { deflateSync, gzipSync } from 'node:zlib';
import { CALLERS, type Caller, type FuzzService, type MeshRequest } from './mesh.ts';
import { ORACLE_PROMPTS, ORACLE_TOOLS } from './oracles.ts';
import { Rng } from './rng.ts';

export const ATTACK_CLASSES = [
  'valid',
  'charset',
  'utf7',
  'bom',
  'dupkey',
  'batch',
  'escape',
  'ctrl',
  'method-case',
  'uri',
  'hdr-mismatch',
  'hdr-repeat',
  'version',
  'b64name',
  'content-encoding',
] as const;
export type AttackClass = (typeof ATTACK_CLASSES)[number];

export interface FuzzCase extends MeshRequest {
  readonly seed: string;
  readonly index: number;
  /** The attack classes the case combines (primary first). */
  readonly classes: readonly AttackClass[];
  /** What the generator meant, in words (for reports). */
  readonly note: string;
}

// ------------------------------------------------------------------------------------------ universe

type Kind = 'tool' | 'resource' | 'prompt';
interface Target {
  readonly kind: Kind;
  readonly name: string;
}

const TOOLS: readonly string[] = [...ORACLE_TOOLS, 'get_history', 'drop_logs'];
const RESOURCES: readonly string[] = [
  'file:///reports/q1.txt',
  'file:///reports/2026/tides.csv',
  'file:///etc/passwd',
  'file:///etc/shadow',
  'file:///var/log/syslog',
];
const PROMPTS: readonly string[] = [...ORACLE_PROMPTS];
/** Targets the fuzz policy denies to a reader or an operator (the interesting ones to smuggle). */
const DENIED_TOOLS: readonly string[] = ['admin_reset', 'admin_x', 'drop_cache'];
const ALLOWED_TOOLS: readonly string[] = ['get_forecast', 'get_tide', 'warm_cache'];
const DENIED_RESOURCES: readonly string[] = ['file:///etc/passwd', 'file:///etc/shadow', 'file:///var/log/syslog'];
const ALLOWED_RESOURCES: readonly string[] = ['file:///reports/q1.txt', 'file:///reports/2026/tides.csv'];

const METHOD_OF: Readonly<Record<Kind, string>> = { tool: 'tools/call', resource: 'resources/read', prompt: 'prompts/get' };
const PARAM_OF: Readonly<Record<Kind, string>> = { tool: 'name', resource: 'uri', prompt: 'name' };
const SERVICE_METHODS: readonly string[] = ['ping', 'tools/list', 'resources/list', 'prompts/list', 'resources/templates/list'];

function anyTarget(rng: Rng): Target {
  const kind = rng.weighted<Kind>([
    ['tool', 6],
    ['resource', 3],
    ['prompt', 1],
  ]);
  return { kind, name: rng.pick(kind === 'tool' ? TOOLS : kind === 'resource' ? RESOURCES : PROMPTS) };
}
function deniedTarget(rng: Rng): Target {
  const kind = rng.weighted<Kind>([
    ['tool', 6],
    ['resource', 3],
    ['prompt', 1],
  ]);
  return { kind, name: kind === 'tool' ? rng.pick(DENIED_TOOLS) : kind === 'resource' ? rng.pick(DENIED_RESOURCES) : 'secret_prompt' };
}
function allowedTarget(
  rng: Rng,
  kind: Kind = rng.weighted<Kind>([
    ['tool', 6],
    ['resource', 3],
    ['prompt', 1],
  ]),
): Target {
  return { kind, name: kind === 'tool' ? rng.pick(ALLOWED_TOOLS) : kind === 'resource' ? rng.pick(ALLOWED_RESOURCES) : 'summary_daily' };
}

// ------------------------------------------------------------------------------------------- JSON text

/** A JSON string literal; `escapeP` of the printable characters become \uXXXX (and "/" sometimes "\/"). */
export function jstr(s: string, rng?: Rng, escapeP = 0): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    // Control characters and lone surrogates (which UTF-8 cannot carry) always as escapes.
    else if (c < 0x20 || (c >= 0xd800 && c <= 0xdfff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (rng && escapeP > 0 && c < 0x10000 && rng.chance(escapeP)) {
      const hex = c.toString(16).padStart(4, '0');
      out += `\\u${rng.chance(0.5) ? hex : hex.toUpperCase()}`;
    } else if (ch === '/' && rng && escapeP > 0 && rng.chance(escapeP)) out += '\\/';
    else out += ch;
  }
  return `${out}"`;
}

/** A JSON object from [key literal or plain key, value text] pairs, duplicates kept. */
function obj(entries: ReadonlyArray<readonly [string, string]>): string {
  return `{${entries.map(([k, v]) => `${k.startsWith('"') ? k : jstr(k)}:${v}`).join(',')}}`;
}

const capitalized = (s: string): string => `${s.charAt(0).toUpperCase()}${s.slice(1)}`;

function idText(rng: Rng, n: number): string {
  return rng.chance(0.8) ? String(n) : jstr(`req-${n}`);
}

/** One JSON-RPC request for a target: `{"jsonrpc":"2.0","id":n,"method":...,"params":{...}}`. */
function request(
  rng: Rng,
  id: number,
  t: Target,
  o: { nameText?: string; methodText?: string; extraParams?: ReadonlyArray<readonly [string, string]>; noId?: boolean } = {},
): string {
  const params: Array<readonly [string, string]> = [[PARAM_OF[t.kind], o.nameText ?? jstr(t.name)]];
  if (t.kind === 'tool') params.push(['arguments', '{}']);
  params.push(...(o.extraParams ?? []));
  const entries: Array<readonly [string, string]> = [
    ['jsonrpc', '"2.0"'],
    ...(o.noId ? [] : [['id', idText(rng, id)] as const]),
    ['method', o.methodText ?? jstr(METHOD_OF[t.kind])],
    ['params', obj(params)],
  ];
  return obj(rng.chance(0.2) ? rng.shuffle(entries) : entries);
}

function serviceRequest(rng: Rng, id: number, method = rng.pick(SERVICE_METHODS)): string {
  return obj([
    ['jsonrpc', '"2.0"'],
    ['id', idText(rng, id)],
    ['method', jstr(method)],
  ]);
}

const NOTIFICATION = '{"jsonrpc":"2.0","method":"notifications/initialized"}';

// -------------------------------------------------------------------------------------------- encodings

const UTF7_B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** UTF-7 (RFC 2152) of `s`: characters in `encode` (and any non-ASCII or '+') go base64, the rest direct. */
export function utf7(s: string, encode: (ch: string) => boolean = (ch) => ch === '"'): string {
  let out = '';
  let run = '';
  const flush = (): void => {
    if (run === '') return;
    const bytes = Buffer.from(run, 'utf16le').swap16();
    let bits = 0;
    let acc = 0;
    let b64 = '';
    for (const b of bytes) {
      acc = (acc << 8) | b;
      bits += 8;
      while (bits >= 6) {
        bits -= 6;
        b64 += UTF7_B64[(acc >> bits) & 63];
      }
    }
    if (bits > 0) b64 += UTF7_B64[(acc << (6 - bits)) & 63];
    out += `+${b64}-`;
    run = '';
  };
  for (const ch of s) {
    if (encode(ch) || ch === '+' || (ch.codePointAt(0) as number) > 0x7e) run += ch;
    else {
      flush();
      out += ch;
    }
  }
  flush();
  return out;
}

function utf16(text: string, be: boolean, bom: boolean): Buffer {
  const b = Buffer.from(`${bom ? '\ufeff' : ''}${text}`, 'utf16le');
  return be ? b.swap16() : b;
}

function utf32(text: string, be: boolean, bom: boolean): Buffer {
  const cps = [...`${bom ? '\ufeff' : ''}${text}`].map((c) => c.codePointAt(0) as number);
  const b = Buffer.alloc(cps.length * 4);
  cps.forEach((cp, i) => {
    if (be) b.writeUInt32BE(cp, i * 4);
    else b.writeUInt32LE(cp, i * 4);
  });
  return b;
}

const BOM8 = Buffer.from([0xef, 0xbb, 0xbf]);

function contentType(rng: Rng, charset: string | undefined): string {
  if (charset === undefined) return rng.pick(['application/json', 'application/json', 'Application/JSON', 'application/json; foo=bar']);
  const cs = rng.pick([charset, charset.toUpperCase(), `"${charset}"`, `"${charset.toUpperCase()}"`]);
  return rng.pick([
    `application/json; charset=${cs}`,
    `application/json;charset=${cs}`,
    `Application/JSON; Charset=${cs}`,
    `application/json; charset=${cs}; foo=bar`,
    `application/json; foo=bar; charset=${cs}`,
  ]);
}

// --------------------------------------------------------------------------------------------- headers

type Lines = Array<[string, string]>;

const name = (rng: Rng, canonical: string): string => rng.pick([canonical, canonical.toLowerCase(), canonical.toUpperCase()]);

/** A header value as a 2026-07-28 client writes Mcp-Name: plain when printable ASCII, else =?base64?...?=. */
export function mcpNameValue(value: string): string {
  return /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value) ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

interface Declared {
  readonly method: string;
  readonly name?: string;
}

function declaredOf(t: Target | undefined, method?: string): Declared {
  return t ? { method: METHOD_OF[t.kind], name: t.name } : { method: method ?? 'ping' };
}

/** Headers an honest client of `svc` sends for a request that declares `d`. */
function baseHeaders(rng: Rng, svc: FuzzService, d: Declared, charset?: string): Lines {
  const lines: Lines = [
    [name(rng, 'Content-Type'), contentType(rng, charset)],
    [name(rng, 'Accept'), rng.chance(0.9) ? 'application/json, text/event-stream' : 'text/event-stream, application/json'],
  ];
  if (svc === 'tides') {
    lines.push([name(rng, 'MCP-Protocol-Version'), '2026-07-28'], [name(rng, 'Mcp-Method'), d.method]);
    if (d.name !== undefined) lines.push([name(rng, 'Mcp-Name'), mcpNameValue(d.name)]);
  } else {
    lines.push([name(rng, 'MCP-Protocol-Version'), rng.chance(0.9) ? '2025-11-25' : '2025-06-18']);
    // A 2025-11-25 service ignores these, but a client may send them anyway.
    if (rng.chance(0.1)) {
      lines.push([name(rng, 'Mcp-Method'), d.method]);
      if (d.name !== undefined) lines.push([name(rng, 'Mcp-Name'), mcpNameValue(d.name)]);
    }
  }
  return rng.chance(0.2) ? rng.shuffle(lines) : lines;
}

const isHeader =
  (n: string) =>
  ([k]: readonly [string, string]): boolean =>
    k.toLowerCase() === n;
function setHeader(lines: Lines, header: string, value: string | undefined): Lines {
  const i = lines.findIndex(isHeader(header));
  const rest = lines.filter((l) => !isHeader(header)(l));
  if (value === undefined) return rest;
  const k = i >= 0 ? (lines[i] as [string, string])[0] : header;
  rest.splice(i >= 0 ? i : rest.length, 0, [k, value]);
  return rest;
}
const getHeader = (lines: Lines, header: string): string | undefined => lines.find(isHeader(header))?.[1];

// ------------------------------------------------------------------------------------------ generators

interface Draft {
  classes: AttackClass[];
  note: string;
  method: string;
  headers: Lines;
  body: Buffer;
}

interface Ctx {
  readonly rng: Rng;
  readonly svc: FuzzService;
  readonly caller: Caller;
  readonly id: number;
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

function genValid({ rng, svc, id }: Ctx): Draft {
  if (rng.chance(0.2)) {
    const m = rng.pick([...SERVICE_METHODS, 'initialize', 'notifications/initialized']);
    const body =
      m === 'initialize'
        ? obj([
            ['jsonrpc', '"2.0"'],
            ['id', String(id)],
            ['method', '"initialize"'],
            ['params', '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}'],
          ])
        : m.startsWith('notifications/')
          ? NOTIFICATION
          : serviceRequest(rng, id, m);
    return { classes: ['valid'], note: `valid ${m}`, method: 'POST', headers: baseHeaders(rng, svc, { method: m }), body: utf8(body) };
  }
  const t = anyTarget(rng);
  return {
    classes: ['valid'],
    note: `valid ${METHOD_OF[t.kind]} ${t.name}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declaredOf(t)),
    body: utf8(request(rng, id, t)),
  };
}

function genCharset({ rng, svc, id }: Ctx): Draft {
  const t = anyTarget(rng);
  const text = request(rng, id, t);
  const cs = rng.pick([
    'utf-8',
    'utf-7',
    'utf-16',
    'utf-16le',
    'utf-16be',
    'utf-32',
    'utf-32le',
    'utf-32be',
    'latin1',
    'iso-8859-1',
    'windows-1252',
    'us-ascii',
    'utf8',
    'utf-8; charset=utf-7',
    'bad-utf-8',
  ]);
  const bom = rng.chance(0.4);
  let body: Buffer;
  if (cs === 'bad-utf-8') {
    // Bytes that are not UTF-8 inside the name (overlong '"' and '/', a stray continuation byte, an encoded
    // surrogate, 0xFF): decoders that substitute U+FFFD hand a server a name nobody wrote.
    const bad = rng.pick([
      [0xc0, 0xa2],
      [0xc0, 0xaf],
      [0x80],
      [0xed, 0xa0, 0x80],
      [0xff],
      [0xe0, 0x80, 0xa2],
      [0xf8, 0x88, 0x80, 0x80, 0xa2],
    ]);
    const marker = '\u0001';
    const [before, after] = request(rng, id, { kind: t.kind, name: `${t.name}${marker}` }).split('\\u0001');
    body = Buffer.concat([utf8(before ?? ''), Buffer.from(bad), utf8(after ?? '')]);
    return {
      classes: ['charset'],
      note: `${METHOD_OF[t.kind]} ${t.name} + bytes ${Buffer.from(bad).toString('hex')} (not UTF-8)`,
      method: 'POST',
      headers: baseHeaders(rng, svc, declaredOf(t), rng.chance(0.5) ? 'utf-8' : undefined),
      body,
    };
  }
  if (cs.startsWith('utf-16')) body = utf16(text, cs === 'utf-16be', bom || cs === 'utf-16');
  else if (cs.startsWith('utf-32')) body = utf32(text, cs === 'utf-32be', bom || cs === 'utf-32');
  else if (cs === 'utf-7')
    body = Buffer.from(
      utf7(text, (ch) => ch === '"' || (rng.chance(0.1) && /[a-z]/.test(ch))),
      'latin1',
    );
  else if (cs === 'latin1' || cs === 'iso-8859-1' || cs === 'windows-1252') body = Buffer.from(text, 'latin1');
  else body = utf8(text);
  // Sometimes the body's encoding and the charset disagree (UTF-16 bytes labelled utf-8 and so on).
  const label = rng.chance(0.15) ? rng.pick(['utf-8', 'utf-16', 'latin1']) : cs;
  return {
    classes: ['charset'],
    note: `${METHOD_OF[t.kind]} ${t.name} as ${cs}, labelled charset=${label}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declaredOf(t), label),
    body,
  };
}

/**
 * UTF-7 polyglots: bytes that are one JSON-RPC message read as UTF-8 (what the authorizer reads) and another
 * read as UTF-7 (what express.json() reads when the client says charset=utf-7). `+ACI-` is `"` in UTF-7.
 */
function genUtf7({ rng, svc, id }: Ctx): Draft {
  const d = deniedTarget(rng);
  const a = allowedTarget(rng, d.kind);
  const quote = (ch: string): boolean => ch === '"' || (rng.chance(0.05) && /[a-z_]/.test(ch));
  const variant = rng.pick(['dupkey', 'name', 'method', 'batch', 'whole', 'uri-dots'] as const);
  let text: string;
  let declared: Declared = declaredOf(a);
  let note: string;
  switch (variant) {
    case 'dupkey': {
      // UTF-8: params {name: A, note: "+ACI-,+ACI-name..."}; UTF-7: {name: A, note: "", name: D, z: ""}.
      const inj = utf7(`","${PARAM_OF[d.kind]}":"${d.name}","z":"`, quote);
      text = request(rng, id, a, { extraParams: [['note', `"${inj}"`]] });
      note = `UTF-8 reads ${a.name}, UTF-7 reads ${d.name} (duplicate key smuggled with +ACI-)`;
      break;
    }
    case 'name': {
      // A name whose UTF-8 reading is a harmless string (drop_+AGM-ache) and whose UTF-7 reading is denied.
      const chars = [...d.name];
      const at = rng.int(0, chars.length - 1);
      const encoded = utf7(d.name, (ch) => ch === chars[at] && rng.chance(0.9));
      text = request(rng, id, d, { nameText: `"${encoded === d.name ? utf7(d.name, (ch) => ch === chars[0]) : encoded}"` });
      declared = { method: METHOD_OF[d.kind], name: encoded };
      note = `name "${encoded}" is ${d.name} in UTF-7`;
      break;
    }
    case 'method': {
      // UTF-8: ping with a string param; UTF-7: ping, then method tools/call with params {name: D} (last wins).
      const inj = utf7(`"},"method":"${METHOD_OF[d.kind]}","params":{"${PARAM_OF[d.kind]}":"${d.name}","y":"`, quote);
      text = obj([
        ['jsonrpc', '"2.0"'],
        ['id', String(id)],
        ['method', '"ping"'],
        ['params', `{"x":"${inj}"}`],
      ]);
      declared = { method: 'ping' };
      note = `UTF-8 reads ping, UTF-7 reads ${METHOD_OF[d.kind]} ${d.name}`;
      break;
    }
    case 'batch': {
      // UTF-8: [ping]; UTF-7: [ping, call D].
      const inj = utf7(
        `"}},{"jsonrpc":"2.0","id":${id + 1},"method":"${METHOD_OF[d.kind]}","params":{"${PARAM_OF[d.kind]}":"${d.name}","y":"`,
        quote,
      );
      text = `[{"jsonrpc":"2.0","id":${id},"method":"ping","params":{"x":"${inj}"}}]`;
      declared = { method: 'ping' };
      note = `UTF-8 reads a batch [ping], UTF-7 reads [ping, ${d.name}]`;
      break;
    }
    case 'uri-dots': {
      const inj = utf7(`","uri":"file:///reports/../etc/passwd","z":"`, quote);
      const base: Target = { kind: 'resource', name: 'file:///reports/q1.txt' };
      text = request(rng, id, base, { extraParams: [['note', `"${inj}"`]] });
      declared = declaredOf(base);
      note = 'UTF-8 reads file:///reports/q1.txt, UTF-7 reads file:///reports/../etc/passwd';
      break;
    }
    case 'whole': {
      // Everything but letters in base64: not JSON at all as UTF-8.
      text = utf7(request(rng, id, d), (ch) => !/[A-Za-z0-9]/.test(ch));
      declared = declaredOf(d);
      note = `whole message UTF-7-encoded (${d.name})`;
      break;
    }
  }
  const charset = rng.chance(0.9) ? rng.pick(['utf-7', 'UTF-7', 'utf-7', 'utf-16']) : undefined;
  return { classes: ['utf7'], note, method: 'POST', headers: baseHeaders(rng, svc, declared, charset), body: Buffer.from(text, 'latin1') };
}

function genBom({ rng, svc, id }: Ctx): Draft {
  const t = anyTarget(rng);
  const text = request(rng, id, t);
  const v = rng.pick(['utf8', 'utf8-charset', 'double', 'utf16le', 'utf16be', 'utf16-labelled-utf8', 'bom-then-space'] as const);
  let body: Buffer;
  let charset: string | undefined;
  switch (v) {
    case 'utf8':
      body = Buffer.concat([BOM8, utf8(text)]);
      break;
    case 'utf8-charset':
      body = Buffer.concat([BOM8, utf8(text)]);
      charset = 'utf-8';
      break;
    case 'double':
      body = Buffer.concat([BOM8, BOM8, utf8(text)]);
      break;
    case 'utf16le':
      body = utf16(text, false, true);
      charset = 'utf-16';
      break;
    case 'utf16be':
      body = utf16(text, true, true);
      charset = rng.pick(['utf-16', 'utf-16be']);
      break;
    case 'utf16-labelled-utf8':
      body = utf16(text, false, true);
      charset = rng.chance(0.5) ? 'utf-8' : undefined;
      break;
    case 'bom-then-space':
      body = Buffer.concat([BOM8, utf8(` \n${text}`)]);
      break;
  }
  return {
    classes: ['bom'],
    note: `BOM (${v}) before ${METHOD_OF[t.kind]} ${t.name}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declaredOf(t), charset),
    body,
  };
}

function genDupkey({ rng, svc, id }: Ctx): Draft {
  const d = deniedTarget(rng);
  const a = allowedTarget(rng, d.kind);
  const p = PARAM_OF[d.kind];
  const first = rng.chance(0.7) ? a : d;
  const last = first === a ? d : a;
  const v = rng.pick(['param', 'params', 'method', 'proto', 'case'] as const);
  let text: string;
  switch (v) {
    case 'param':
      text = obj([
        ['jsonrpc', '"2.0"'],
        ['id', String(id)],
        ['method', jstr(METHOD_OF[d.kind])],
        [
          'params',
          obj([
            [p, jstr(first.name)],
            [p, jstr(last.name)],
          ]),
        ],
      ]);
      break;
    case 'params':
      text = obj([
        ['jsonrpc', '"2.0"'],
        ['id', String(id)],
        ['method', jstr(METHOD_OF[d.kind])],
        ['params', obj([[p, jstr(first.name)]])],
        ['params', obj([[p, jstr(last.name)]])],
      ]);
      break;
    case 'method': {
      const [m1, m2] = rng.chance(0.5) ? ['ping', METHOD_OF[d.kind]] : [METHOD_OF[d.kind], 'ping'];
      text = obj([
        ['jsonrpc', '"2.0"'],
        ['id', String(id)],
        ['method', jstr(m1)],
        ['params', obj([[p, jstr(d.name)]])],
        ['method', jstr(m2)],
      ]);
      break;
    }
    case 'proto':
      text = obj([
        ['jsonrpc', '"2.0"'],
        ['id', String(id)],
        ['method', jstr(METHOD_OF[d.kind])],
        ['params', obj([['__proto__', obj([[p, jstr(d.name)]])], ...(rng.chance(0.5) ? [[p, jstr(a.name)] as const] : [])])],
      ]);
      break;
    case 'case':
      text = obj([
        ['jsonrpc', '"2.0"'],
        ['id', String(id)],
        ['method', jstr(METHOD_OF[d.kind])],
        [
          'params',
          obj([
            [p, jstr(first.name)],
            [capitalized(p), jstr(last.name)],
          ]),
        ],
      ]);
      break;
  }
  const what =
    v === 'method'
      ? `"method" twice, params ${d.name}`
      : v === 'proto'
        ? `params.__proto__ holding ${d.name}`
        : `${first.name} then ${last.name}`;
  return {
    classes: ['dupkey'],
    note: `duplicate keys (${v}): ${what}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declaredOf(first)),
    body: utf8(text),
  };
}

function genBatch({ rng, svc, id }: Ctx): Draft {
  const size = rng.weighted<number>([
    [rng.int(2, 8), 6],
    [rng.int(9, 100), 2],
    [100, 1],
    [rng.int(101, 140), 2],
  ]);
  const hidden = rng.chance(0.85) ? deniedTarget(rng) : anyTarget(rng);
  const at = rng.int(0, size - 1);
  // Headers (2026-07-28) name the first element: a ping, or an allowed call in front of the hidden one.
  const lead = at > 0 && rng.chance(0.4) ? allowedTarget(rng) : undefined;
  const elements: string[] = [];
  for (let i = 0; i < size; i++) {
    if (i === at) elements.push(request(rng, id + i, hidden, { noId: rng.chance(0.1) }));
    else if (i === 0 && lead) elements.push(request(rng, id, lead));
    else
      elements.push(
        rng.weighted<string>([
          [serviceRequest(rng, id + i, 'ping'), 6],
          [NOTIFICATION, 1],
          [request(rng, id + i, allowedTarget(rng)), 2],
          ['{"jsonrpc":"2.0","id":"srv-1","result":{}}', 1],
        ]),
      );
  }
  const nested = rng.chance(0.05);
  const text = nested ? `[[${elements.join(',')}]]` : `[${elements.join(',')}]`;
  return {
    classes: ['batch'],
    note: `batch of ${size}${nested ? ' (nested)' : ''} with ${METHOD_OF[hidden.kind]} ${hidden.name} at [${at}]`,
    method: 'POST',
    headers: baseHeaders(rng, svc, lead ? declaredOf(lead) : { method: 'ping' }),
    body: utf8(text),
  };
}

function genEscape({ rng, svc, id }: Ctx): Draft {
  const t = rng.chance(0.7) ? deniedTarget(rng) : anyTarget(rng);
  const p = PARAM_OF[t.kind];
  const keyText = rng.chance(0.3) ? jstr(p, rng, 0.5) : jstr(p);
  const text = obj([
    ['jsonrpc', '"2.0"'],
    ['id', String(id)],
    [rng.chance(0.3) ? jstr('method', rng, 0.5) : '"method"', jstr(METHOD_OF[t.kind], rng, rng.chance(0.4) ? 0.3 : 0)],
    ['params', obj([[keyText, jstr(t.name, rng, 0.35)]])],
  ]);
  return {
    classes: ['escape'],
    note: `\\u escapes in ${METHOD_OF[t.kind]} ${t.name}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declaredOf(t)),
    body: utf8(text),
  };
}

function genCtrl({ rng, svc, id }: Ctx): Draft {
  const kind = rng.weighted<Kind>([
    ['tool', 8],
    ['prompt', 2],
  ]);
  const base = kind === 'tool' ? rng.pick(TOOLS) : rng.pick(PROMPTS);
  const variants = [
    `${base}\u0000x`,
    `${base}\u0000`,
    `${base} `,
    `${base}  `,
    `${base}\t`,
    ` ${base}`,
    `${base}\n`,
    `\u200b${base}`,
    `${base}\u200b`,
    `${base}\u00a0`,
    base.toUpperCase(),
    base.replace('a', '\u0430'),
    `${base}\u202e`,
    `${base}\r\n`,
    `${base}\u007f`,
    base.replace('_', '\u005f\u0301'),
    `${base}\ud800`,
    `\udc00${base}`,
    `${base}\ufeff`,
  ];
  const n = rng.pick(variants);
  const t: Target = { kind, name: n };
  const honest = rng.chance(0.5);
  // A 2026-07-28 client names the exact string (base64 when unprintable), or the name as it "looks".
  const declared: Declared = { method: METHOD_OF[kind], name: honest ? n : base };
  return {
    classes: ['ctrl'],
    note: `${METHOD_OF[kind]} ${JSON.stringify(n)}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declared),
    body: utf8(request(rng, id, t)),
  };
}

const METHOD_VARIANTS = (m: string): string[] => [
  capitalized(m),
  m.toUpperCase(),
  m.replace(/\/(.)/, (_x, c: string) => `/${c.toUpperCase()}`),
  `${m} `,
  ` ${m}`,
  `${m}/`,
  m.replace('/', '//'),
  `${m}\u0000`,
];

function genMethodCase({ rng, svc, id }: Ctx): Draft {
  const d = rng.chance(0.8) ? deniedTarget(rng) : anyTarget(rng);
  const m = METHOD_OF[d.kind];
  const where = rng.pick(['body', 'header', 'both'] as const);
  const bodyMethod = where === 'header' ? m : rng.pick(METHOD_VARIANTS(m));
  const headerMethod = where === 'body' ? m : rng.pick(METHOD_VARIANTS(m).filter((x) => /^[\x20-\x7e]+$/.test(x)));
  const headers = baseHeaders(rng, svc, { method: headerMethod, name: d.name });
  return {
    classes: ['method-case'],
    note: `method ${JSON.stringify(bodyMethod)} in body, ${JSON.stringify(headerMethod)} in header, ${d.name}`,
    method: 'POST',
    headers,
    body: utf8(request(rng, id, d, { methodText: jstr(bodyMethod) })),
  };
}

const TRICKY_URIS: readonly string[] = [
  'file:///reports/../etc/passwd',
  'file:///reports/%2e%2e/etc/passwd',
  'file:///reports/%2E%2E/etc/passwd',
  'file:///reports/.%2e/etc/passwd',
  'file:///reports/%2e./etc/passwd',
  'file:///reports/..%2fetc/passwd',
  'file:///reports/%2e%2e%2fetc%2fpasswd',
  'file:///reports/a/../../etc/passwd',
  'file:///reports/./../etc/shadow',
  'file:///reports/..\\etc\\passwd',
  'file:///reports\\..\\etc\\passwd',
  'file:///reports/\t../etc/passwd',
  'file:///rep\norts/../etc/passwd',
  'FILE:///reports/../etc/passwd',
  'file://localhost/reports/../etc/passwd',
  'file://LOCALHOST/etc/passwd',
  'file:/reports/../etc/passwd',
  'file:///reports/q1.txt#/../../etc/passwd',
  'file:///reports/../etc/passwd?x=1',
  'file:///reports/../../../../etc/passwd',
  'FILE:///etc/passwd',
  'file://localhost/etc/passwd',
  'file:/etc/passwd',
  'file:///etc/./passwd',
  'file:////etc/passwd',
  'file:///%65tc/passwd',
  ' file:///etc/passwd',
  'file:///etc/passwd ',
  'file:///reports/../var/log/syslog',
  'file:///reports/%2e%2e/var/log/syslog',
  'file:///reports/q1.txt',
  'file:///reports/%2e%2e',
  'file:///reports/..',
  'file:///reports/...',
  'file:///reports/..;/etc/passwd',
  'file:///reports/%252e%252e/etc/passwd',
];

function genUri({ rng, svc, id }: Ctx): Draft {
  const uri = rng.pick(TRICKY_URIS);
  const t: Target = { kind: 'resource', name: uri };
  const text = request(rng, id, t, {
    methodText: rng.chance(0.15) ? jstr(rng.pick(['resources/subscribe', 'resources/unsubscribe'])) : undefined,
  });
  return {
    classes: ['uri'],
    note: `resources/read ${JSON.stringify(uri)}`,
    method: 'POST',
    headers: baseHeaders(rng, svc, declaredOf(t)),
    body: utf8(text),
  };
}

function genMismatch({ rng, svc, id }: Ctx): Draft {
  const body = rng.chance(0.8) ? deniedTarget(rng) : anyTarget(rng);
  const v = rng.pick(['other-name', 'other-kind', 'service-method', 'no-name', 'no-method', 'no-headers'] as const);
  let declared: Declared | undefined;
  switch (v) {
    case 'other-name':
      declared = declaredOf(allowedTarget(rng, body.kind));
      break;
    case 'other-kind':
      declared = declaredOf(allowedTarget(rng, body.kind === 'tool' ? 'resource' : 'tool'));
      break;
    case 'service-method':
      declared = { method: rng.pick(SERVICE_METHODS) };
      break;
    case 'no-name':
      declared = { method: METHOD_OF[body.kind] };
      break;
    case 'no-method':
    case 'no-headers':
      declared = declaredOf(allowedTarget(rng, body.kind));
      break;
  }
  let headers = baseHeaders(rng, svc, declared);
  if (v === 'no-method' || v === 'no-headers') headers = setHeader(headers, 'mcp-method', undefined);
  if (v === 'no-headers') headers = setHeader(headers, 'mcp-name', undefined);
  return {
    classes: ['hdr-mismatch'],
    note: `headers ${v} (${declared.method} ${declared.name ?? ''}), body ${METHOD_OF[body.kind]} ${body.name}`,
    method: 'POST',
    headers,
    body: utf8(request(rng, id, body)),
  };
}

function genBase64Name({ rng, svc, id }: Ctx): Draft {
  const body = rng.chance(0.8) ? deniedTarget(rng) : anyTarget(rng);
  const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
  const v = rng.pick(['same', 'same', 'allowed', 'unpadded', 'upper', 'url', 'garbage', 'trailing-space', 'nested'] as const);
  const allowed = allowedTarget(rng, body.kind).name;
  const value = {
    same: `=?base64?${b64(body.name)}?=`,
    allowed: `=?base64?${b64(allowed)}?=`,
    unpadded: `=?base64?${b64(body.name).replace(/=+$/, '')}?=`,
    upper: `=?BASE64?${b64(body.name)}?=`,
    url: `=?base64?${Buffer.from(body.name).toString('base64url')}?=`,
    garbage: '=?base64?***?=',
    'trailing-space': `=?base64?${b64(`${body.name} `)}?=`,
    nested: `=?base64?${b64(`=?base64?${b64(body.name)}?=`)}?=`,
  }[v];
  const headers = setHeader(baseHeaders(rng, svc, declaredOf(body)), 'mcp-name', value);
  return {
    classes: ['b64name'],
    note: `Mcp-Name ${value} (${v}), body ${body.name}`,
    method: 'POST',
    headers,
    body: utf8(request(rng, id, body)),
  };
}

function genContentEncoding({ rng, svc, id }: Ctx): Draft {
  const t = rng.chance(0.7) ? deniedTarget(rng) : anyTarget(rng);
  const text = request(rng, id, t);
  const enc = rng.pick(['gzip', 'deflate', 'identity', 'GZIP'] as const);
  const body = enc === 'identity' ? utf8(text) : enc === 'deflate' ? deflateSync(utf8(text)) : gzipSync(utf8(text));
  const headers: Lines = [...baseHeaders(rng, svc, declaredOf(t)), [name(rng, 'Content-Encoding'), enc]];
  return { classes: ['content-encoding'], note: `${enc} body of ${t.name}`, method: 'POST', headers, body };
}

// ---------------------------------------------------------------------------- secondary header mutations

const VERSIONS = [
  undefined,
  'garbage',
  '',
  '2025-11-25',
  '2025-06-18',
  '2024-11-05',
  '2026-07-28',
  '2026-07-27',
  '2026-07-29',
  '9999-12-31',
  '2026-7-28',
  '2026-07-28x',
  'latest',
  '2026-07-28,2025-11-25',
  '2026-07-28, 2026-07-28',
];

function mutateVersion(rng: Rng, d: Draft): string {
  const v = rng.pick(VERSIONS);
  d.headers = setHeader(d.headers, 'mcp-protocol-version', v);
  return `version ${v === undefined ? 'missing' : JSON.stringify(v)}`;
}

function mutateRepeat(rng: Rng, d: Draft, hidden: Target): string {
  const which = rng.pick(['mcp-name', 'mcp-name', 'mcp-method', 'mcp-protocol-version', 'content-type'] as const);
  const current = getHeader(d.headers, which);
  const other =
    which === 'mcp-name'
      ? mcpNameValue(hidden.name)
      : which === 'mcp-method'
        ? rng.pick([METHOD_OF[hidden.kind], 'ping', 'tools/list'])
        : which === 'mcp-protocol-version'
          ? rng.pick(['2026-07-28', '2025-11-25', 'garbage'])
          : contentType(rng, rng.pick(['utf-7', 'utf-8', 'utf-16']));
  const [first, second] = rng.chance(0.5) ? [current ?? other, other] : [other, current ?? other];
  if (rng.chance(0.25)) {
    d.headers = setHeader(d.headers, which, `${first}${rng.pick([',', ', ', ' ,'])}${second}`);
    return `one ${which} line "${first}, ${second}"`;
  }
  d.headers = setHeader(d.headers, which, first);
  d.headers.push([
    name(
      rng,
      which === 'mcp-name'
        ? 'Mcp-Name'
        : which === 'mcp-method'
          ? 'Mcp-Method'
          : which === 'content-type'
            ? 'Content-Type'
            : 'MCP-Protocol-Version',
    ),
    second,
  ]);
  return `two ${which} lines (${first} | ${second})`;
}

// ------------------------------------------------------------------------------------------------ cases

const GENERATORS: ReadonlyArray<readonly [AttackClass, number, (c: Ctx) => Draft]> = [
  ['valid', 14, genValid],
  ['charset', 7, genCharset],
  ['utf7', 9, genUtf7],
  ['bom', 4, genBom],
  ['dupkey', 6, genDupkey],
  ['batch', 8, genBatch],
  ['escape', 5, genEscape],
  ['ctrl', 6, genCtrl],
  ['method-case', 6, genMethodCase],
  ['uri', 9, genUri],
  ['hdr-mismatch', 8, genMismatch],
  ['b64name', 6, genBase64Name],
  ['content-encoding', 2, genContentEncoding],
];

/** Classes that mostly matter for the header-decided (2026-07-28) service. */
const HEADER_CLASSES: ReadonlySet<AttackClass> = new Set(['hdr-mismatch', 'b64name', 'method-case']);

/** Case `index` of the run seeded `seed`: the same inputs always give the same bytes. */
export function generateCase(seed: string, index: number): FuzzCase {
  const rng = Rng.forCase(seed, index);
  const [cls, , gen] = rng.weighted(GENERATORS.map((g) => [g, g[1]] as const));
  const svc: FuzzService = rng.chance(HEADER_CLASSES.has(cls) ? 0.85 : 0.5) ? 'tides' : 'weather';
  const caller = rng.weighted<Caller>([
    [CALLERS[0] as Caller, 55],
    [CALLERS[1] as Caller, 35],
    [CALLERS[2] as Caller, 10],
  ]);
  const draft = gen({ rng, svc, caller, id: rng.int(1, 9999) });
  const notes = [draft.note];
  // Secondary header games on top of any case.
  if (rng.chance(0.12)) {
    notes.push(mutateVersion(rng, draft));
    draft.classes.push('version');
  }
  if (rng.chance(0.12)) {
    notes.push(mutateRepeat(rng, draft, deniedTarget(rng)));
    draft.classes.push('hdr-repeat');
  }
  if (rng.chance(0.02)) draft.method = rng.pick(['PUT', 'PATCH']);
  return {
    seed,
    index,
    classes: draft.classes,
    note: notes.join('; '),
    service: svc,
    caller,
    method: draft.method,
    headers: draft.headers,
    body: draft.body,
    requestId: `fuzz-${index}`,
  };
}

/** A fixed case (regressions): the same shape, no randomness. */
export function fixedCase(o: {
  name: string;
  service: FuzzService;
  caller: string;
  headers: ReadonlyArray<readonly [string, string]>;
  body: Uint8Array | string;
  classes?: AttackClass[];
  method?: string;
}): FuzzCase {
  const caller = CALLERS.find((c) => c.name === o.caller);
  if (!caller) throw new Error(`unknown caller ${o.caller}`);
  return {
    seed: 'regression',
    index: 0,
    classes: o.classes ?? [],
    note: o.name,
    service: o.service,
    caller,
    method: o.method ?? 'POST',
    headers: o.headers.map(([k, v]): [string, string] => [k, v]),
    body: typeof o.body === 'string' ? utf8(o.body) : o.body,
    requestId: `regression-${o.name}`,
  };
}
