// SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md): the workload identities
// the mesh CA puts in each certificate's URI SAN and Envoy matches peers against.
//
//   spiffe://<trust domain>/<segment>/<segment>...
//
// - scheme `spiffe`, lower case; no userinfo, port, query or fragment;
// - trust domain: 1..255 characters of [a-z0-9._-] (lower case only);
// - path: optional; each segment non-empty, of [A-Za-z0-9._-], and not `.` or `..`; no trailing `/`;
//   no percent-encoding;
// - the whole ID at most 2048 bytes.

export class SpiffeIdError extends Error {
  override name = 'SpiffeIdError';
}

export const SPIFFE_SCHEME = 'spiffe://';
export const MAX_SPIFFE_ID_LENGTH = 2048;
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const SEGMENT_CHAR = /^[A-Za-z0-9._-]$/;

export interface SpiffeId {
  readonly trustDomain: string;
  /** `/a/b` or `` (the trust domain's own ID). */
  readonly path: string;
}

/** Describes what is wrong with a trust domain name, or returns undefined when it is valid. */
export function trustDomainProblem(td: string): string | undefined {
  if (typeof td !== 'string' || td === '') return 'trust domain is empty';
  if (td.toLowerCase().startsWith(SPIFFE_SCHEME)) return `trust domain "${td}" must be a bare name, without "spiffe://"`;
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) return `trust domain is ${td.length} characters long (at most ${MAX_TRUST_DOMAIN_LENGTH})`;
  for (const [i, ch] of [...td].entries()) {
    if (TRUST_DOMAIN_CHAR.test(ch)) continue;
    if (/[A-Z]/.test(ch)) return `trust domain "${td}" must be lower case (character ${i + 1} is "${ch}")`;
    if (ch === ':') return `trust domain "${td}" must not contain a port (":" at character ${i + 1})`;
    if (ch === '@') return `trust domain "${td}" must not contain userinfo ("@" at character ${i + 1})`;
    return `trust domain "${td}" has invalid character ${JSON.stringify(ch)} at position ${i + 1} (allowed: a-z 0-9 . - _)`;
  }
  return undefined;
}

/** Describes what is wrong with one path segment, or returns undefined when it is valid. */
export function pathSegmentProblem(segment: string): string | undefined {
  if (segment === '') return 'path segment is empty (no "//" and no trailing "/")';
  if (segment === '.' || segment === '..') return `path segment "${segment}" is not allowed`;
  for (const [i, ch] of [...segment].entries()) {
    if (SEGMENT_CHAR.test(ch)) continue;
    if (ch === '%') return `path segment "${segment}" must not be percent-encoded`;
    return `path segment "${segment}" has invalid character ${JSON.stringify(ch)} at position ${i + 1} (allowed: A-Z a-z 0-9 . - _)`;
  }
  return undefined;
}

/** Parses and validates a SPIFFE ID; throws SpiffeIdError saying what is wrong. */
export function parseSpiffeId(id: string): SpiffeId {
  const fail = (why: string): never => {
    throw new SpiffeIdError(`invalid SPIFFE ID ${JSON.stringify(id)}: ${why}`);
  };
  if (typeof id !== 'string' || id === '') fail('it is empty');
  if (Buffer.byteLength(id) > MAX_SPIFFE_ID_LENGTH) fail(`it is longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
  if (!id.startsWith(SPIFFE_SCHEME)) {
    if (id.toLowerCase().startsWith(SPIFFE_SCHEME)) fail('the scheme must be lower-case "spiffe"');
    fail('it must start with "spiffe://"');
  }
  const rest = id.slice(SPIFFE_SCHEME.length);
  if (rest.includes('?')) fail('a query ("?") is not allowed');
  if (rest.includes('#')) fail('a fragment ("#") is not allowed');
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) fail(tdProblem);
  if (path !== '') {
    if (path === '/') fail('the path must not be just "/" (omit it, or name a segment)');
    for (const segment of path.slice(1).split('/')) {
      const problem = pathSegmentProblem(segment);
      if (problem) fail(problem);
    }
  }
  return { trustDomain, path };
}

/** Throws SpiffeIdError unless `id` is a valid SPIFFE ID; returns it otherwise. */
export function validateSpiffeId(id: string): string {
  parseSpiffeId(id);
  return id;
}

export function isSpiffeId(id: string): boolean {
  try {
    parseSpiffeId(id);
    return true;
  } catch {
    return false;
  }
}

/** Throws SpiffeIdError unless `td` is a valid trust domain name; returns it otherwise. */
export function validateTrustDomain(td: string): string {
  const problem = trustDomainProblem(td);
  if (problem) throw new SpiffeIdError(`invalid SPIFFE trust domain: ${problem}`);
  return td;
}

/** `spiffe://<td>` plus the given segments, each validated. */
export function spiffeId(trustDomain: string, ...segments: string[]): string {
  validateTrustDomain(trustDomain);
  for (const s of segments) {
    const problem = pathSegmentProblem(s);
    if (problem)
      throw new SpiffeIdError(`cannot build a SPIFFE ID in ${trustDomain} from ${JSON.stringify(segments.join('/'))}: ${problem}`);
  }
  return validateSpiffeId(`${SPIFFE_SCHEME}${trustDomain}${segments.map((s) => `/${s}`).join('')}`);
}

/** The trust domain's own ID (`spiffe://<td>`), carried by the CA certificate. */
export function trustDomainId(trustDomain: string): string {
  return spiffeId(trustDomain);
}

/** Identity of the sidecar in front of MCP service `service`: `spiffe://<td>/mcp/<service>`. */
export function sidecarId(trustDomain: string, service: string): string {
  return spiffeId(trustDomain, 'mcp', service);
}

/** Identity of gateway `name`: `spiffe://<td>/gateway/<name>`. */
export function gatewayId(trustDomain: string, name: string): string {
  return spiffeId(trustDomain, 'gateway', name);
}

/** The proxy role a workload identity was made for (the inverse of sidecarId / gatewayId). */
export function workloadRole(id: string): 'sidecar' | 'gateway' | undefined {
  const first = parseSpiffeId(id).path.split('/')[1];
  return first === 'mcp' ? 'sidecar' : first === 'gateway' ? 'gateway' : undefined;
}
