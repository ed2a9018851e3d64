// Resource URIs as a server will resolve them: the one normalization the policy engine matches `resources`
// patterns against (decide() and the body parser, hence the authorizer, `mcpmesh policy explain` and
// anything else that asks the engine). Without it `file:///reports/../etc/passwd` would match an allow of
// `file:///reports/*` while the server reads `file:///etc/passwd`: the SDK's resources/read handler parses
// params.uri with `new URL()` (WHATWG) and matches and hands its handlers that URL.
//
// So a URI WHATWG can parse is first taken as WHATWG serializes it (what an SDK server sees: dot segments
// resolved, `%2e%2e` read as `..`, `file://localhost/x` and `file:/x` as `file:///x`, default ports dropped,
// IPv4 numbers such as `0x7f.1` written out, host of special schemes in lower case); one it cannot parse
// (an SDK server could not either) as written. Then, RFC 3986 section 6.2.2 plus one IRI step:
//  - scheme and host in lower case (both are case-insensitive);
//  - percent-encodings of unreserved characters (ALPHA DIGIT - . _ ~) decoded, and of valid UTF-8 beyond
//    ASCII decoded to the characters (so `%C3%A9` and `é` are one spelling: a policy can name either way);
//    every other percent-encoding kept, its hex digits in upper case;
//  - dot segments removed from a hierarchical path (`/a/./b/../c` -> `/a/c`), after decoding.
// Refused as ambiguous (servers and file systems disagree on them; a policy cannot say what they mean):
//  - a backslash anywhere (WHATWG reads `\` as `/` in special schemes), encoded or not;
//  - in the authority or path: an encoded `/` (`%2F`) or `%` (`%25`: double encoding, `%252e%252e`);
//  - anywhere: an encoded control character (`%00`...), a `%` not followed by two hex digits, an encoding
//    that is not UTF-8 (overlong `%C0%AE`, a lone `%80`, encoded surrogates);
//  - an empty path segment (`/reports//secret`: a file system reads `/reports/secret`), a `..;`-style segment
//    (some servers drop path parameters), and dot segments in an opaque path (`urn:a/../b`), which URL
//    parsers leave alone but a handler might still resolve.
// Query and fragment keep their dot segments, `%2F` and `%25` (they are data there, not structure).
// Completion refs (`ref/resource` uri) are not normalized: SDK servers compare them, as strings, with their
// URI templates.
import { controlProblem, textProblem } from './text.ts';

export type UriNormalization = { readonly uri: string } | { readonly error: string };

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

type Component = 'authority' | 'path' | 'query' | 'fragment';

function hexByte(b: number): string {
  return `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** Percent-encoding normalization of one component; an error for an ambiguous encoding. */
function normalizeEscapes(text: string, where: Component): { text: string } | { error: string } {
  if (!text.includes('%')) return { text };
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch !== '%') {
      out += ch;
      i += 1;
      continue;
    }
    // A run of consecutive escapes: bytes, so multi-byte UTF-8 is decoded as a whole.
    const bytes: number[] = [];
    while (i < text.length && text[i] === '%') {
      const hex = text.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return { error: `"%" not followed by two hex digits in the ${where}` };
      bytes.push(parseInt(hex, 16));
      i += 3;
    }
    let j = 0;
    while (j < bytes.length) {
      const b = bytes[j] as number;
      if (b < 0x80) {
        const c = String.fromCharCode(b);
        if (b < 0x20 || b === 0x7f) return { error: `an encoded control character (${hexByte(b)}) in the ${where}` };
        if (b === 0x5c) return { error: `an encoded backslash (%5C) in the ${where}` };
        if ((where === 'authority' || where === 'path') && b === 0x2f) return { error: `an encoded "/" (%2F) in the ${where}` };
        if ((where === 'authority' || where === 'path') && b === 0x25)
          return { error: `an encoded "%" (%25, double encoding) in the ${where}` };
        out += UNRESERVED.test(c) ? c : hexByte(b);
        j += 1;
        continue;
      }
      let k = j;
      while (k < bytes.length && (bytes[k] as number) >= 0x80) k += 1;
      let decoded: string;
      try {
        decoded = utf8.decode(Uint8Array.from(bytes.slice(j, k)));
      } catch {
        return { error: `percent-encoded bytes that are not UTF-8 (${bytes.slice(j, k).map(hexByte).join('')}) in the ${where}` };
      }
      // C1 controls (U+0080-U+009F) are valid UTF-8, and as ambiguous as C0 ones.
      if (controlProblem(decoded, ''))
        return { error: `an encoded control character (${bytes.slice(j, k).map(hexByte).join('')}) in the ${where}` };
      out += decoded;
      j = k;
    }
  }
  return { text: out };
}

/** RFC 3986 section 5.2.4 on an absolute path (starts with "/"). */
function removeDotSegments(path: string): string {
  const segments = path.split('/').slice(1);
  const out: string[] = [];
  segments.forEach((s, i) => {
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(s);
  });
  return `/${out.join('/')}`;
}

/**
 * Already in the normal form, and left as is by WHATWG URL, checked cheaply (the common case, on every
 * request): `file:///` or a non-special `scheme://host` (lower case, no port), then path segments that do not
 * start with "." (every dot segment does) and are not empty, and a query and fragment, of characters neither
 * normalization touches (no "%", backslash, space, quote, "|"...).
 */
const PLAIN_NORMAL =
  /^(?:file:\/\/(?=\/)|(?!(?:https?|wss?|ftp|file):)[a-z][a-z0-9+.-]*:\/\/[a-z0-9.-]*)(?:\/(?![/.])[A-Za-z0-9\-._~!$&()*+,;=:@]*)*(?:\?[A-Za-z0-9\-._~!$&()*+,;=:@/?]*)?(?:#[A-Za-z0-9\-._~!$&()*+,;=:@/?]*)?$/;

/** The normal form of a resource URI the policy matches, or why it is refused (see the top of this file). */
export function normalizeResourceUri(uri: string): UriNormalization {
  const problem = textProblem(uri, 'the URI');
  if (problem) return { error: problem };
  return PLAIN_NORMAL.test(uri) ? { uri } : normalizeFully(uri);
}

/** normalizeResourceUri without its fast path (exported for the test that holds the two to the same answers). */
export function normalizeFully(uri: string): UriNormalization {
  const problem = textProblem(uri, 'the URI');
  if (problem) return { error: problem };
  if (uri.includes('\\')) return { error: 'the URI contains a backslash (read as "/" by URL parsers, not by every server)' };
  return normalizeRfc3986(URL.canParse(uri) ? new URL(uri).href : uri);
}

/** The RFC 3986 steps of the normal form (see the top of this file), on a URI as WHATWG serialized it (or as written). */
function normalizeRfc3986(uri: string): UriNormalization {
  let rest = uri;
  let fragment: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    fragment = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
  }
  let query: string | undefined;
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  let scheme: string | undefined;
  const m = SCHEME.exec(rest);
  if (m) {
    scheme = (m[1] as string).toLowerCase();
    rest = rest.slice(m[0].length);
  }
  let authority: string | undefined;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    authority = slash >= 0 ? rest.slice(2, slash) : rest.slice(2);
    rest = slash >= 0 ? rest.slice(slash) : '';
  }
  const parts: Array<[Component, string | undefined]> = [
    ['authority', authority],
    ['path', rest],
    ['query', query],
    ['fragment', fragment],
  ];
  const norm: Partial<Record<Component, string>> = {};
  for (const [where, text] of parts) {
    if (text === undefined) continue;
    const r = normalizeEscapes(text, where);
    if ('error' in r) return { error: `the URI has ${r.error}` };
    norm[where] = r.text;
  }
  let path = norm.path ?? '';
  const segments = path.split('/');
  if (path.startsWith('/')) {
    if (segments.slice(1, -1).some((s) => s === ''))
      return { error: 'the URI has an empty path segment ("//"), which file systems and servers read differently' };
    if (segments.some((s) => /^\.\.?;/.test(s)))
      return { error: 'the URI has a dot segment with parameters (";"), which some servers read as a dot segment' };
    path = removeDotSegments(path);
  } else if (segments.some((s) => s === '.' || s === '..' || /^\.\.?;/.test(s))) {
    return {
      error: 'the URI has dot segments in an opaque path (no "/" after the scheme): URL parsers keep them, a server might resolve them',
    };
  }
  let auth = norm.authority;
  if (auth !== undefined) {
    // Host (and port) in lower case; userinfo is case-sensitive.
    const at = auth.lastIndexOf('@');
    auth = at >= 0 ? `${auth.slice(0, at + 1)}${auth.slice(at + 1).toLowerCase()}` : auth.toLowerCase();
  }
  const out = `${scheme !== undefined ? `${scheme}:` : ''}${auth !== undefined ? `//${auth}` : ''}${path}${norm.query !== undefined ? `?${norm.query}` : ''}${norm.fragment !== undefined ? `#${norm.fragment}` : ''}`;
  return { uri: out };
}

/**
 * Why a `resources` pattern can never match a normalized URI as its author meant, or undefined. Checked where
 * the policy is read: a pattern must be written in the normal form the URIs it is matched against are in.
 */
export function resourcePatternProblem(pattern: string): string | undefined {
  if (pattern.includes('\\')) return 'contains a backslash; normalized URIs never do (a URI with one is refused)';
  const m = SCHEME.exec(pattern);
  if (m && m[1] !== (m[1] as string).toLowerCase())
    return `the scheme must be in lower case ("${(m[1] as string).toLowerCase()}:"), as URIs are normalized`;
  for (const esc of pattern.matchAll(/%(.{0,2})/g)) {
    const hex = esc[1] as string;
    if (!HEX.test(hex)) return `"%" must be followed by two hex digits`;
    const b = parseInt(hex, 16);
    if (b >= 0x80) return `write "${esc[0]}" (part of a UTF-8 character) as the character itself, as URIs are normalized`;
    if (UNRESERVED.test(String.fromCharCode(b))) return `write "${esc[0]}" as "${String.fromCharCode(b)}", as URIs are normalized`;
    if (hex !== hex.toUpperCase()) return `write "${esc[0]}" in upper case ("%${hex.toUpperCase()}"), as URIs are normalized`;
  }
  const host = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/*?#]*)/.exec(pattern)?.[1];
  if (host !== undefined && host.slice(host.lastIndexOf('@') + 1) !== host.slice(host.lastIndexOf('@') + 1).toLowerCase())
    return 'the host must be in lower case, as URIs are normalized';
  const path = pattern.replace(/[?#].*$/s, '');
  if (/(^|\/)\.\.?(\/|$)/.test(path.replace(/^[A-Za-z][A-Za-z0-9+.-]*:(\/\/[^/]*)?/, '')))
    return 'contains a dot segment ("." or ".."); URIs are matched with dot segments removed';
  return undefined;
}
