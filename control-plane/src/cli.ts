// The `mcpmesh` command: one entry point for operators.
//   mcpmesh sidecar ...          run the sidecar agent beside an MCP server
//   mcpmesh gateway ...          run an ingress gateway Envoy
//   mcpmesh token --role R       get a dev access token from the control plane
//   mcpmesh join-token ...       let one agent get one workload identity
//   mcpmesh status               the mesh as the control plane serves it
//   mcpmesh routing explain SVC  a service's effective routing knobs and where each came from
import { tokenMain } from './auth/token-cli.ts';
import { joinTokenMain } from './identity/join-token-cli.ts';
import { policyExplainMain } from './policy/cli.ts';
import { routingMain } from './routing-cli.ts';
import { statusMain } from './status-cli.ts';
import { main as sidecarMain } from '../../sidecar/src/cli.ts';
import { gatewayMain } from '../../sidecar/src/gateway-cli.ts';
import { isEntryPoint } from './entry.ts';

const USAGE = `usage: mcpmesh <command> [options]
  status     services, endpoints, connected proxies (sent/ACKed/NACKed), source errors, certificates (mcpmesh status --help)
  sidecar    run the sidecar agent beside one MCP server (mcpmesh sidecar --help)
  gateway    run an ingress gateway Envoy programmed by the control plane (mcpmesh gateway --help)
  token      get a development access token (mcpmesh token --help)
  join-token mint a single-use token that lets one agent get one workload identity (mcpmesh join-token --help)
  policy     explain a policy decision (mcpmesh policy explain --help)
  routing    explain a service's effective routing and where each knob came from (mcpmesh routing explain SERVICE)
`;

export async function mcpmesh(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'sidecar':
      return sidecarMain(argv);
    case 'gateway':
      return gatewayMain(rest);
    case 'token':
      return tokenMain(rest);
    case 'join-token':
      return joinTokenMain(rest);
    case 'status':
      return statusMain(rest);
    case 'policy':
      return policyExplainMain(rest);
    case 'routing':
      return routingMain(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`mcpmesh: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

if (isEntryPoint(import.meta.url)) {
  process.exitCode = await mcpmesh(process.argv.slice(2));
}
