// mcpmesh CLI. `mcpmesh sidecar ...` runs the sidecar agent beside one MCP server.
//   node sidecar/src/cli.ts sidecar --service weather --port 7001 --region eu-west --zone a
//   node sidecar/src/cli.ts sidecar --service files --stdio -- npx -y @modelcontextprotocol/server-filesystem /data
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { createLogger } from '../../control-plane/src/log.ts';
import { MCP_PROTOCOLS, MCP_TRANSPORTS, type McpProtocol, type McpTransport } from '../../control-plane/src/model/types.ts';
import { consulOptionsFromEnv } from '../../control-plane/src/sources/consul.ts';
import { defaultAddress, sidecarBootstrapJson, SidecarAgent, type BridgeFactory, type SidecarAgentOptions } from './agent.ts';
import { ArgChecker } from './args.ts';
import { IDENTITY_OPTIONS, IDENTITY_USAGE, identityFromArgs } from './identity-agent.ts';
import { writeBootstrap } from './bootstrap.ts';
import { StdioBridge } from './bridge/stdio-bridge.ts';
import { findEnvoy, type Log } from './envoy.ts';
import { isEntryPoint } from '../../control-plane/src/entry.ts';

const USAGE = `usage: mcpmesh sidecar --service NAME (--port N | --stdio -- COMMAND [ARGS...]) [options]

  --service NAME          MCP service name (DNS label)                           (required)
  --port N                port of the local MCP server on 127.0.0.1               (required unless --stdio)
  --stdio                 spawn COMMAND (after --) and serve it as Streamable HTTP through the bridge
  --mcp-path PATH         MCP endpoint path on the server                         [/mcp]
  --protocol REV          MCP revision: ${MCP_PROTOCOLS.join(' | ')}  [2025-11-25]
  --transport T           ${MCP_TRANSPORTS.join(' | ')}                             [streamable-http]
  --address IP            address other nodes reach this one at                   [first non-loopback IPv4]
  --inbound-port N        Envoy's mesh-facing port                                [15006]
  --region R --zone Z     locality (Consul service meta)
  --tag T                 extra Consul tag (repeatable; the MCP tag, $MCPMESH_CONSUL_TAG or "mcp", is always added)
  --id ID                 Consul service ID                                       [<service>-<host>-<port>]
  --consul ADDR           Consul HTTP address            [$CONSUL_HTTP_ADDR or http://127.0.0.1:8500]
  --token TOKEN           Consul ACL token                                        [$CONSUL_HTTP_TOKEN]
  --datacenter DC         Consul datacenter
  --control-plane H:P     xDS address for the Envoy bootstrap    [$MCPMESH_XDS_ADDR or 127.0.0.1:18000]
  --envoy-bin PATH        Envoy binary                                    [$ENVOY_BIN or envoy on PATH]
  --no-envoy              run without Envoy (advertise the MCP server port directly)
  --external-envoy        Envoy runs beside the agent (another container): write the bootstrap to
                          --bootstrap-out and advertise the inbound port, but do not start Envoy
  --bootstrap-out FILE    where to write the Envoy bootstrap
  --print-bootstrap       print the Envoy bootstrap (or write it to --bootstrap-out) and exit
  --health-port N         serve /healthz (alive) and /readyz (registered, MCP check passing); 0 = off [15020]
  --health-interval D     MCP health check interval                                [10s]
  --drain D               time between failing the check and deregistering on SIGTERM [5s]
${IDENTITY_USAGE}
  env: Consul, as Consul's own CLI reads it: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL, CONSUL_CACERT,
       CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY;
       MCPMESH_CONSUL_DATACENTER (as --datacenter), MCPMESH_CONSUL_TAG (the tag that marks MCP services: the
       control plane's must be the same), MCPMESH_XDS_ADDR, ENVOY_BIN, MCPMESH_LOG_LEVEL (debug|info|warn|error),
       MCPMESH_JOIN_TOKEN, MCPMESH_JOIN_TOKEN_FILE, MCPMESH_K8S_TOKEN_FILE, MCPMESH_TRUST_DOMAIN, MCPMESH_CA_BUNDLE
`;

export interface ParsedSidecar {
  options: Omit<SidecarAgentOptions, 'log'>;
  printBootstrap: boolean;
}

/** Parses and checks `sidecar` arguments. Throws an Error listing every problem. */
export function parseSidecarArgs(argv: string[], env: NodeJS.ProcessEnv): ParsedSidecar {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      service: { type: 'string' },
      port: { type: 'string' },
      stdio: { type: 'boolean', default: false },
      'mcp-path': { type: 'string', default: '/mcp' },
      protocol: { type: 'string', default: '2025-11-25' },
      transport: { type: 'string', default: 'streamable-http' },
      address: { type: 'string' },
      'inbound-port': { type: 'string', default: '15006' },
      region: { type: 'string' },
      zone: { type: 'string' },
      tag: { type: 'string', multiple: true, default: [] },
      id: { type: 'string' },
      consul: { type: 'string' },
      token: { type: 'string' },
      datacenter: { type: 'string' },
      'control-plane': { type: 'string' },
      'envoy-bin': { type: 'string' },
      'no-envoy': { type: 'boolean', default: false },
      'bootstrap-out': { type: 'string' },
      'print-bootstrap': { type: 'boolean', default: false },
      'external-envoy': { type: 'boolean', default: false },
      'health-port': { type: 'string', default: '15020' },
      'health-interval': { type: 'string', default: '10s' },
      drain: { type: 'string', default: '5s' },
      ...IDENTITY_OPTIONS,
    },
  });
  const args = new ArgChecker();
  const problems = args.problems;
  const service = values.service ?? '';
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(service))
    problems.push(`--service: must be a DNS label (got ${JSON.stringify(values.service)})`);
  const stdio = values.stdio ? { command: positionals[0] ?? '', args: positionals.slice(1) } : undefined;
  if (stdio && !stdio.command)
    problems.push('--stdio: give the server command after --, e.g. --stdio -- npx -y @modelcontextprotocol/server-everything');
  if (!stdio && positionals.length > 0)
    problems.push(`unexpected arguments ${JSON.stringify(positionals)} (a stdio command needs --stdio)`);
  const appPort = stdio ? 0 : args.port('port', values.port);
  const inboundPort = args.port('inbound-port', values['inbound-port']);
  if (!(MCP_PROTOCOLS as readonly string[]).includes(values.protocol))
    problems.push(`--protocol: must be one of ${MCP_PROTOCOLS.join(', ')} (got ${JSON.stringify(values.protocol)})`);
  if (!(MCP_TRANSPORTS as readonly string[]).includes(values.transport))
    problems.push(`--transport: must be one of ${MCP_TRANSPORTS.join(', ')} (got ${JSON.stringify(values.transport)})`);
  if (!values['mcp-path'].startsWith('/')) problems.push(`--mcp-path: must start with / (got ${JSON.stringify(values['mcp-path'])})`);
  const address = values.address ?? defaultAddress();
  if (isIP(address) === 0) problems.push(`--address: must be an IP address (got ${JSON.stringify(address)})`);
  const controlPlane = args.controlPlane(values['control-plane'], env);
  const healthIntervalMs = args.duration('health-interval', values['health-interval']);
  const drainMs = args.duration('drain', values.drain);
  const healthPort = values['health-port'] === '0' ? undefined : args.port('health-port', values['health-port']);
  if (values['external-envoy'] && values['no-envoy'])
    problems.push('--external-envoy and --no-envoy contradict each other: is there an Envoy or not?');
  if (values['external-envoy'] && !values['bootstrap-out'])
    problems.push('--external-envoy: give --bootstrap-out FILE on a volume the Envoy container reads');
  if (stdio && values['print-bootstrap'])
    problems.push(
      '--print-bootstrap with --stdio: the bridge port is picked at start; let the agent write the bootstrap (--external-envoy --bootstrap-out FILE)',
    );
  const identity = identityFromArgs(
    values,
    env,
    { role: 'sidecar', name: service, nodeId: `${service}-${values['inbound-port']}` },
    problems,
  );
  args.check('mcpmesh sidecar', USAGE);
  const consulEnv = consulOptionsFromEnv({ ...env, CONSUL_HTTP_ADDR: values.consul ?? env['CONSUL_HTTP_ADDR'] ?? 'http://127.0.0.1:8500' });
  const consul = {
    ...consulEnv,
    address: consulEnv?.address ?? 'http://127.0.0.1:8500',
    ...(values.token ? { token: values.token } : {}),
    ...(values.datacenter ? { datacenter: values.datacenter } : {}),
  };
  const envoyBin = values['no-envoy'] || values['external-envoy'] ? undefined : (values['envoy-bin'] ?? findEnvoy(env));
  return {
    printBootstrap: values['print-bootstrap'],
    options: {
      service,
      appPort,
      inboundPort,
      address,
      mcpPath: values['mcp-path'],
      protocol: values.protocol as McpProtocol,
      transport: values.transport as McpTransport,
      ...(values.region ? { region: values.region } : {}),
      ...(values.zone ? { zone: values.zone } : {}),
      tags: values.tag,
      ...(values.id ? { serviceId: values.id } : {}),
      consul,
      controlPlane,
      healthIntervalMs,
      drainMs,
      ...(values['bootstrap-out'] ? { bootstrapPath: values['bootstrap-out'] } : {}),
      ...(envoyBin ? { envoyBin } : {}),
      ...(values['external-envoy'] ? { externalEnvoy: true } : {}),
      ...(healthPort !== undefined ? { healthPort } : {}),
      ...(stdio ? { stdio } : {}),
      ...(identity ? { identity } : {}),
    },
  };
}

const bridgeFactory: BridgeFactory = (o) => new StdioBridge(o);

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== 'sidecar' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE);
    return cmd === 'sidecar' || cmd === '--help' || cmd === '-h' ? 0 : 2;
  }
  let parsed: ParsedSidecar;
  try {
    parsed = parseSidecarArgs(rest, process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const o = parsed.options;
  // The agent's own bootstrap function: an init container's bootstrap matches the running agent's node id.
  if (parsed.printBootstrap) return writeBootstrap(sidecarBootstrapJson(o, o.appPort), o.bootstrapPath);
  const logger = createLogger({ component: 'sidecar-agent' });
  const log: Log = (level, msg, fields) => logger[level](msg, { service: o.service, ...fields });
  const agent = new SidecarAgent({ ...o, log }, o.stdio ? bridgeFactory : undefined);
  await agent.start();
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve());
  });
  await agent.stop();
  return 0;
}

if (isEntryPoint(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
