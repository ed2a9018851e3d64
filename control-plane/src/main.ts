// mcpmesh control plane entry point. Configuration by environment (12-factor) with flags for the common ones.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { ControlPlane, DEFAULT_ADMIN_PORT, DEFAULT_AUTHZ_PORT, DEFAULT_XDS_PORT } from './control-plane.ts';
import { parsePolicy } from './policy/parse.ts';
import type { MeshSecurity } from './model/types.ts';
import os from 'node:os';
import { devClientSecret, devIssuerMismatch, devIssuerPortZeroConflict, type DevSecret } from './auth/dev-setup.ts';
import { DevIssuer } from './auth/dev-issuer.ts';
import { CertificateAuthority } from './identity/ca.ts';
import type { Attestor } from './identity/attest.ts';
import { IN_CLUSTER_TOKEN_FILE, KubernetesAttestor, parseK8sAttestationMap } from './identity/attest-k8s.ts';
import { createLogger } from './log.ts';
import { consulOptionsFromEnv } from './sources/consul.ts';
import { parseByteSize } from './sources/file-watch.ts';
import { DEFAULT_REGISTRY_MAX_BYTES } from './sources/registry-file.ts';
import { parseDurationMs } from './model/duration.ts';
import type { AdsLimits } from './server/ads.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const EXAMPLE_REGISTRY = path.join(repoRoot, 'deploy/registry.example.yaml');

const { values } = parseArgs({
  options: {
    registry: { type: 'string', default: env['MCPMESH_REGISTRY'] ?? EXAMPLE_REGISTRY },
    'registry-max-bytes': { type: 'string', default: env['MCPMESH_REGISTRY_MAX_BYTES'] ?? String(DEFAULT_REGISTRY_MAX_BYTES) },
    routing: { type: 'string', default: env['MCPMESH_ROUTING'] },
    'xds-port': { type: 'string', default: env['MCPMESH_XDS_PORT'] ?? String(DEFAULT_XDS_PORT) },
    'admin-port': { type: 'string', default: env['MCPMESH_ADMIN_PORT'] ?? String(DEFAULT_ADMIN_PORT) },
    host: { type: 'string', default: env['MCPMESH_BIND'] },
    'xds-host': { type: 'string', default: env['MCPMESH_XDS_HOST'] },
    'xds-insecure': { type: 'boolean', default: env['MCPMESH_XDS_INSECURE'] === '1' || env['MCPMESH_XDS_INSECURE'] === 'true' },
    'xds-dns-name': { type: 'string', multiple: true, default: (env['MCPMESH_XDS_DNS_NAMES'] ?? '').split(',').filter(Boolean) },
    'admin-host': { type: 'string', default: env['MCPMESH_ADMIN_HOST'] },
    'admin-token-file': { type: 'string', default: env['MCPMESH_ADMIN_TOKEN_FILE'] },
    'authz-bind': { type: 'string', default: env['MCPMESH_AUTHZ_BIND'] },
    'k8s-attestation': { type: 'string', default: env['MCPMESH_K8S_ATTESTATION'] },
    consul: { type: 'string', default: env['CONSUL_HTTP_ADDR'] },
    policy: { type: 'string', default: env['MCPMESH_POLICY'] },
    'public-url': { type: 'string', default: env['MCPMESH_PUBLIC_URL'] ?? 'http://localhost:8080' },
    'authz-port': { type: 'string', default: env['MCPMESH_AUTHZ_PORT'] ?? String(DEFAULT_AUTHZ_PORT) },
    'authz-host': { type: 'string', default: env['MCPMESH_AUTHZ_ADVERTISE'] ?? '127.0.0.1' },
    'consul-datacenter': { type: 'string', default: env['MCPMESH_CONSUL_DATACENTER'] },
    'ca-cert': { type: 'string', default: env['MCPMESH_CA_CERT'] },
    'ca-key': { type: 'string', default: env['MCPMESH_CA_KEY'] },
    'ca-chain': { type: 'string', default: env['MCPMESH_CA_CHAIN'] },
    'data-dir': {
      type: 'string',
      default: env['MCPMESH_DATA_DIR'] ?? path.join(env['XDG_STATE_HOME'] ?? path.join(os.homedir(), '.local', 'state'), 'mcpmesh'),
    },
    'drain-delay': { type: 'string', default: env['MCPMESH_DRAIN_DELAY'] ?? '5s' },
    'drain-window': { type: 'string', default: env['MCPMESH_DRAIN_WINDOW'] ?? '10s' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`usage: npm start -- [--registry FILE] [--registry-max-bytes N] [--routing FILE] [--xds-port N] [--admin-port N]
                           [--xds-host ADDR] [--admin-host ADDR] [--authz-bind ADDR] [--host ADDR (all three)]
                           [--consul ADDR] [--consul-datacenter DC]
                           [--policy FILE] [--public-url URL] [--authz-port N] [--authz-host ADDR-gateways-reach]
                           [--ca-cert FILE --ca-key FILE [--ca-chain FILE]] [--xds-dns-name NAME...]
                           [--k8s-attestation FILE] [--xds-insecure] [--admin-token-file FILE] [--data-dir DIR]
                           [--drain-delay DURATION (5s)] [--drain-window DURATION (10s)]
  With a policy the mesh is secured: the control plane is the mesh CA and serves xDS over TLS; proxies
  authenticate with workload certificates their agents get by CSR (keys never leave the workload), first with a
  join token (mcpmesh join-token) or a Kubernetes ServiceAccount token (--k8s-attestation: service ->
  namespace/serviceaccount map), then by renewal. Workload certificates are signed by the given CA (a root or an
  intermediate; every replica must get the same one), or by a self-signed root made at start (one replica only).
  Binding: xDS on 0.0.0.0 when it is TLS, on 127.0.0.1 when it is plain (no policy, or --xds-insecure: development
  only); admin and the authorizer on 127.0.0.1 unless told. Beyond loopback, the admin port's /debug, join tokens
  and the dev token endpoint need the admin token (MCPMESH_ADMIN_TOKEN or --admin-token-file); /metrics,
  /healthz and /readyz stay open.
  Registry file: read after both ports listen and parsed in a worker thread. One larger than --registry-max-bytes
  (default ${DEFAULT_REGISTRY_MAX_BYTES} = 8MiB; also 512KiB, 16MiB, 1GiB) is refused unread; a refused, unreadable or
  invalid file leaves the process up, unready (/readyz and /debug/sources say why), until the file is fixed.
  --routing FILE tunes services of either source (registry or Consul): mesh-wide defaults and per-service routing,
  outlierDetection, healthCheck, circuitBreakers; watched, bad edits refused. mcpmesh routing explain SERVICE shows
  every knob's value and source (README "Tuning routing").
  SIGTERM (or Ctrl-C) drains: /readyz answers 503 at once, new xDS streams are refused, open ones stay for
  --drain-delay (load balancers stop sending proxies here), then are closed with UNAVAILABLE spread at random
  over --drain-window (proxies reconnect to other replicas, not all at once), then the process exits 0. A
  second signal exits at once.
  Durations: 250ms, 5s, 1m, 0.
  env: MCPMESH_REGISTRY, MCPMESH_REGISTRY_MAX_BYTES, MCPMESH_ROUTING, MCPMESH_XDS_PORT (${DEFAULT_XDS_PORT}), MCPMESH_ADMIN_PORT (${DEFAULT_ADMIN_PORT}), MCPMESH_BIND,
       MCPMESH_XDS_HOST, MCPMESH_ADMIN_HOST, MCPMESH_AUTHZ_BIND, MCPMESH_XDS_INSECURE, MCPMESH_XDS_DNS_NAMES (comma-separated),
       MCPMESH_ADMIN_TOKEN, MCPMESH_ADMIN_TOKEN_FILE, MCPMESH_K8S_ATTESTATION, MCPMESH_POLICY, MCPMESH_PUBLIC_URL,
       KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT (the API server --k8s-attestation asks; set in every pod),
       MCPMESH_AUTHZ_PORT, MCPMESH_AUTHZ_ADVERTISE, MCPMESH_LOG_LEVEL, MCPMESH_DRAIN_DELAY, MCPMESH_DRAIN_WINDOW,
       xDS limits per client (defaults in docs/reliability.md): MCPMESH_XDS_STALL_TIMEOUT (duration),
       MCPMESH_XDS_MAX_STREAMS_PER_CONNECTION, MCPMESH_XDS_MAX_STREAMS_PER_PEER, MCPMESH_XDS_MAX_RESOURCE_NAMES,
       MCPMESH_XDS_MAX_NODE_BYTES,
       MCPMESH_CA_CERT, MCPMESH_CA_KEY, MCPMESH_CA_CHAIN (PEM files),
       MCPMESH_DEV_ISSUER (on|off), MCPMESH_DEV_CLIENT_SECRET, MCPMESH_DEV_ISSUER_URL, MCPMESH_DEV_AUDIENCE,
       MCPMESH_DATA_DIR (where the dev client secret is kept across restarts; default $XDG_STATE_HOME/mcpmesh,
       XDG_STATE_HOME defaulting to ~/.local/state)
       Consul (makes Consul the source): CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL, CONSUL_CACERT,
       CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY, MCPMESH_CONSUL_DATACENTER, MCPMESH_CONSUL_TAG,
       MCPMESH_CONSUL_GATEWAY_SERVICE (whose service-defaults UpstreamConfig tunes how gateways reach services; mcp-gateway)
`);
  process.exit(0);
}

const log = createLogger();
const registryMaxBytes = parseByteSize(values['registry-max-bytes']);
if (registryMaxBytes === undefined) {
  log.error('--registry-max-bytes (MCPMESH_REGISTRY_MAX_BYTES) must be a size such as 8388608, 8MiB or 512KiB', {
    value: values['registry-max-bytes'],
  });
  process.exit(1);
}
const duration = (flag: string, text: string): number => {
  const ms = parseDurationMs(text);
  if (ms === undefined) {
    log.error('bad duration', { flag, value: text, expected: 'e.g. 250ms, 5s, 1m, 0' });
    process.exit(1);
  }
  return ms;
};
const drainDelayMs = duration('--drain-delay', values['drain-delay']);
const drainWindowMs = duration('--drain-window', values['drain-window']);
const adsLimits: Partial<AdsLimits> = {};
{
  const stall = env['MCPMESH_XDS_STALL_TIMEOUT'];
  if (stall) adsLimits.stallTimeoutMs = duration('MCPMESH_XDS_STALL_TIMEOUT', stall);
  const counts = [
    ['MCPMESH_XDS_MAX_STREAMS_PER_CONNECTION', 'maxStreamsPerConnection'],
    ['MCPMESH_XDS_MAX_STREAMS_PER_PEER', 'maxStreamsPerPeer'],
    ['MCPMESH_XDS_MAX_RESOURCE_NAMES', 'maxResourceNames'],
    ['MCPMESH_XDS_MAX_NODE_BYTES', 'maxNodeBytes'],
  ] as const;
  for (const [name, key] of counts) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    if (!/^[1-9]\d*$/.test(v)) {
      log.error('bad xDS limit', { env: name, value: v, expected: 'a positive integer' });
      process.exit(1);
    }
    adsLimits[key] = Number(v);
  }
}
const consulEnv = values.consul ? consulOptionsFromEnv({ ...env, CONSUL_HTTP_ADDR: values.consul }) : undefined;
const consul = consulEnv && values['consul-datacenter'] ? { ...consulEnv, datacenter: values['consul-datacenter'] } : consulEnv;
// The development OAuth issuer: on by default with the embedded registry, opt-in with Consul.
const devIssuerSetting = env['MCPMESH_DEV_ISSUER'] ?? (consul ? 'off' : 'on');
const adminPortChosenAtStart = Number(values['admin-port']) === 0 && !env['MCPMESH_DEV_ISSUER_URL'];
let devSecret: DevSecret | undefined;
let devIssuer: DevIssuer | undefined;
if (devIssuerSetting === 'on') {
  // Kept in the data dir: a token script or MCP client set up with it keeps working after a restart.
  devSecret = devClientSecret(env['MCPMESH_DEV_CLIENT_SECRET'], values['data-dir']);
  if (devSecret.origin.kind === 'ephemeral')
    log.warn('dev client secret not kept: it changes on every restart', { reason: devSecret.origin.reason });
  devIssuer = await DevIssuer.create({
    // With --admin-port 0 the port is known once bound: the URL follows it (a policy cannot name it: see below).
    issuer:
      env['MCPMESH_DEV_ISSUER_URL'] ??
      (adminPortChosenAtStart ? () => `http://127.0.0.1:${cp.adminPort}/oauth` : `http://127.0.0.1:${values['admin-port']}/oauth`),
    audience: env['MCPMESH_DEV_AUDIENCE'] ?? 'mcp-mesh',
    clients: { dev: { secret: devSecret.secret, roles: ['*'] } },
    // The roles of the policy in force (a hot reload included); none without a policy.
    grantableRoles: () => new Set(cp.policy?.roles.map((r) => r.name) ?? []),
  });
}
// A policy file secures the mesh (JWT, MCP authorization, mTLS). A broken one is fatal at start: running
// unsecured when the operator asked for security would be worse than not running.
let security: MeshSecurity | undefined;
let policyText = '';
if (values.policy) {
  try {
    policyText = readFileSync(values.policy, 'utf8');
    security = {
      policy: parsePolicy(policyText, values.policy),
      publicUrl: values['public-url'].replace(/\/$/, ''),
      authz: { host: values['authz-host'], port: Number(values['authz-port']) },
    };
  } catch (err) {
    log.error('policy rejected', { file: values.policy, error: (err as Error).message });
    process.exit(1);
  }
  const mismatch = !devIssuer
    ? undefined
    : adminPortChosenAtStart
      ? devIssuerPortZeroConflict(security.policy.providers)
      : devIssuerMismatch(security.policy.providers, devIssuer.issuer);
  if (mismatch) {
    log.error('policy does not trust the development issuer', { file: values.policy, error: mismatch });
    process.stderr.write(`mcpmesh: ${values.policy}: ${mismatch}\n`);
    process.exit(1);
  }
}
// A provided CA is what lets several replicas issue certificates every proxy trusts.
let ca: CertificateAuthority | undefined;
if (security && (values['ca-cert'] || values['ca-key'])) {
  try {
    if (!values['ca-cert'] || !values['ca-key']) throw new Error('give both --ca-cert and --ca-key (MCPMESH_CA_CERT, MCPMESH_CA_KEY)');
    ca = await CertificateAuthority.fromPem({
      certPem: readFileSync(values['ca-cert'], 'utf8'),
      keyPem: readFileSync(values['ca-key'], 'utf8'),
      ...(values['ca-chain'] ? { chainPem: readFileSync(values['ca-chain'], 'utf8') } : {}),
      trustDomain: security.policy.trustDomain,
    });
    log.info('workload CA loaded', { cert: values['ca-cert'], expires: ca.notAfter.toISOString() });
  } catch (err) {
    log.error('CA rejected', { cert: values['ca-cert'], key: values['ca-key'], error: (err as Error).message });
    process.exit(1);
  }
} else if (values['ca-cert'] || values['ca-key']) {
  log.warn('--ca-cert/--ca-key given without --policy: identities are off, the CA is not used');
}
// Platform attestation: Kubernetes ServiceAccount tokens checked with TokenReview (in-cluster defaults).
const attestors: Attestor[] = [];
if (security && values['k8s-attestation']) {
  try {
    const mapping = parseK8sAttestationMap(readFileSync(values['k8s-attestation'], 'utf8'), values['k8s-attestation']);
    attestors.push(new KubernetesAttestor({ mapping, token: () => readFileSync(IN_CLUSTER_TOKEN_FILE, 'utf8').trim() }));
  } catch (err) {
    log.error('Kubernetes attestation rejected', { file: values['k8s-attestation'], error: (err as Error).message });
    process.exit(1);
  }
}
let adminToken = env['MCPMESH_ADMIN_TOKEN'];
if (values['admin-token-file']) {
  try {
    adminToken = readFileSync(values['admin-token-file'], 'utf8').trim();
  } catch (err) {
    log.error('admin token file unreadable', { file: values['admin-token-file'], error: (err as Error).message });
    process.exit(1);
  }
}
const xdsHost = values['xds-host'] ?? values.host;
const adminHost = values['admin-host'] ?? values.host ?? '127.0.0.1';
let cp: ControlPlane;
try {
  cp = new ControlPlane({
    ...(security
      ? { security, authzHost: values['authz-bind'] ?? values.host ?? '127.0.0.1', authzPort: Number(values['authz-port']) }
      : {}),
    ...(ca ? { ca } : {}),
    registryFile: values.registry,
    registryMaxBytes,
    ...(values.routing ? { routingFile: values.routing } : {}),
    ...(env['MCPMESH_CONSUL_GATEWAY_SERVICE'] ? { consulGatewayService: env['MCPMESH_CONSUL_GATEWAY_SERVICE'] } : {}),
    ...(security && values.policy ? { policyFile: { path: values.policy, text: policyText } } : {}),
    ...(consul ? { consul } : {}),
    ...(devIssuer ? { devIssuer } : {}),
    ...(xdsHost ? { xdsHost } : {}),
    xdsPort: Number(values['xds-port']),
    xdsInsecure: values['xds-insecure'],
    xdsDnsNames: values['xds-dns-name'],
    attestors,
    adminHost,
    ...(adminToken ? { adminToken } : {}),
    adminPort: Number(values['admin-port']),
    adsLimits,
    log,
  });
  await cp.start();
} catch (err) {
  log.error('control plane failed to start', { error: (err as Error).message });
  process.exit(1);
}
const xdsShown = `${xdsHost ?? (security && !values['xds-insecure'] ? '0.0.0.0' : '127.0.0.1')}:${cp.xdsPort}`;
const secureXds = security !== undefined && !values['xds-insecure'];
log.info('control plane listening', {
  xds: xdsShown,
  xds_tls: secureXds,
  admin: `http://${adminHost}:${cp.adminPort}`,
  source: cp.sourceDescription,
});
process.stdout.write(
  `MCP Mesh control plane\n  xDS (ADS, gRPC): ${xdsShown} (${secureXds ? 'mTLS; agents join with mcpmesh join-token' : 'plain, development only'})\n` +
    `  admin:           http://${adminHost === '0.0.0.0' ? '127.0.0.1' : adminHost}:${cp.adminPort}/ (healthz, readyz, metrics, debug/config_dump, debug/proxies)\n` +
    `  source:          ${cp.sourceDescription}\n${security ? `  policy:          ${values.policy} (authorizer + tools/list filter on :${cp.authzPort})\n` : ''}` +
    `  see it:          npx mcpmesh status${cp.adminPort === DEFAULT_ADMIN_PORT && adminHost !== '0.0.0.0' ? '' : ` --admin http://${adminHost === '0.0.0.0' ? '127.0.0.1' : adminHost}:${cp.adminPort}`}   (a whole mesh with Envoy: npm run demo)\n` +
    // Issue 12: the example's endpoints looked checked and healthy while nothing listened on them.
    (!consul && path.resolve(values.registry) === EXAMPLE_REGISTRY
      ? '  example mesh:    the endpoints in deploy/registry.example.yaml are placeholders (nothing listens on them); their health is\n' +
        '                   what the file declares, not checked. Real MCP servers behind Envoy: npm run demo\n'
      : ''),
);
if (devIssuer) {
  process.stdout.write(
    `  dev OAuth:       issuer ${devIssuer.issuer} (token endpoint /oauth/token, JWKS /oauth/jwks)\n` +
      `                   client id "dev", secret ${devSecret?.origin.kind === 'env' ? '(from MCPMESH_DEV_CLIENT_SECRET)' : `${devSecret?.secret} (${devSecret?.origin.kind === 'file' ? `kept in ${devSecret.origin.file}` : 'not kept: changes on restart'})`}\n` +
      `                   MCPMESH_DEV_CLIENT_SECRET=<secret> npm run mcpmesh -- token --role <role>\n`,
  );
}

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) {
      log.warn('second signal: exiting without finishing the drain', { signal: sig });
      process.exit(0);
    }
    stopping = true;
    log.info('shutting down', { signal: sig, drain_delay_ms: drainDelayMs, drain_window_ms: drainWindowMs });
    cp.drain({ delayMs: drainDelayMs, windowMs: drainWindowMs }).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('drain failed', { error: (err as Error).message });
        process.exit(1);
      },
    );
  });
}
