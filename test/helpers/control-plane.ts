// Starts a real control plane on ephemeral ports with a registry file in a temp dir.
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ControlPlane, type ControlPlaneOptions } from '../../control-plane/src/control-plane.ts';
import { createLogger, silentLogger, type Logger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import type { ConsulSourceOptions } from '../../control-plane/src/sources/consul.ts';

export interface TestControlPlane {
  cp: ControlPlane;
  registryFile: string;
  /** Replaces the registry file atomically (as editors do) and lets the watcher pick it up. */
  writeRegistry(yaml: string): void;
  admin(pathAndQuery: string): Promise<Response>;
  stop(): Promise<void>;
}

/** `routing`: the text of a routing file (--routing) to start with. */
export async function startControlPlane(
  initialYaml: string,
  opts: { quietMs?: number; maxDelayMs?: number; log?: Logger; adsLimits?: ControlPlaneOptions['adsLimits']; routing?: string } = {},
): Promise<TestControlPlane> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
  const registryFile = path.join(dir, 'registry.yaml');
  writeFileSync(registryFile, initialYaml);
  const routingFile = path.join(dir, 'routing.yaml');
  if (opts.routing !== undefined) writeFileSync(routingFile, opts.routing);
  const log = opts.log ?? (process.env['MCPMESH_TEST_LOG'] ? createLogger({ level: 'debug' }) : silentLogger);
  const cp = new ControlPlane({
    registryFile,
    ...(opts.routing !== undefined ? { routingFile } : {}),
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    quietMs: opts.quietMs ?? 20,
    maxDelayMs: opts.maxDelayMs ?? 200,
    log,
    metrics: new Metrics({ processMetrics: false }),
    ...(opts.adsLimits ? { adsLimits: opts.adsLimits } : {}),
  });
  await cp.start();
  let n = 0;
  return {
    cp,
    registryFile,
    writeRegistry(yaml: string) {
      const tmp = path.join(dir, `.registry.${n++}.tmp`);
      writeFileSync(tmp, yaml);
      renameSync(tmp, registryFile);
    },
    admin: (p) => fetch(`http://127.0.0.1:${cp.adminPort}${p}`),
    stop: () => cp.stop(),
  };
}

/**
 * Options for a real control plane on ephemeral loopback ports with quick coalescing and silent logs, whose
 * registry file (written into `dir`; a test edits it at the returned `registryFile`) starts empty: tests add a
 * source or security with `overrides`.
 */
export function emptyControlPlaneOptions(dir: string, overrides: Partial<ControlPlaneOptions> = {}): ControlPlaneOptions {
  const registryFile = path.join(dir, 'registry.yaml');
  writeFileSync(registryFile, 'services: []\n');
  return {
    registryFile,
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    quietMs: 10,
    maxDelayMs: 100,
    log: silentLogger,
    metrics: new Metrics({ processMetrics: false }),
    ...overrides,
  };
}

/** The same with Consul (`consul`, the stand-in or a real agent) as the source, on a 5 s blocking wait. */
export function consulControlPlaneOptions(
  dir: string,
  consul: { address: string; token?: string | undefined },
  opts: { consulExtra?: Partial<ConsulSourceOptions>; overrides?: Partial<ControlPlaneOptions> } = {},
): ControlPlaneOptions {
  return emptyControlPlaneOptions(dir, {
    consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}), wait: '5s', ...opts.consulExtra },
    ...opts.overrides,
  });
}

/**
 * A secured mesh whose policy has no providers, roles or services: the mesh CA, mTLS xDS and attestation run,
 * and nothing is authorized (identity tests). The authorizer listens on an ephemeral loopback port.
 */
export function identityOnlySecurity(trustDomain: string): Partial<ControlPlaneOptions> {
  return {
    authzHost: '127.0.0.1',
    authzPort: 0,
    security: {
      publicUrl: 'https://mcp.example.com',
      authz: { host: '127.0.0.1', port: 18002 },
      policy: { trustDomain, roleClaim: 'roles', providers: [], roles: [], services: [] },
    },
  };
}
