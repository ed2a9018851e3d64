// `mcpmesh policy explain`: the decision the mesh takes on one MCP request, which rule takes it, and why, without
// running anything.
//   mcpmesh policy explain --policy FILE --service NAME (--token JWT | --roles a,b) [--scopes s1,s2]
//                          [--protocol REV] [--header 'Name: value' ...] [--body '<json>' | --body-file F]
// The request goes through the gateway's own chain (authz/chain.ts): the per-route configs the control plane
// generates for the service (header RBAC for 2026-07-28 services, evaluated with Envoy's semantics) and then the
// authorizer's own `authorize`, so the answer is the mesh's: header/body agreement (-32020), the version
// allow-list, requiredScopes, shadow mode, explicit denies, completions. Every rule of the caller's roles is
// listed with whether it matched. A token's payload is decoded WITHOUT verifying its signature, only to read
// its claims.
// Exit: 0 allow, 1 deny (or malformed request), 2 usage error (bad arguments, unreadable or invalid policy).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { gatewayDecision, gatewayRoute, serviceOf, type ChainOutcome, type GatewayRequest, type GatewayRoute } from '../authz/chain.ts';
import { CONTENT_TYPE_HEADER, type CheckOutcome } from '../authz/check.ts';
import type { RbacFilterResult } from '../authz/envoy-rbac.ts';
import { ConfigError } from '../model/reader.ts';
import { MCP_PROTOCOLS, type McpProtocol } from '../model/types.ts';
import { policyRuleOfRbacPolicy } from '../translate/rbac.ts';
import { rbacPolicyNameParts } from '../translate/naming.ts';
import {
  compilePolicy,
  describeAction,
  explain,
  parseMcpBody,
  rolesFromClaims,
  scopesFromClaims,
  servicePolicyOf,
  type CompiledPolicy,
  type Explanation,
  type McpMessage,
} from './engine.ts';
import {
  decodeMcpHeaderValue,
  encodeMcpHeaderValue,
  HEADER_VALIDATED_PROTOCOLS,
  headerValidated,
  MCP_METHOD_HEADER,
  MCP_NAME_HEADER,
  MCP_PROTOCOL_VERSION_HEADER,
} from './mcp-http.ts';
import { parsePolicy } from './parse.ts';

const DEFAULT_PROTOCOL: McpProtocol = '2025-11-25';
const DEFAULT_PUBLIC_URL = 'https://gateway.example';

export const POLICY_EXPLAIN_USAGE = `usage: mcpmesh policy explain --policy FILE --service NAME (--token JWT | --roles a,b) [options]
  --policy FILE       the policy file (see deploy/policy.example.yaml)
  --service NAME      the MCP service the request goes to
  --protocol REV      the MCP revision the service speaks (default ${DEFAULT_PROTOCOL}):
                      ${MCP_PROTOCOLS.join(', ')}. From ${HEADER_VALIDATED_PROTOCOLS.join(', ')}, header RBAC judges
                      Mcp-Method / Mcp-Name / MCP-Protocol-Version first, and the authorizer refuses headers
                      that do not mirror the body
  --header 'N: V'     a request header as the client sends it (repeatable; give one twice to send it twice).
                      Defaults: MCP-Protocol-Version = --protocol, Content-Type = application/json
  --token JWT         an access token: its payload is decoded WITHOUT verifying the signature, to read the
                      role claim (and scope/scp for the service's requiredScopes)
  --roles a,b         the caller's roles, instead of a token
  --scopes s1,s2      the token's scopes, with --roles (for services with requiredScopes)
  --body JSON         the JSON-RPC body (one message or a batch)
  --body-file F       read the body from a file
                      no body: with an Mcp-Method header (${HEADER_VALIDATED_PROTOCOLS.join(', ')}), the body the headers
                      describe; otherwise service-level access, as for the GET event stream or DELETE
  --http-method M     the HTTP method (default POST with a body, GET without)
  --public-url URL    the gateway's public URL, as insufficient_scope challenges name it (default ${DEFAULT_PUBLIC_URL})
exit status: 0 allow, 1 deny or malformed request, 2 usage error
`;

export interface ExplainIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: ExplainIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

class UsageError extends Error {}

function decodeJwtPayload(token: string): Record<string, unknown> {
  const t = token.trim().replace(/^Bearer\s+/i, '');
  const parts = t.split('.');
  if (parts.length !== 3) throw new UsageError(`--token is not a JWT (expected three dot-separated parts, got ${parts.length})`);
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'));
  } catch {
    throw new UsageError('--token: the payload (second part) is not base64url-encoded JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload))
    throw new UsageError('--token: the payload is not a JSON object');
  return payload as Record<string, unknown>;
}

function list(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

// ------------------------------------------------------------------------------------------- arguments

interface ExplainArgs {
  readonly policyFile: string;
  readonly service: string;
  readonly protocol: McpProtocol;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly token?: string;
  readonly roles?: string;
  readonly scopes?: string;
  readonly body?: string;
  readonly bodyFile?: string;
  readonly httpMethod?: string;
  readonly publicUrl: string;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function headerArg(h: string): [string, string] {
  const colon = h.indexOf(':');
  const name = colon < 0 ? '' : h.slice(0, colon).trim();
  if (!TOKEN.test(name)) throw new UsageError(`--header ${JSON.stringify(h)}: expected 'Name: value'`);
  // HTTP drops the spaces and tabs around a field value.
  return [name.toLowerCase(), h.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')];
}

/** The arguments, or 'help'; throws UsageError. */
function parseExplainArgs(argv: string[]): ExplainArgs | 'help' {
  const args = argv[0] === 'explain' ? argv.slice(1) : argv;
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        policy: { type: 'string' },
        service: { type: 'string' },
        token: { type: 'string' },
        roles: { type: 'string' },
        scopes: { type: 'string' },
        body: { type: 'string' },
        'body-file': { type: 'string' },
        protocol: { type: 'string' },
        header: { type: 'string', multiple: true },
        'http-method': { type: 'string' },
        'public-url': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values['help']) return 'help';
  const str = (k: string): string | undefined => values[k] as string | undefined;
  const policyFile = str('policy');
  const service = str('service');
  if (!policyFile) throw new UsageError('--policy is required');
  if (!service) throw new UsageError('--service is required');
  if (str('token') !== undefined && str('roles') !== undefined) throw new UsageError('give --token or --roles, not both');
  if (str('token') === undefined && str('roles') === undefined) throw new UsageError('give the caller as --token JWT or --roles a,b');
  if (str('token') !== undefined && str('scopes') !== undefined)
    throw new UsageError('--scopes goes with --roles (a token carries its own scopes)');
  if (str('body') !== undefined && str('body-file') !== undefined) throw new UsageError('give --body or --body-file, not both');
  const protocol = str('protocol') ?? DEFAULT_PROTOCOL;
  if (!(MCP_PROTOCOLS as readonly string[]).includes(protocol))
    throw new UsageError(`--protocol ${JSON.stringify(protocol)} is not an MCP revision the mesh knows (${MCP_PROTOCOLS.join(', ')})`);
  const httpMethod = str('http-method');
  if (httpMethod !== undefined && !/^[A-Za-z]+$/.test(httpMethod))
    throw new UsageError(`--http-method ${JSON.stringify(httpMethod)} is not an HTTP method`);
  const publicUrl = str('public-url') ?? DEFAULT_PUBLIC_URL;
  if (!URL.canParse(publicUrl)) throw new UsageError(`--public-url ${JSON.stringify(publicUrl)} is not a URL`);
  return {
    policyFile,
    service,
    protocol: protocol as McpProtocol,
    headers: ((values['header'] as string[] | undefined) ?? []).map(headerArg),
    token: str('token'),
    roles: str('roles'),
    scopes: str('scopes'),
    body: str('body'),
    bodyFile: str('body-file'),
    httpMethod: httpMethod?.toUpperCase(),
    publicUrl: publicUrl.replace(/\/+$/, ''),
  };
}

function loadPolicy(file: string, io: ExplainIo): CompiledPolicy | number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read policy ${file}: ${(err as Error).message}`);
  }
  try {
    return compilePolicy(parsePolicy(text, file));
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`mcpmesh policy explain: invalid policy:\n${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------- caller and request

interface Caller {
  /** What jwt_authn would have verified: the token's payload, or claims made of --roles / --scopes. */
  readonly claims: Record<string, unknown>;
  readonly lines: readonly string[];
}

function callerOf(a: ExplainArgs, policy: CompiledPolicy): Caller {
  const roleClaim = policy.policy.roleClaim;
  if (a.token !== undefined) {
    const claims = decodeJwtPayload(a.token);
    const roles = rolesFromClaims(claims, roleClaim);
    const lines = [`token payload decoded WITHOUT verifying the signature (only to read claims; the gateway verifies tokens)`];
    const who = ['sub', 'iss', 'aud']
      .filter((k) => claims[k] !== undefined)
      .map((k) => `${k}=${JSON.stringify(claims[k])}`)
      .join(' ');
    if (who) lines.push(who);
    if (typeof claims['exp'] === 'number' && claims['exp'] * 1000 < Date.now())
      lines.push(`note: the token expired at ${new Date(claims['exp'] * 1000).toISOString()} (the gateway would refuse it with 401)`);
    const iss = claims['iss'];
    if (policy.policy.providers.length > 0 && !policy.policy.providers.some((p) => p.issuer === iss))
      lines.push(`note: issuer ${JSON.stringify(iss)} is not one of the policy's providers (the gateway would refuse the token with 401)`);
    lines.push(`roles from claim "${roleClaim}": ${roles.length > 0 ? roles.join(', ') : '(none)'}`);
    return { claims, lines };
  }
  const roles = list(a.roles);
  const scopes = list(a.scopes);
  // A token that carries these: the role claim as a list, the scopes as OAuth's space-separated `scope`
  // (one claim for both when the role claim is `scope`).
  const claims: Record<string, unknown> = { [roleClaim]: roles };
  if (scopes.length > 0) claims['scope'] = roleClaim === 'scope' ? [...roles, ...scopes].join(' ') : scopes.join(' ');
  return { claims, lines: [`roles (from --roles): ${roles.length > 0 ? roles.join(', ') : '(none)'}`] };
}

const NAME_PARAM: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'resources/subscribe': 'uri',
  'resources/unsubscribe': 'uri',
};

/** The JSON-RPC message a 2026-07-28 request's Mcp-Method / Mcp-Name describe (for a request given by its headers only). */
function bodyFromHeaders(method: string, rawName: string | undefined): string {
  if (method === 'completion/complete') throw new UsageError('no header carries a completion/complete ref: give the request with --body');
  const param = NAME_PARAM[method];
  let params: Record<string, string> | undefined;
  if (param !== undefined && rawName !== undefined) {
    const decoded = decodeMcpHeaderValue(rawName);
    if ('error' in decoded) throw new UsageError(`Mcp-Name ${JSON.stringify(rawName)} ${decoded.error}: give the request with --body`);
    params = { [param]: decoded.value };
  }
  return JSON.stringify({
    jsonrpc: '2.0',
    ...(method.startsWith('notifications/') ? {} : { id: 1 }),
    method,
    ...(params ? { params } : {}),
  });
}

interface Request {
  readonly request: GatewayRequest;
  readonly notes: readonly string[];
}

function requestOf(a: ExplainArgs, caller: Caller): Request {
  let body = a.body;
  if (a.bodyFile !== undefined) {
    try {
      body = readFileSync(a.bodyFile, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read body ${a.bodyFile}: ${(err as Error).message}`);
    }
  }
  const headers = [...a.headers];
  const given = (name: string): string | undefined => headers.find(([k]) => k === name)?.[1];
  const notes: string[] = [];
  if (body === undefined && headerValidated(a.protocol) && given(MCP_METHOD_HEADER) !== undefined) {
    body = bodyFromHeaders(given(MCP_METHOD_HEADER) as string, given(MCP_NAME_HEADER));
    notes.push('(no --body: the message the Mcp-* headers describe)');
  }
  if (body === undefined)
    notes.push(
      `(no body: service-level access, as for the GET event stream or DELETE${headerValidated(a.protocol) ? `; a ${a.protocol} server answers GET and DELETE with 405` : ''})`,
    );
  const method = a.httpMethod ?? (body === undefined ? 'GET' : 'POST');
  if (given(MCP_PROTOCOL_VERSION_HEADER) === undefined) headers.unshift([MCP_PROTOCOL_VERSION_HEADER, a.protocol]);
  if (body !== undefined && given(CONTENT_TYPE_HEADER) === undefined) headers.unshift([CONTENT_TYPE_HEADER, 'application/json']);
  return { request: { method, headers, body: body ?? '', claims: caller.claims }, notes };
}

// ------------------------------------------------------------------------------------------- printing

function describeMessage(m: McpMessage): string {
  const id = m.id !== undefined ? ` (id ${JSON.stringify(m.id)})` : m.method !== undefined ? ' (notification)' : '';
  if (m.method === undefined) return 'a response to a server request (no method)';
  if (m.action.kind === 'service') return `${m.method}${id}: names nothing, needs service-level access`;
  return `${m.method}${id}: ${describeAction(m.action)}`;
}

function printExplanation(io: ExplainIo, e: Explanation, indent: string): void {
  const d = e.decision;
  io.out(`${indent}decision: ${d.allow ? 'ALLOW' : 'DENY'} by ${d.rule}\n`);
  io.out(`${indent}  ${d.reason}\n`);
  if (e.considered.length === 0) {
    io.out(`${indent}rules considered: none (the caller has no role the policy defines)\n`);
    return;
  }
  io.out(`${indent}rules considered (deny rules first: an explicit deny from any role wins over any allow):\n`);
  const width = Math.max(...e.considered.map((t) => t.rule.length));
  for (const t of e.considered) {
    const mark = t.rule === d.rule ? '=>' : t.matched ? ' +' : ' -';
    io.out(`${indent}  ${mark} ${t.rule.padEnd(width)}  ${t.matched ? 'matches       ' : 'does not match'}  ${t.why}\n`);
  }
}

/** An RBAC policy of rbacPerRoute, and the policy rule it stands for or what the others are for. */
function rbacPolicyInWords(name: string): string {
  const rule = policyRuleOfRbacPolicy(name);
  if (rule !== undefined) return `${name} (policy rule ${rule})`;
  const parts = rbacPolicyNameParts(name);
  if (parts[1] === 'protocol-version')
    return `${name} (MCP-Protocol-Version absent, or not one of ${HEADER_VALIDATED_PROTOCOLS.join(', ')})`;
  if (parts[1] === 'repeated-mcp-header')
    return `${name} (an Mcp-Method, Mcp-Name or MCP-Protocol-Version value holds a ",": a header sent more than once)`;
  if (parts[1] === 'missing-scope') return `${name} (the token lacks a required scope: the authorizer answers)`;
  if (parts[1] === 'roles' && parts[4] === 'body')
    return `${name} (what roles.${parts[2]}.${parts[3]} may deny only the body shows: the authorizer judges it)`;
  return name;
}

function rbacLine(r: RbacFilterResult): string {
  const policy = r.policy !== undefined ? `policy ${rbacPolicyInWords(r.policy)}` : '';
  const also = r.matched.length > 1 ? `; also ${r.matched.slice(1).join(', ')}` : '';
  const verdict =
    r.action === 'DENY'
      ? r.allowed
        ? 'passes: no deny policy matches'
        : `DENY by ${policy}${also}`
      : r.allowed
        ? `passes by ${policy}${also}`
        : 'DENY: no allow policy matches (default deny)';
  return r.shadow ? `shadow rules, logged and not enforced: would ${verdict.replace(/^passes/, 'pass')}` : verdict;
}

function printRbac(io: ExplainIo, route: GatewayRoute, out: ChainOutcome, protocol: McpProtocol): void {
  if (route.rbac.length === 0) {
    io.out(`\nheader RBAC: off for MCP ${protocol} (the authorizer decides on the body)\n`);
    return;
  }
  io.out(`\nheader RBAC (MCP ${protocol}: Envoy's RBAC filters judge the headers before the body is read):\n`);
  const width = Math.max(...route.rbac.map((f) => f.filter.length));
  for (const { filter, result } of out.rbac.filters) io.out(`  ${filter.padEnd(width)}  ${rbacLine(result)}\n`);
}

/** The authorizer's answer; for each message it decided, every rule of the caller's roles with whether it matched. */
function printAuthorizer(
  io: ExplainIo,
  a: ExplainArgs,
  req: GatewayRequest,
  o: CheckOutcome,
  policy: CompiledPolicy,
  caller: { roles: readonly string[]; scopes: readonly string[] },
): void {
  io.out(
    `\nauthorizer (ext_authz, on the body${headerValidated(a.protocol) ? ', after checking that the Mcp-* headers mirror it' : ''}):\n`,
  );
  const messages = o.messages;
  if (messages === undefined) {
    // Refused before any rule: what the server would execute could not be established.
    io.out(`decision: DENY by ${o.rule}\n  ${o.reason}\n`);
    return;
  }
  if (headerValidated(a.protocol) && req.method === 'POST') io.out('headers mirror the body\n');
  if (messages.length > 1) io.out(`a batch of ${messages.length}; every element must be allowed\n`);
  messages.forEach((m, i) => {
    if (messages.length > 1) io.out(`\n[${i}] ${describeMessage(m)}\n`);
    else io.out(`${req.body === '' ? 'request' : 'message'}: ${req.body === '' ? 'no body: service-level access' : describeMessage(m)}\n`);
    printExplanation(io, explain(policy, { service: a.service, ...caller, action: m.action }), messages.length > 1 ? '    ' : '');
  });
}

/** What the client gets back. */
function printResult(io: ExplainIo, a: ExplainArgs, out: ChainOutcome): number {
  const denied = out.rbac.denied;
  if (denied) {
    const policyName = denied.result.policy;
    io.out(`\nauthorizer: not asked (header RBAC answered first)\n`);
    io.out(
      `\nresult: DENY by ${policyName !== undefined ? `RBAC policy ${rbacPolicyInWords(policyName)}` : 'RBAC default deny (no allow policy matches)'}\n  Envoy's RBAC filter ${denied.filter} answers 403 "RBAC: access denied"\n`,
    );
    return 1;
  }
  const o = out.authz;
  if (o === undefined) {
    io.out('\nresult: ALLOW (ext_authz is disabled on this route)\n');
    return 0;
  }
  const batch = (o.messages?.length ?? 0) > 1;
  if (o.verdict === 'allow') {
    io.out(
      `\nresult: ALLOW${batch ? ' (every element is allowed)' : ''}\n  forwarded to the server with x-mcpmesh-decision: allow; rule=${o.rule}\n`,
    );
    return 0;
  }
  io.out(`\nresult: DENY${batch ? ' (at least one element is denied, so the whole batch is)' : ''}\n`);
  if (o.http) {
    const body = JSON.parse(o.http.body) as
      | { error?: { code?: number; message?: string } }
      | Array<{ error?: { code?: number; message?: string } }>;
    const first = Array.isArray(body) ? body[0] : body;
    io.out(`  the authorizer answers ${o.http.status} with JSON-RPC error ${first?.error?.code}: ${first?.error?.message}\n`);
    for (const [k, v] of o.http.headers) if (k === 'www-authenticate') io.out(`  ${k}: ${v}\n`);
  }
  if (o.verdict === 'shadow_deny')
    io.out(
      `note: service "${a.service}" is in shadow mode: the authorizer logs and counts this denial (x-mcpmesh-shadow-deny: ${o.rule}) but lets the request through\n`,
    );
  return 1;
}

/** A hint for a 2026-07-28 request given without the headers its body needs. */
function headerHint(a: ExplainArgs, req: GatewayRequest): string | undefined {
  if (!headerValidated(a.protocol) || req.body === '' || a.headers.some(([k]) => k === MCP_METHOD_HEADER)) return undefined;
  const parsed = parseMcpBody(req.body);
  if ('error' in parsed || parsed.batch) return undefined;
  const m = parsed.messages[0];
  if (m?.method === undefined) return undefined;
  const name = m.target !== undefined ? ` --header 'Mcp-Name: ${encodeMcpHeaderValue(m.target)}'` : '';
  return `hint: a ${a.protocol} client sends the headers that mirror this body: --header 'Mcp-Method: ${m.method}'${name}`;
}

function printRequest(io: ExplainIo, req: GatewayRequest, notes: readonly string[]): void {
  io.out(`request: ${req.method}${req.body !== '' ? ` ${req.body.length > 300 ? `${req.body.slice(0, 300)}…` : req.body}` : ''}\n`);
  for (const n of notes) io.out(`         ${n}\n`);
  for (const [k, v] of req.headers) io.out(`         ${k}: ${v}\n`);
}

/**
 * `mcpmesh policy explain ...` (argv after "policy", with or without the leading "explain"). `loaded`: the policy
 * in force (the admin console explains with it rather than re-reading a file that may hold a rejected edit);
 * `--policy` then only names it in the output.
 */
export async function policyExplainMain(argv: string[], io: ExplainIo = processIo, loaded?: CompiledPolicy): Promise<number> {
  try {
    const a = parseExplainArgs(argv);
    if (a === 'help') {
      io.out(POLICY_EXPLAIN_USAGE);
      return 0;
    }
    const policy = loaded ?? loadPolicy(a.policyFile, io);
    if (typeof policy === 'number') return policy;
    const caller = callerOf(a, policy);
    const { request, notes } = requestOf(a, caller);
    const svc = servicePolicyOf(policy, a.service);
    const route = gatewayRoute(
      { policy: policy.policy, publicUrl: a.publicUrl, authz: { host: '127.0.0.1', port: 0 } },
      serviceOf(a.service, a.protocol),
    );
    const out = gatewayDecision(route, policy, request);

    // The caller as the authorizer reads it (rolesFromClaims / scopesFromClaims), for the rule traces.
    const roles = rolesFromClaims(caller.claims, policy.policy.roleClaim);
    const scopes = scopesFromClaims(caller.claims);
    const callerLines = [...caller.lines];
    const unknown = roles.filter((r) => !policy.roles.has(r));
    if (unknown.length > 0) callerLines.push(`not defined in the policy (ignored): ${unknown.join(', ')}`);
    if (svc.requiredScopes.length > 0) callerLines.push(`scopes: ${scopes.length > 0 ? scopes.join(', ') : '(none)'}`);
    io.out(`policy:  ${a.policyFile}\n`);
    io.out(
      `service: ${a.service} (MCP ${a.protocol}; mode ${svc.mode}${svc.requiredScopes.length > 0 ? `; requiredScopes ${svc.requiredScopes.join(' ')}` : ''}${policy.services.has(a.service) ? '' : '; not listed under services: defaults'})\n`,
    );
    io.out(`caller:  ${callerLines.join('\n         ')}\n`);
    printRequest(io, request, notes);
    printRbac(io, route, out, a.protocol);
    if (out.authz) printAuthorizer(io, a, request, out.authz, policy, { roles, scopes });
    const code = printResult(io, a, out);
    const hint = out.authz?.rule === 'header-mismatch' ? headerHint(a, request) : undefined;
    if (hint) io.out(`${hint}\n`);
    return code;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`mcpmesh policy explain: ${err.message}\n\n${POLICY_EXPLAIN_USAGE}`);
    return 2;
  }
}
