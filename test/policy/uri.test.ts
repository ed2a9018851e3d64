// Resource URI normalization (policy/uri.ts): the normal form the policy engine matches `resources` patterns
// against, checked against what the SDK hands a server (WHATWG URL: `new URL(uri)`, which its resource
// templates use) and for idempotence; ambiguous spellings are refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeFully, normalizeResourceUri, resourcePatternProblem } from '../../control-plane/src/policy/uri.ts';

const norm = (u: string): string => {
  const r = normalizeResourceUri(u);
  assert.ok('uri' in r, `${JSON.stringify(u)} was refused: ${'error' in r ? r.error : ''}`);
  return r.uri;
};

describe('normalizeResourceUri', () => {
  const SAME: Array<[string, string]> = [
    ['file:///reports/../etc/passwd', 'file:///etc/passwd'],
    ['file:///reports/%2e%2e/etc/passwd', 'file:///etc/passwd'],
    ['file:///reports/%2E%2e/etc/passwd', 'file:///etc/passwd'],
    ['file:///reports/.%2e/x', 'file:///x'],
    ['file:///a/./b/../c', 'file:///a/c'],
    ['file:///../../etc/passwd', 'file:///etc/passwd'],
    ['file:///a/b/..', 'file:///a/'],
    ['file:///a/.', 'file:///a/'],
    ['FILE:///A/%41%7e%5F', 'file:///A/A~_'],
    ['weather://EU/Paris', 'weather://eu/Paris'],
    ['weather://User@EU:443/x', 'weather://User@eu:443/x'],
    ['weather://eu/a/../b', 'weather://eu/b'],
    ['weather:/a/../b', 'weather:/b'],
    ['file:///r%c3%a9sum%C3%A9', 'file:///résumé'],
    ['file:///a%3a%3Fb', 'file:///a%3A%3Fb'],
    ['file:///a/b?x=../y&p=%2F%25#../z', 'file:///a/b?x=../y&p=%2F%25#../z'],
    ['file:///{path}', 'file:///%7Bpath%7D'],
    // What WHATWG URL makes of them: what the SDK's resources/read hands the server.
    ['file://localhost/etc/passwd', 'file:///etc/passwd'],
    ['file://LOCALHOST/reports/../etc/passwd', 'file:///etc/passwd'],
    ['file:/etc/passwd', 'file:///etc/passwd'],
    ['file:etc/passwd', 'file:///etc/passwd'],
    ['file:///c|/x', 'file:///c:/x'],
    ['http:/h/x', 'http://h/x'],
    ['http:///h/x', 'http://h/x'],
    ['http://h:80/x', 'http://h/x'],
    ['https://H:443/x', 'https://h/x'],
    ['http://0x7f.1/x', 'http://127.0.0.1/x'],
    ['http://h/a b', 'http://h/a%20b'],
    ['urn:isbn:0451450523', 'urn:isbn:0451450523'],
    ['weather://paris', 'weather://paris'],
    ['file:///a/', 'file:///a/'],
  ];
  for (const [input, want] of SAME) {
    it(`${input} -> ${want}`, () => {
      assert.equal(norm(input), want);
      assert.equal(norm(want), want, 'idempotent');
    });
  }

  const REFUSED: Array<[string, RegExp]> = [
    ['file:///reports%2F..%2Fetc/passwd', /encoded "\/" \(%2F\) in the path/],
    ['file:///a/%2fb', /encoded "\/"/],
    ['file:///a%00.txt', /encoded control character \(%00\)/],
    ['file:///a%C2%85', /encoded control character \(%C2%85\)/],
    ['file:///a%7F', /encoded control character/],
    ['file:///a\\..\\etc', /backslash/],
    ['file:///a/%5C..', /encoded backslash/],
    ['file:///%252e%252e/etc', /double encoding/],
    ['file:///reports//secret', /empty path segment/],
    ['file:////etc/passwd', /empty path segment/],
    ['file:///a/..;/b', /dot segment with parameters/],
    ['urn:a/../b', /opaque path/],
    ['file:///%C0%AE%C0%AE/etc', /not UTF-8 \(%C0%AE%C0%AE\)/],
    ['file:///%ED%A0%80', /not UTF-8/],
    ['file:///%80', /not UTF-8/],
    ['file:///a%2', /not followed by two hex digits/],
    ['file:///a%zz', /not followed by two hex digits/],
    ['file:///a\u0000', /control character U\+0000/],
    ['file:///a\n', /control character/],
    [' file:///a', /whitespace/],
    ['weather://a%2Fb/x', /encoded "\/" \(%2F\) in the authority/],
  ];
  for (const [input, why] of REFUSED) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      const r = normalizeResourceUri(input);
      assert.ok('error' in r, `accepted as ${JSON.stringify(r)}`);
      assert.match(r.error, why);
    });
  }

  it('the fast path for URIs already in normal form answers as the full normalization does', () => {
    const alphabet = [
      'a',
      'B',
      '/',
      '.',
      '..',
      '%2e',
      '%41',
      '?',
      '#',
      '\\',
      ':',
      '@',
      '~',
      'é',
      '%2F',
      ';',
      '//',
      '|',
      ' ',
      "'",
      '{',
      'localhost',
      ':80',
    ];
    let seed = 7;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    for (let i = 0; i < 20_000; i++) {
      let u = ['file://', 'file:', 'weather://eu', 'weather:', 'http://Host', 'http:', 'urn:'][rnd(7)] as string;
      for (let j = rnd(8); j > 0; j--) u += alphabet[rnd(alphabet.length)];
      assert.deepEqual(normalizeResourceUri(u), normalizeFully(u), u);
    }
  });

  it("agrees with what WHATWG URL (the SDK's resource templates) hands the server, wherever it accepts a URI", () => {
    const segs = ['a', '.', '..', '%2e', '%2E%2e', '.%2e', 'b%41', '~x', 'r%C3%A9', 'é', '%3A', '', 'c'];
    let compared = 0;
    // Every path of up to 4 segments from the list above, under two special schemes and a custom one.
    const paths: string[] = [''];
    for (let depth = 0; depth < 4; depth++)
      for (const p of [...paths]) for (const s of segs) if (p.split('/').length <= depth + 1) paths.push(`${p}/${s}`);
    for (const scheme of ['file://', 'http://host', 'weather://eu']) {
      for (const p of new Set(paths)) {
        const raw = `${scheme}${p || '/'}`;
        const mine = normalizeResourceUri(raw);
        if ('error' in mine) continue;
        // The server sees new URL(raw).href: normalizing that must give the same normal form, so what the
        // policy matched is what the server resolves.
        assert.equal(norm(new URL(raw).href), mine.uri, raw);
        compared += 1;
      }
    }
    assert.ok(compared > 1000, `compared ${compared}`);
  });
});

describe('resourcePatternProblem', () => {
  it('accepts patterns in normal form', () => {
    for (const p of [
      '*',
      'file:///reports/*',
      'weather://*',
      'inv://public/*',
      'file:///ré*',
      'file:///a%3A*',
      'file:///a?x=../y*',
      'urn:isbn:*',
    ])
      assert.equal(resourcePatternProblem(p), undefined, p);
  });
  it('refuses patterns that could never match a normalized URI', () => {
    for (const p of [
      'FILE:///*',
      'file:///a/../b/*',
      'file:///a/./*',
      'weather://*/..',
      'file:///%41*',
      'file:///%c3%a9',
      'file:///%3a',
      'file:///a\\b',
      'file:///%x',
    ])
      assert.notEqual(resourcePatternProblem(p), undefined, p);
  });
});
