// `mcpmesh policy explain`: which rule decides an MCP request, and why, without running anything.
//   mcpmesh policy explain --policy FILE --service NAME (--token JWT | --roles a,b) [--scopes s1,s2]
//                          [--body '<json>' | --body-file F]
// Prints the decision (as the MCP authorizer would take it), the deciding rule and every rule of the caller's
// roles with whether it matched. A token's payload is decoded WITHOUT verifying its signature, only to read
// the role claim. No body = service-level access (as for the GET event stream or DELETE).
// Exit: 0 allow, 1 deny (or malformed request), 2 usage error (bad arguments, unreadable or invalid policy).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../model/reader.ts';
import { describeAction, explain, parseMcpBody, rolesFromClaims, scopesFromClaims, servicePolicyOf, compilePolicy, type Explanation, type McpMessage } from './engine.ts';
import { parsePolicy } from './parse.ts';

export const POLICY_EXPLAIN_USAGE = `usage: mcpmesh policy explain --policy FILE --service NAME (--token JWT | --roles a,b) [options]
  --policy FILE      the policy file (see deploy/policy.example.yaml)
  --service NAME     the MCP service the request goes to
  --token JWT        an access token: its payload is decoded WITHOUT verifying the signature, to read the
                     role claim (and scope/scp for the service's requiredScopes)
  --roles a,b        the caller's roles, instead of a token
  --scopes s1,s2     the token's scopes, with --roles (for services with requiredScopes)
  --body JSON        the JSON-RPC body (one message or a batch)
  --body-file F      read the body from a file
                     (no body: service-level access, as for the GET event stream or DELETE)
exit status: 0 allow, 1 deny or malformed request, 2 usage error
`;

export interface ExplainIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: ExplainIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

function decodeJwtPayload(token: string): Record<string, unknown> {
  const t = token.trim().replace(/^Bearer\s+/i, '');
  const parts = t.split('.');
  if (parts.length !== 3) throw new Error(`--token is not a JWT (expected three dot-separated parts, got ${parts.length})`);
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'));
  } catch {
    throw new Error('--token: the payload (second part) is not base64url-encoded JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new Error('--token: the payload is not a JSON object');
  return payload as Record<string, unknown>;
}

function list(v: string | undefined): string[] {
  return (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

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

/** `mcpmesh policy explain ...` (argv after "policy", with or without the leading "explain"). */
export async function policyExplainMain(argv: string[], io: ExplainIo = processIo): Promise<number> {
  const args = argv[0] === 'explain' ? argv.slice(1) : argv;
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args, strict: true, allowPositionals: false,
      options: {
        policy: { type: 'string' }, service: { type: 'string' }, token: { type: 'string' }, roles: { type: 'string' },
        scopes: { type: 'string' }, body: { type: 'string' }, 'body-file': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    io.err(`mcpmesh policy explain: ${(err as Error).message}\n\n${POLICY_EXPLAIN_USAGE}`);
    return 2;
  }
  if (values['help']) {
    io.out(POLICY_EXPLAIN_USAGE);
    return 0;
  }
  const usage = (msg: string): number => {
    io.err(`mcpmesh policy explain: ${msg}\n\n${POLICY_EXPLAIN_USAGE}`);
    return 2;
  };
  const policyFile = values['policy'] as string | undefined;
  const service = values['service'] as string | undefined;
  const token = values['token'] as string | undefined;
  const rolesArg = values['roles'] as string | undefined;
  const bodyArg = values['body'] as string | undefined;
  const bodyFile = values['body-file'] as string | undefined;
  if (!policyFile) return usage('--policy is required');
  if (!service) return usage('--service is required');
  if (token !== undefined && rolesArg !== undefined) return usage('give --token or --roles, not both');
  if (token === undefined && rolesArg === undefined) return usage('give the caller as --token JWT or --roles a,b');
  if (token !== undefined && values['scopes'] !== undefined) return usage('--scopes goes with --roles (a token carries its own scopes)');
  if (bodyArg !== undefined && bodyFile !== undefined) return usage('give --body or --body-file, not both');

  let text: string;
  try {
    text = readFileSync(policyFile, 'utf8');
  } catch (err) {
    return usage(`cannot read policy ${policyFile}: ${(err as Error).message}`);
  }
  let policy;
  try {
    policy = compilePolicy(parsePolicy(text, policyFile));
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`mcpmesh policy explain: invalid policy:\n${err.message}\n`);
      return 2;
    }
    throw err;
  }

  let roles: string[];
  let scopes: string[];
  const callerLines: string[] = [];
  if (token !== undefined) {
    let claims: Record<string, unknown>;
    try {
      claims = decodeJwtPayload(token);
    } catch (err) {
      return usage((err as Error).message);
    }
    roles = rolesFromClaims(claims, policy.policy.roleClaim);
    scopes = scopesFromClaims(claims);
    callerLines.push(`token payload decoded WITHOUT verifying the signature (only to read claims; the gateway verifies tokens)`);
    const who = ['sub', 'iss', 'aud'].filter((k) => claims[k] !== undefined).map((k) => `${k}=${JSON.stringify(claims[k])}`).join(' ');
    if (who) callerLines.push(who);
    if (typeof claims['exp'] === 'number' && claims['exp'] * 1000 < Date.now()) callerLines.push(`note: the token expired at ${new Date(claims['exp'] * 1000).toISOString()} (the gateway would refuse it with 401)`);
    const iss = claims['iss'];
    if (policy.policy.providers.length > 0 && !policy.policy.providers.some((p) => p.issuer === iss)) callerLines.push(`note: issuer ${JSON.stringify(iss)} is not one of the policy's providers (the gateway would refuse the token with 401)`);
    callerLines.push(`roles from claim "${policy.policy.roleClaim}": ${roles.length > 0 ? roles.join(', ') : '(none)'}`);
  } else {
    roles = list(rolesArg);
    scopes = list(values['scopes'] as string | undefined);
    callerLines.push(`roles (from --roles): ${roles.length > 0 ? roles.join(', ') : '(none)'}`);
  }
  const unknown = roles.filter((r) => !policy.roles.has(r));
  if (unknown.length > 0) callerLines.push(`not defined in the policy (ignored): ${unknown.join(', ')}`);
  const svc = servicePolicyOf(policy, service);
  if (svc.requiredScopes.length > 0) callerLines.push(`scopes: ${scopes.length > 0 ? scopes.join(', ') : '(none)'}`);

  let bodyText: string | undefined = bodyArg;
  if (bodyFile !== undefined) {
    try {
      bodyText = readFileSync(bodyFile, 'utf8');
    } catch (err) {
      return usage(`cannot read body ${bodyFile}: ${(err as Error).message}`);
    }
  }

  io.out(`policy:  ${policyFile}\n`);
  io.out(`service: ${service} (mode ${svc.mode}${svc.requiredScopes.length > 0 ? `, requiredScopes ${svc.requiredScopes.join(' ')}` : ''}${policy.services.has(service) ? '' : '; not listed under services: defaults'})\n`);
  io.out(`caller:  ${callerLines.join('\n         ')}\n`);

  let messages: readonly McpMessage[];
  if (bodyText === undefined) {
    messages = [{ action: { kind: 'service' } }];
    io.out('request: no body: service-level access (as for the GET event stream or DELETE)\n');
  } else {
    const parsed = parseMcpBody(bodyText);
    if ('error' in parsed) {
      io.out(`request: malformed: ${parsed.error}\n\ndecision: DENY (malformed-request): the authorizer answers 400 with a JSON-RPC error\n`);
      return 1;
    }
    messages = parsed.messages;
    io.out(parsed.batch ? `request: a batch of ${messages.length}; every element must be allowed\n` : `request: ${describeMessage(messages[0] as McpMessage)}\n`);
  }

  let denied = false;
  messages.forEach((m, i) => {
    const e = explain(policy, { service, roles, scopes, action: m.action });
    if (!e.decision.allow) denied = true;
    io.out('\n');
    if (messages.length > 1) io.out(`[${i}] ${describeMessage(m)}\n`);
    printExplanation(io, e, messages.length > 1 ? '    ' : '');
  });
  io.out(`\nresult: ${denied ? 'DENY' : 'ALLOW'}${messages.length > 1 ? ` (${denied ? 'at least one element is denied, so the whole batch is' : 'every element is allowed'})` : ''}\n`);
  if (denied && svc.mode === 'shadow') io.out(`note: service "${service}" is in shadow mode: the authorizer would log and count this denial (x-mcpmesh-shadow-deny) but let the request through\n`);
  return denied ? 1 : 0;
}
