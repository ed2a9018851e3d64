// mcpmesh control plane entry point. Configuration by environment (12-factor) with flags for the common ones.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ControlPlane, DEFAULT_ADMIN_PORT, DEFAULT_XDS_PORT } from './control-plane.ts';
import { createLogger } from './log.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;

const { values } = parseArgs({
  options: {
    registry: { type: 'string', default: env['MCPMESH_REGISTRY'] ?? path.join(repoRoot, 'deploy/registry.example.yaml') },
    'xds-port': { type: 'string', default: env['MCPMESH_XDS_PORT'] ?? String(DEFAULT_XDS_PORT) },
    'admin-port': { type: 'string', default: env['MCPMESH_ADMIN_PORT'] ?? String(DEFAULT_ADMIN_PORT) },
    host: { type: 'string', default: env['MCPMESH_BIND'] ?? '0.0.0.0' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`usage: npm start -- [--registry FILE] [--xds-port N] [--admin-port N] [--host ADDR]
  env: MCPMESH_REGISTRY, MCPMESH_XDS_PORT (${DEFAULT_XDS_PORT}), MCPMESH_ADMIN_PORT (${DEFAULT_ADMIN_PORT}), MCPMESH_BIND, MCPMESH_LOG_LEVEL
`);
  process.exit(0);
}

const log = createLogger();
const cp = new ControlPlane({
  registryFile: values.registry,
  xdsHost: values.host,
  xdsPort: Number(values['xds-port']),
  adminHost: values.host,
  adminPort: Number(values['admin-port']),
  log,
});

try {
  await cp.start();
} catch (err) {
  log.error('control plane failed to start', { error: (err as Error).message });
  process.exit(1);
}
log.info('control plane listening', {
  xds: `grpc://${values.host}:${cp.xdsPort}`,
  admin: `http://${values.host}:${cp.adminPort}`,
  registry: path.resolve(values.registry),
});
process.stdout.write(`MCP Mesh control plane\n  xDS (ADS, gRPC): ${values.host}:${cp.xdsPort}\n  admin:           http://127.0.0.1:${cp.adminPort}/ (healthz, readyz, metrics, debug/config_dump, debug/proxies)\n  registry:        ${path.resolve(values.registry)}\n`);

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info('shutting down', { signal: sig });
    void cp.stop().then(() => process.exit(0));
  });
}
