// RE2 program size, computed in TypeScript, so that the control plane can check a generated `safe_regex`
// before it pushes config: Envoy compiles every safe_regex with RE2 (RE2::Quiet, i.e. default options:
// UTF-8, case-sensitive, Perl syntax, one-line `^`/`$`) and rejects it when `re2::RE2::ProgramSize()` is
// over `re2.max_program_size.error_level`, 100 by default (source/common/common/regex.cc).
//
// Why a port and not a formula or a package: no npm package exposes the C++ ProgramSize (re2-wasm and
// its forks bind only match/exec; re2js is a port of RE2/J, whose rune-based Prog counts differently; the
// native `re2` addon does not expose it either and needs node-gyp). The number depends on details that no
// short formula captures: RE2 strips a literal prefix after `^` before compiling (`^name$` costs the same
// for any name), factors common prefixes out of alternations, merges single characters into classes,
// compiles `.` and classes to UTF-8 byte-range tries with suffix sharing, and counts instructions after
// "flattening" the program into lists. So this file follows RE2's own steps, function by function:
//
//   parse.cc    Regexp::Parse (ParseState, FactorAlternation rounds 1-3, MaybeConcatString, ...)
//   re2.cc      RE2::Init: RequiredPrefix, then compile only the suffix
//   simplify.cc CoalesceWalker + SimplifyWalker (counted repetition, empty/full classes)
//   compile.cc  Compiler (Frag/PatchList, UTF-8 rune-range trie with suffix cache, IsAnchorStart/End)
//   prog.cc     Prog::Optimize (Nop removal, AltMatch) and Prog::Flatten (what ProgramSize counts)
//
// Checked against RE2 20220601 (Debian bookworm's libre2; test/xds/re2-size.test.ts compares the two
// on generated shapes and random regexes) and read against RE2 2025-11-05, the RE2 of current Envoy:
// compile.cc, prog.cc and the parts of parse.cc and simplify.cc modelled here behave the same in both.
// Where the two versions differ, re2ProgramSize gives up (see below) rather than pick one.
//
// Modelled exactly: literals (any code point), escapes (`\.`, `\n`, `\x41`, `\x{10FFFF}`, octal),
// `.`, `\C`, classes `[...]` (ranges, negation, `\d \s \w \D \S \W`, `[:alpha:]` and the other POSIX
// names), `*` `+` `?` greedy or lazy, `{n}` `{n,}` `{n,m}`, `(...)`, `(?:...)`, `(?P<name>...)` with an
// ASCII name, `|`, `^ $ \A \z \b \B`, `\Q...\E`, the flags `m` `s` `U`, and `i` (case folding) for
// ASCII text, whose fold orbits are fixed (only k and s have a third, non-ASCII member).
//
// Not modelled, re2ProgramSize returns +Infinity: `\p{..}` / `\P{..}` and case folding of non-ASCII
// text (their size depends on RE2's Unicode tables, which this file does not carry: `\p{L}` alone is
// hundreds of instructions), and a few corners where RE2 versions disagree: `(?<name>` captures,
// non-ASCII capture names, counted repeats of empty-width assertions (`\b{2}`), and a case-folded
// literal merged into an alternation class that already holds part of its fold orbit (`k|[Kk]`).
// +Infinity is the only upper bound that holds without the tables: a caller comparing with
// RE2_MAX_PROGRAM_SIZE treats such a regex as too large instead of trusting a guess.
//
// A regex that RE2 itself rejects (syntax error) throws Re2SyntaxError, with RE2's error text.
//
// What this gives for the shapes the control plane generates (bytes = UTF-8 bytes; an escaped
// metacharacter costs what the character does; all measured with the real RE2 as well):
//   glob `^lit$` (no `*`)             4, whatever the length: the literal after `^` is not compiled
//   glob `^P.*S$`                     12 + bytes(S) when P is non-empty, 10 + bytes(S) when P is empty;
//                                     each further `*` after a non-empty segment adds 8 (`**` = `*`)
//   role `^(.* )?R( .*)?$`            26 + bytes(R)   (fits up to 74 bytes)
//   role `^(?:.*\s)?R(?:\s.*)?$`      28 + bytes(R)   (fits up to 72 bytes)
//   role `(^|.* )R( .*|$)`            30 + bytes(R)   (fits up to 70 bytes)
//   gateway path `^P([/?].*)?$`       17, whatever P
//   protocol-version regex            46

/** Envoy's default `re2.max_program_size.error_level`: larger programs are rejected (NACK). */
export const RE2_MAX_PROGRAM_SIZE = 100;

/** The regex is not valid RE2 syntax: Envoy would reject it whatever its size. */
export class Re2SyntaxError extends Error {
  override name = 'Re2SyntaxError';
}

/**
 * `re2::RE2(regex, RE2::Quiet).ProgramSize()`, as Envoy measures it.
 * +Infinity for regexes whose size needs RE2's Unicode tables (see the top of this file).
 * Throws Re2SyntaxError when RE2 would not compile the regex.
 */
export function re2ProgramSize(regex: string): number {
  try {
    const entire = parse(regex, DEFAULT_FLAGS);
    const { suffix } = requiredPrefix(entire);
    return compileSize(suffix);
  } catch (e) {
    if (e instanceof Unsupported) return Number.POSITIVE_INFINITY;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------
// Constants (regexp.h, utf.h, prog.h)

/** Thrown internally for constructs whose size needs RE2's Unicode tables. */
class Unsupported extends Error {}

const RUNE_SELF = 0x80;
const RUNE_MAX = 0x10ffff;

// RegexpOp
const NO_MATCH = 1;
const EMPTY_MATCH = 2;
const LITERAL = 3;
const LITERAL_STRING = 4;
const CONCAT = 5;
const ALTERNATE = 6;
const STAR = 7;
const PLUS = 8;
const QUEST = 9;
const REPEAT = 10;
const CAPTURE = 11;
const ANY_CHAR = 12;
const ANY_BYTE = 13;
const BEGIN_LINE = 14;
const END_LINE = 15;
const WORD_BOUNDARY = 16;
const NO_WORD_BOUNDARY = 17;
const BEGIN_TEXT = 18;
const END_TEXT = 19;
const CHAR_CLASS = 20;
// Pseudo-ops that live only on the parse stack.
const LEFT_PAREN = 21;
const VERTICAL_BAR = 22;

// Regexp::ParseFlags
const FOLD_CASE = 1 << 0;
const LATIN1 = 1 << 5;
const CLASS_NL = 1 << 2;
const DOT_NL = 1 << 3;
const ONE_LINE = 1 << 4;
const NON_GREEDY = 1 << 6;
const PERL_CLASSES = 1 << 7;
const PERL_B = 1 << 8;
const PERL_X = 1 << 9;
const UNICODE_GROUPS = 1 << 10;
const NEVER_NL = 1 << 11;
const WAS_DOLLAR = 1 << 13;
const LIKE_PERL = CLASS_NL | ONE_LINE | PERL_CLASSES | PERL_B | PERL_X | UNICODE_GROUPS;
/** RE2::Options::ParseFlags() for default options (what RE2::Quiet gives): ClassNL | LikePerl. */
const DEFAULT_FLAGS = CLASS_NL | LIKE_PERL;

// EmptyOp (prog.h); the values only need to be distinct.
const EMPTY_BEGIN_LINE = 1;
const EMPTY_END_LINE = 2;
const EMPTY_BEGIN_TEXT = 4;
const EMPTY_END_TEXT = 8;
const EMPTY_WORD_BOUNDARY = 16;
const EMPTY_NON_WORD_BOUNDARY = 32;

/** parse.cc maximum_repeat_count. */
const MAX_REPEAT = 1000;
/**
 * Above this many compiled instructions we stop: RE2's own limit (max_mem 8 MiB, 2/3 of it for the
 * forward Prog, 16-byte instructions) is about 350k, and anything this big is far over any sane limit.
 */
const MAX_INSTRUCTIONS = 400_000;

const ERROR_TEXT = {
  badEscape: 'invalid escape sequence',
  badCharRange: 'invalid character class range',
  missingBracket: 'missing ]',
  missingParen: 'missing )',
  unexpectedParen: 'unexpected )',
  trailingBackslash: 'trailing \\',
  repeatArgument: 'no argument for repetition operator',
  repeatSize: 'invalid repetition size',
  repeatOp: 'bad repetition operator',
  badPerlOp: 'invalid perl operator',
  badUTF8: 'invalid UTF-8',
  badNamedCapture: 'invalid named capture group',
} as const;

function syntaxError(kind: keyof typeof ERROR_TEXT, arg: string): never {
  throw new Re2SyntaxError(arg === '' ? ERROR_TEXT[kind] : `${ERROR_TEXT[kind]}: ${arg}`);
}

/** Array access for indices the algorithm guarantees (noUncheckedIndexedAccess). */
function at<T>(a: readonly T[], i: number): T {
  const v = a[i];
  if (v === undefined) throw new Error(`re2-size: internal index ${i} out of range`);
  return v;
}

// ---------------------------------------------------------------------------------------------------
// Character classes (regexp.cc CharClassBuilder / CharClass)

type Range = { lo: number; hi: number };

class CharClass {
  readonly ranges: readonly Range[];
  readonly nrunes: number;
  /** Does the class treat A-Z exactly like a-z? (CharClass::FoldsASCII; compile.cc uses it.) */
  readonly foldsAscii: boolean;
  constructor(ranges: readonly Range[]) {
    this.ranges = ranges;
    this.nrunes = ranges.reduce((n, r) => n + r.hi - r.lo + 1, 0);
    let folds = true;
    for (let i = 0; i < 26; i++) if (classContains(ranges, 0x41 + i) !== classContains(ranges, 0x61 + i)) folds = false;
    this.foldsAscii = folds;
  }
  get empty(): boolean {
    return this.nrunes === 0;
  }
  get full(): boolean {
    return this.nrunes === RUNE_MAX + 1;
  }
}

function classContains(ranges: readonly Range[], r: number): boolean {
  return ranges.some((x) => x.lo <= r && r <= x.hi);
}

/** Sorted, non-overlapping, non-abutting ranges, like RE2's std::set-based builder. */
class CharClassBuilder {
  ranges: Range[] = [];

  get nrunes(): number {
    return this.ranges.reduce((n, r) => n + r.hi - r.lo + 1, 0);
  }

  contains(r: number): boolean {
    return classContains(this.ranges, r);
  }

  addRange(lo: number, hi: number): void {
    if (hi < lo) return;
    // Merge with every range that overlaps or abuts [lo, hi].
    const keep: Range[] = [];
    for (const r of this.ranges) {
      if (r.hi + 1 < lo || hi + 1 < r.lo) keep.push(r);
      else {
        lo = Math.min(lo, r.lo);
        hi = Math.max(hi, r.hi);
      }
    }
    keep.push({ lo, hi });
    keep.sort((a, b) => a.lo - b.lo);
    this.ranges = keep;
  }

  /** AddRangeFlags: drops \n unless ClassNL; with FoldCase also adds the fold orbits (ASCII only). */
  addRangeFlags(lo: number, hi: number, flags: number): void {
    const cutnl = !(flags & CLASS_NL) || (flags & NEVER_NL) !== 0;
    if (cutnl && lo <= 0x0a && 0x0a <= hi) {
      if (lo < 0x0a) this.addRangeFlags(lo, 0x09, flags);
      if (hi > 0x0a) this.addRangeFlags(0x0b, hi, flags);
      return;
    }
    this.addRange(lo, hi);
    if (flags & FOLD_CASE) {
      // RE2's AddFoldedRange. Within one class every range is added with the same flags, so its
      // "already there, stop" shortcut always ends with the orbit closure computed here.
      if (hi >= RUNE_SELF) throw new Unsupported(); // non-ASCII folding needs RE2's tables
      for (let r = Math.max(lo, 0x41); r <= Math.min(hi, 0x7a); r++) for (const o of asciiFoldOrbit(r)) this.addRange(o, o);
    }
  }

  negate(): void {
    const v: Range[] = [];
    let next = 0;
    for (const r of this.ranges) {
      if (r.lo > next) v.push({ lo: next, hi: r.lo - 1 });
      next = r.hi + 1;
    }
    if (next <= RUNE_MAX) v.push({ lo: next, hi: RUNE_MAX });
    this.ranges = v;
  }

  getCharClass(): CharClass {
    return new CharClass(this.ranges.map((r) => ({ ...r })));
  }
}

/**
 * The case-fold orbit of an ASCII character in RE2's tables (Unicode CaseFolding.txt, simple + common):
 * a letter and its other case, plus U+212A KELVIN SIGN for k and U+017F LONG S for s. [] for a
 * non-letter. Only non-ASCII characters fold to ASCII ones through these two, so ASCII is exact.
 */
function asciiFoldOrbit(r: number): number[] {
  const lower = r | 0x20;
  if (!(lower >= 0x61 && lower <= 0x7a) || r > 0x7a) return [];
  if (lower === 0x6b) return [0x4b, 0x6b, 0x212a];
  if (lower === 0x73) return [0x53, 0x73, 0x17f];
  return [lower - 0x20, lower];
}

/** A Perl or POSIX class (perl_groups.cc): ASCII ranges and a sign. */
type Group = { sign: 1 | -1; ranges: ReadonlyArray<readonly [number, number]> };

const DIGIT: Group['ranges'] = [[0x30, 0x39]];
const SPACE: Group['ranges'] = [
  [0x09, 0x0a],
  [0x0c, 0x0d],
  [0x20, 0x20],
];
const WORD: Group['ranges'] = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
];
const PERL_GROUPS: Readonly<Record<string, Group>> = {
  d: { sign: 1, ranges: DIGIT },
  D: { sign: -1, ranges: DIGIT },
  s: { sign: 1, ranges: SPACE },
  S: { sign: -1, ranges: SPACE },
  w: { sign: 1, ranges: WORD },
  W: { sign: -1, ranges: WORD },
};
const POSIX_RANGES: Readonly<Record<string, Group['ranges']>> = {
  alnum: [
    [0x30, 0x39],
    [0x41, 0x5a],
    [0x61, 0x7a],
  ],
  alpha: [
    [0x41, 0x5a],
    [0x61, 0x7a],
  ],
  ascii: [[0x00, 0x7f]],
  blank: [
    [0x09, 0x09],
    [0x20, 0x20],
  ],
  cntrl: [
    [0x00, 0x1f],
    [0x7f, 0x7f],
  ],
  digit: [[0x30, 0x39]],
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [
    [0x21, 0x2f],
    [0x3a, 0x40],
    [0x5b, 0x60],
    [0x7b, 0x7e],
  ],
  space: [
    [0x09, 0x0d],
    [0x20, 0x20],
  ],
  upper: [[0x41, 0x5a]],
  word: [
    [0x30, 0x39],
    [0x41, 0x5a],
    [0x5f, 0x5f],
    [0x61, 0x7a],
  ],
  xdigit: [
    [0x30, 0x39],
    [0x41, 0x46],
    [0x61, 0x66],
  ],
};

/** parse.cc AddUGroup, for the ASCII-only Perl and POSIX groups. */
function addGroup(cc: CharClassBuilder, g: Group, flags: number): void {
  if (g.sign === 1) {
    for (const [lo, hi] of g.ranges) cc.addRangeFlags(lo, hi, flags);
    return;
  }
  if (flags & FOLD_CASE) {
    // Negated and folded: fold the group first, then negate (what RE2 does, in two steps).
    const pos = new CharClassBuilder();
    addGroup(pos, { sign: 1, ranges: g.ranges }, flags);
    if (!(flags & CLASS_NL) || flags & NEVER_NL) pos.addRange(0x0a, 0x0a);
    pos.negate();
    for (const r of pos.ranges) cc.addRange(r.lo, r.hi);
    return;
  }
  let next = 0;
  for (const [lo, hi] of g.ranges) {
    if (next < lo) cc.addRangeFlags(next, lo - 1, flags);
    next = hi + 1;
  }
  if (next <= RUNE_MAX) cc.addRangeFlags(next, RUNE_MAX, flags);
}

// ---------------------------------------------------------------------------------------------------
// Regexp nodes (regexp.h). Mutable on purpose: the parser edits nodes in place the way RE2 does.

class Regexp {
  op: number;
  flags: number;
  subs: Regexp[] = [];
  rune = 0;
  runes: number[] = [];
  min = 0;
  max = 0;
  cap = 0;
  name: string | null = null;
  cc: CharClass | null = null;
  ccb: CharClassBuilder | null = null;
  /** Parse-stack link (ParseState's down_). */
  down: Regexp | null = null;

  constructor(op: number, flags: number) {
    this.op = op;
    this.flags = flags;
  }

  /** Regexp::Swap, one way: this node takes the other's contents (the other is discarded). */
  takeContents(o: Regexp): void {
    this.op = o.op;
    this.flags = o.flags;
    this.subs = o.subs;
    this.rune = o.rune;
    this.runes = o.runes;
    this.min = o.min;
    this.max = o.max;
    this.cap = o.cap;
    this.name = o.name;
    this.cc = o.cc;
    this.ccb = o.ccb;
  }
}

/**
 * Post-order walk with an explicit stack (like RE2's Regexp::Walker): children first, in order, then
 * the node. Recursion would overflow on legal regexes, e.g. x{2,1000} simplifies to 999 nested `(x…)?`.
 */
function postOrder<T>(root: Regexp, visit: (re: Regexp, child: T[]) => T): T {
  type Frame = { re: Regexp; child: T[] };
  const stk: Frame[] = [{ re: root, child: [] }];
  for (;;) {
    const top = at(stk, stk.length - 1);
    if (top.child.length < top.re.subs.length) {
      stk.push({ re: at(top.re.subs, top.child.length), child: [] });
      continue;
    }
    const result = visit(top.re, top.child);
    stk.pop();
    if (stk.length === 0) return result;
    at(stk, stk.length - 1).child.push(result);
  }
}

function sub0(re: Regexp): Regexp {
  return at(re.subs, 0);
}

function newLiteral(r: number, flags: number): Regexp {
  const re = new Regexp(LITERAL, flags);
  re.rune = r;
  return re;
}

function newLiteralString(runes: readonly number[], flags: number): Regexp {
  if (runes.length === 0) return new Regexp(EMPTY_MATCH, flags);
  if (runes.length === 1) return newLiteral(at(runes, 0), flags);
  const re = new Regexp(LITERAL_STRING, flags);
  re.runes = [...runes];
  return re;
}

function newCharClass(cc: CharClass, flags: number): Regexp {
  const re = new Regexp(CHAR_CLASS, flags);
  re.cc = cc;
  return re;
}

function withSubs(op: number, flags: number, subs: Regexp[]): Regexp {
  const re = new Regexp(op, flags);
  re.subs = subs;
  return re;
}

/** Regexp::ConcatOrAlternate (without the 65535-children split, which never changes a program). */
function concatOrAlternate(op: number, subs: Regexp[], flags: number, canFactor: boolean): Regexp {
  if (subs.length === 1) return at(subs, 0);
  if (subs.length === 0) return new Regexp(op === ALTERNATE ? NO_MATCH : EMPTY_MATCH, flags);
  if (op === ALTERNATE && canFactor) {
    subs = factorAlternation([...subs], flags);
    if (subs.length === 1) return at(subs, 0);
  }
  return withSubs(op, flags, subs);
}

function concat(subs: Regexp[], flags: number): Regexp {
  return concatOrAlternate(CONCAT, subs, flags, false);
}

/** regexp.cc TopEqual + Equal. */
function regexpEqual(a: Regexp | null, b: Regexp | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.op !== b.op) return false;
  switch (a.op) {
    case END_TEXT:
      if ((a.flags ^ b.flags) & WAS_DOLLAR) return false;
      break;
    case LITERAL:
      if (a.rune !== b.rune || (a.flags ^ b.flags) & FOLD_CASE) return false;
      break;
    case LITERAL_STRING:
      if ((a.flags ^ b.flags) & FOLD_CASE || a.runes.length !== b.runes.length) return false;
      if (a.runes.some((r, i) => r !== b.runes[i])) return false;
      break;
    case STAR:
    case PLUS:
    case QUEST:
      if ((a.flags ^ b.flags) & NON_GREEDY) return false;
      break;
    case REPEAT:
      if ((a.flags ^ b.flags) & NON_GREEDY || a.min !== b.min || a.max !== b.max) return false;
      break;
    case CAPTURE:
      if (a.cap !== b.cap || a.name !== b.name) return false;
      break;
    case CHAR_CLASS: {
      const x = a.cc;
      const y = b.cc;
      if (x === null || y === null) return x === y;
      if (x.nrunes !== y.nrunes || x.ranges.length !== y.ranges.length) return false;
      if (x.ranges.some((r, i) => r.lo !== y.ranges[i]?.lo || r.hi !== y.ranges[i]?.hi)) return false;
      break;
    }
    default:
      break;
  }
  if (a.subs.length !== b.subs.length) return false;
  return a.subs.every((s, i) => regexpEqual(s, at(b.subs, i)));
}

// ---------------------------------------------------------------------------------------------------
// Parser (parse.cc). Works on code points: every length check RE2 makes on bytes there compares ASCII
// delimiters, so code points give the same answers.

class ParseState {
  flags: number;
  stacktop: Regexp | null = null;
  ncap = 0;

  constructor(flags: number) {
    this.flags = flags;
  }

  static isMarker(op: number): boolean {
    return op >= LEFT_PAREN;
  }

  finishRegexp(re: Regexp): Regexp {
    re.down = null;
    if (re.op === CHAR_CLASS && re.ccb !== null) {
      re.cc = re.ccb.getCharClass();
      re.ccb = null;
    }
    return re;
  }

  pushRegexp(re: Regexp): void {
    this.maybeConcatString(-1, 0);
    // A class of one character is that literal; [Aa] is literal a with ASCII case folding.
    if (re.op === CHAR_CLASS && re.ccb !== null) {
      const ccb = re.ccb;
      const n = ccb.nrunes;
      if (n === 1) {
        re = newLiteral(at(ccb.ranges, 0).lo, this.flags);
      } else if (n === 2) {
        const r = at(ccb.ranges, 0).lo;
        if (0x41 <= r && r <= 0x5a && ccb.contains(r + 0x20)) re = newLiteral(r + 0x20, this.flags | FOLD_CASE);
      }
    }
    re.down = this.stacktop;
    this.stacktop = re;
  }

  pushLiteral(r: number): void {
    if (this.flags & FOLD_CASE) {
      // A letter becomes the class of its fold orbit ([Aa] then turns back into a folded literal);
      // whether a non-ASCII character folds needs RE2's tables.
      if (r >= RUNE_SELF) throw new Unsupported();
      const orbit = asciiFoldOrbit(r);
      if (orbit.length > 0) {
        const re = new Regexp(CHAR_CLASS, this.flags & ~FOLD_CASE);
        re.ccb = new CharClassBuilder();
        for (const o of orbit) re.ccb.addRange(o, o);
        this.pushRegexp(re);
        return;
      }
    }
    if (this.flags & NEVER_NL && r === 0x0a) {
      this.pushRegexp(new Regexp(NO_MATCH, this.flags));
      return;
    }
    if (this.maybeConcatString(r, this.flags)) return;
    this.pushRegexp(newLiteral(r, this.flags));
  }

  pushSimpleOp(op: number): void {
    this.pushRegexp(new Regexp(op, this.flags));
  }

  pushCaret(): void {
    this.pushSimpleOp(this.flags & ONE_LINE ? BEGIN_TEXT : BEGIN_LINE);
  }

  pushDollar(): void {
    if (this.flags & ONE_LINE) {
      const saved = this.flags;
      this.flags |= WAS_DOLLAR;
      this.pushSimpleOp(END_TEXT);
      this.flags = saved;
      return;
    }
    this.pushSimpleOp(END_LINE);
  }

  pushDot(): void {
    if (this.flags & DOT_NL && !(this.flags & NEVER_NL)) {
      this.pushSimpleOp(ANY_CHAR);
      return;
    }
    const re = new Regexp(CHAR_CLASS, this.flags & ~FOLD_CASE);
    re.ccb = new CharClassBuilder();
    re.ccb.addRange(0, 0x09);
    re.ccb.addRange(0x0b, RUNE_MAX);
    this.pushRegexp(re);
  }

  pushRepeatOp(op: number, opstr: string, nongreedy: boolean): void {
    const top = this.stacktop;
    if (top === null || ParseState.isMarker(top.op)) syntaxError('repeatArgument', opstr);
    let fl = this.flags;
    if (nongreedy) fl ^= NON_GREEDY;
    // Squash ** ++ ?? (same op), and *+ *? +* +? ?* ?+ (all to *).
    if (op === top.op && fl === top.flags) return;
    if ((top.op === STAR || top.op === PLUS || top.op === QUEST) && fl === top.flags) {
      top.op = STAR;
      return;
    }
    const re = new Regexp(op, fl);
    re.down = top.down;
    re.subs = [this.finishRegexp(top)];
    this.stacktop = re;
  }

  pushRepetition(min: number, max: number, opstr: string, nongreedy: boolean): void {
    if ((max !== -1 && max < min) || min > MAX_REPEAT || max > MAX_REPEAT) syntaxError('repeatSize', opstr);
    const top = this.stacktop;
    if (top === null || ParseState.isMarker(top.op)) syntaxError('repeatArgument', opstr);
    let fl = this.flags;
    if (nongreedy) fl ^= NON_GREEDY;
    const re = new Regexp(REPEAT, fl);
    re.min = min;
    re.max = max;
    re.down = top.down;
    re.subs = [this.finishRegexp(top)];
    this.stacktop = re;
    if ((min >= 2 || max >= 2) && repetitionBudget(re, MAX_REPEAT) === 0) syntaxError('repeatSize', opstr);
  }

  doLeftParen(name: string | null): void {
    const re = new Regexp(LEFT_PAREN, this.flags);
    re.cap = ++this.ncap;
    re.name = name;
    this.pushRegexp(re);
  }

  doLeftParenNoCapture(): void {
    const re = new Regexp(LEFT_PAREN, this.flags);
    re.cap = -1;
    this.pushRegexp(re);
  }

  doVerticalBar(): void {
    this.maybeConcatString(-1, 0);
    this.doConcatenation();
    const r1 = this.stacktop;
    const r2 = r1?.down ?? null;
    if (r1 !== null && r2 !== null && r2.op === VERTICAL_BAR) {
      const r3 = r2.down;
      if (r3 !== null && (r1.op === ANY_CHAR || r3.op === ANY_CHAR)) {
        // AnyChar above or below the bar subsumes a Literal, CharClass or AnyChar on the other side.
        if (r3.op === ANY_CHAR && (r1.op === LITERAL || r1.op === CHAR_CLASS || r1.op === ANY_CHAR)) {
          this.stacktop = r2;
          return;
        }
        if (r1.op === ANY_CHAR && (r3.op === LITERAL || r3.op === CHAR_CLASS || r3.op === ANY_CHAR)) {
          r1.down = r3.down;
          r2.down = r1;
          this.stacktop = r2;
          return;
        }
      }
      // Swap r1 below the vertical bar.
      r1.down = r2.down;
      r2.down = r1;
      this.stacktop = r2;
      return;
    }
    this.pushSimpleOp(VERTICAL_BAR);
  }

  doRightParen(): void {
    this.doAlternation();
    const r1 = this.stacktop;
    const r2 = r1?.down ?? null;
    if (r1 === null || r2 === null || r2.op !== LEFT_PAREN) syntaxError('unexpectedParen', '');
    this.stacktop = r2.down;
    this.flags = r2.flags; // restore the flags from when the paren opened
    let re: Regexp;
    if (r2.cap > 0) {
      re = r2;
      re.op = CAPTURE;
      re.subs = [this.finishRegexp(r1)];
    } else {
      re = r1;
    }
    this.pushRegexp(re);
  }

  doFinish(): Regexp {
    this.doAlternation();
    const re = this.stacktop;
    if (re !== null && re.down !== null) syntaxError('missingParen', '');
    if (re === null) throw new Error('re2-size: empty parse stack');
    this.stacktop = null;
    return this.finishRegexp(re);
  }

  doCollapse(op: number): void {
    // Children down to the first marker; children of the same op are flattened in.
    let n = 0;
    let next: Regexp | null = null;
    for (let sub = this.stacktop; sub !== null && !ParseState.isMarker(sub.op); sub = next) {
      next = sub.down;
      n += sub.op === op ? sub.subs.length : 1;
    }
    if (this.stacktop !== null && this.stacktop.down === next) return; // just one child
    const subs: Regexp[] = new Array<Regexp>(n);
    let i = n;
    for (let sub = this.stacktop; sub !== null && !ParseState.isMarker(sub.op); sub = next) {
      next = sub.down;
      if (sub.op === op) {
        for (let k = sub.subs.length - 1; k >= 0; k--) subs[--i] = at(sub.subs, k);
      } else {
        subs[--i] = this.finishRegexp(sub);
      }
    }
    const re = concatOrAlternate(op, subs, this.flags, true);
    re.down = next;
    this.stacktop = re;
  }

  doConcatenation(): void {
    const r1 = this.stacktop;
    if (r1 === null || ParseState.isMarker(r1.op)) this.pushRegexp(new Regexp(EMPTY_MATCH, this.flags));
    this.doCollapse(CONCAT);
  }

  doAlternation(): void {
    this.doVerticalBar();
    const r1 = this.stacktop;
    if (r1 === null) throw new Error('re2-size: empty parse stack');
    this.stacktop = r1.down;
    this.doCollapse(ALTERNATE);
  }

  /** Merges the two literals on top of the stack into a string; with r >= 0, reuses the top for r. */
  maybeConcatString(r: number, flags: number): boolean {
    const re1 = this.stacktop;
    const re2 = re1?.down ?? null;
    if (re1 === null || re2 === null) return false;
    if (re1.op !== LITERAL && re1.op !== LITERAL_STRING) return false;
    if (re2.op !== LITERAL && re2.op !== LITERAL_STRING) return false;
    if ((re1.flags & FOLD_CASE) !== (re2.flags & FOLD_CASE)) return false;
    if (re2.op === LITERAL) {
      re2.op = LITERAL_STRING;
      re2.runes = [re2.rune];
    }
    if (re1.op === LITERAL) re2.runes.push(re1.rune);
    else re2.runes.push(...re1.runes);
    if (r >= 0) {
      re1.op = LITERAL;
      re1.runes = [];
      re1.rune = r;
      re1.flags = flags;
      return true;
    }
    this.stacktop = re2;
    return false;
  }
}

/** parse.cc RepetitionWalker: 0 when nested counted repetitions exceed 1000 copies. */
function repetitionBudget(root: Regexp, top: number): number {
  // Each node's budget is its parent's divided by its own count; the answer is the smallest.
  let result = top;
  const stk: Array<{ re: Regexp; arg: number }> = [{ re: root, arg: top }];
  while (stk.length > 0) {
    const { re, arg: parentArg } = stk.pop() as { re: Regexp; arg: number };
    let arg = parentArg;
    if (re.op === REPEAT) {
      const m = re.max < 0 ? re.min : re.max;
      if (m > 0) arg = Math.trunc(arg / m);
    }
    result = Math.min(result, arg);
    for (const s of re.subs) stk.push({ re: s, arg });
  }
  return result;
}

// --- FactorAlternation (parse.cc), with its explicit stack of frames over one shared array ----------

type Splice = { prefix: Regexp; sub: number; nsub: number; nsuffix: number };
type Frame = { sub: number; nsub: number; round: number; splices: Splice[]; spliceidx: number };

function factorAlternation(a: Regexp[], flags: number): Regexp[] {
  const stk: Frame[] = [{ sub: 0, nsub: a.length, round: 0, splices: [], spliceidx: 0 }];
  for (;;) {
    const f = at(stk, stk.length - 1);
    if (f.splices.length === 0) {
      f.round++;
    } else if (f.spliceidx < f.splices.length) {
      const sp = at(f.splices, f.spliceidx);
      stk.push({ sub: sp.sub, nsub: sp.nsub, round: 0, splices: [], spliceidx: 0 });
      continue;
    } else {
      // Apply the splices.
      let si = 0;
      let out = 0;
      for (let i = 0; i < f.nsub; ) {
        const sp = at(f.splices, si);
        while (f.sub + i < sp.sub) a[f.sub + out++] = at(a, f.sub + i++);
        if (f.round === 1 || f.round === 2) {
          const suffixes = a.slice(sp.sub, sp.sub + sp.nsuffix);
          const alt = concatOrAlternate(ALTERNATE, suffixes, flags, false);
          a[f.sub + out++] = concat([sp.prefix, alt], flags);
        } else {
          a[f.sub + out++] = sp.prefix;
        }
        i += sp.nsub;
        if (++si === f.splices.length) while (i < f.nsub) a[f.sub + out++] = at(a, f.sub + i++);
      }
      f.splices = [];
      f.nsub = out;
      f.round++;
    }

    if (f.round === 1) round1(a, f.sub, f.nsub, f.splices);
    else if (f.round === 2) round2(a, f.sub, f.nsub, f.splices);
    else if (f.round === 3) round3(a, f.sub, f.nsub, flags, f.splices);
    else {
      if (stk.length === 1) return a.slice(0, f.nsub);
      const nsuffix = f.nsub;
      stk.pop();
      const parent = at(stk, stk.length - 1);
      at(parent.splices, parent.spliceidx).nsuffix = nsuffix;
      parent.spliceidx++;
      continue;
    }
    f.spliceidx = f.splices.length === 0 || f.round === 3 ? f.splices.length : 0;
  }
}

/** Regexp::LeadingString: the literal runes re starts with, and their FoldCase|Latin1 flags. */
function leadingString(re: Regexp): { runes: number[]; flags: number } {
  while (re.op === CONCAT && re.subs.length > 0) re = sub0(re);
  const flags = re.flags & (FOLD_CASE | LATIN1);
  if (re.op === LITERAL) return { runes: [re.rune], flags };
  if (re.op === LITERAL_STRING) return { runes: re.runes, flags };
  return { runes: [], flags };
}

/** Regexp::RemoveLeadingString: removes n leading runes, editing re in place. */
function removeLeadingString(re: Regexp, n: number): void {
  const stk: Regexp[] = [];
  while (re.op === CONCAT) {
    if (stk.length < 4) stk.push(re);
    re = sub0(re);
  }
  if (re.op === LITERAL) {
    re.rune = 0;
    re.op = EMPTY_MATCH;
  } else if (re.op === LITERAL_STRING) {
    if (n >= re.runes.length) {
      re.runes = [];
      re.op = EMPTY_MATCH;
    } else if (n === re.runes.length - 1) {
      re.rune = at(re.runes, re.runes.length - 1);
      re.runes = [];
      re.op = LITERAL;
    } else {
      re.runes = re.runes.slice(n);
    }
  }
  while (stk.length > 0) {
    const c = stk.pop() as Regexp;
    if (sub0(c).op !== EMPTY_MATCH) continue;
    if (c.subs.length === 2) c.takeContents(at(c.subs, 1));
    else if (c.subs.length > 2) c.subs = c.subs.slice(1);
    else {
      c.subs = [];
      c.op = EMPTY_MATCH;
    }
  }
}

function leadingRegexp(re: Regexp): Regexp | null {
  if (re.op === EMPTY_MATCH) return null;
  if (re.op === CONCAT && re.subs.length >= 2) return sub0(re).op === EMPTY_MATCH ? null : sub0(re);
  return re;
}

function removeLeadingRegexp(re: Regexp): Regexp {
  if (re.op === EMPTY_MATCH) return re;
  if (re.op === CONCAT && re.subs.length >= 2) {
    if (sub0(re).op === EMPTY_MATCH) return re;
    if (re.subs.length === 2) return at(re.subs, 1);
    re.subs = re.subs.slice(1);
    return re;
  }
  return new Regexp(EMPTY_MATCH, re.flags);
}

/** Round 1: factor out common literal prefixes. */
function round1(a: Regexp[], sub: number, nsub: number, splices: Splice[]): void {
  let start = 0;
  let rune: number[] = [];
  let nrune = 0;
  let runeflags = 0;
  for (let i = 0; i <= nsub; i++) {
    let runeI: number[] = [];
    let nruneI = 0;
    let flagsI = 0;
    if (i < nsub) {
      const ls = leadingString(at(a, sub + i));
      runeI = ls.runes;
      nruneI = ls.runes.length;
      flagsI = ls.flags;
      if (flagsI === runeflags) {
        let same = 0;
        while (same < nrune && same < nruneI && rune[same] === runeI[same]) same++;
        if (same > 0) {
          nrune = same;
          continue;
        }
      }
    }
    if (i - start >= 2) {
      const prefix = newLiteralString(rune.slice(0, nrune), runeflags);
      for (let j = start; j < i; j++) removeLeadingString(at(a, sub + j), nrune);
      splices.push({ prefix, sub: sub + start, nsub: i - start, nsuffix: -1 });
    }
    if (i < nsub) {
      start = i;
      rune = runeI;
      nrune = nruneI;
      runeflags = flagsI;
    }
  }
}

/** Round 2: factor out a common simple leading piece (empty-width op, class, fixed repeat of one). */
function round2(a: Regexp[], sub: number, nsub: number, splices: Splice[]): void {
  let start = 0;
  let first: Regexp | null = null;
  for (let i = 0; i <= nsub; i++) {
    let firstI: Regexp | null = null;
    if (i < nsub) {
      firstI = leadingRegexp(at(a, sub + i));
      if (first !== null && factorable(first) && regexpEqual(first, firstI)) continue;
    }
    if (i - start >= 2 && first !== null) {
      for (let j = start; j < i; j++) a[sub + j] = removeLeadingRegexp(at(a, sub + j));
      splices.push({ prefix: first, sub: sub + start, nsub: i - start, nsuffix: -1 });
    }
    if (i < nsub) {
      start = i;
      first = firstI;
    }
  }
}

function factorable(first: Regexp): boolean {
  switch (first.op) {
    case BEGIN_LINE:
    case END_LINE:
    case WORD_BOUNDARY:
    case NO_WORD_BOUNDARY:
    case BEGIN_TEXT:
    case END_TEXT:
    case CHAR_CLASS:
    case ANY_CHAR:
    case ANY_BYTE:
      return true;
    case REPEAT: {
      const s = sub0(first).op;
      return first.min === first.max && (s === LITERAL || s === CHAR_CLASS || s === ANY_CHAR || s === ANY_BYTE);
    }
    default:
      return false;
  }
}

/** Round 3: merge runs of literals and classes into one class. */
function round3(a: Regexp[], sub: number, nsub: number, flags: number, splices: Splice[]): void {
  let start = 0;
  let first: Regexp | null = null;
  const mergeable = (re: Regexp): boolean => re.op === LITERAL || re.op === CHAR_CLASS;
  for (let i = 0; i <= nsub; i++) {
    let firstI: Regexp | null = null;
    if (i < nsub) {
      firstI = at(a, sub + i);
      if (first !== null && mergeable(first) && mergeable(firstI)) continue;
    }
    if (i - start >= 2) {
      const ccb = new CharClassBuilder();
      for (let j = start; j < i; j++) {
        const re = at(a, sub + j);
        if (re.op === CHAR_CLASS && re.cc !== null) {
          for (const r of re.cc.ranges) ccb.addRangeFlags(r.lo, r.hi, re.flags);
        } else if (re.flags & FOLD_CASE) {
          // A folded literal adds its orbit. When part of the orbit is already in the class, RE2
          // 20220601 stops early and 2025 does not, so the programs differ: unsupported.
          const orbit = re.rune < RUNE_SELF ? [re.rune, ...asciiFoldOrbit(re.rune)] : null;
          if (orbit === null || orbit.some((o) => ccb.contains(o))) throw new Unsupported();
          for (const o of orbit) ccb.addRange(o, o);
        } else {
          ccb.addRangeFlags(re.rune, re.rune, re.flags);
        }
      }
      splices.push({ prefix: newCharClass(ccb.getCharClass(), flags & ~FOLD_CASE), sub: sub + start, nsub: i - start, nsuffix: -1 });
    }
    if (i < nsub) {
      start = i;
      first = firstI;
    }
  }
}

// --- Lexing ---------------------------------------------------------------------------------------

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 0x30 && c <= 0x39;
const isHex = (c: number | undefined): c is number =>
  c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
const unHex = (c: number): number => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10);
const isAsciiAlnum = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** The regex as code points; a lone surrogate cannot be sent as UTF-8, and RE2 would reject it. */
function toRunes(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (c >= 0xd800 && c <= 0xdfff) syntaxError('badUTF8', '');
    out.push(c);
  }
  return out;
}

class Lexer {
  readonly t: readonly number[];
  pos = 0;
  constructor(t: readonly number[]) {
    this.t = t;
  }
  get left(): number {
    return this.t.length - this.pos;
  }
  peek(k = 0): number | undefined {
    return this.t[this.pos + k];
  }
  next(): number {
    return at(this.t, this.pos++);
  }
  text(from: number, to = this.pos): string {
    return String.fromCodePoint(...this.t.slice(from, to));
  }
}

/** parse.cc ParseInteger: decimal, no leading zeros, at most 8 digits' worth. */
function parseInteger(lx: Lexer): number | null {
  if (!isDigit(lx.peek())) return null;
  if (lx.peek() === 0x30 && isDigit(lx.peek(1))) return null;
  let n = 0;
  while (isDigit(lx.peek())) {
    if (n >= 100_000_000) return null;
    n = n * 10 + lx.next() - 0x30;
  }
  return n;
}

/** parse.cc MaybeParseRepetition: `{n}`, `{n,}`, `{n,m}`; leaves lx untouched when it is none. */
function maybeParseRepetition(lx: Lexer): { lo: number; hi: number } | null {
  const save = lx.pos;
  const fail = (): null => {
    lx.pos = save;
    return null;
  };
  if (lx.peek() !== 0x7b) return null;
  lx.pos++;
  const lo = parseInteger(lx);
  if (lo === null || lx.left === 0) return fail();
  let hi = lo;
  if (lx.peek() === 0x2c) {
    lx.pos++;
    if (lx.left === 0) return fail();
    if (lx.peek() === 0x7d) hi = -1;
    else {
      const h = parseInteger(lx);
      if (h === null) return fail();
      hi = h;
    }
  }
  if (lx.peek() !== 0x7d) return fail();
  lx.pos++;
  return { lo, hi };
}

/** parse.cc ParseEscape: one escaped character (not classes, not assertions). */
function parseEscape(lx: Lexer): number {
  const begin = lx.pos;
  if (lx.left === 1) syntaxError('trailingBackslash', '');
  lx.pos++; // backslash
  let c = lx.next();
  const bad = (): never => syntaxError('badEscape', lx.text(begin));
  if (c >= 0x31 && c <= 0x37) {
    // A single non-zero octal digit is a backreference: unsupported by RE2.
    const d = lx.peek();
    if (d === undefined || d < 0x30 || d > 0x37) bad();
  }
  if (c >= 0x30 && c <= 0x37) {
    let code = c - 0x30;
    for (let k = 0; k < 2; k++) {
      const d = lx.peek();
      if (d === undefined || d < 0x30 || d > 0x37) break;
      code = code * 8 + d - 0x30;
      lx.pos++;
    }
    return code;
  }
  switch (c) {
    case 0x78: {
      // \x
      if (lx.left === 0) bad();
      c = lx.next();
      if (c === 0x7b) {
        if (lx.left === 0) bad();
        c = lx.next();
        let nhex = 0;
        let code = 0;
        while (isHex(c)) {
          nhex++;
          code = code * 16 + unHex(c);
          if (code > RUNE_MAX) bad();
          if (lx.left === 0) bad();
          c = lx.next();
        }
        if (c !== 0x7d || nhex === 0) bad();
        return code;
      }
      if (lx.left === 0) bad();
      const c1 = lx.next();
      if (!isHex(c) || !isHex(c1)) bad();
      return unHex(c) * 16 + unHex(c1);
    }
    case 0x6e:
      return 0x0a; // \n
    case 0x72:
      return 0x0d; // \r
    case 0x74:
      return 0x09; // \t
    case 0x61:
      return 0x07; // \a
    case 0x66:
      return 0x0c; // \f
    case 0x76:
      return 0x0b; // \v
    default:
      // Escaped non-word ASCII characters are themselves; anything else is an error.
      if (c < RUNE_SELF && !isAsciiAlnum(c)) return c;
      return bad();
  }
}

/** A Perl class escape (\d \s \w and negations) at the lexer position, consumed if present. */
function maybePerlClass(lx: Lexer, flags: number): Group | null {
  if (!(flags & PERL_CLASSES) || lx.left < 2 || lx.peek() !== 0x5c) return null;
  const g = PERL_GROUPS[String.fromCodePoint(lx.peek(1) as number)];
  if (g === undefined) return null;
  lx.pos += 2;
  return g;
}

function parseCharClass(lx: Lexer, flags: number): Regexp {
  const whole = lx.pos;
  lx.pos++; // '['
  const re = new Regexp(CHAR_CLASS, flags & ~FOLD_CASE);
  const ccb = new CharClassBuilder();
  re.ccb = ccb;
  let negated = false;
  if (lx.peek() === 0x5e) {
    lx.pos++;
    negated = true;
    // With ClassNL off (never, with RE2's default options), [^...] would not match \n.
    if (!(flags & CLASS_NL) || flags & NEVER_NL) ccb.addRange(0x0a, 0x0a);
  }
  let first = true; // ']' is a literal as the first character
  while (lx.left > 0 && (lx.peek() !== 0x5d || first)) {
    first = false;
    // [:alnum:] and friends.
    if (lx.left > 2 && lx.peek() === 0x5b && lx.peek(1) === 0x3a) {
      let q = lx.pos + 2;
      while (q <= lx.t.length - 2 && !(lx.t[q] === 0x3a && lx.t[q + 1] === 0x5d)) q++;
      if (q <= lx.t.length - 2) {
        const name = lx.text(lx.pos, q + 2);
        const inner = name.slice(2, -2);
        const neg = inner.startsWith('^');
        const ranges = Object.hasOwn(POSIX_RANGES, neg ? inner.slice(1) : inner) ? POSIX_RANGES[neg ? inner.slice(1) : inner] : undefined;
        if (ranges === undefined) syntaxError('badCharRange', name);
        lx.pos = q + 2;
        addGroup(ccb, { sign: neg ? -1 : 1, ranges }, flags);
        continue;
      }
    }
    // \p{..} needs RE2's Unicode tables.
    if (lx.left > 2 && lx.peek() === 0x5c && (lx.peek(1) === 0x70 || lx.peek(1) === 0x50) && flags & UNICODE_GROUPS) {
      throw new Unsupported();
    }
    const g = maybePerlClass(lx, flags);
    if (g !== null) {
      addGroup(ccb, g, flags);
      continue;
    }
    // A character or a range.
    const rangeStart = lx.pos;
    const lo = parseClassChar(lx, whole);
    let hi = lo;
    if (lx.left >= 2 && lx.peek() === 0x2d && lx.peek(1) !== 0x5d) {
      lx.pos++;
      hi = parseClassChar(lx, whole);
      if (hi < lo) syntaxError('badCharRange', lx.text(rangeStart));
    }
    // An explicit character or range keeps \n: RE2 adds ClassNL here.
    ccb.addRangeFlags(lo, hi, flags | CLASS_NL);
  }
  if (lx.left === 0) syntaxError('missingBracket', lx.text(whole));
  lx.pos++; // ']'
  if (negated) ccb.negate();
  return re;
}

function parseClassChar(lx: Lexer, whole: number): number {
  if (lx.left === 0) syntaxError('missingBracket', lx.text(whole));
  if (lx.peek() === 0x5c) return parseEscape(lx);
  return lx.next();
}

/** parse.cc ParsePerlFlags: `(?flags)`, `(?flags:`, `(?:`, `(?P<name>`. */
function parsePerlFlags(lx: Lexer, ps: ParseState): void {
  const t = lx.t;
  const p = lx.pos;
  const c2 = t[p + 2];
  const left = lx.left;
  if ((left > 3 && (c2 === 0x3d || c2 === 0x21)) || (left > 4 && c2 === 0x3c && (t[p + 3] === 0x3d || t[p + 3] === 0x21))) {
    syntaxError('badPerlOp', lx.text(p, p + (c2 === 0x3c ? 4 : 3))); // look-around
  }
  if (left > 4 && c2 === 0x50 && t[p + 3] === 0x3c) {
    // (?P<name>
    let end = p + 4;
    while (end < t.length && t[end] !== 0x3e) end++;
    if (end >= t.length) syntaxError('badNamedCapture', lx.text(p));
    const name = lx.text(p + 4, end);
    if (name === '') syntaxError('badNamedCapture', lx.text(p, end + 1));
    // RE2 2025 also accepts Unicode letters in names, RE2 20220601 only [0-9A-Za-z_].
    if (!/^[0-9A-Za-z_]+$/.test(name)) throw new Unsupported();
    ps.doLeftParen(name);
    lx.pos = end + 1;
    return;
  }
  if (left > 3 && c2 === 0x3c) throw new Unsupported(); // (?<name>: a syntax error before RE2 2023
  lx.pos += 2; // "(?"
  let negated = false;
  let sawflags = false;
  let nflags = ps.flags;
  const bad = (): never => syntaxError('badPerlOp', lx.text(p));
  for (let done = false; !done; ) {
    if (lx.left === 0) bad();
    const c = lx.next();
    switch (c) {
      case 0x69: // i
        sawflags = true;
        nflags = negated ? nflags & ~FOLD_CASE : nflags | FOLD_CASE;
        break;
      case 0x6d: // m
        sawflags = true;
        nflags = negated ? nflags | ONE_LINE : nflags & ~ONE_LINE;
        break;
      case 0x73: // s
        sawflags = true;
        nflags = negated ? nflags & ~DOT_NL : nflags | DOT_NL;
        break;
      case 0x55: // U
        sawflags = true;
        nflags = negated ? nflags & ~NON_GREEDY : nflags | NON_GREEDY;
        break;
      case 0x2d: // -
        if (negated) bad();
        negated = true;
        sawflags = false;
        break;
      case 0x3a: // :
        ps.doLeftParenNoCapture();
        done = true;
        break;
      case 0x29: // )
        done = true;
        break;
      default:
        bad();
    }
  }
  if (negated && !sawflags) bad();
  ps.flags = nflags;
}

/** Regexp::Parse. */
function parse(regex: string, globalFlags: number): Regexp {
  const lx = new Lexer(toRunes(regex));
  const ps = new ParseState(globalFlags);
  let lastunary = -1; // position of the previous repetition operator, if it was the last thing parsed
  while (lx.left > 0) {
    let isunary = -1;
    const c = lx.peek() as number;
    switch (c) {
      case 0x28: // (
        if (ps.flags & PERL_X && lx.peek(1) === 0x3f) {
          parsePerlFlags(lx, ps);
          break;
        }
        ps.doLeftParen(null);
        lx.pos++;
        break;
      case 0x7c: // |
        ps.doVerticalBar();
        lx.pos++;
        break;
      case 0x29: // )
        ps.doRightParen();
        lx.pos++;
        break;
      case 0x5e: // ^
        ps.pushCaret();
        lx.pos++;
        break;
      case 0x24: // $
        ps.pushDollar();
        lx.pos++;
        break;
      case 0x2e: // .
        ps.pushDot();
        lx.pos++;
        break;
      case 0x5b: // [
        ps.pushRegexp(parseCharClass(lx, ps.flags));
        break;
      case 0x2a: // *
      case 0x2b: // +
      case 0x3f: {
        // ?
        const op = c === 0x2a ? STAR : c === 0x2b ? PLUS : QUEST;
        const opstart = lx.pos;
        lx.pos++;
        let nongreedy = false;
        if (ps.flags & PERL_X) {
          if (lx.peek() === 0x3f) {
            nongreedy = true;
            lx.pos++;
          }
          // Perl does not allow stacked repetition operators (a** is an error).
          if (lastunary >= 0) syntaxError('repeatOp', lx.text(lastunary));
        }
        ps.pushRepeatOp(op, lx.text(opstart), nongreedy);
        isunary = opstart;
        break;
      }
      case 0x7b: {
        // {
        const opstart = lx.pos;
        const rep = maybeParseRepetition(lx);
        if (rep === null) {
          ps.pushLiteral(0x7b); // not a repetition: a literal {
          lx.pos++;
          break;
        }
        let nongreedy = false;
        if (ps.flags & PERL_X) {
          if (lx.peek() === 0x3f) {
            nongreedy = true;
            lx.pos++;
          }
          if (lastunary >= 0) syntaxError('repeatOp', lx.text(lastunary));
        }
        ps.pushRepetition(rep.lo, rep.hi, lx.text(opstart), nongreedy);
        isunary = opstart;
        break;
      }
      case 0x5c: {
        // backslash
        const n1 = lx.peek(1);
        if (ps.flags & PERL_B && (n1 === 0x62 || n1 === 0x42)) {
          ps.pushSimpleOp(n1 === 0x62 ? WORD_BOUNDARY : NO_WORD_BOUNDARY);
          lx.pos += 2;
          break;
        }
        if (ps.flags & PERL_X && n1 !== undefined) {
          if (n1 === 0x41) {
            ps.pushSimpleOp(BEGIN_TEXT); // \A
            lx.pos += 2;
            break;
          }
          if (n1 === 0x7a) {
            ps.pushSimpleOp(END_TEXT); // \z
            lx.pos += 2;
            break;
          }
          if (n1 === 0x43) {
            ps.pushSimpleOp(ANY_BYTE); // \C
            lx.pos += 2;
            break;
          }
          if (n1 === 0x51) {
            // \Q ... \E
            lx.pos += 2;
            while (lx.left > 0) {
              if (lx.left >= 2 && lx.peek() === 0x5c && lx.peek(1) === 0x45) {
                lx.pos += 2;
                break;
              }
              ps.pushLiteral(lx.next());
            }
            break;
          }
        }
        if ((n1 === 0x70 || n1 === 0x50) && ps.flags & UNICODE_GROUPS) throw new Unsupported(); // \p \P
        const g = maybePerlClass(lx, ps.flags);
        if (g !== null) {
          const re = new Regexp(CHAR_CLASS, ps.flags & ~FOLD_CASE);
          re.ccb = new CharClassBuilder();
          addGroup(re.ccb, g, ps.flags);
          ps.pushRegexp(re);
          break;
        }
        ps.pushLiteral(parseEscape(lx));
        break;
      }
      default:
        ps.pushLiteral(lx.next());
        break;
    }
    lastunary = isunary;
  }
  return ps.doFinish();
}

// ---------------------------------------------------------------------------------------------------
// RE2::Init: a literal after leading `^` is matched separately and not compiled (Regexp::RequiredPrefix).

function requiredPrefix(re: Regexp): { prefix: number[]; suffix: Regexp } {
  if (re.op !== CONCAT) return { prefix: [], suffix: re };
  let i = 0;
  while (i < re.subs.length && at(re.subs, i).op === BEGIN_TEXT) i++;
  if (i === 0 || i >= re.subs.length) return { prefix: [], suffix: re };
  const lit = at(re.subs, i);
  if (lit.op !== LITERAL && lit.op !== LITERAL_STRING) return { prefix: [], suffix: re };
  i++;
  const suffix = i < re.subs.length ? concat(re.subs.slice(i), re.flags) : new Regexp(EMPTY_MATCH, re.flags);
  return { prefix: lit.op === LITERAL ? [lit.rune] : [...lit.runes], suffix };
}

// ---------------------------------------------------------------------------------------------------
// Simplify (simplify.cc): CoalesceWalker then SimplifyWalker. Both return the same node when nothing
// changed, as RE2's do; the compiler only looks at structure, so identity is kept for clarity only.

function simplify(re: Regexp): Regexp {
  return postOrder(postOrder(re, coalesceVisit), simplifyVisit);
}

/** CoalesceWalker::PostVisit: x*x, x*x+, x{2}x* ... inside a concatenation become one repeat. */
function coalesceVisit(re: Regexp, child: Regexp[]): Regexp {
  if (re.subs.length === 0) return re;
  const changed = child.some((c, i) => c !== re.subs[i]);
  if (re.op !== CONCAT) {
    if (!changed) return re;
    const nre = withSubs(re.op, re.flags, child);
    nre.min = re.min;
    nre.max = re.max;
    nre.cap = re.cap;
    nre.name = re.name;
    return nre;
  }
  let can = false;
  for (let i = 0; i + 1 < child.length; i++) if (canCoalesce(at(child, i), at(child, i + 1))) can = true;
  if (!can) return changed ? withSubs(re.op, re.flags, child) : re;
  for (let i = 0; i + 1 < child.length; i++) {
    if (canCoalesce(at(child, i), at(child, i + 1))) doCoalesce(child, i);
  }
  return withSubs(
    re.op,
    re.flags,
    child.filter((c) => c.op !== EMPTY_MATCH),
  );
}

function canCoalesce(r1: Regexp, r2: Regexp): boolean {
  const rep = (op: number): boolean => op === STAR || op === PLUS || op === QUEST || op === REPEAT;
  if (!rep(r1.op)) return false;
  const s1 = sub0(r1);
  if (s1.op !== LITERAL && s1.op !== CHAR_CLASS && s1.op !== ANY_CHAR && s1.op !== ANY_BYTE) return false;
  if (rep(r2.op) && regexpEqual(s1, sub0(r2)) && (r1.flags & NON_GREEDY) === (r2.flags & NON_GREEDY)) return true;
  if (regexpEqual(s1, r2)) return true;
  return s1.op === LITERAL && r2.op === LITERAL_STRING && r2.runes[0] === s1.rune && (s1.flags & FOLD_CASE) === (r2.flags & FOLD_CASE);
}

function doCoalesce(child: Regexp[], i: number): void {
  const r1 = at(child, i);
  const r2 = at(child, i + 1);
  const nre = withSubs(REPEAT, r1.flags, [sub0(r1)]);
  if (r1.op === STAR) [nre.min, nre.max] = [0, -1];
  else if (r1.op === PLUS) [nre.min, nre.max] = [1, -1];
  else if (r1.op === QUEST) [nre.min, nre.max] = [0, 1];
  else [nre.min, nre.max] = [r1.min, r1.max];
  const leaveEmpty = (): void => {
    child[i] = new Regexp(EMPTY_MATCH, 0);
    child[i + 1] = nre;
  };
  switch (r2.op) {
    case STAR:
      nre.max = -1;
      return leaveEmpty();
    case PLUS:
      nre.min++;
      nre.max = -1;
      return leaveEmpty();
    case QUEST:
      if (nre.max !== -1) nre.max++;
      return leaveEmpty();
    case REPEAT:
      nre.min += r2.min;
      if (r2.max === -1) nre.max = -1;
      else if (nre.max !== -1) nre.max += r2.max;
      return leaveEmpty();
    case LITERAL:
    case CHAR_CLASS:
    case ANY_CHAR:
    case ANY_BYTE:
      nre.min++;
      if (nre.max !== -1) nre.max++;
      return leaveEmpty();
    case LITERAL_STRING: {
      const r = sub0(r1).rune;
      let n = 1;
      while (n < r2.runes.length && r2.runes[n] === r) n++;
      nre.min += n;
      if (nre.max !== -1) nre.max += n;
      if (n === r2.runes.length) return leaveEmpty();
      child[i] = nre;
      child[i + 1] = newLiteralString(r2.runes.slice(n), r2.flags);
      return;
    }
    default:
      throw new Error(`re2-size: DoCoalesce on op ${r2.op}`);
  }
}

/** SimplifyWalker::PostVisit: counted repetitions expanded, empty/full classes replaced. */
function simplifyVisit(re: Regexp, child: Regexp[]): Regexp {
  switch (re.op) {
    case CONCAT:
    case ALTERNATE:
      return child.some((c, i) => c !== re.subs[i]) ? withSubs(re.op, re.flags, child) : re;
    case CAPTURE: {
      const s = at(child, 0);
      if (s === sub0(re)) return re;
      const nre = withSubs(CAPTURE, re.flags, [s]);
      nre.cap = re.cap;
      nre.name = re.name;
      return nre;
    }
    case STAR:
    case PLUS:
    case QUEST: {
      const s = at(child, 0);
      if (s.op === EMPTY_MATCH) return s;
      if (s === sub0(re)) return re;
      if (re.op === s.op && re.flags === s.flags) return s;
      return withSubs(re.op, re.flags, [s]);
    }
    case REPEAT: {
      const s = at(child, 0);
      if (s.op === EMPTY_MATCH) return s;
      return simplifyRepeat(s, re.min, re.max, re.flags);
    }
    case CHAR_CLASS: {
      const cc = re.cc;
      if (cc === null) return re;
      if (cc.empty) return new Regexp(NO_MATCH, re.flags);
      if (cc.full) return new Regexp(ANY_CHAR, re.flags);
      return re;
    }
    default:
      return re;
  }
}

const isEmptyOp = (re: Regexp): boolean =>
  re.op === BEGIN_LINE ||
  re.op === END_LINE ||
  re.op === WORD_BOUNDARY ||
  re.op === NO_WORD_BOUNDARY ||
  re.op === BEGIN_TEXT ||
  re.op === END_TEXT;

/** Regexp::StarPlusOrQuest: squashes a repeat of a repeat. */
function starPlusOrQuest(op: number, s: Regexp, flags: number): Regexp {
  if (op === s.op && flags === s.flags) return s;
  if ((s.op === STAR || s.op === PLUS || s.op === QUEST) && flags === s.flags) {
    return s.op === STAR ? s : withSubs(STAR, flags, [sub0(s)]);
  }
  return withSubs(op, flags, [s]);
}

/** SimplifyWalker::SimplifyRepeat: x{n,m} as n copies of x then nested (x(x)?)?. */
function simplifyRepeat(re: Regexp, min: number, max: number, f: number): Regexp {
  // RE2 2023+ caps repeats of empty-width ops at 1; 20220601 does not. Different programs: unsupported.
  if (isEmptyOp(re) || ((re.op === CONCAT || re.op === ALTERNATE) && re.subs.every(isEmptyOp))) {
    if (min > 1 || max > 1 || max === -1) throw new Unsupported();
  }
  if (max === -1) {
    if (min === 0) return starPlusOrQuest(STAR, re, f);
    if (min === 1) return starPlusOrQuest(PLUS, re, f);
    const subs: Regexp[] = [];
    for (let i = 0; i < min - 1; i++) subs.push(re);
    subs.push(starPlusOrQuest(PLUS, re, f));
    return concat(subs, f);
  }
  if (min === 0 && max === 0) return new Regexp(EMPTY_MATCH, f);
  if (min === 1 && max === 1) return re;
  let nre: Regexp | null = null;
  if (min > 0) {
    const subs: Regexp[] = [];
    for (let i = 0; i < min; i++) subs.push(re);
    nre = concat(subs, f);
  }
  if (max > min) {
    let suf = starPlusOrQuest(QUEST, re, f);
    for (let i = min + 1; i < max; i++) suf = starPlusOrQuest(QUEST, withSubs(CONCAT, f, [re, suf]), f);
    nre = nre === null ? suf : withSubs(CONCAT, f, [nre, suf]);
  }
  return nre ?? new Regexp(NO_MATCH, f);
}

// ---------------------------------------------------------------------------------------------------
// Compiler (compile.cc) and Prog (prog.cc).

const I_ALT = 0;
const I_ALT_MATCH = 1;
const I_BYTE_RANGE = 2;
const I_CAPTURE = 3;
const I_EMPTY_WIDTH = 4;
const I_MATCH = 5;
const I_NOP = 6;
const I_FAIL = 7;

type Inst = { op: number; out: number; out1: number; lo: number; hi: number; foldcase: boolean };
/** A patch list threads through the unfilled outs: (id << 1) | (1 for out1, 0 for out). */
type PatchList = { head: number; tail: number };
type Frag = { begin: number; end: PatchList; nullable: boolean };

const NULL_PATCH: PatchList = { head: 0, tail: 0 };
const noMatch = (): Frag => ({ begin: 0, end: NULL_PATCH, nullable: false });
const mk = (p: number): PatchList => ({ head: p, tail: p });

class Compiler {
  inst: Inst[] = [];
  ninst = 0;
  runeCache = new Map<string, number>();
  runeRange: Frag = noMatch();

  constructor() {
    const fail = this.allocInst(1);
    this.at(fail).op = I_FAIL;
  }

  at(id: number): Inst {
    return at(this.inst, id);
  }

  allocInst(n: number): number {
    if (this.ninst + n > MAX_INSTRUCTIONS) throw new Unsupported();
    const id = this.ninst;
    for (let i = 0; i < n; i++) this.inst[id + i] = { op: I_ALT, out: 0, out1: 0, lo: 0, hi: 0, foldcase: false };
    this.ninst += n;
    return id;
  }

  patch(l: PatchList, p: number): void {
    let head = l.head;
    while (head !== 0) {
      const ip = this.at(head >> 1);
      if (head & 1) {
        head = ip.out1;
        ip.out1 = p;
      } else {
        head = ip.out;
        ip.out = p;
      }
    }
  }

  append(l1: PatchList, l2: PatchList): PatchList {
    if (l1.head === 0) return l2;
    if (l2.head === 0) return l1;
    const ip = this.at(l1.tail >> 1);
    if (l1.tail & 1) ip.out1 = l2.head;
    else ip.out = l2.head;
    return { head: l1.head, tail: l2.tail };
  }

  cat(a: Frag, b: Frag): Frag {
    if (a.begin === 0 || b.begin === 0) return noMatch();
    const begin = this.at(a.begin);
    // Elide a leading no-op.
    if (begin.op === I_NOP && a.end.head === a.begin << 1 && begin.out === 0) {
      this.patch(a.end, b.begin);
      return b;
    }
    this.patch(a.end, b.begin);
    return { begin: a.begin, end: b.end, nullable: a.nullable && b.nullable };
  }

  alt(a: Frag, b: Frag): Frag {
    if (a.begin === 0) return b;
    if (b.begin === 0) return a;
    const id = this.allocInst(1);
    Object.assign(this.at(id), { op: I_ALT, out: a.begin, out1: b.begin });
    return { begin: id, end: this.append(a.end, b.end), nullable: a.nullable || b.nullable };
  }

  /** The Alt of a loop or option: greedy tries the body first (out), lazy tries it second (out1). */
  loopAlt(body: number, nongreedy: boolean): { id: number; pl: PatchList } {
    const id = this.allocInst(1);
    const ip = this.at(id);
    ip.op = I_ALT;
    if (nongreedy) {
      ip.out = 0;
      ip.out1 = body;
      return { id, pl: mk(id << 1) };
    }
    ip.out = body;
    ip.out1 = 0;
    return { id, pl: mk((id << 1) | 1) };
  }

  plus(a: Frag, nongreedy: boolean): Frag {
    const { id, pl } = this.loopAlt(a.begin, nongreedy);
    this.patch(a.end, id);
    return { begin: a.begin, end: pl, nullable: a.nullable };
  }

  star(a: Frag, nongreedy: boolean): Frag {
    // A nullable body needs (a+)? for correct priorities.
    if (a.nullable) return this.quest(this.plus(a, nongreedy), nongreedy);
    const { id, pl } = this.loopAlt(a.begin, nongreedy);
    this.patch(a.end, id);
    return { begin: id, end: pl, nullable: true };
  }

  quest(a: Frag, nongreedy: boolean): Frag {
    if (a.begin === 0) return this.nop();
    const { id, pl } = this.loopAlt(a.begin, nongreedy);
    return { begin: id, end: this.append(pl, a.end), nullable: true };
  }

  byteRange(lo: number, hi: number, foldcase: boolean): Frag {
    const id = this.allocInst(1);
    Object.assign(this.at(id), { op: I_BYTE_RANGE, lo, hi, foldcase, out: 0 });
    return { begin: id, end: mk(id << 1), nullable: false };
  }

  nop(): Frag {
    const id = this.allocInst(1);
    Object.assign(this.at(id), { op: I_NOP, out: 0 });
    return { begin: id, end: mk(id << 1), nullable: true };
  }

  match(): Frag {
    const id = this.allocInst(1);
    Object.assign(this.at(id), { op: I_MATCH, out: 0 });
    return { begin: id, end: NULL_PATCH, nullable: false };
  }

  emptyWidth(empty: number): Frag {
    const id = this.allocInst(1);
    Object.assign(this.at(id), { op: I_EMPTY_WIDTH, lo: empty, out: 0 });
    return { begin: id, end: mk(id << 1), nullable: true };
  }

  capture(a: Frag, n: number): Frag {
    if (a.begin === 0) return noMatch();
    const id = this.allocInst(2);
    Object.assign(this.at(id), { op: I_CAPTURE, lo: 2 * n, out: a.begin });
    Object.assign(this.at(id + 1), { op: I_CAPTURE, lo: 2 * n + 1, out: 0 });
    this.patch(a.end, id + 1);
    return { begin: id, end: mk((id + 1) << 1), nullable: a.nullable };
  }

  // --- Rune ranges as UTF-8 byte-range tries (forward mode) ---

  beginRange(): void {
    this.runeCache.clear();
    this.runeRange = noMatch();
  }

  uncachedRuneByteSuffix(lo: number, hi: number, foldcase: boolean, next: number): number {
    const f = this.byteRange(lo, hi, foldcase);
    if (next !== 0) this.patch(f.end, next);
    else this.runeRange.end = this.append(this.runeRange.end, f.end);
    return f.begin;
  }

  cachedRuneByteSuffix(lo: number, hi: number, foldcase: boolean, next: number): number {
    const key = `${next}:${lo}:${hi}:${foldcase ? 1 : 0}`;
    const hit = this.runeCache.get(key);
    if (hit !== undefined) return hit;
    const id = this.uncachedRuneByteSuffix(lo, hi, foldcase, next);
    this.runeCache.set(key, id);
    return id;
  }

  isCachedRuneByteSuffix(id: number): boolean {
    const ip = this.at(id);
    return this.runeCache.has(`${ip.out}:${ip.lo}:${ip.hi}:${ip.foldcase ? 1 : 0}`);
  }

  addSuffix(id: number): void {
    if (this.runeRange.begin === 0) {
      this.runeRange.begin = id;
      return;
    }
    this.runeRange.begin = this.addSuffixRecursive(this.runeRange.begin, id);
  }

  byteRangeEqual(a: number, b: number): boolean {
    const x = this.at(a);
    const y = this.at(b);
    return x.lo === y.lo && x.hi === y.hi && x.foldcase === y.foldcase;
  }

  /** Compiler::FindByteRange (forward mode): where id's leading byte range already is, if anywhere. */
  findByteRange(root: number, id: number): Frag {
    const r = this.at(root);
    if (r.op === I_BYTE_RANGE) return this.byteRangeEqual(root, id) ? { begin: root, end: NULL_PATCH, nullable: false } : noMatch();
    if (r.op === I_ALT) {
      // A class is a sorted list of ranges: only the last alternative (out1) can match.
      if (this.byteRangeEqual(r.out1, id)) return { begin: root, end: mk((root << 1) | 1), nullable: false };
      return noMatch();
    }
    throw new Error('re2-size: FindByteRange on a non-trie instruction');
  }

  addSuffixRecursive(root: number, id: number): number {
    const f = this.findByteRange(root, id);
    if (f.begin === 0) {
      const alt = this.allocInst(1);
      Object.assign(this.at(alt), { op: I_ALT, out: root, out1: id });
      return alt;
    }
    let br: number;
    if (f.end.head === 0) br = root;
    else if (f.end.head & 1) br = this.at(f.begin).out1;
    else br = this.at(f.begin).out;
    if (this.isCachedRuneByteSuffix(br)) {
      // A cached suffix is shared: clone its head instead of editing it.
      const b = this.at(br);
      const clone = this.allocInst(1);
      Object.assign(this.at(clone), { op: I_BYTE_RANGE, lo: b.lo, hi: b.hi, foldcase: b.foldcase, out: b.out });
      br = clone;
      if (f.end.head === 0) root = br;
      else if (f.end.head & 1) this.at(f.begin).out1 = br;
      else this.at(f.begin).out = br;
    }
    let out = this.at(id).out;
    if (!this.isCachedRuneByteSuffix(id)) {
      // The head is the most recently allocated instruction: free it rather than leave it unreachable.
      if (id !== this.ninst - 1) throw new Error('re2-size: suffix head is not the last instruction');
      this.inst[id] = { op: I_ALT, out: 0, out1: 0, lo: 0, hi: 0, foldcase: false };
      this.ninst--;
    }
    out = this.addSuffixRecursive(this.at(br).out, out);
    this.at(br).out = out;
    return root;
  }

  addRuneRange(lo: number, hi: number, foldcase: boolean): void {
    if (lo > hi) return;
    if (lo === 0x80 && hi === 0x10ffff) {
      this.add80To10ffff();
      return;
    }
    // Split into ranges of the same UTF-8 length.
    for (let i = 1; i < 4; i++) {
      const max = maxRune(i);
      if (lo <= max && max < hi) {
        this.addRuneRange(lo, max, foldcase);
        this.addRuneRange(max + 1, hi, foldcase);
        return;
      }
    }
    if (hi < RUNE_SELF) {
      this.addSuffix(this.uncachedRuneByteSuffix(lo, hi, foldcase, 0));
      return;
    }
    // Split into sections that agree on leading bytes.
    for (let i = 1; i < 4; i++) {
      const m = (1 << (6 * i)) - 1;
      if ((lo & ~m) !== (hi & ~m)) {
        if ((lo & m) !== 0) {
          this.addRuneRange(lo, lo | m, foldcase);
          this.addRuneRange((lo | m) + 1, hi, foldcase);
          return;
        }
        if ((hi & m) !== m) {
          this.addRuneRange(lo, (hi & ~m) - 1, foldcase);
          this.addRuneRange(hi & ~m, hi, foldcase);
          return;
        }
      }
    }
    const ulo = utf8(lo);
    const uhi = utf8(hi);
    const n = ulo.length;
    let id = 0;
    // Forward mode: cache the last continuation byte and inner byte ranges, never the leading byte.
    for (let i = n - 1; i >= 0; i--) {
      const l = at(ulo, i);
      const h = at(uhi, i);
      if (i === n - 1 || (l < h && i !== 0)) id = this.cachedRuneByteSuffix(l, h, false, id);
      else id = this.uncachedRuneByteSuffix(l, h, false, id);
    }
    this.addSuffix(id);
  }

  /** 80-10FFFF, e.g. for `.`: permits some overlong/out-of-range sequences to stay small. */
  add80To10ffff(): void {
    const cont1 = this.uncachedRuneByteSuffix(0x80, 0xbf, false, 0);
    this.addSuffix(this.uncachedRuneByteSuffix(0xc2, 0xdf, false, cont1));
    const cont2 = this.uncachedRuneByteSuffix(0x80, 0xbf, false, cont1);
    this.addSuffix(this.uncachedRuneByteSuffix(0xe0, 0xef, false, cont2));
    const cont3 = this.uncachedRuneByteSuffix(0x80, 0xbf, false, cont2);
    this.addSuffix(this.uncachedRuneByteSuffix(0xf0, 0xf4, false, cont3));
  }

  literal(r: number, foldcase: boolean): Frag {
    if (r < RUNE_SELF) return this.byteRange(r, r, foldcase);
    const bytes = utf8(r);
    let f = this.byteRange(at(bytes, 0), at(bytes, 0), false);
    for (let i = 1; i < bytes.length; i++) f = this.cat(f, this.byteRange(at(bytes, i), at(bytes, i), false));
    return f;
  }

  /** The compiler's walk: children first, in order, then the node. */
  walk(re: Regexp): Frag {
    return postOrder(re, (r: Regexp, child: Frag[]) => this.postVisit(r, child));
  }

  /** Compiler::PostVisit: the fragment for re, given its children's. */
  postVisit(re: Regexp, child: Frag[]): Frag {
    const nongreedy = (re.flags & NON_GREEDY) !== 0;
    const foldcase = (re.flags & FOLD_CASE) !== 0;
    switch (re.op) {
      case NO_MATCH:
        return noMatch();
      case EMPTY_MATCH:
        return this.nop();
      case CONCAT: {
        let f = at(child, 0);
        for (let i = 1; i < child.length; i++) f = this.cat(f, at(child, i));
        return f;
      }
      case ALTERNATE: {
        let f = at(child, 0);
        for (let i = 1; i < child.length; i++) f = this.alt(f, at(child, i));
        return f;
      }
      case STAR:
        return this.star(at(child, 0), nongreedy);
      case PLUS:
        return this.plus(at(child, 0), nongreedy);
      case QUEST:
        return this.quest(at(child, 0), nongreedy);
      case LITERAL:
        return this.literal(re.rune, foldcase);
      case LITERAL_STRING: {
        if (re.runes.length === 0) return this.nop();
        let f = this.literal(at(re.runes, 0), foldcase);
        for (let i = 1; i < re.runes.length; i++) f = this.cat(f, this.literal(at(re.runes, i), foldcase));
        return f;
      }
      case ANY_CHAR:
        this.beginRange();
        this.addRuneRange(0, RUNE_MAX, false);
        return this.runeRange;
      case ANY_BYTE:
        return this.byteRange(0x00, 0xff, false);
      case CHAR_CLASS: {
        const cc = re.cc;
        if (cc === null || cc.empty) throw new Error('re2-size: empty character class reached the compiler');
        // ASCII case-folding optimisation: when A-Z behaves like a-z, drop A-Z and fold a-z.
        const foldascii = cc.foldsAscii;
        this.beginRange();
        for (const { lo, hi } of cc.ranges) {
          if (foldascii && 0x41 <= lo && hi <= 0x5a) continue;
          let fold = foldascii;
          if ((lo <= 0x41 && 0x7a <= hi) || hi < 0x41 || 0x7a < lo || (0x5a < lo && hi < 0x61)) fold = false;
          this.addRuneRange(lo, hi, fold);
        }
        return this.runeRange;
      }
      case CAPTURE:
        return re.cap < 0 ? at(child, 0) : this.capture(at(child, 0), re.cap);
      case BEGIN_LINE:
        return this.emptyWidth(EMPTY_BEGIN_LINE);
      case END_LINE:
        return this.emptyWidth(EMPTY_END_LINE);
      case BEGIN_TEXT:
        return this.emptyWidth(EMPTY_BEGIN_TEXT);
      case END_TEXT:
        return this.emptyWidth(EMPTY_END_TEXT);
      case WORD_BOUNDARY:
        return this.emptyWidth(EMPTY_WORD_BOUNDARY);
      case NO_WORD_BOUNDARY:
        return this.emptyWidth(EMPTY_NON_WORD_BOUNDARY);
      default:
        throw new Error(`re2-size: op ${re.op} reached the compiler`);
    }
  }
}

/** Largest rune encoded in len UTF-8 bytes. */
function maxRune(len: number): number {
  const b = len === 1 ? 7 : 8 - (len + 1) + 6 * (len - 1);
  return (1 << b) - 1;
}

/** RE2's runetochar: plain UTF-8, surrogate code points included (as \x{D800} can produce). */
function utf8(r: number): number[] {
  if (r < 0x80) return [r];
  if (r < 0x800) return [0xc0 | (r >> 6), 0x80 | (r & 0x3f)];
  if (r < 0x10000) return [0xe0 | (r >> 12), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f)];
  return [0xf0 | (r >> 18), 0x80 | ((r >> 12) & 0x3f), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f)];
}

/** compile.cc IsAnchorStart / IsAnchorEnd: strip a leading \A (trailing \z), through concats and captures. */
function stripAnchor(re: Regexp, depth: number, which: typeof BEGIN_TEXT | typeof END_TEXT): Regexp | null {
  if (depth >= 4) return null;
  switch (re.op) {
    case CONCAT: {
      if (re.subs.length === 0) return null;
      const k = which === BEGIN_TEXT ? 0 : re.subs.length - 1;
      const s = stripAnchor(at(re.subs, k), depth + 1, which);
      if (s === null) return null;
      const subs = [...re.subs];
      subs[k] = s;
      return concat(subs, re.flags);
    }
    case CAPTURE: {
      const s = stripAnchor(sub0(re), depth + 1, which);
      if (s === null) return null;
      const c = withSubs(CAPTURE, re.flags, [s]);
      c.cap = re.cap;
      c.name = re.name;
      return c;
    }
    default:
      return re.op === which ? new Regexp(EMPTY_MATCH, re.flags) : null;
  }
}

/** Compiler::Compile + Finish + Prog::Optimize + Prog::Flatten, returning the flattened size. */
function compileSize(re: Regexp): number {
  const c = new Compiler();
  let sre = simplify(re);
  const startStripped = stripAnchor(sre, 0, BEGIN_TEXT);
  const anchorStart = startStripped !== null;
  if (startStripped !== null) sre = startStripped;
  const endStripped = stripAnchor(sre, 0, END_TEXT);
  if (endStripped !== null) sre = endStripped;

  let all = c.walk(sre);
  all = c.cat(all, c.match());
  const start = all.begin;
  if (!anchorStart) all = c.cat(c.star(c.byteRange(0x00, 0xff, false), true), all); // unanchored: .*? loop
  const startUnanchored = all.begin;
  if (start === 0 && startUnanchored === 0) return 1; // no possible match: just the Fail instruction

  const inst = c.inst.slice(0, c.ninst);
  optimize(inst, start);
  return flattenSize(inst, start, startUnanchored);
}

/** An insertion-ordered work queue that ignores id 0 (Fail) and repeats (prog.cc Workq + AddToQueue). */
function walkQueue(first: number, visit: (id: number, add: (id: number) => void) => void): void {
  const q: number[] = [];
  const seen = new Set<number>();
  const add = (id: number): void => {
    if (id !== 0 && !seen.has(id)) {
      seen.add(id);
      q.push(id);
    }
  };
  add(first);
  for (let i = 0; i < q.length; i++) visit(at(q, i), add);
}

/** Prog::Optimize: skip Nops (from start only, as RE2 does), then mark `.*`-then-match loops AltMatch. */
function optimize(inst: Inst[], start: number): void {
  const skipNops = (j: number): number => {
    while (j !== 0 && at(inst, j).op === I_NOP) j = at(inst, j).out;
    return j;
  };
  walkQueue(start, (id, add) => {
    const ip = at(inst, id);
    ip.out = skipNops(ip.out);
    add(ip.out);
    if (ip.op === I_ALT) {
      ip.out1 = skipNops(ip.out1);
      add(ip.out1);
    }
  });
  const isMatch = (id: number): boolean => {
    for (;;) {
      const ip = at(inst, id);
      if (ip.op === I_CAPTURE || ip.op === I_NOP) id = ip.out;
      else return ip.op === I_MATCH;
    }
  };
  const anyByteBack = (j: Inst, id: number): boolean => j.op === I_BYTE_RANGE && j.out === id && j.lo === 0x00 && j.hi === 0xff;
  walkQueue(start, (id, add) => {
    const ip = at(inst, id);
    add(ip.out);
    if (ip.op === I_ALT) add(ip.out1);
    if (ip.op === I_ALT) {
      const j = at(inst, ip.out);
      const k = at(inst, ip.out1);
      if ((anyByteBack(j, id) && isMatch(ip.out1)) || (isMatch(ip.out) && anyByteBack(k, id))) ip.op = I_ALT_MATCH;
    }
  });
}

/** Prog::Flatten's instruction count: one list per root, each list its reachable non-Alt/Nop instructions. */
function flattenSize(inst: Inst[], start: number, startUnanchored: number): number {
  const roots = new Set<number>([0]);
  roots.add(startUnanchored);
  roots.add(start);
  const preds = new Map<number, number[]>();

  // MarkSuccessors: the out of every ByteRange, Capture and EmptyWidth starts a list.
  {
    const reachable = new Set<number>();
    const stk = [startUnanchored];
    while (stk.length > 0) {
      let id = stk.pop() as number;
      for (;;) {
        if (reachable.has(id)) break;
        reachable.add(id);
        const ip = at(inst, id);
        if (ip.op === I_ALT || ip.op === I_ALT_MATCH) {
          for (const out of [ip.out, ip.out1]) {
            const p = preds.get(out);
            if (p === undefined) preds.set(out, [id]);
            else p.push(id);
          }
          stk.push(ip.out1);
          id = ip.out;
        } else if (ip.op === I_BYTE_RANGE || ip.op === I_CAPTURE || ip.op === I_EMPTY_WIDTH) {
          roots.add(ip.out);
          id = ip.out;
        } else if (ip.op === I_NOP) {
          id = ip.out;
        } else {
          break; // Match, Fail
        }
      }
    }
  }

  // The epsilon closure of root, stopping at other roots.
  const closure = (root: number, onOtherRoot: (id: number) => void, onInst: (ip: Inst) => void): Set<number> => {
    const reachable = new Set<number>();
    const stk = [root];
    while (stk.length > 0) {
      let id = stk.pop() as number;
      for (;;) {
        if (reachable.has(id)) break;
        reachable.add(id);
        if (id !== root && roots.has(id)) {
          onOtherRoot(id);
          break;
        }
        const ip = at(inst, id);
        if (ip.op === I_ALT || ip.op === I_ALT_MATCH) {
          onInst(ip);
          stk.push(ip.out1);
          id = ip.out;
        } else if (ip.op === I_NOP) {
          id = ip.out;
        } else {
          onInst(ip);
          break;
        }
      }
    }
    return reachable;
  };

  // MarkDominator, from the highest instruction id down (skipping the lowest, the Fail instruction):
  // an instruction with a predecessor that this root does not reach must start a list of its own.
  const sorted = [...roots].sort((a, b) => a - b);
  for (let i = sorted.length - 1; i > 0; i--) {
    const root = at(sorted, i);
    if (root === startUnanchored || root === start) continue;
    const reachable = closure(
      root,
      () => {},
      () => {},
    );
    for (const id of reachable) {
      for (const pred of preds.get(id) ?? []) if (!reachable.has(pred)) roots.add(id);
    }
  }

  // EmitList: each list holds its ByteRange/Capture/EmptyWidth/Match/Fail instructions, a Nop for each
  // other list it falls into, and an extra AltMatch instruction for each AltMatch.
  let size = 0;
  for (const root of roots) {
    closure(
      root,
      () => size++,
      (ip) => {
        if (ip.op !== I_ALT) size++;
      },
    );
  }
  return size;
}
