// A fast reader for the plain subset of YAML that registry files are written in (block mappings and sequences,
// one-line flow collections, plain and quoted scalars). The `yaml` library builds a full document (CST, nodes,
// source ranges) and takes about 1.5 s for 1,000 services x 10 endpoints; this reader builds the plain object
// directly. It never guesses: anything outside the subset it knows (anchors, tags, block scalars, multi-line
// scalars, unusual numbers, duplicate keys, ...) makes it give up (undefined) and the caller parses with
// `yaml`, so the result, and every error message, is exactly what `yaml`'s parseDocument(...).toJS() gives.

interface Line {
  indent: number;
  text: string;
  // 1-based line number, kept for debugging a give-up.
  readonly no: number;
}

class GiveUp extends Error {}
const giveUp = (): never => {
  throw new GiveUp();
};

// yaml 2.x core schema (node_modules/yaml/dist/schema/core): plain scalars that are not strings.
const NULL = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
// Numbers and look-alikes: only a plain decimal integer is read here; the rest (0o, 0x, floats, .inf, 012) go to `yaml`.
const NUMBERISH =
  /^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const SIMPLE_INT = /^-?(?:0|[1-9][0-9]{0,14})$/;
const KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
// Characters that start something other than a plain scalar (or need the full grammar to tell).
const INDICATOR = /^[-?:,[\]{}#&*!|>'"%@`]/;

function plain(s: string): unknown {
  if (NULL.test(s)) return null;
  if (BOOL.test(s)) return s[0] === 't' || s[0] === 'T';
  if (NUMBERISH.test(s)) return SIMPLE_INT.test(s) ? Number(s) : giveUp();
  if (INDICATOR.test(s) || s.includes(': ') || s.includes(' #') || s.endsWith(':')) giveUp();
  return s;
}

function key(s: string): string {
  if (!KEY.test(s) || NULL.test(s) || BOOL.test(s) || s === '__proto__') giveUp();
  return s;
}

const ESCAPES: Record<string, string> = { '\\': '\\', '"': '"', '/': '/', n: '\n', t: '\t' };

/** One line's value: a scalar or a flow collection, from `i` to the end of the line (or a comment). */
class Cursor {
  i = 0;
  readonly s: string;
  constructor(s: string) {
    this.s = s;
  }
  spaces(): void {
    while (this.s[this.i] === ' ') this.i++;
  }
  end(): void {
    this.spaces();
    if (this.i < this.s.length && this.s[this.i] !== '#') giveUp();
  }
  quoted(): string {
    const q = this.s[this.i++];
    let out = '';
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) return giveUp();
      if (q === "'" && c === "'") {
        if (this.s[this.i] !== "'") return out;
        this.i++;
        out += "'";
      } else if (q === '"' && c === '"') return out;
      else if (q === '"' && c === '\\') out += ESCAPES[this.s[this.i++] ?? ''] ?? giveUp();
      else out += c;
    }
  }
  /** A value in flow context (inside {} or []). */
  flowValue(): unknown {
    this.spaces();
    const c = this.s[this.i];
    if (c === '{') return this.flowMap();
    if (c === '[') return this.flowSeq();
    if (c === '"' || c === "'") return this.quoted();
    const start = this.i;
    while (this.i < this.s.length && !',[]{}#'.includes(this.s[this.i] as string)) this.i++;
    const text = this.s.slice(start, this.i).trim();
    if (text === '' || text.includes(':')) giveUp();
    return plain(text);
  }
  flowMap(): Record<string, unknown> {
    this.i++;
    const out: Record<string, unknown> = {};
    for (;;) {
      this.spaces();
      if (this.s[this.i] === '}') {
        this.i++;
        return out;
      }
      const m = /^([^\s:,[\]{}#]+):(?= )/.exec(this.s.slice(this.i));
      if (!m) return giveUp();
      const k = key(m[1] as string);
      if (Object.hasOwn(out, k)) giveUp();
      this.i += m[0].length;
      out[k] = this.flowValue();
      this.spaces();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== '}') giveUp();
    }
  }
  flowSeq(): unknown[] {
    this.i++;
    const out: unknown[] = [];
    for (;;) {
      this.spaces();
      if (this.s[this.i] === ']') {
        this.i++;
        return out;
      }
      out.push(this.flowValue());
      this.spaces();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== ']') giveUp();
    }
  }
  /** A whole value in block context: the rest of the line. */
  blockValue(): unknown {
    this.spaces();
    const c = this.s[this.i];
    let v: unknown;
    if (c === '{') v = this.flowMap();
    else if (c === '[') v = this.flowSeq();
    else if (c === '"' || c === "'") v = this.quoted();
    else {
      const rest = this.s.slice(this.i);
      const hash = rest.indexOf(' #');
      const text = (hash >= 0 ? rest.slice(0, hash) : rest).trimEnd();
      this.i = hash >= 0 ? this.i + hash : this.s.length;
      v = plain(text);
    }
    this.end();
    return v;
  }
}

class BlockReader {
  private at = 0;
  private readonly lines: Line[];
  constructor(lines: Line[]) {
    this.lines = lines;
  }

  private get line(): Line | undefined {
    return this.lines[this.at];
  }

  document(): unknown {
    const first = this.line;
    if (!first) return null;
    if (first.indent !== 0) giveUp();
    const v = this.block(0);
    if (this.line) giveUp();
    return v;
  }

  private block(indent: number): unknown {
    const l = this.line as Line;
    return isItem(l.text) ? this.sequence(indent) : this.mapping(indent);
  }

  /** A value that starts on the next line(s): nested deeper than `indent`, or a sequence at `indent` itself. */
  private nested(indent: number, sequenceAtSameIndent: boolean): unknown {
    const next = this.line;
    if (next && next.indent > indent) return this.block(next.indent);
    if (next && sequenceAtSameIndent && next.indent === indent && isItem(next.text)) return this.sequence(indent);
    return null;
  }

  private sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    // A non-item line at this indent ends a sequence that sits under a key at the same indent.
    for (let l = this.line; l && l.indent === indent && isItem(l.text); l = this.line) {
      const rest = l.text.slice(1);
      const content = rest.trimStart();
      if (content === '' || content[0] === '#') {
        this.at++;
        out.push(this.nested(indent, false));
        continue;
      }
      // "- key: value" opens a mapping whose keys line up with "key": read it as a line of its own there.
      l.indent = indent + 1 + (rest.length - content.length);
      l.text = content;
      if (isItem(content)) giveUp();
      if (isEntry(content)) out.push(this.mapping(l.indent));
      else {
        this.at++;
        out.push(new Cursor(content).blockValue());
      }
    }
    if (this.line && this.line.indent > indent) giveUp();
    return out;
  }

  private mapping(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let l = this.line; l && l.indent === indent; l = this.line) {
      if (isItem(l.text)) giveUp();
      const m = /^([^\s:#'"]+):(?: |$)/.exec(l.text);
      if (!m) return giveUp();
      const k = key(m[1] as string);
      if (Object.hasOwn(out, k)) giveUp();
      const rest = l.text.slice(m[0].length).trimStart();
      this.at++;
      out[k] = rest === '' || rest[0] === '#' ? this.nested(indent, true) : new Cursor(rest).blockValue();
    }
    if (this.line && this.line.indent > indent) giveUp();
    return out;
  }
}

function isItem(text: string): boolean {
  return text[0] === '-' && (text.length === 1 || text[1] === ' ');
}

function isEntry(text: string): boolean {
  return /^[^\s:#'"{[]+:(?: |$)/.test(text);
}

/**
 * The plain object `yaml` would give for `text`, or undefined when the text uses YAML this reader does not
 * handle (the caller then parses it with `yaml`).
 */
export function readSimpleYaml(text: string): unknown {
  // Tabs, CRs, BOMs, document markers and directives: `yaml`'s job. (Anchors, aliases, tags and block scalars
  // start a value or key with an indicator, which plain() and key() refuse.)
  if (/[\t\r\ufeff]|^(?:---|\.\.\.|%)/m.test(text)) return undefined;
  const lines: Line[] = [];
  let no = 0;
  for (const raw of text.split('\n')) {
    no++;
    const trimmed = raw.trimStart();
    if (trimmed === '' || trimmed[0] === '#') continue;
    lines.push({ indent: raw.length - trimmed.length, text: trimmed.trimEnd(), no });
  }
  try {
    return new BlockReader(lines).document();
  } catch (err) {
    if (err instanceof GiveUp) return undefined;
    throw err;
  }
}
