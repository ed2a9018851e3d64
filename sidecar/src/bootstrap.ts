// The Envoy bootstrap for a sidecar or a gateway: who it is (node id, cluster, locality, metadata role),
// where the control plane is (ADS over gRPC), its admin address, and a listener that exposes only the
// admin API's /stats/prometheus and /ready (for Prometheus and Kubernetes probes). A gateway whose agent
// decides beside it (`mcpmesh gateway --policy`) also gets the clusters its ext_authz and ext_proc filters
// name, pointing at the agent's socket, so those requests never need the control plane.
// Written in the translators' object form, validated like any pushed resource, rendered as proto3 JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_GATEWAY_PORT } from '../../control-plane/src/model/defaults.ts';
import { protoDuration } from '../../control-plane/src/model/duration.ts';
import { CIRCUIT_BREAKERS, singleHostCluster } from '../../control-plane/src/translate/clusters.ts';
import { LOCAL_SDS_CLUSTER, localSdsSecretConfig, workloadSecretName } from '../../control-plane/src/identity/sds.ts';
import { AUTHZ_CLUSTER, EXT_PROC_CLUSTER, statName } from '../../control-plane/src/translate/naming.ts';
import { BOOTSTRAP_TRUST_SECRET } from './sds-server.ts';
import { ENVOY_XDS_MAX_RECEIVE_BYTES } from '../../control-plane/src/server/xds-limits.ts';
import { ADS_CONFIG_SOURCE, any, struct, u32, type JsonValue, type ProtoObject } from '../../control-plane/src/translate/resource.ts';
import { toProto3Json } from '../../control-plane/src/xds/json.ts';
import { formatViolations, validateMessage } from '../../control-plane/src/xds/validate.ts';

export const XDS_CLUSTER = 'mcpmesh.xds';
export const ADMIN_CLUSTER = 'envoy.admin';
export const STATS_LISTENER = 'envoy.prometheus';
const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

interface CommonBootstrapOptions {
  nodeId: string;
  region?: string;
  zone?: string;
  controlPlane: { host: string; port: number };
  /** Envoy's admin API, on 127.0.0.1 only. Default 15000. */
  adminPort?: number;
  /** Prometheus scrapes http://<pod>:<statsPort>/stats/prometheus. Default 15090. */
  statsPort?: number;
  /**
   * A secured mesh: the agent's SDS socket (the workload certificate and key, which only the agent holds) and
   * the SPIFFE ID the control plane must present. The xDS channel is then mTLS. Absent: plain xDS (development).
   */
  identity?: { sdsSocket: string; controlPlaneId: string };
}

export interface SidecarBootstrapOptions extends CommonBootstrapOptions {
  kind?: 'sidecar';
  service: string;
  /** Mesh-facing port of the sidecar (what Consul advertises). */
  inboundPort: number;
  /** The MCP server's port on 127.0.0.1. */
  appPort: number;
  /** Extra node metadata (e.g. the MCP protocol revision). */
  metadata?: Record<string, string>;
}

export interface GatewayBootstrapOptions extends CommonBootstrapOptions {
  kind: 'gateway';
  /** Gateways with the same name share one configuration. Default "default". */
  gatewayName?: string;
  /** Port of the gateway's MCP listener. Default DEFAULT_GATEWAY_PORT. */
  listenerPort?: number;
  /**
   * The agent serves the MCP authorizer and the tools/list processor on this Unix socket: the node says
   * `local_authz: true` (the control plane then sends no clusters of those names) and the bootstrap holds them.
   */
  localAuthz?: { socket: string };
}

export type BootstrapOptions = SidecarBootstrapOptions | GatewayBootstrapOptions;

function socket(address: string, port: number): ProtoObject {
  return { socket_address: { address, port_value: port } };
}

/** What the control plane reads from the node (control-plane/src/xds/node.ts): role and placement. */
function nodeIdentity(o: BootstrapOptions): { cluster: string; metadata: Record<string, JsonValue> } {
  if (o.kind === 'gateway') {
    const name = o.gatewayName ?? 'default';
    return {
      cluster: `gateway-${name}`,
      metadata: {
        role: 'gateway',
        gateway_name: name,
        listener_port: o.listenerPort ?? DEFAULT_GATEWAY_PORT,
        ...(o.localAuthz ? { local_authz: true } : {}),
      },
    };
  }
  return {
    cluster: o.service,
    metadata: { ...o.metadata, role: 'sidecar', service: o.service, inbound_port: o.inboundPort, app_port: o.appPort },
  };
}

/** A static gRPC (HTTP/2) cluster to a server of the agent on its Unix socket. */
function agentPipeCluster(name: string, socketPath: string): ProtoObject {
  return {
    name,
    alt_stat_name: statName(name),
    type: 'STATIC',
    connect_timeout: protoDuration(1_000),
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: socketPath } } } }] }] },
    typed_extension_protocol_options: {
      [HTTP_PROTOCOL_OPTIONS]: any(HTTP_PROTOCOL_OPTIONS, { explicit_http_config: { http2_protocol_options: {} } }),
    },
  };
}

/** The static cluster to the agent's SDS server on its Unix socket. */
function localSdsCluster(socketPath: string): ProtoObject {
  return agentPipeCluster(LOCAL_SDS_CLUSTER, socketPath);
}

/**
 * The clusters a local-authz gateway's ext_authz and ext_proc filters name, both to the agent's socket. Two
 * clusters for one server, as from the control plane: an ext_proc stream holds its request for as long as the
 * HTTP stream it watches, and must not take the authorizer's slots. Generous circuit breakers (the mesh's
 * 100,000, past the semantics gate's floor): Envoy's default of 1,024 concurrent requests would cap the gateway.
 */
export function localAuthzClusters(socketPath: string): ProtoObject[] {
  return [AUTHZ_CLUSTER, EXT_PROC_CLUSTER].map((name) => ({ ...agentPipeCluster(name, socketPath), circuit_breakers: CIRCUIT_BREAKERS }));
}

/** mTLS to the control plane: our certificate from the agent, its certificate checked against the agent's roots and its SPIFFE ID. */
function xdsTls(controlPlaneId: string): ProtoObject {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
      common_tls_context: {
        tls_certificate_sds_secret_configs: [localSdsSecretConfig(workloadSecretName())],
        combined_validation_context: {
          default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: controlPlaneId } }] },
          validation_context_sds_secret_config: localSdsSecretConfig(BOOTSTRAP_TRUST_SECRET),
        },
        alpn_protocols: ['h2'],
      },
    }),
  };
}

export function envoyBootstrap(o: BootstrapOptions): ProtoObject {
  const adminPort = o.adminPort ?? 15000;
  const statsPort = o.statsPort ?? 15090;
  const { cluster, metadata } = nodeIdentity(o);
  return {
    node: {
      id: o.nodeId,
      cluster,
      ...(o.region || o.zone ? { locality: { region: o.region ?? '', zone: o.zone ?? '' } } : {}),
      metadata: struct(metadata),
    },
    dynamic_resources: {
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        // Envoy accepts any size unless told; the control plane sends at most this (server/xds-limits.ts).
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER, max_receive_message_length: u32(ENVOY_XDS_MAX_RECEIVE_BYTES) } }],
        set_node_on_first_message_only: true,
      },
      cds_config: ADS_CONFIG_SOURCE,
      lds_config: ADS_CONFIG_SOURCE,
    },
    static_resources: {
      clusters: [
        {
          ...singleHostCluster(XDS_CLUSTER, o.controlPlane.host, o.controlPlane.port, {
            connectTimeoutMs: 5_000,
            http2: { connection_keepalive: { interval: protoDuration(30_000), timeout: protoDuration(10_000) } },
          }),
          ...(o.identity ? { transport_socket: xdsTls(o.identity.controlPlaneId) } : {}),
        },
        singleHostCluster(ADMIN_CLUSTER, '127.0.0.1', adminPort, { connectTimeoutMs: 5_000 }),
        ...(o.identity ? [localSdsCluster(o.identity.sdsSocket)] : []),
        ...(o.kind === 'gateway' && o.localAuthz ? localAuthzClusters(o.localAuthz.socket) : []),
      ],
      listeners: [
        {
          name: STATS_LISTENER,
          address: socket('0.0.0.0', statsPort),
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: any('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
                    stat_prefix: 'prometheus',
                    route_config: {
                      name: 'prometheus',
                      // Only the metrics page and the readiness probe are reachable from outside; the rest of the
                      // admin API (which can change Envoy's state) stays on loopback.
                      virtual_hosts: [
                        {
                          name: 'prometheus',
                          domains: ['*'],
                          routes: ['/stats/prometheus', '/ready'].map((p) => ({ match: { path: p }, route: { cluster: ADMIN_CLUSTER } })),
                        },
                      ],
                    },
                    http_filters: [
                      { name: 'envoy.filters.http.router', typed_config: any('envoy.extensions.filters.http.router.v3.Router', {}) },
                    ],
                  }),
                },
              ],
            },
          ],
        },
      ],
    },
    admin: { address: socket('127.0.0.1', adminPort) },
  };
}

/** The bootstrap as Envoy reads it (JSON). Throws naming every field that fails Envoy's rules. */
export function renderBootstrap(o: BootstrapOptions): string {
  const b = envoyBootstrap(o);
  const violations = validateMessage(BOOTSTRAP, b);
  if (violations.length > 0) throw new Error(`invalid Envoy bootstrap:\n${formatViolations('bootstrap', violations)}`);
  return `${JSON.stringify(toProto3Json(BOOTSTRAP, b), null, 2)}\n`;
}

/** `--print-bootstrap`: to stdout, or to a file (an init container writing a volume the Envoy container reads). */
export function writeBootstrap(json: string, file: string | undefined): number {
  if (file === undefined) {
    process.stdout.write(json);
    return 0;
  }
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, json);
  process.stderr.write(`wrote Envoy bootstrap to ${file}\n`);
  return 0;
}
