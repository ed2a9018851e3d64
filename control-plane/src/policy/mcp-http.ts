// MCP over HTTP as the 2026-07-28 revision defines it for intermediaries: which revisions mirror the JSON-RPC
// body into headers (and so must have them checked against it), and how a mirrored header value is decoded.
// Shared by the header RBAC (translate/rbac.ts) and the authorizer (authz/check.ts), so both read a version
// and a name alike.
import { isUtf8 } from 'node:buffer';
import { MCP_PROTOCOLS } from '../model/types.ts';

/** The first revision whose POSTs carry Mcp-Method / Mcp-Name and whose servers must check them against the body. */
export const HEADER_VALIDATION_SINCE = '2026-07-28';

/**
 * The revisions an MCP-Protocol-Version header may name on a header-validated service: the known revisions
 * from HEADER_VALIDATION_SINCE on. An allow-list: a revision the mesh does not know (a later one, or a typo)
 * is refused rather than assumed to validate headers.
 */
export const HEADER_VALIDATED_PROTOCOLS: readonly string[] = MCP_PROTOCOLS.filter((p) => p >= HEADER_VALIDATION_SINCE);

/** Does a service speaking `protocol` mirror the body into Mcp-Method / Mcp-Name? */
export function headerValidated(protocol: string): boolean {
  return HEADER_VALIDATED_PROTOCOLS.includes(protocol);
}

export const MCP_METHOD_HEADER = 'mcp-method';
export const MCP_NAME_HEADER = 'mcp-name';
export const MCP_PROTOCOL_VERSION_HEADER = 'mcp-protocol-version';

/** Methods whose POST must carry Mcp-Name (= params.name or params.uri). */
export const NAME_REQUIRED_METHODS: ReadonlySet<string> = new Set(['tools/call', 'resources/read', 'prompts/get']);

/** The body field the 2026-07-28 revision mirrors into MCP-Protocol-Version (under params._meta). */
export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';

const SENTINEL_PREFIX = '=?base64?';
const SENTINEL_SUFFIX = '?=';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** RFC 9110 field-value characters a client may send unencoded: visible ASCII, space, tab. */
const PLAIN = /^[\x20-\x7e\t]*$/;

/** A body value as a 2026-07-28 client mirrors it into a header: as is when plain visible ASCII, else =?base64?...?=. */
export function encodeMcpHeaderValue(value: string): string {
  return PLAIN.test(value) ? value : `${SENTINEL_PREFIX}${Buffer.from(value, 'utf8').toString('base64')}${SENTINEL_SUFFIX}`;
}

/**
 * A mirrored header value as the body would carry it: `=?base64?<standard Base64 of UTF-8>?=` decoded (the
 * markers are case-sensitive), any other value as is. An error for a value no conforming client sends: bad
 * Base64, bytes that are not UTF-8, or characters outside visible ASCII left unencoded.
 */
export function decodeMcpHeaderValue(value: string): { readonly value: string } | { readonly error: string } {
  if (
    value.length >= SENTINEL_PREFIX.length + SENTINEL_SUFFIX.length &&
    value.startsWith(SENTINEL_PREFIX) &&
    value.endsWith(SENTINEL_SUFFIX)
  ) {
    const b64 = value.slice(SENTINEL_PREFIX.length, value.length - SENTINEL_SUFFIX.length);
    if (!BASE64.test(b64) || b64.length % 4 === 1) return { error: 'is not valid Base64 inside =?base64?...?=' };
    const bytes = Buffer.from(b64, 'base64');
    if (!isUtf8(bytes)) return { error: 'does not decode to UTF-8' };
    return { value: bytes.toString('utf8') };
  }
  if (!PLAIN.test(value)) return { error: 'has characters outside visible ASCII that are not =?base64?...?= encoded' };
  return { value };
}
