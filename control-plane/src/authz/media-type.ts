// The Content-Type of a JSON-RPC POST the authorizer decides on: `application/json`, with no parameter or
// only `charset=utf-8`. The authorizer reads bodies as UTF-8; a server built on express.json() (body-parser +
// iconv-lite) decodes in whatever charset the client names, UTF-7 included, where `+ACI-` is `"`. The same
// bytes are then two different messages:
//   {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_forecast+ACI-+ACw-+ACI-name+ACI-:+ACI-admin_reset"}}
// is a call of `get_forecast+ACI-...` in UTF-8 and, with duplicate keys (last wins), of `admin_reset` in UTF-7.
// So any charset but UTF-8 is refused (415), as is any other media type, a malformed header or several.

/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Splits `a; b="x;y"; c` on `;` outside quoted strings; undefined when a quote is left open. */
function splitParams(value: string): string[] | undefined {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (quoted) {
      cur += c;
      if (c === '\\' && i + 1 < value.length) cur += value[++i] as string;
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      cur += c;
    } else if (c === ';') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (quoted) return undefined;
  out.push(cur);
  return out;
}

/** A parameter value: a token, or a quoted-string unescaped. */
function paramValue(raw: string): string | undefined {
  if (TOKEN.test(raw)) return raw;
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) return raw.slice(1, -1).replace(/\\(.)/g, '$1');
  return undefined;
}

/**
 * Why a request with this Content-Type (undefined: none; `repeated`: sent more than once) is not JSON in UTF-8
 * the authorizer can decide on, or undefined when it is. Media type, parameter name and charset compare
 * case-insensitively (RFC 9110), the charset quoted or not.
 */
export function jsonContentTypeProblem(value: string | undefined, repeated: boolean): string | undefined {
  // What nearly every client sends: nothing to parse.
  if (value === 'application/json' && !repeated) return undefined;
  if (value === undefined || value.trim() === '') return 'the request has no Content-Type (must be application/json)';
  if (repeated) return 'Content-Type is sent more than once';
  const parts = splitParams(value);
  if (!parts) return `Content-Type ${JSON.stringify(value.slice(0, 100))} is malformed (an unclosed quote)`;
  const type = (parts[0] as string).trim().toLowerCase();
  if (type !== 'application/json') return `Content-Type ${JSON.stringify(value.slice(0, 100))} is not application/json`;
  let charset: string | undefined;
  for (const p of parts.slice(1)) {
    const t = p.trim();
    const eq = t.indexOf('=');
    const name = eq > 0 ? t.slice(0, eq).toLowerCase() : '';
    const v = eq > 0 ? paramValue(t.slice(eq + 1)) : undefined;
    if (!TOKEN.test(name) || v === undefined)
      return `Content-Type ${JSON.stringify(value.slice(0, 100))} is malformed (parameter ${JSON.stringify(t.slice(0, 50))})`;
    if (name !== 'charset') return `Content-Type parameter ${JSON.stringify(name)} is not accepted (only charset=utf-8)`;
    if (charset !== undefined) return 'Content-Type names a charset twice';
    charset = v.toLowerCase();
  }
  if (charset !== undefined && charset !== 'utf-8')
    return `charset ${JSON.stringify(charset.slice(0, 40))} is not accepted: the mesh decides on UTF-8 bodies only (a server honouring another charset would read a different message)`;
  return undefined;
}
