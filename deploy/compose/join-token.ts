// The Compose demo's join-token step: mints ONE join token for ONE agent and writes it to a file on a small
// volume that only that agent mounts (read-only). docker-compose.yml runs it as a one-shot service per agent
// (`<agent>-join`), after the control plane is healthy and before the agent starts:
//
//   node deploy/compose/join-token.ts --service weather --out /run/mcpmesh/join/token
//   node deploy/compose/join-token.ts --gateway default --out /run/mcpmesh/join/token
//
// It makes the request `mcpmesh join-token` makes (POST /admin/join-token on the control plane's admin port,
// `Authorization: Bearer $MCPMESH_ADMIN_TOKEN`: the admin port listens beyond loopback in Compose), checks
// that the answer is a join token for the identity it asked for, and writes it atomically (mode 0600). The
// agent reads it with `--join-token-file`, makes its own key and exchanges the token for its certificate: no
// key is ever on a volume, and the admin token never reaches an agent.
//
// A join token is single-use (bound to the first key that uses it) and short-lived, and the binding lives in
// the control plane's memory: after an agent or the control plane restarts, run the agent's `-join` service
// again and recreate the agent (deploy/compose/README.md, "Workload identity").
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ParseArgsOptionsConfig } from 'node:util';
import { readJoinToken } from '../../control-plane/src/identity/join-token.ts';
import { isEntryPoint } from '../../control-plane/src/entry.ts';
import { parseCli } from '../../control-plane/src/cli-args.ts';

const USAGE = `usage: node deploy/compose/join-token.ts (--service NAME | --gateway NAME) --out FILE [options]
  --service NAME        a sidecar agent's identity (spiffe://<td>/mcp/NAME)
  --gateway NAME        a gateway agent's identity (spiffe://<td>/gateway/NAME)
  --out FILE            where to write the token (mode 0600, replaced atomically)
  --ttl D               how long the token may be used (single-use anyway)              [1h]
  --admin URL           the control plane's admin port  [$MCPMESH_ADMIN_URL or http://control-plane:18001]
  --wait D              keep retrying while the control plane is unreachable or not ready   [60s]
  The admin token is read from $MCPMESH_ADMIN_TOKEN only (never from the command line, which \`ps\` shows).
exit status: 0 written, 1 refused or unreachable, 2 usage error
`;

export interface MintRequest {
  admin: string;
  adminToken?: string;
  kind: 'service' | 'gateway';
  name: string;
  ttl: string;
}

export interface Minted {
  token: string;
  spiffeId: string;
  expiresAt: string;
}

/** An error worth retrying (the control plane is starting or briefly away), or not (it refused). */
class MintError extends Error {
  readonly retry: boolean;
  constructor(message: string, retry: boolean) {
    super(message);
    this.retry = retry;
  }
}

/** One POST /admin/join-token. Throws a MintError saying whether a retry may help. */
export async function mintJoinToken(r: MintRequest): Promise<Minted> {
  let res: Response;
  try {
    res = await fetch(new URL('/admin/join-token', r.admin), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(r.adminToken ? { authorization: `Bearer ${r.adminToken}` } : {}) },
      body: JSON.stringify({ [r.kind]: r.name, ttl: r.ttl }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new MintError(`cannot reach the control plane at ${r.admin}: ${(err as Error).message}`, true);
  }
  const body = (await res.json().catch(() => ({}))) as {
    token?: unknown;
    spiffe_id?: unknown;
    expires_at?: unknown;
    error?: unknown;
    error_description?: unknown;
  };
  if (res.status === 401 || res.status === 403) {
    const why = String(body.error_description ?? body.error ?? '');
    throw new MintError(
      `the control plane refused (HTTP ${res.status}): ${why}${r.adminToken ? '' : ' (MCPMESH_ADMIN_TOKEN is not set)'}`,
      false,
    );
  }
  if (!res.ok || typeof body.token !== 'string') {
    throw new MintError(
      `the control plane answered HTTP ${res.status}: ${String(body.error ?? 'no token in its answer')}`,
      res.status >= 500,
    );
  }
  // What the agent will read from it: the identity must be the one asked for, or the agent would refuse it.
  const claims = readJoinToken(body.token);
  const suffix = r.kind === 'service' ? `/mcp/${r.name}` : `/gateway/${r.name}`;
  if (!claims.spiffeId.startsWith('spiffe://') || !claims.spiffeId.endsWith(suffix)) {
    throw new MintError(`the control plane minted a token for ${claims.spiffeId}, not for ${r.kind} ${r.name}`, false);
  }
  return { token: body.token, spiffeId: claims.spiffeId, expiresAt: claims.expiresAt.toISOString() };
}

/** Writes `text` to `file` with mode 0600, replacing any previous token atomically (write + rename). */
export function writeTokenFile(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, `${text}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

function parseDuration(s: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h)$/.exec(s);
  if (!m) return undefined;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const options = {
    service: { type: 'string' },
    gateway: { type: 'string' },
    out: { type: 'string' },
    ttl: { type: 'string', default: '1h' },
    admin: { type: 'string' },
    wait: { type: 'string', default: '60s' },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const args = parseCli('join-token', argv, options, USAGE);
  if (typeof args === 'number') return args;
  const { values } = args;
  const usage = (msg: string): number => {
    process.stderr.write(`join-token: ${msg}\n\n${USAGE}`);
    return 2;
  };
  if ((values.service === undefined) === (values.gateway === undefined))
    return usage('give exactly one of --service NAME and --gateway NAME');
  if (!values.out) return usage('--out FILE is required');
  const waitMs = parseDuration(values.wait);
  if (waitMs === undefined) return usage(`--wait ${JSON.stringify(values.wait)}: use a duration such as 30s or 2m`);
  const request: MintRequest = {
    admin: values.admin ?? (env['MCPMESH_ADMIN_URL'] || 'http://control-plane:18001'),
    ...(env['MCPMESH_ADMIN_TOKEN'] ? { adminToken: env['MCPMESH_ADMIN_TOKEN'] } : {}),
    kind: values.service !== undefined ? 'service' : 'gateway',
    name: (values.service ?? values.gateway) as string,
    ttl: values.ttl,
  };
  const deadline = Date.now() + waitMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const minted = await mintJoinToken(request);
      writeTokenFile(values.out, minted.token);
      // Never the token itself: Compose keeps container logs.
      process.stderr.write(`join-token: ${minted.spiffeId}: single-use token written to ${values.out}, valid until ${minted.expiresAt}\n`);
      return 0;
    } catch (err) {
      const retry = err instanceof MintError && err.retry && Date.now() < deadline;
      process.stderr.write(`join-token: ${(err as Error).message}${retry ? ` (attempt ${attempt}; retrying)` : ''}\n`);
      if (!retry) return 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 3000)));
    }
  }
}

if (isEntryPoint(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
