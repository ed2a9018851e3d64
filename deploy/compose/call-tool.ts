// An MCP client for the Compose demo: gets a development token from the control plane's dev OAuth issuer
// (client-credentials grant) and calls a tool through the gateway, like an agent would.
//
//   node deploy/compose/call-tool.ts                                   # analyst calls weather's echo
//   node deploy/compose/call-tool.ts --tool get-sum --args '{"a":2,"b":3}'
//   node deploy/compose/call-tool.ts --tool get-env                    # denied by the policy (403)
//   node deploy/compose/call-tool.ts --role admin --tool get-env       # allowed for admin
//   node deploy/compose/call-tool.ts --service everything              # analyst may not use `everything`
//   node deploy/compose/call-tool.ts --no-token                        # 401 from the gateway's jwt_authn
//
// The Compose stack's admin port listens beyond loopback, so its token endpoint wants the control plane's
// admin token as well: `Authorization: Bearer $MCPMESH_ADMIN_TOKEN` (or --admin-token), sent only when set
// (a control plane on loopback, `npm start`, needs none); the client secret travels in the form body.
//
// Needs Node >= 22.18 (TypeScript type stripping) and `npm ci` (for @modelcontextprotocol/sdk); in this
// repository `npm exec -- node deploy/compose/call-tool.ts ...` uses the pinned Node 24. Without Node on the
// host: `docker compose -f deploy/compose/docker-compose.yml run --rm client ...` (same options).
import type { ParseArgsOptionsConfig } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { isEntryPoint } from '../../control-plane/src/entry.ts';
import { parseCli } from '../../control-plane/src/cli-args.ts';

export const DEV_CLIENT_SECRET = 'mcpmesh-dev-secret';
/** The Compose stack's development admin token (docker-compose.yml, `x-admin-token`), named in hints only. */
export const COMPOSE_ADMIN_TOKEN = 'mcpmesh-dev-admin-token';
/** The realm of the control plane's admin-token challenges (control-plane/src/server/admin.ts). */
const ADMIN_REALM = 'mcpmesh-admin';

const USAGE = `usage: node deploy/compose/call-tool.ts [options]
  --service NAME        MCP service behind the gateway                            [weather]
  --gateway URL         the gateway                     [$MCPMESH_GATEWAY_URL or http://localhost:8080]
  --url URL             full MCP endpoint URL (instead of <gateway>/mcp/<service>)
  --tool NAME           tool to call                                              [echo]
  --args JSON           tool arguments as a JSON object          [{"message":"hello through MCP Mesh"}]
  --list                only list the tools this caller is shown
  --role ROLE           role(s) to ask the dev issuer for (repeatable)            [analyst]
  --admin URL           control plane admin (dev issuer)  [$MCPMESH_ADMIN_URL or http://localhost:18001]
  --client-id ID        dev OAuth client                                          [dev]
  --client-secret S     its secret                     [$MCPMESH_DEV_CLIENT_SECRET or ${DEV_CLIENT_SECRET}]
  --admin-token T       the control plane's admin token, needed when its admin port listens beyond
                        loopback (the Compose stack: ${COMPOSE_ADMIN_TOKEN} unless changed) [$MCPMESH_ADMIN_TOKEN]
  --token JWT           use this access token instead of asking the dev issuer    [$MCPMESH_TOKEN]
  --no-token            send no Authorization header (expect 401)
  --json                print the raw tool result as JSON
exit status: 0 tool called, 1 call failed or denied or the tool reported an error, 2 usage error
`;

export interface CallToolOptions {
  url: string;
  token?: string;
  tool: string;
  args: Record<string, unknown>;
  listOnly: boolean;
}

export interface CallToolOutcome {
  tools: string[];
  result?: { content?: unknown[]; isError?: boolean; structuredContent?: unknown };
}

/**
 * A dev access token from the control plane's dev issuer (the request `mcpmesh token` makes). The client
 * authenticates in the form body (client_secret_post); `adminToken`, when given, goes in the Authorization
 * header, which a control plane listening beyond loopback requires on its token endpoint.
 */
export async function fetchDevToken(
  admin: string,
  clientId: string,
  secret: string,
  roles: readonly string[],
  adminToken?: string,
): Promise<string> {
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: clientId,
    client_secret: secret,
    scope: roles.join(' '),
  });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (adminToken) headers['authorization'] = `Bearer ${adminToken}`;
  let res: Response;
  try {
    res = await fetch(new URL('/oauth/token', admin), { method: 'POST', headers, body: form });
  } catch (err) {
    throw new Error(
      `cannot reach the dev issuer at ${admin}: ${(err as Error).message} (is the control plane up and its admin port published?)`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  // The admin port's own refusal (its realm), not the dev issuer's (invalid_client and the like).
  const adminRefusal =
    (res.headers.get('www-authenticate') ?? '').includes(`realm="${ADMIN_REALM}"`) || (res.status === 403 && body['error'] === 'forbidden');
  if (adminRefusal) {
    const hint = adminToken
      ? 'the admin token was refused: use the one the control plane was started with (MCPMESH_ADMIN_TOKEN)'
      : `the control plane's admin port listens beyond loopback and wants its admin token: set MCPMESH_ADMIN_TOKEN or pass --admin-token (the Compose stack's default is ${COMPOSE_ADMIN_TOKEN})`;
    throw new Error(
      `the admin port at ${admin} answered ${res.status}: ${String(body['error_description'] ?? body['error'] ?? '')}\n  -> ${hint}`,
    );
  }
  if (!res.ok || typeof body['access_token'] !== 'string') {
    throw new Error(
      `dev issuer answered ${res.status}: ${String(body['error'] ?? '')} ${String(body['error_description'] ?? JSON.stringify(body))}`.trim(),
    );
  }
  return body['access_token'];
}

/** Connects (initialize), lists the tools the caller is shown, and calls one unless listOnly. */
export async function callTool(o: CallToolOptions): Promise<CallToolOutcome> {
  const transport = new StreamableHTTPClientTransport(new URL(o.url), {
    requestInit: o.token ? { headers: { Authorization: `Bearer ${o.token}` } } : {},
  });
  const client = new Client({ name: 'mcpmesh-compose-call-tool', version: '0.1.0' });
  await client.connect(transport);
  try {
    const tools: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      tools.push(...page.tools.map((t) => t.name));
      cursor = page.nextCursor;
    } while (cursor);
    if (o.listOnly) return { tools: tools.sort() };
    const result = await client.callTool({ name: o.tool, arguments: o.args });
    return { tools: tools.sort(), result: result as CallToolOutcome['result'] };
  } finally {
    await transport.terminateSession().catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

function describeError(err: unknown): string {
  const e = err as { code?: unknown; message?: string };
  const msg = e.message ?? String(err);
  if (e.code === 401 || /\b401\b/.test(msg))
    return `${msg}\n  -> 401: no token, or the gateway rejected it (expired, wrong issuer/audience, control plane restarted since it was issued)`;
  if (e.code === 403 || /\b403\b/.test(msg))
    return `${msg}\n  -> 403: the policy denies this call for the token's roles (deploy/compose/policy.yaml)`;
  if (e.code === 404 || /\b404\b/.test(msg))
    return `${msg}\n  -> 404: no such service at the gateway (yet)? Check http://localhost:18001/debug/config_dump?node=gateway-1`;
  if (/ECONNREFUSED|fetch failed/.test(msg)) return `${msg}\n  -> nothing listens there: is the stack up (docker compose ps)?`;
  return msg;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const options = {
    service: { type: 'string', default: 'weather' },
    gateway: { type: 'string' },
    url: { type: 'string' },
    tool: { type: 'string', default: 'echo' },
    args: { type: 'string' },
    list: { type: 'boolean', default: false },
    role: { type: 'string', multiple: true, default: [] },
    admin: { type: 'string' },
    'client-id': { type: 'string', default: 'dev' },
    'client-secret': { type: 'string' },
    'admin-token': { type: 'string' },
    token: { type: 'string' },
    'no-token': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const cli = parseCli('call-tool', argv, options, USAGE);
  if (typeof cli === 'number') return cli;
  const { values } = cli;
  let args: Record<string, unknown>;
  try {
    const parsed: unknown =
      values.args !== undefined ? JSON.parse(values.args) : values.tool === 'echo' ? { message: 'hello through MCP Mesh' } : {};
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('must be a JSON object');
    args = parsed as Record<string, unknown>;
  } catch (err) {
    process.stderr.write(`call-tool: --args: ${(err as Error).message}\n`);
    return 2;
  }
  const gateway = (values.gateway ?? (env['MCPMESH_GATEWAY_URL'] || 'http://localhost:8080')).replace(/\/$/, '');
  const url = values.url ?? `${gateway}/mcp/${values.service}`;
  const roles = values.role.length > 0 ? values.role : ['analyst'];
  let token: string | undefined;
  if (!values['no-token']) {
    token = values.token ?? (env['MCPMESH_TOKEN'] || undefined);
    if (!token) {
      const admin = values.admin ?? (env['MCPMESH_ADMIN_URL'] || 'http://localhost:18001');
      try {
        const adminToken = values['admin-token'] ?? (env['MCPMESH_ADMIN_TOKEN'] || undefined);
        token = await fetchDevToken(
          admin,
          values['client-id'],
          values['client-secret'] ?? (env['MCPMESH_DEV_CLIENT_SECRET'] || DEV_CLIENT_SECRET),
          roles,
          adminToken,
        );
      } catch (err) {
        process.stderr.write(`call-tool: ${(err as Error).message}\n`);
        return 1;
      }
      process.stderr.write(`token: dev issuer at ${admin}, roles [${roles.join(', ')}]\n`);
    }
  }
  process.stderr.write(`MCP endpoint: ${url}\n`);
  let outcome: CallToolOutcome;
  try {
    outcome = await callTool({ url, ...(token ? { token } : {}), tool: values.tool, args, listOnly: values.list });
  } catch (err) {
    process.stderr.write(`call-tool: ${describeError(err)}\n`);
    return 1;
  }
  process.stdout.write(`tools shown to this caller: ${outcome.tools.join(', ') || '(none)'}\n`);
  if (!outcome.result) return 0;
  if (values.json) {
    process.stdout.write(`${JSON.stringify(outcome.result, null, 2)}\n`);
  } else {
    process.stdout.write(`${values.tool} ->\n`);
    for (const c of outcome.result.content ?? []) {
      const item = c as { type?: string; text?: string; mimeType?: string };
      process.stdout.write(
        item.type === 'text' ? `  ${item.text ?? ''}\n` : `  [${item.type ?? 'content'}${item.mimeType ? ` ${item.mimeType}` : ''}]\n`,
      );
    }
  }
  if (outcome.result.isError) {
    process.stderr.write(`call-tool: the tool reported an error (or the call was refused in-band)\n`);
    return 1;
  }
  return 0;
}

if (isEntryPoint(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
