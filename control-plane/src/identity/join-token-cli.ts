// `mcpmesh join-token`: an operator mints a short-lived token that lets one agent get one identity from the
// mesh CA. Asks a running control plane (its admin port: loopback, or the admin token), or, given the CA
// files, signs it here without any control plane (the token is then valid for every replica sharing that CA).
import { readFileSync } from 'node:fs';
import type { ParseArgsOptionsConfig } from 'node:util';
import { parseDurationMs } from '../model/duration.ts';
import { CertificateAuthority } from './ca.ts';
import { JoinTokens } from './join-token.ts';
import { gatewayId, sidecarId } from './spiffe.ts';
import { parseCli } from '../cli-args.ts';

const USAGE = `usage: mcpmesh join-token (--service NAME | --gateway NAME) [--ttl 1h] [options]
  --service NAME         the sidecar identity spiffe://<td>/mcp/NAME
  --gateway NAME         the gateway identity spiffe://<td>/gateway/NAME
  --ttl D                how long the token may be used (it is also single-use)   [1h; at most 24h]
  --admin URL            a running control plane's admin address  [$MCPMESH_ADMIN_URL or http://127.0.0.1:18001]
  --admin-token T        its admin token, when it listens beyond loopback          [$MCPMESH_ADMIN_TOKEN]
  --ca-cert F --ca-key F --trust-domain TD
                         sign here with the mesh CA instead of asking a control plane [$MCPMESH_CA_CERT, $MCPMESH_CA_KEY]
  --json                 print token, SPIFFE ID and expiry as JSON
The agent takes the token as --join-token (or $MCPMESH_JOIN_TOKEN); the token also pins the CA, so the agent
needs no other trust anchor.
`;

export async function joinTokenMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const options = {
    service: { type: 'string' },
    gateway: { type: 'string' },
    ttl: { type: 'string', default: '1h' },
    admin: { type: 'string' },
    'admin-token': { type: 'string' },
    'ca-cert': { type: 'string' },
    'ca-key': { type: 'string' },
    'trust-domain': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const args = parseCli('mcpmesh join-token', argv, options, USAGE);
  if (typeof args === 'number') return args;
  const { values } = args;
  const fail = (msg: string, code = 2): number => {
    process.stderr.write(`mcpmesh join-token: ${msg}\n`);
    return code;
  };
  if ((values.service === undefined) === (values.gateway === undefined))
    return fail('give exactly one of --service NAME and --gateway NAME');
  const ttl = parseDurationMs(values.ttl);
  if (ttl === undefined) return fail(`--ttl ${JSON.stringify(values.ttl)}: use a duration such as 30m or 1h`);
  const print = (t: { token: string; spiffeId: string; expiresAt: string }): number => {
    process.stdout.write(values.json ? `${JSON.stringify(t)}\n` : `${t.token}\n`);
    if (!values.json) process.stderr.write(`join token for ${t.spiffeId}, valid until ${t.expiresAt}, single-use\n`);
    return 0;
  };

  const caCert = values['ca-cert'] ?? env['MCPMESH_CA_CERT'];
  const caKey = values['ca-key'] ?? env['MCPMESH_CA_KEY'];
  if (caCert || caKey) {
    if (!caCert || !caKey || !values['trust-domain']) return fail('signing here needs --ca-cert, --ca-key and --trust-domain');
    try {
      const ca = await CertificateAuthority.fromPem({
        certPem: readFileSync(caCert, 'utf8'),
        keyPem: readFileSync(caKey, 'utf8'),
        trustDomain: values['trust-domain'],
      });
      const id =
        values.service !== undefined ? sidecarId(ca.trustDomain, values.service) : gatewayId(ca.trustDomain, values.gateway as string);
      const t = await new JoinTokens(ca).mint(id, ttl);
      return print({ token: t.token, spiffeId: t.spiffeId, expiresAt: t.expiresAt.toISOString() });
    } catch (err) {
      return fail((err as Error).message, 1);
    }
  }

  const admin = values.admin ?? env['MCPMESH_ADMIN_URL'] ?? 'http://127.0.0.1:18001';
  const token = values['admin-token'] ?? env['MCPMESH_ADMIN_TOKEN'];
  let res: Response;
  try {
    res = await fetch(new URL('/admin/join-token', admin), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({
        ...(values.service !== undefined ? { service: values.service } : { gateway: values.gateway }),
        ttl: values.ttl,
      }),
    });
  } catch (err) {
    return fail(`cannot reach the control plane at ${admin}: ${(err as Error).message}`, 1);
  }
  const body = (await res.json().catch(() => ({}))) as { token?: string; spiffe_id?: string; expires_at?: string; error?: string };
  if (!res.ok || !body.token) return fail(`the control plane refused (HTTP ${res.status}): ${body.error ?? 'no token in its answer'}`, 1);
  return print({ token: body.token, spiffeId: body.spiffe_id ?? '', expiresAt: body.expires_at ?? '' });
}
