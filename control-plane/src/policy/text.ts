// What the policy engine accepts as a name (tool, prompt, completion ref), a resource URI or a JSON-RPC method:
// text a server will read exactly as the engine does. One place, used by the body parser (the authorizer
// answers 400) and by decide() itself (deny), so that `*` in a policy never matches text a server might read
// differently: a control character (`get_forecast\u0000x` cut at the NUL by a C library), a name with a
// leading or trailing space (`drop_cache ` trimmed back into a name an exact deny covers), a lone surrogate
// (no UTF-8 for it: a server sees U+FFFD or rejects it).

/** C0 and C1 controls and DEL: Unicode general category Cc. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: detects control characters (category Cc) so names carrying them are refused.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** A UTF-16 surrogate without its other half. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** JavaScript's \s: ASCII and Unicode spaces, line terminators and U+FEFF. */
const EDGE_SPACE = /^\s|\s$/;

/** Longest part of a client's text the mesh repeats in an answer or a log line. */
export const SHOWN_MAX = 128;

/** `what` contains the control character U+XXXX, or undefined when it has none. */
export function controlProblem(value: string, what: string): string | undefined {
  const c = CONTROL.exec(value);
  return c
    ? `${what} contains the control character U+${(c[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`
    : undefined;
}

/**
 * Why `value` is not text the engine decides on, or undefined. `what` names it in the message
 * (`"params.name" of tools/call`).
 */
export function textProblem(value: string, what: string): string | undefined {
  const c = controlProblem(value, what);
  if (c) return c;
  if (LONE_SURROGATE.test(value)) return `${what} contains a lone UTF-16 surrogate (not representable in UTF-8)`;
  if (EDGE_SPACE.test(value)) return `${what} has leading or trailing whitespace`;
  return undefined;
}

/**
 * `value` as JSON text, cut to SHOWN_MAX characters: a client's text repeated in an error body, a reason or a
 * log line stays small (a 1 MiB tool name must not become a 1 MiB answer) and well-formed (JSON escapes any
 * lone surrogate or control character, so what is shown is valid UTF-8).
 */
export function shown(value: string): string {
  if (value.length <= SHOWN_MAX) return JSON.stringify(value);
  // Do not cut a surrogate pair in two.
  let end = SHOWN_MAX;
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${JSON.stringify(value.slice(0, end))}…(${value.length - end} more characters)`;
}
