// The Envoy bootstrap for a sidecar: who it is (node id, cluster, locality, metadata role=sidecar),
// where the control plane is (ADS over gRPC), its admin address, and a Prometheus stats listener.
// Written in the translators' object form, validated like any pushed resource, rendered as proto3 JSON.
import { protoDuration } from '../../control-plane/src/model/duration.ts';
import { singleHostCluster } from '../../control-plane/src/translate/clusters.ts';
import { ADS_CONFIG_SOURCE, any, struct, type JsonValue, type ProtoObject } from '../../control-plane/src/translate/resource.ts';
import { toProto3Json } from '../../control-plane/src/xds/json.ts';
import { formatViolations, validateMessage } from '../../control-plane/src/xds/validate.ts';

export const XDS_CLUSTER = 'mcpmesh.xds';
export const ADMIN_CLUSTER = 'envoy.admin';
export const STATS_LISTENER = 'envoy.prometheus';
const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';

export interface BootstrapOptions {
  nodeId: string;
  service: string;
  region?: string;
  zone?: string;
  /** Mesh-facing port of the sidecar (what Consul advertises). */
  inboundPort: number;
  /** The MCP server's port on 127.0.0.1. */
  appPort: number;
  controlPlane: { host: string; port: number };
  adminPort?: number;
  /** Prometheus scrapes http://<pod>:<statsPort>/stats/prometheus. */
  statsPort?: number;
  /** Extra node metadata (e.g. the MCP protocol revision). */
  metadata?: Record<string, string>;
}

function socket(address: string, port: number): ProtoObject {
  return { socket_address: { address, port_value: port } };
}

export function sidecarBootstrap(o: BootstrapOptions): ProtoObject {
  const adminPort = o.adminPort ?? 15000;
  const statsPort = o.statsPort ?? 15090;
  const metadata: Record<string, JsonValue> = {
    ...o.metadata, role: 'sidecar', service: o.service, inbound_port: o.inboundPort, app_port: o.appPort,
  };
  return {
    node: {
      id: o.nodeId,
      cluster: o.service,
      ...(o.region || o.zone ? { locality: { region: o.region ?? '', zone: o.zone ?? '' } } : {}),
      metadata: struct(metadata),
    },
    dynamic_resources: {
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
        set_node_on_first_message_only: true,
      },
      cds_config: ADS_CONFIG_SOURCE,
      lds_config: ADS_CONFIG_SOURCE,
    },
    static_resources: {
      clusters: [
        singleHostCluster(XDS_CLUSTER, o.controlPlane.host, o.controlPlane.port, {
          connectTimeoutMs: 5_000, http2: { connection_keepalive: { interval: protoDuration(30_000), timeout: protoDuration(10_000) } },
        }),
        singleHostCluster(ADMIN_CLUSTER, '127.0.0.1', adminPort, { connectTimeoutMs: 5_000 }),
      ],
      listeners: [{
        name: STATS_LISTENER,
        address: socket('0.0.0.0', statsPort),
        filter_chains: [{
          filters: [{
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: any('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
              stat_prefix: 'prometheus',
              route_config: {
                name: 'prometheus',
                // Only the metrics page is reachable from outside; the rest of the admin API stays on loopback.
                virtual_hosts: [{ name: 'prometheus', domains: ['*'], routes: [{ match: { path: '/stats/prometheus' }, route: { cluster: ADMIN_CLUSTER } }] }],
              },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: any('envoy.extensions.filters.http.router.v3.Router', {}) }],
            }),
          }],
        }],
      }],
    },
    admin: { address: socket('127.0.0.1', adminPort) },
  };
}

/** The bootstrap as Envoy reads it (JSON). Throws naming every field that fails Envoy's rules. */
export function renderBootstrap(o: BootstrapOptions): string {
  const b = sidecarBootstrap(o);
  const violations = validateMessage(BOOTSTRAP, b);
  if (violations.length > 0) throw new Error(`invalid Envoy bootstrap:\n${formatViolations('bootstrap', violations)}`);
  return JSON.stringify(toProto3Json(BOOTSTRAP, b), null, 2) + '\n';
}
