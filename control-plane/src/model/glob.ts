// Policy globs (`*` = any run of characters, everything else literal) and the regexes they compile to. One
// escaper for every consumer: Envoy's RE2 (RBAC header matchers, SPIFFE SAN matchers, role membership) and
// the policy engine's JavaScript RegExp read these characters the same way, so they cannot disagree.

/** Characters with a meaning in RE2 or JavaScript regex syntax; each is escaped with a backslash. */
const REGEX_SPECIAL = /[\\^$.|?*+()[\]{}]/g;

/** `literal` as a regex that matches exactly it (RE2 and JavaScript syntax alike). */
export function escapeRegex(literal: string): string {
  return literal.replace(REGEX_SPECIAL, '\\$&');
}

/**
 * A glob as an anchored RE2 regex: `*` becomes `.*`. RE2's `.` stops at a newline where the engine's (flag
 * `s`) does not; nothing these regexes see (header values, URI SANs) can hold one, so they agree.
 */
export function globRegex(pattern: string): string {
  return `^${pattern.split('*').map(escapeRegex).join('.*')}$`;
}

/**
 * A space-separated list of words (an OAuth scope-style claim) that holds `word`, as an RE2 regex Envoy
 * matches whole (RE2::FullMatch): `a word b`, `word`, `a word`.
 */
export function wordInListRegex(word: string): string {
  return `^(.* )?${escapeRegex(word)}( .*)?$`;
}
