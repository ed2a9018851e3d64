// Start-up checks of the development issuer that `npm start` runs, kept out of main.ts to be testable:
// its client secret survives restarts (a token script or an MCP client configured yesterday still works),
// and a policy that trusts the dev issuer at another address is an error at start, not a gateway that
// answers 401 to every `mcpmesh token` token.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JwtProvider } from '../policy/types.ts';

export const DEV_SECRET_FILE = 'dev-client-secret';

export interface DevSecret {
  readonly secret: string;
  /** Where it came from: the environment, the data-dir file (new or kept), or nowhere (not kept: why). */
  readonly origin: { kind: 'env' } | { kind: 'file'; file: string; created: boolean } | { kind: 'ephemeral'; reason: string };
}

/** The given secret, else the one kept in `dataDir`, else a new one written there (0600). */
export function devClientSecret(given: string | undefined, dataDir: string): DevSecret {
  if (given) return { secret: given, origin: { kind: 'env' } };
  const file = path.join(dataDir, DEV_SECRET_FILE);
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept) return { secret: kept, origin: { kind: 'file', file, created: false } };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      return { secret: randomBytes(18).toString('base64url'), origin: { kind: 'ephemeral', reason: `${file}: ${(err as Error).message}` } };
  }
  const secret = randomBytes(18).toString('base64url');
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // 'wx': a second control plane starting at the same moment keeps the first one's secret.
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return { secret, origin: { kind: 'file', file, created: true } };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return devClientSecret(undefined, dataDir);
    return { secret, origin: { kind: 'ephemeral', reason: `${file}: ${(err as Error).message}` } };
  }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A provider whose issuer is a loopback URL with the dev issuer's path: meant for the dev issuer. */
function looksLikeDevIssuer(p: JwtProvider, devPath: string): boolean {
  if (!URL.canParse(p.issuer)) return false;
  const u = new URL(p.issuer);
  return LOOPBACK.has(u.hostname) && u.pathname === devPath;
}

/**
 * `--admin-port 0` binds whichever port is free, so the dev issuer's URL is known only once the control plane
 * runs; a policy that trusts the dev issuer names that URL beforehand and cannot match it. The error to refuse
 * to start with, or undefined when no provider is meant for the dev issuer (then the URL follows the bound port).
 */
export function devIssuerPortZeroConflict(providers: readonly JwtProvider[], devPath = '/oauth'): string | undefined {
  const p = providers.find((x) => looksLikeDevIssuer(x, devPath));
  if (!p) return undefined;
  return (
    `--admin-port 0 picks the admin port at start, so the development issuer's URL (http://127.0.0.1:<port>${devPath}) is not known ` +
    `in advance, but policy provider "${p.name}" trusts issuer ${p.issuer}: give a fixed --admin-port (MCPMESH_ADMIN_PORT), ` +
    'set MCPMESH_DEV_ISSUER_URL to the issuer the policy trusts, or turn the development issuer off (MCPMESH_DEV_ISSUER=off)'
  );
}

/**
 * A policy provider meant for the dev issuer (a loopback URL with its path) that names another port: what
 * happens when the admin port moves and the policy does not. Undefined when some provider trusts `devIssuer`
 * or none looks like it.
 */
export function devIssuerMismatch(providers: readonly JwtProvider[], devIssuer: string): string | undefined {
  if (providers.some((p) => p.issuer === devIssuer)) return undefined;
  const dev = new URL(devIssuer);
  const stray = providers.find((p) => looksLikeDevIssuer(p, dev.pathname) && new URL(p.issuer).origin !== dev.origin);
  if (!stray) return undefined;
  return (
    `policy provider "${stray.name}" trusts issuer ${stray.issuer}, but this control plane's development issuer is ${devIssuer}: ` +
    `tokens from \`mcpmesh token\` would be refused at the gateway. Make the provider's issuer ${devIssuer} and its jwksUri ${devIssuer}/jwks ` +
    `(or move the admin port back with --admin-port / MCPMESH_ADMIN_PORT, or set MCPMESH_DEV_ISSUER_URL)`
  );
}
