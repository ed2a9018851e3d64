// re2ProgramSize against the real RE2: test/helpers/re2-size.cc is compiled here with g++ against
// Debian's libre2 and prints re2::RE2(regex, RE2::Quiet).ProgramSize(), which is what Envoy checks
// against re2.max_program_size.error_level (100). Without g++ or libre2-dev the comparisons are
// skipped with a reason naming the install command; the pinned sizes below still run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RE2_MAX_PROGRAM_SIZE, Re2SyntaxError, re2ProgramSize } from '../../control-plane/src/xds/re2-size.ts';

// --- The regex shapes the control plane generates. Mirrored here rather than imported, so that this
// test stays independent of translator refactors; keep them in step with:
//   control-plane/src/model/glob.ts      escapeRegex, globRegex (RBAC Mcp-Name matchers, SPIFFE SANs)
//   control-plane/src/translate/rbac.ts  roleInStringRegex, the protocol-version regex
//   control-plane/src/translate/routes.ts  methodVirtualClusters (gateway path)
const escapeRegex = (literal: string): string => literal.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');
const globRegex = (pattern: string): string => `^${pattern.split('*').map(escapeRegex).join('.*')}$`;
const PROTOCOL_VERSION_REGEX = '^(20[01][0-9]|202[0-5])-.*$|^2026-0[1-6]-.*$|^2026-07-([01][0-9]|2[0-7])$';
const pathRegex = (prefix: string): string => `^${escapeRegex(prefix)}([/?].*)?$`;
const ROLE_SHAPES: Record<string, (role: string) => string> = {
  'roleInStringRegex ^(.* )?ROLE( .*)?$': (r) => `^(.* )?${escapeRegex(r)}( .*)?$`,
  '^(?:.*\\s)?ROLE(?:\\s.*)?$': (r) => `^(?:.*\\s)?${escapeRegex(r)}(?:\\s.*)?$`,
  '(^|.* )ROLE( .*|$)': (r) => `(^|.* )${escapeRegex(r)}( .*|$)`,
};

// --- Deterministic randomness (mulberry32), so a failure names a reproducible input.
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = <T>(rnd: () => number, items: readonly T[]): T => items[Math.floor(rnd() * items.length)] as T;

/** ASCII names, RE2 and glob metacharacters, whitespace, and 2-, 3- and 4-byte UTF-8 characters. */
const GLOB_CHARS = [...'abcdefghijklmnopqrstuvwxyz_-0123456789/:@.', ...'\\^$|?+()[]{}', ' ', '\t', 'é', 'ß', 'Ω', '€', '中', '😀', '*'];

function randomText(rnd: () => number, len: number, chars: readonly string[]): string {
  let s = '';
  for (let i = 0; i < len; i++) s += pick(rnd, chars);
  return s;
}

/** Random regexes over the whole syntax re2-size.ts models, and some outside it (to check the bound). */
function randomRegex(rnd: () => number, depth = 0): string {
  const atoms = [
    'a',
    'b',
    'k',
    's',
    'Z',
    'é',
    '€',
    '😀',
    '中',
    '\\.',
    '\\*',
    '\\\\',
    '\\n',
    '\\t',
    '\\x41',
    '\\x{e9}',
    '\\x{1F600}',
    '\\0',
    '\\101',
    '.',
    '\\d',
    '\\D',
    '\\s',
    '\\S',
    '\\w',
    '\\W',
    '[a-z]',
    '[^a-z]',
    '[0-9]',
    '[01]',
    '[Aa]',
    '[Kk]',
    '[ab]',
    '[é-ü]',
    '[^\\n]',
    '[\\x00-\\x{10FFFF}]',
    '[\\x{80}-\\x{10FFFF}]',
    '[a-zA-Z]',
    '[[:alpha:]]',
    '[[:^digit:]]',
    '[.]',
    '[-a]',
    '[]a]',
    '\\C',
    '^',
    '$',
    '\\A',
    '\\z',
    '\\b',
    '\\B',
    '\\Qa.b\\E',
    '{',
    '}',
    ']',
    ' ',
    '/',
    '\\pL',
    '\\p{Greek}',
    '(?i)k',
    '(?i)é',
  ];
  const r = rnd();
  if (depth > 3 || r < 0.35) return randomText(rnd, 1 + Math.floor(rnd() * 4), atoms);
  if (r < 0.55) return Array.from({ length: 2 + Math.floor(rnd() * 3) }, () => randomRegex(rnd, depth + 1)).join('');
  if (r < 0.7) return Array.from({ length: 2 + Math.floor(rnd() * 3) }, () => randomRegex(rnd, depth + 1)).join('|');
  if (r < 0.85)
    return `${pick(rnd, ['(', '(?:', '(?P<g>', '(?s:', '(?m:', '(?U:', '(?i:', '(?-s:', '(?<g>']) + randomRegex(rnd, depth + 1)})`;
  const inner = rnd() < 0.5 ? pick(rnd, atoms) : `(?:${randomRegex(rnd, depth + 1)})`;
  return inner + pick(rnd, ['*', '+', '?', '*?', '+?', '??', '{2}', '{0,3}', '{1,}', '{2,4}', '{0}', '{3,}?']);
}

/** Strings that are mostly not valid regexes: parse errors must agree too. */
function randomSoup(rnd: () => number): string {
  return randomText(rnd, 1 + Math.floor(rnd() * 10), [...'ab()|*+?{}[]^$.\\-:P<>12,dxQEz', 'é']);
}

// --- The real RE2, through the C++ helper.

type Real = { ok: true; size: number } | { ok: false; error: string };

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const INSTALL = 'apt-get install libre2-dev g++';
const workDir = mkdtempSync(join(tmpdir(), 're2-size-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

/** Compiles the helper; returns its path, or why the real-RE2 comparisons must be skipped. */
function buildHelper(): { bin: string } | { skip: string } {
  const bin = join(workDir, 're2-size');
  const src = join(REPO, 'test/helpers/re2-size.cc');
  // RE2 >= 2023 (Debian 13) needs Abseil's flags too; pkg-config knows them when it is installed.
  const pc = spawnSync('pkg-config', ['--cflags', '--libs', 're2'], { encoding: 'utf8' });
  const flags = pc.status === 0 ? pc.stdout.trim().split(/\s+/).filter(Boolean) : ['-lre2'];
  const cc = spawnSync('g++', ['-O1', '-std=c++17', '-o', bin, src, ...flags], { encoding: 'utf8' });
  if (cc.error !== undefined) return { skip: `g++ is not installed: ${INSTALL} (Debian) to compare with the real RE2` };
  if (cc.status !== 0) {
    if (/re2\/re2\.h|-lre2|lre2/.test(cc.stderr))
      return { skip: `RE2 headers or library missing: ${INSTALL} (Debian) to compare with the real RE2` };
    throw new Error(`compiling test/helpers/re2-size.cc failed:\n${cc.stderr}`);
  }
  return { bin };
}
const helper = buildHelper();
const skip = 'skip' in helper ? helper.skip : false;

/** Real RE2 program sizes, one helper run for a whole corpus. */
function real(regexes: readonly string[]): Real[] {
  if (!('bin' in helper)) throw new Error('real RE2 helper unavailable');
  const input = `${regexes.map((r) => Buffer.from(r, 'utf8').toString('hex')).join('\n')}\n`;
  const run = spawnSync(helper.bin, { input, encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trimEnd().split('\n');
  assert.equal(lines.length, regexes.length, 'one answer per regex');
  return lines.map((l): Real => (l.startsWith('ok ') ? { ok: true, size: Number(l.slice(3)) } : { ok: false, error: l.slice(4) }));
}

type Mine = { kind: 'size'; size: number } | { kind: 'syntax'; error: string };

function mine(regex: string): Mine {
  try {
    return { kind: 'size', size: re2ProgramSize(regex) };
  } catch (e) {
    if (e instanceof Re2SyntaxError) return { kind: 'syntax', error: e.message };
    throw e;
  }
}

/**
 * Checks a corpus against the real RE2: the same size where re2-size.ts models the regex, a bound (>=)
 * where it returns +Infinity, and a Re2SyntaxError exactly where RE2 rejects the regex.
 * Returns how many regexes RE2 accepted, and for how many of those the answer was exact.
 */
function compare(corpus: readonly string[], opts: { exactOnly?: boolean } = {}): { accepted: number; exact: number } {
  const answers = real(corpus);
  const failures: string[] = [];
  let exact = 0;
  let accepted = 0;
  corpus.forEach((regex, i) => {
    const r = answers[i] as Real;
    const m = mine(regex);
    const label = JSON.stringify(regex);
    if (!r.ok) {
      // RE2 rejects it: re2-size.ts must reject it too (or, for syntax it does not model, not vouch for it).
      if (m.kind === 'size' && m.size !== Number.POSITIVE_INFINITY)
        failures.push(`${label}: RE2 error "${r.error}", re2ProgramSize ${m.size}`);
      return;
    }
    accepted++;
    if (m.kind === 'syntax') failures.push(`${label}: RE2 size ${r.size}, re2ProgramSize threw "${m.error}"`);
    else if (m.size === Number.POSITIVE_INFINITY) {
      if (opts.exactOnly) failures.push(`${label}: RE2 size ${r.size}, re2ProgramSize gave no exact answer`);
    } else if (m.size !== r.size) failures.push(`${label}: RE2 size ${r.size}, re2ProgramSize ${m.size}`);
    else exact++;
  });
  assert.deepEqual(failures.slice(0, 20), [], `${failures.length} of ${corpus.length} disagree`);
  return { accepted, exact };
}

// --- Tests that need no RE2: sizes measured with RE2 20220601 (Debian bookworm libre2), pinned.

test('RE2_MAX_PROGRAM_SIZE is Envoy’s default error level', () => {
  assert.equal(RE2_MAX_PROGRAM_SIZE, 100);
});

test('pinned sizes of the generated shapes (measured with the real RE2)', () => {
  const pinned: Array<[string, number]> = [
    ['^x$', 4],
    [globRegex('a'.repeat(500)), 4], // RE2 keeps a literal after ^ out of the program
    [globRegex('tools_*'), 12],
    [globRegex('tools_*a'), 13],
    [globRegex(`tools_*${'a'.repeat(88)}`), 100],
    [globRegex(`tools_*${'a'.repeat(89)}`), 101],
    [globRegex('*a'), 11],
    [globRegex('a*b*c'), 22],
    [globRegex('a*é'), 14],
    [globRegex('a*😀'), 16],
    [globRegex('spiffe://td/mcp/team-*-tools'), 18],
    [PROTOCOL_VERSION_REGEX, 46],
    [pathRegex('/mcp'), 17],
    [pathRegex('/a'.repeat(50)), 17],
    [`^(.* )?${'a'.repeat(74)}( .*)?$`, 100],
    [`^(?:.*\\s)?${'a'.repeat(72)}(?:\\s.*)?$`, 100],
    [`(^|.* )${'a'.repeat(70)}( .*|$)`, 100],
    ['^(.* )?admin( .*)?$', 31],
    ['', 4],
    ['a', 5],
    ['.*', 12],
    ['^.*x.y$', 20],
    ['(?i)abc', 7],
    ['x{2,1000}', 2002],
  ];
  for (const [regex, size] of pinned) assert.equal(re2ProgramSize(regex), size, regex);
});

test('syntax RE2 rejects throws Re2SyntaxError', () => {
  for (const bad of ['(', 'a)', '[a', 'a**', 'x{1001}', '\\1', '(?=a)', '\\', 'a{2}{3}', '[z-a]', '\ud800']) {
    assert.throws(() => re2ProgramSize(bad), Re2SyntaxError, bad);
  }
});

test('constructs needing RE2’s Unicode tables give +Infinity, never a guess', () => {
  for (const r of ['\\pL', '\\p{Greek}', '[\\PN]', '(?i)é', '(?i)[\\x{100}-\\x{200}]', '(?<n>a)']) {
    assert.equal(re2ProgramSize(r), Number.POSITIVE_INFINITY, r);
  }
});

// --- Against the real RE2.

test('glob matchers (RBAC Mcp-Name, SPIFFE SANs): every shape and length', { skip }, () => {
  const corpus: string[] = [];
  const names = ['t', 'tools', 'get_weather', 'a.b', 'x+y', 'ns/tool:v1', 'é', 'Ωmega', '中文工具', '😀', 'a b', '$(x)[y]{z}|^?\\'];
  for (let len = 1; len <= 300; len++) corpus.push(globRegex('n'.repeat(len)));
  for (const n of names) {
    corpus.push(
      globRegex(n),
      globRegex(`${n}*`),
      globRegex(`*${n}`),
      globRegex(`*${n}*`),
      globRegex(`${n}*${n}`),
      globRegex(`${n}*${n}*${n}`),
    );
    for (let len = 0; len <= 120; len += 7)
      corpus.push(globRegex(`${n}*${'s'.repeat(len)}`), globRegex(`*${n.repeat(Math.ceil(len / n.length))}`));
  }
  for (let len = 0; len <= 120; len++) {
    corpus.push(
      globRegex(`tools_*${'a'.repeat(len)}`),
      globRegex(`*${'a'.repeat(len)}`),
      globRegex(`spiffe://td/mcp/team-*${'-'.repeat(len)}`),
    );
    corpus.push(globRegex(`p*${'é'.repeat(len >> 1)}`), globRegex(`p*${'€'.repeat(len >> 2)}`));
  }
  for (let stars = 1; stars <= 12; stars++) corpus.push(globRegex(Array.from({ length: stars + 1 }, (_, i) => 'ab'.repeat(i)).join('*')));
  corpus.push(globRegex('*'), globRegex('**'), globRegex('a**b'), globRegex('***a***'), globRegex(''));
  assert.deepEqual(compare(corpus, { exactOnly: true }), { accepted: corpus.length, exact: corpus.length });
});

test('protocol-version, gateway path and role-membership regexes', { skip }, () => {
  const corpus = [PROTOCOL_VERSION_REGEX];
  const rnd = prng(7);
  for (let len = 1; len <= 120; len++) {
    corpus.push(pathRegex(`/${'p'.repeat(len)}`), pathRegex(randomText(rnd, len, GLOB_CHARS)));
    const roles = [
      'r'.repeat(len),
      randomText(
        rnd,
        len,
        GLOB_CHARS.filter((c) => c !== '*'),
      ),
      'é'.repeat(len >> 1),
    ];
    for (const shape of Object.values(ROLE_SHAPES)) for (const role of roles) corpus.push(shape(role));
  }
  assert.deepEqual(compare(corpus, { exactOnly: true }), { accepted: corpus.length, exact: corpus.length });
});

test('random globs (seeded): non-ASCII, metacharacters, several stars', { skip }, () => {
  const rnd = prng(20260728);
  const corpus: string[] = [];
  for (let i = 0; i < 4000; i++) corpus.push(globRegex(randomText(rnd, Math.floor(rnd() * 120), GLOB_CHARS)));
  assert.deepEqual(compare(corpus, { exactOnly: true }), { accepted: corpus.length, exact: corpus.length });
});

test('random regexes (seeded) over the modelled syntax, and beyond it', { skip }, () => {
  const rnd = prng(42);
  const corpus: string[] = [];
  for (let i = 0; i < 10000; i++) corpus.push(rnd() < 0.85 ? randomRegex(rnd) : randomSoup(rnd));
  const { accepted, exact } = compare(corpus);
  // The generator mostly stays inside the modelled syntax: most answers must be exact, not bounds.
  assert.ok(accepted > corpus.length / 2 && exact > accepted * 0.6, `${exact} exact of ${accepted} accepted (${corpus.length} in all)`);
});

test('edge cases: empty, anchors, factoring, classes, repetition, folding, errors, large programs', { skip }, () => {
  const corpus = [
    '',
    '^',
    '$',
    '^$',
    '\\A\\z',
    'a',
    'ab',
    'a$',
    '^a',
    '(?:)',
    '()',
    '(|)',
    '|',
    'a||b',
    '(?:|a)',
    'abc|abd|aef|bcx|bcy',
    'a|b|c',
    'a|[bc]|d',
    '.|a',
    'a|.',
    '(?s).|a',
    '^a|^b',
    'a$|b$',
    'x*y*z*',
    'a.*.*b',
    'a*a',
    'a*aa',
    'a+a',
    'a{2}a*',
    '[^\\n]',
    '[\\x00-\\x{10FFFF}]',
    '[^\\x00-\\x{10FFFF}]',
    '[\\x{80}-\\x{7FF}]',
    '[\\x{800}-\\x{FFFF}]',
    '[\\x{D800}-\\x{DFFF}]',
    '[\\x{10000}-\\x{10FFFF}]',
    '[a-zA-Z0-9_]',
    '[[:word:]]',
    '[[:^word:]]',
    '[[:foo:]]',
    '\\w\\W\\d\\D\\s\\S',
    '[\\d-z]',
    '[]]',
    '[^]]',
    '[a-]',
    '[-]',
    '[Aa]',
    '[Kk]',
    '[Ss]',
    '[Kk]|x',
    '(?i)k',
    '(?i)s',
    '(?i)abc',
    '(?i)[a-z]',
    '(?i)[^k]',
    '(?i)\\W',
    '(?i)a(?-i)b',
    '(?i:a)b|(?i:a)c',
    '(?s).*',
    '(?s)^.*$',
    '(?m)^a$',
    '(?U)a*',
    '(?U)a*?',
    '\\C*',
    '\\C*$',
    'x\\C',
    '\\Qa.b\\E*',
    '\\Q',
    '\\b\\B',
    'a{1000}',
    '(?:a{10}){100}',
    '(?:a{10}){101}',
    'x{2,1000}',
    '.{200}',
    '(a|b){500}',
    '\\w{0,99}',
    `${'('.repeat(300)}a${')'.repeat(300)}`,
    `${'(?:'.repeat(300)}a*${')*'.repeat(300)}`,
    Array.from({ length: 500 }, (_, i) => `w${i}`).join('|'),
    '\\8',
    '\\01',
    '\\400',
    '\\x{110000}',
    '\\xZZ',
    '\\x{}',
    '(?P<a>x)(?P<a>y)',
    '(?P<>x)',
    '(?P=a)',
    '(?#c)',
    'a{,3}',
    'a{3',
    '{',
    '{}',
    'a{01}',
    '*',
    '+a',
    'x**',
    'x*+',
    '(?:x*)*',
    '(?:x+)?',
    '(?i',
    '(?',
    '(?-)a',
    '(?i-i)a',
    '\\z\\A',
    '^*',
    '(?:^)*',
    '\\b{2}',
    '\\pL',
    '(?<n>x)',
  ];
  compare(corpus);
});

test('the length where a glob goes over 100 is the length where real RE2 does', { skip }, () => {
  // For each family, grow the glob one character at a time; the first length over the limit must agree.
  const families: Record<string, (n: number) => string> = {
    'exact name': (n) => globRegex('t'.repeat(n)),
    'prefix*': (n) => globRegex(`${'t'.repeat(n)}*`),
    'prefix*suffix': (n) => globRegex(`tools_*${'s'.repeat(n)}`),
    '*suffix': (n) => globRegex(`*${'s'.repeat(n)}`),
    'prefix*é-suffix': (n) => globRegex(`p*${'é'.repeat(n)}`),
    'a*b*c*…': (n) => globRegex(Array.from({ length: n + 1 }, () => 'x').join('*')),
    'SPIFFE team-*-suffix': (n) => globRegex(`spiffe://td/mcp/team-*-${'t'.repeat(n)}`),
    ...Object.fromEntries(Object.entries(ROLE_SHAPES).map(([name, shape]) => [`role ${name}`, (n: number) => shape('r'.repeat(n))])),
  };
  const MAX_LEN = 400;
  for (const [family, make] of Object.entries(families)) {
    const corpus = Array.from({ length: MAX_LEN }, (_, i) => make(i + 1));
    const realSizes = real(corpus).map((r) => (r.ok ? r.size : Number.NaN));
    const firstOver = (sizes: readonly number[]): number => sizes.findIndex((s) => s > RE2_MAX_PROGRAM_SIZE) + 1; // 0 = never
    const realL = firstOver(realSizes);
    assert.equal(
      firstOver(corpus.map(re2ProgramSize)),
      realL,
      `${family}: re2ProgramSize and RE2 go over ${RE2_MAX_PROGRAM_SIZE} at different lengths`,
    );
    // And the answer is what the formulas in the report say it is.
    const expected: Record<string, number> = {
      'exact name': 0,
      'prefix*': 0,
      'prefix*suffix': 89,
      '*suffix': 91,
      'prefix*é-suffix': 45,
      'a*b*c*…': 11,
      'SPIFFE team-*-suffix': 88,
      'role roleInStringRegex ^(.* )?ROLE( .*)?$': 75,
      'role ^(?:.*\\s)?ROLE(?:\\s.*)?$': 73,
      'role (^|.* )ROLE( .*|$)': 71,
    };
    assert.equal(realL, expected[family], `${family}: real RE2 goes over at length ${realL}`);
  }
});
