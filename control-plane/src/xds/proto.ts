// Envoy's API protos, loaded once from the copy that ships inside @grpc/grpc-js-xds (deps/) so that
// the control plane encodes and validates with exactly the schema a real xDS client decodes with.
// Anything Envoy documents but grpc-js-xds does not ship goes in the repo's protos/ folder.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

export const TYPE_PREFIX = 'type.googleapis.com/';

export const TYPE_URLS = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

export type ResourceKind = keyof typeof TYPE_URLS;
export type TypeUrl = (typeof TYPE_URLS)[ResourceKind];
/** In push order: secrets and clusters before the listeners and routes that use them (make before break). */
export const RESOURCE_KINDS: readonly ResourceKind[] = ['secret', 'cluster', 'endpoint', 'listener', 'route'];

export function kindOfTypeUrl(typeUrl: string): ResourceKind | undefined {
  return RESOURCE_KINDS.find((k) => TYPE_URLS[k] === typeUrl);
}

// Every proto file whose messages the translators emit (directly or inside an Any).
const ENTRY_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto',
  'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  // MCP session affinity (the envelope session state is in protos/: grpc-js-xds's deps/ predate it).
  'envoy/extensions/filters/http/stateful_session/v3/stateful_session.proto',
  'envoy/extensions/http/stateful_session/envelope/v3/envelope.proto',
  'envoy/config/bootstrap/v3/bootstrap.proto',
  // Security: workload certificates over SDS, JWT at the door, MCP-aware authorization.
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/filters/http/jwt_authn/v3/config.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/ext_proc/v3/external_processor.proto',
  'envoy/service/secret/v3/sds.proto',
  'mcpmesh/identity/v1/identity.proto',
];

function includeDirs(): string[] {
  const xdsPkg = path.dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  const pbPkg = path.dirname(require.resolve('protobufjs/package.json'));
  const deps = path.join(xdsPkg, 'deps');
  return [
    path.resolve(here, '../../../protos'),
    path.join(deps, 'envoy-api'),
    path.join(deps, 'xds'),
    path.join(deps, 'googleapis'),
    path.join(deps, 'protoc-gen-validate'),
    // google/protobuf/descriptor.proto (needed by validate.proto) lives in protobufjs's own folder.
    pbPkg,
  ];
}

let cached: protobuf.Root | undefined;

export function envoyRoot(): protobuf.Root {
  if (cached) return cached;
  const dirs = includeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (path.isAbsolute(target)) return target;
    for (const dir of dirs) {
      const candidate = path.join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(ENTRY_FILES, { keepCase: true });
  root.resolveAll();
  cached = root;
  return root;
}

const types = new Map<string, protobuf.Type>();

/** A message type by full name or type URL (memoized: protobufjs lookups walk the namespace tree). */
export function lookupType(fullName: string): protobuf.Type {
  let t = types.get(fullName);
  if (!t) {
    const name = fullName.startsWith(TYPE_PREFIX) ? fullName.slice(TYPE_PREFIX.length) : fullName;
    t = envoyRoot().lookupType(name);
    types.set(fullName, t);
  }
  return t;
}

export function typeUrlOf(fullName: string): string {
  return TYPE_PREFIX + fullName;
}
