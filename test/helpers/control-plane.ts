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
 * Options for a real control plane with Consul (`consul`, the stand-in or a real agent) as its source: ephemeral
 * loopback ports, quick coalescing, a 5 s blocking wait, silent logs. `dir` gets the registry file the options
 * require but a Consul-sourced plane never reads; `consulExtra` and `overrides` add or replace options.
 */
export function consulControlPlaneOptions(
  dir: string,
  consul: { address: string; token?: string | undefined },
  opts: { consulExtra?: Partial<ConsulSourceOptions>; overrides?: Partial<ControlPlaneOptions> } = {},
): ControlPlaneOptions {
  const registryFile = path.join(dir, 'unused.yaml');
  writeFileSync(registryFile, 'services: []\n');
  return {
    registryFile,
    consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}), wait: '5s', ...opts.consulExtra },
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    quietMs: 10,
    maxDelayMs: 100,
    log: silentLogger,
    metrics: new Metrics({ processMetrics: false }),
    ...opts.overrides,
  };
}
