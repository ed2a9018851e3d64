// `mcpmesh token`: a dev access token from the control plane's development issuer (client-credentials grant).
import type { ParseArgsOptionsConfig } from 'node:util';
import { parseCli } from '../cli-args.ts';

const USAGE = `usage: mcpmesh token --role ROLE [--role ROLE...] [options]
  --role ROLE            a role to put in the token (sent as the OAuth scope, space-separated); the dev
                         issuer grants only roles the control plane's policy defines (none without a
                         policy) and answers invalid_scope naming any other; no --role: a token without roles
  --admin URL            control plane admin address          [$MCPMESH_ADMIN_URL or http://127.0.0.1:18001]
  --admin-token T        its admin token, when it listens beyond loopback           [$MCPMESH_ADMIN_TOKEN]
  --client-id ID         dev client                            [dev]
  --client-secret S      its secret                            [$MCPMESH_DEV_CLIENT_SECRET]
  --audience A           token audience (resource)             [the issuer's default]
  --json                 print the whole token response
`;

export async function tokenMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const options = {
    role: { type: 'string', multiple: true, default: [] },
    admin: { type: 'string' },
    'admin-token': { type: 'string' },
    'client-id': { type: 'string', default: 'dev' },
    'client-secret': { type: 'string' },
    audience: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const args = parseCli('mcpmesh token', argv, options, USAGE);
  if (typeof args === 'number') return args;
  const { values } = args;
  const secret = values['client-secret'] ?? env['MCPMESH_DEV_CLIENT_SECRET'];
  if (!secret) {
    process.stderr.write(
      `mcpmesh token: no client secret: pass --client-secret or set MCPMESH_DEV_CLIENT_SECRET (the control plane prints it at start)\n`,
    );
    return 2;
  }
  // Roles travel space-separated in one scope field: a role with whitespace would silently become several.
  const spaced = values.role.find((r) => r === '' || /\s/.test(r));
  if (spaced !== undefined) {
    process.stderr.write(
      `mcpmesh token: --role ${JSON.stringify(spaced)}: a role name is one word (no spaces); repeat --role for several\n`,
    );
    return 2;
  }
  const admin = values.admin ?? env['MCPMESH_ADMIN_URL'] ?? 'http://127.0.0.1:18001';
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: values['client-id'],
    client_secret: secret,
    scope: values.role.join(' '),
  });
  if (values.audience) form.set('resource', values.audience);
  let res: Response;
  try {
    // Beyond loopback the admin port takes its own token in Authorization; the client secret is in the form.
    const adminToken = values['admin-token'] ?? env['MCPMESH_ADMIN_TOKEN'];
    res = await fetch(new URL('/oauth/token', admin), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(adminToken ? { authorization: `Bearer ${adminToken}` } : {}) },
      body: form,
    });
  } catch (err) {
    process.stderr.write(`mcpmesh token: cannot reach ${admin}: ${(err as Error).message}\n`);
    return 1;
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    process.stderr.write(
      `mcpmesh token: ${res.status} ${String(body['error'] ?? '')}: ${String(body['error_description'] ?? JSON.stringify(body))}\n`,
    );
    return 1;
  }
  process.stdout.write(values.json ? `${JSON.stringify(body, null, 2)}\n` : `${String(body['access_token'])}\n`);
  return 0;
}
