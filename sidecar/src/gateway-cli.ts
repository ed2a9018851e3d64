// `mcpmesh gateway`: runs an ingress gateway Envoy (role=gateway) programmed by the control plane.
//   mcpmesh gateway --name public --control-plane control-plane:18000
//   mcpmesh gateway --policy /etc/mcpmesh/policy.yaml ...   (authorizer + tools/list processor in this agent)
//   mcpmesh gateway --print-bootstrap --bootstrap-out /etc/mcpmesh/envoy.json   (init container)
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger, withFields, type Logger } from '../../control-plane/src/log.ts';
import { DEFAULT_GATEWAY_PORT } from '../../control-plane/src/model/defaults.ts';
import { ArgChecker } from './args.ts';
import { renderBootstrap, writeBootstrap, type GatewayBootstrapOptions } from './bootstrap.ts';
import { EnvoySupervisor, findEnvoy, type Log } from './envoy.ts';
import { XdsRelay } from './xds-relay.ts';
import { AgentIdentity, IDENTITY_OPTIONS, IDENTITY_USAGE, identityFromArgs, type IdentityConfig } from './identity-agent.ts';
import { controlPlaneId } from '../../control-plane/src/identity/serving.ts';
import { LocalAuthz, readPolicyFile, type LocalAuthzConfig } from './local-authz.ts';

const USAGE = `usage: mcpmesh gateway [options]

  --name NAME             gateway name; gateways with one name share one config   [default]
  --id ID                 xDS node id (unique per gateway instance)            [gateway-<name>-<host>]
  --listener-port N       port of the MCP listener                                [${DEFAULT_GATEWAY_PORT}]
  --region R --zone Z     locality (the gateway prefers endpoints in its own locality)
  --control-plane H:P     xDS address                            [$MCPMESH_XDS_ADDR or 127.0.0.1:18000]
  --admin-port N          Envoy admin API, on 127.0.0.1 only                      [15000]
  --stats-port N          /stats/prometheus and /ready for scrapers and probes   [15090]
  --envoy-bin PATH        Envoy binary                                    [$ENVOY_BIN or envoy on PATH]
  --bootstrap-out FILE    where to write the Envoy bootstrap                       [a temp file]
  --print-bootstrap       print the bootstrap (or write it to --bootstrap-out) and exit
  --drain D               Envoy's drain time on shutdown                           [5s]
  --xds-relay ADDR        also serve proxyless gRPC clients on this host a plain xDS relay (127.0.0.1:15010,
                          unix:/path): their streams reach the control plane over mTLS with this identity
  --no-envoy              run only the agent (identity, --xds-relay, --policy): for proxyless gRPC clients, or
                          an Envoy in another container that reads the --print-bootstrap output
  --policy FILE           decide beside Envoy: serve the MCP authorizer and the tools/list processor from this
                          agent with this policy file (the control plane's, mounted here too; watched), so
                          secured requests keep being decided while the control plane is down [$MCPMESH_POLICY]
  --authz-socket PATH     Unix socket they are served on for Envoy     [<tmp>/mcpmesh-authz-<id>.sock]
${IDENTITY_USAGE}  env: MCPMESH_LOG_LEVEL (debug|info|warn|error), and the variables named above
`;

export interface ParsedGateway {
  bootstrap: GatewayBootstrapOptions;
  /** A secured mesh: the gateway's workload identity (its agent makes the key and serves it over SDS). */
  identity?: IdentityConfig;
  bootstrapPath?: string;
  printBootstrap: boolean;
  envoyBin?: string;
  drainSeconds: number;
  /** Serve a plain xDS relay for proxyless gRPC clients here (loopback or a Unix socket). */
  xdsRelay?: string;
  noEnvoy: boolean;
  /** Decide beside Envoy with this policy (parsed and checked here) on this socket. */
  localAuthz?: LocalAuthzConfig;
}

/** Parses and checks `gateway` arguments (without the command word). Throws an Error listing every problem. */
export function parseGatewayArgs(argv: string[], env: NodeJS.ProcessEnv): ParsedGateway {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string', default: 'default' },
      id: { type: 'string' },
      'listener-port': { type: 'string', default: String(DEFAULT_GATEWAY_PORT) },
      region: { type: 'string' },
      zone: { type: 'string' },
      'control-plane': { type: 'string' },
      'admin-port': { type: 'string', default: '15000' },
      'stats-port': { type: 'string', default: '15090' },
      'envoy-bin': { type: 'string' },
      'bootstrap-out': { type: 'string' },
      'print-bootstrap': { type: 'boolean', default: false },
      drain: { type: 'string', default: '5s' },
      'xds-relay': { type: 'string' },
      'no-envoy': { type: 'boolean', default: false },
      policy: { type: 'string' },
      'authz-socket': { type: 'string' },
      ...IDENTITY_OPTIONS,
    },
  });
  const args = new ArgChecker();
  // The same rule as the control plane applies to metadata.gateway_name (xds/node.ts).
  if (!/^[A-Za-z0-9._-]{1,63}$/.test(values.name))
    args.problems.push(`--name: must be 1-63 letters, digits, ".", "_" or "-" (got ${JSON.stringify(values.name)})`);
  if (positionals.length > 0) args.problems.push(`unexpected arguments ${JSON.stringify(positionals)}`);
  const listenerPort = args.port('listener-port', values['listener-port']);
  const adminPort = args.port('admin-port', values['admin-port']);
  const statsPort = args.port('stats-port', values['stats-port']);
  if (new Set([listenerPort, adminPort, statsPort]).size < 3)
    args.problems.push(`--listener-port, --admin-port and --stats-port must differ (got ${listenerPort}, ${adminPort}, ${statsPort})`);
  const controlPlane = args.controlPlane(values['control-plane'], env);
  const drainMs = args.duration('drain', values.drain);
  const nodeId = values.id ?? `gateway-${values.name}-${os.hostname()}`;
  const identity = identityFromArgs(values, env, { role: 'gateway', name: values.name, nodeId }, args.problems);
  const relay = values['xds-relay'];
  if (relay !== undefined && !identity)
    args.problems.push(
      "--xds-relay needs the gateway's identity (--join-token or --k8s-token-file): without one there is nothing to relay with",
    );
  if (relay !== undefined && !/^(unix:\/.+|127\.0\.0\.1:\d+|localhost:\d+|\[::1\]:\d+)$/.test(relay))
    args.problems.push(
      `--xds-relay: a loopback address or a Unix socket (the relay is plain): 127.0.0.1:15010 or unix:/path (got ${JSON.stringify(relay)})`,
    );
  const localAuthz = localAuthzFromArgs(values, env, nodeId, identity, args.problems);
  if (values['no-envoy'] && relay === undefined && !localAuthz)
    args.problems.push('--no-envoy without --xds-relay or --policy: nothing would run');
  args.check('mcpmesh gateway', USAGE);
  const envoyBin = values['no-envoy'] ? undefined : (values['envoy-bin'] ?? findEnvoy(env));
  return {
    bootstrap: {
      kind: 'gateway',
      nodeId,
      gatewayName: values.name,
      listenerPort,
      ...(values.region ? { region: values.region } : {}),
      ...(values.zone ? { zone: values.zone } : {}),
      controlPlane,
      adminPort,
      statsPort,
      ...(identity ? { identity: { sdsSocket: identity.sdsSocket, controlPlaneId: controlPlaneId(identity.trustDomain) } } : {}),
      ...(localAuthz ? { localAuthz: { socket: localAuthz.socket } } : {}),
    },
    ...(identity ? { identity } : {}),
    ...(values['bootstrap-out'] ? { bootstrapPath: values['bootstrap-out'] } : {}),
    printBootstrap: values['print-bootstrap'],
    ...(envoyBin ? { envoyBin } : {}),
    drainSeconds: Math.ceil(drainMs / 1000),
    ...(relay !== undefined ? { xdsRelay: relay } : {}),
    noEnvoy: values['no-envoy'],
    ...(localAuthz ? { localAuthz } : {}),
  };
}

/**
 * `--policy` (or $MCPMESH_POLICY) and `--authz-socket`: the policy is read and checked now, so a broken file is
 * reported with the other argument problems (file, path, reason) before anything starts, as the control plane
 * refuses to start on one. Its trust domain must be the gateway identity's.
 */
function localAuthzFromArgs(
  values: { policy?: string | undefined; 'authz-socket'?: string | undefined },
  env: NodeJS.ProcessEnv,
  nodeId: string,
  identity: IdentityConfig | undefined,
  problems: string[],
): LocalAuthzConfig | undefined {
  const file = values.policy ?? env['MCPMESH_POLICY'];
  if (file === undefined || file === '') {
    if (values['authz-socket'] !== undefined)
      problems.push('--authz-socket without --policy: the agent serves no authorizer without a policy');
    return undefined;
  }
  let read: ReturnType<typeof readPolicyFile>;
  try {
    read = readPolicyFile(file);
  } catch (err) {
    // Indented under the flag: ArgChecker lists one problem per line.
    problems.push(`--policy: ${(err as Error).message.replaceAll('\n', '\n  ')}`);
    return undefined;
  }
  if (identity && read.policy.trustDomain !== identity.trustDomain) {
    problems.push(
      `--policy: ${file}: trustDomain is "${read.policy.trustDomain}", but this gateway's identity is in trust domain "${identity.trustDomain}"`,
    );
  }
  const socket = values['authz-socket'] ?? path.join(os.tmpdir(), `mcpmesh-authz-${nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.sock`);
  return { policyFile: file, policyText: read.text, policy: read.policy, socket };
}

/** A running gateway agent (what `mcpmesh gateway` starts, minus the wait for a signal). */
export interface GatewayAgent {
  /** The agent's own authorizer and processor (with --policy). */
  readonly localAuthz?: LocalAuthz;
  /** Stops Envoy (draining), then the relay, the local authorizer and the identity. */
  stop(): Promise<void>;
}

/**
 * Starts what `parsed` asks for, in the order Envoy needs them: the identity (its bootstrap points at the SDS
 * socket), the local authorizer (its filters' static clusters point at that socket), the xDS relay, Envoy.
 * Tests call it with --no-envoy to run the agent's side without an Envoy binary.
 */
export async function startGatewayAgent(
  parsed: ParsedGateway,
  logger: Logger,
  json = renderBootstrap(parsed.bootstrap),
): Promise<GatewayAgent> {
  const agentLogger = withFields(logger, { gateway: parsed.bootstrap.gatewayName, node: parsed.bootstrap.nodeId });
  const log: Log = (level, msg, fields) => agentLogger[level](msg, fields);
  const bootstrapPath = parsed.bootstrapPath ?? path.join(os.tmpdir(), `mcpmesh-envoy-${parsed.bootstrap.nodeId}.json`);
  const identity = parsed.identity ? new AgentIdentity(parsed.identity, parsed.bootstrap.controlPlane, log) : undefined;
  let localAuthz: LocalAuthz | undefined;
  let relay: XdsRelay | undefined;
  let envoy: EnvoySupervisor | undefined;
  const stop = async (): Promise<void> => {
    if (envoy) {
      log('info', 'stopping envoy (draining)', { seconds: parsed.drainSeconds });
      await envoy.stop();
    }
    await relay?.close();
    await localAuthz?.stop();
    await identity?.stop();
  };
  try {
    await identity?.start();
    if (!identity) log('warn', 'no credential (--join-token or --k8s-token-file): plain xDS, development mode only');
    if (parsed.localAuthz) {
      localAuthz = new LocalAuthz(parsed.localAuthz, { log: agentLogger });
      await localAuthz.start();
    }
    if (parsed.xdsRelay && identity) {
      relay = new XdsRelay({ controlPlane: parsed.bootstrap.controlPlane, identity: () => identity.held, log });
      await relay.listen(parsed.xdsRelay);
      log('info', 'xDS relay for proxyless gRPC clients listening', { address: parsed.xdsRelay, identity: identity.config.spiffeId });
    }
    if (parsed.envoyBin) {
      writeBootstrap(json, bootstrapPath);
      envoy = new EnvoySupervisor({ bin: parsed.envoyBin, bootstrapPath, drainSeconds: parsed.drainSeconds, log });
      envoy.start();
    }
  } catch (err) {
    // Whatever did start (a bound socket, a watcher) must not outlive a failed start.
    await stop().catch(() => {});
    throw err;
  }
  return { ...(localAuthz ? { localAuthz } : {}), stop };
}

export async function gatewayMain(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  let parsed: ParsedGateway;
  let json: string;
  try {
    parsed = parseGatewayArgs(argv, process.env);
    json = renderBootstrap(parsed.bootstrap);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (parsed.printBootstrap) return writeBootstrap(json, parsed.bootstrapPath);
  const logger = createLogger({ component: 'gateway' });
  const log: Log = (level, msg, fields) =>
    logger[level](msg, { gateway: parsed.bootstrap.gatewayName, node: parsed.bootstrap.nodeId, ...fields });
  if (!parsed.envoyBin && !parsed.noEnvoy) {
    // Unlike a sidecar, a gateway is nothing without its proxy: refuse rather than pretend.
    log(
      'error',
      'no Envoy binary: set ENVOY_BIN, put envoy on PATH or pass --envoy-bin (or --print-bootstrap to only write the bootstrap)',
    );
    return 1;
  }
  let agent: GatewayAgent;
  try {
    agent = await startGatewayAgent(parsed, logger, json);
  } catch (err) {
    log('error', 'gateway agent failed to start', { error: (err as Error).message });
    return 1;
  }
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve());
  });
  await agent.stop();
  return 0;
}
