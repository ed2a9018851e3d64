// One proxy's xDS snapshot as a self-contained Envoy v3 Bootstrap (static_resources only), so that a real
// Envoy can load exactly what the control plane would push, with no control plane running:
// `envoy --mode validate -c <file>` then checks every listener, route, cluster and secret the way Envoy
// checks them when they arrive over ADS (test/envoy/validate.test.ts).
//
// Input: the snapshot in the shape `snapshotToJson` gives (control-plane/src/server/admin.ts, also what
// /debug/config_dump serves): per resource kind, each resource DECODED BACK FROM THE BYTES THAT ARE PUSHED.
// That form is the faithful one: it is exactly what Envoy parses (fields the encoder drops are gone, default
// scalars are omitted the way the wire omits them), and it is also what the golden files hold. The
// translators' own objects (`proxyResources(...)`) are the input to that encoding, one step further away.
//
// Transformations, each because a static bootstrap has no xDS server to ask:
//
// 1. Listeners: each HttpConnectionManager's `rds` (route table fetched over ADS) becomes `route_config`, the
//    RouteConfiguration of that name from the snapshot, inline. Same routes, no subscription.
// 2. API listeners (`api_listener`: what proxyless gRPC clients get) are left out: Envoy refuses them over
//    LDS, allows at most one in a bootstrap, and they are not meant for Envoy at all. Route tables that only
//    they use are left out with them (a bootstrap has no place for a route table no listener names).
//    Both are listed in `skipped`, with the reason.
// 3. Clusters of `type: EDS` become STATIC when every endpoint address is an IP, else STRICT_DNS (a STATIC
//    cluster cannot hold a host name; STRICT_DNS resolves names and accepts IP literals too). The
//    ClusterLoadAssignment the cluster's `eds_cluster_config.service_name` (or its own name) names is inlined
//    as `load_assignment` with `cluster_name` set to the cluster's name, and `eds_cluster_config` is dropped
//    (`type` and the EDS config only make sense together). Priorities, localities, weights, health status
//    and endpoint metadata are kept as pushed.
// 4. Secrets (SDS) go into `static_resources.secrets`. Every SdsSecretConfig that names one of them loses its
//    `sds_config`: Envoy resolves an SdsSecretConfig with a name and no config source from the static
//    secrets (secret.proto: "When only name is specified, then secret will be loaded from static
//    resources"); with the `ads` config source left in, Envoy would look for an ADS stream the bootstrap
//    does not have.
// 4b. Clusters the proxy's own ADS bootstrap holds and no snapshot does (a local-authz gateway's authorizer and
//    tools/list clusters, to its agent's socket: sidecar/src/bootstrap.ts) are added as they are there. One
//    that a snapshot cluster also names is an error: Envoy does not let CDS replace a static cluster.
// 5. `admin` on 127.0.0.1:0 (any free port; `--mode validate` binds nothing anyway) and a `node` (id, cluster,
//    locality): some filters and stats want a node identity.
// 6. Anything that still subscribes over ADS afterwards is an error (StaticBootstrapError naming the field):
//    a resource kind this file does not know how to inline must not slip through as a dangling subscription.
//
// The result is in the translators' protobufjs object form, so the project's own validator checks it
// (`validateMessage('envoy.config.bootstrap.v3.Bootstrap', bootstrap)`); `renderStaticBootstrap` turns it
// into the proto3 JSON Envoy reads.
import { readdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { parse, stringify } from 'yaml';
import { buildSnapshot, ResourceEncoder } from '../../control-plane/src/cache/snapshot.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { MeshSecurity, TrustBundle } from '../../control-plane/src/model/types.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { snapshotToJson } from '../../control-plane/src/server/admin.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { proxyResources } from '../../control-plane/src/translate/proxy.ts';
import { struct } from '../../control-plane/src/translate/resource.ts';
import { toProto3Json } from '../../control-plane/src/xds/json.ts';
import { proxyInfoFromNode, snapshotKey } from '../../control-plane/src/xds/node.ts';
import { localAuthzClusters } from '../../sidecar/src/bootstrap.ts';
import { lookupType, TYPE_PREFIX, type ResourceKind } from '../../control-plane/src/xds/proto.ts';

export type Obj = Record<string, unknown>;

/** One proxy's resources as `snapshotToJson` gives them: per kind, name + the resource decoded from the pushed bytes. */
export type SnapshotJson = Partial<Record<ResourceKind, ReadonlyArray<{ readonly name: string; readonly resource: Obj }>>>;

export interface StaticBootstrapOptions {
  readonly node: { readonly id: string; readonly cluster: string; readonly locality?: { readonly region: string; readonly zone: string } };
  /** Envoy's admin port on 127.0.0.1. Default 0 (any). */
  readonly adminPort?: number;
  /**
   * Secrets the proxy's agent serves on its local SDS socket (the workload certificate and key), which no
   * snapshot holds: made static too, and the references to them resolved by name.
   */
  readonly agentSecrets?: readonly Obj[];
  /** Static clusters of the proxy's own bootstrap that no snapshot holds (see 4b). */
  readonly agentClusters?: readonly Obj[];
}

export interface SkippedResource {
  readonly kind: ResourceKind;
  readonly name: string;
  readonly reason: string;
}

export interface StaticBootstrap {
  /** envoy.config.bootstrap.v3.Bootstrap in protobufjs object form (what validateMessage and toProto3Json take). */
  readonly bootstrap: Obj;
  /** What a static Envoy bootstrap cannot or need not carry, with the reason. */
  readonly skipped: readonly SkippedResource[];
}

export class StaticBootstrapError extends Error {
  override name = 'StaticBootstrapError';
}

export const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';
export const HCM_TYPE = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const LISTENER_TYPE = 'envoy.config.listener.v3.Listener';
const CLUSTER_TYPE = 'envoy.config.cluster.v3.Cluster';
const SDS_SECRET_CONFIG_TYPE = 'envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig';
const CONFIG_SOURCE_TYPE = 'envoy.config.core.v3.ConfigSource';

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);

export type MessageVisitor = (typeName: string, message: Obj, path: string) => void;

/**
 * Calls `visit` on every message inside `value` (a message of `typeName`, protobufjs object form), parents
 * before children, following each Any into the type its `@type` names. The visitor may rewrite the message
 * it is given: children are read after it returns. Well-known google.protobuf types (Struct, Duration,
 * wrappers) are not entered: no Envoy config lives inside them.
 */
export function walkMessages(typeName: string, value: Obj, visit: MessageVisitor, at = ''): void {
  walk(lookupType(typeName), value, visit, at);
}

function walk(type: protobuf.Type, value: Obj, visit: MessageVisitor, at: string): void {
  const name = type.fullName.slice(1);
  if (name === 'google.protobuf.Any') {
    const url = value['@type'];
    if (typeof url === 'string' && url.startsWith(TYPE_PREFIX))
      walk(lookupType(url), value, visit, `${at}<${url.slice(TYPE_PREFIX.length)}>`);
    return;
  }
  if (name.startsWith('google.protobuf.')) return;
  visit(name, value, at);
  for (const key of Object.keys(value)) {
    const field = type.fields[key];
    const rt = field?.resolvedType;
    if (!field || !(rt instanceof protobuf.Type)) continue;
    const v = value[key];
    const p = at ? `${at}.${key}` : key;
    if (field.map) {
      if (isObj(v)) for (const [k, item] of Object.entries(v)) if (isObj(item)) walk(rt, item, visit, `${p}[${JSON.stringify(k)}]`);
    } else if (field.repeated) {
      if (Array.isArray(v))
        v.forEach((item, i) => {
          if (isObj(item)) walk(rt, item, visit, `${p}[${i}]`);
        });
    } else if (isObj(v)) {
      walk(rt, v, visit, p);
    }
  }
}

/** Every socket address host of a ClusterLoadAssignment. */
function endpointHosts(cla: Obj): string[] {
  const hosts: string[] = [];
  for (const locality of (cla['endpoints'] as Obj[] | undefined) ?? []) {
    for (const lbe of (locality['lb_endpoints'] as Obj[] | undefined) ?? []) {
      const sa = ((lbe['endpoint'] as Obj | undefined)?.['address'] as Obj | undefined)?.['socket_address'] as Obj | undefined;
      if (sa && typeof sa['address'] === 'string') hosts.push(sa['address']);
    }
  }
  return hosts;
}

/** Route tables a listener's connection managers fetch over RDS (an API listener's HCM is in an Any: followed too). */
function rdsNames(listener: Obj): string[] {
  const names: string[] = [];
  walkMessages(LISTENER_TYPE, listener, (type, msg) => {
    if (type === HCM_TYPE && isObj(msg['rds'])) names.push(String(msg['rds']['route_config_name'] ?? ''));
  });
  return names;
}

/** One proxy's snapshot -> an Envoy Bootstrap with everything static. Pure; throws StaticBootstrapError. */
export function staticBootstrap(snapshot: SnapshotJson, opts: StaticBootstrapOptions): StaticBootstrap {
  const byName = (kind: ResourceKind): Map<string, Obj> => {
    const m = new Map<string, Obj>();
    for (const r of snapshot[kind] ?? []) {
      if (m.has(r.name)) throw new StaticBootstrapError(`two ${kind} resources are named "${r.name}"`);
      m.set(r.name, r.resource);
    }
    return m;
  };
  const routes = byName('route');
  const endpoints = byName('endpoint');
  const secrets = byName('secret');
  const skipped: SkippedResource[] = [];

  // 1 + 2: listeners, with their route tables inline; API listeners left out.
  const usedRoutes = new Set<string>();
  const apiRoutes = new Set<string>();
  const listeners: Obj[] = [];
  for (const [name, resource] of byName('listener')) {
    if (resource['api_listener'] !== undefined) {
      for (const r of rdsNames(resource)) apiRoutes.add(r);
      skipped.push({
        kind: 'listener',
        name,
        reason: 'API listener (proxyless gRPC): Envoy does not take API listeners over LDS and at most one in a bootstrap',
      });
      continue;
    }
    const listener = clone(resource);
    walkMessages(LISTENER_TYPE, listener, (type, msg, at) => {
      if (type !== HCM_TYPE || !isObj(msg['rds'])) return;
      const routeName = String(msg['rds']['route_config_name'] ?? '');
      const table = routes.get(routeName);
      if (!table)
        throw new StaticBootstrapError(`listener "${name}": ${at}.rds names route configuration "${routeName}", which the snapshot lacks`);
      delete msg['rds'];
      msg['route_config'] = clone(table);
      usedRoutes.add(routeName);
    });
    listeners.push(listener);
  }
  for (const name of routes.keys()) {
    if (usedRoutes.has(name)) continue;
    skipped.push({
      kind: 'route',
      name,
      reason: apiRoutes.has(name) ? 'route table of an API listener only (left out with it)' : 'no listener names it',
    });
  }

  // 3: EDS clusters become STATIC / STRICT_DNS with their endpoints inline.
  const usedEndpoints = new Set<string>();
  const clusters: Obj[] = [];
  for (const [name, resource] of byName('cluster')) {
    const cluster = clone(resource);
    if (cluster['type'] === 'EDS') {
      const eds = isObj(cluster['eds_cluster_config']) ? cluster['eds_cluster_config'] : {};
      const edsName = typeof eds['service_name'] === 'string' && eds['service_name'] !== '' ? eds['service_name'] : name;
      const cla = endpoints.get(edsName);
      if (!cla)
        throw new StaticBootstrapError(`cluster "${name}": eds_cluster_config names endpoints "${edsName}", which the snapshot lacks`);
      usedEndpoints.add(edsName);
      delete cluster['eds_cluster_config'];
      cluster['type'] = endpointHosts(cla).every((h) => isIP(h) !== 0) ? 'STATIC' : 'STRICT_DNS';
      cluster['load_assignment'] = { ...clone(cla), cluster_name: name };
    }
    clusters.push(cluster);
  }
  for (const name of endpoints.keys()) {
    if (!usedEndpoints.has(name)) skipped.push({ kind: 'endpoint', name, reason: 'no EDS cluster names it' });
  }

  // 4: secrets static; references to them resolved by name.
  const agentSecrets = new Map((opts.agentSecrets ?? []).map((s) => [String(s['name']), s]));
  const staticSecrets = [...secrets.values(), ...agentSecrets.values()].map((s) => clone(s));
  const resolveSecrets =
    (type: string, what: string) =>
    (root: Obj): void =>
      walkMessages(type, root, (t, msg, at) => {
        if (t !== SDS_SECRET_CONFIG_TYPE) return;
        const secret = String(msg['name'] ?? '');
        const source = msg['sds_config'];
        if (secrets.has(secret) || agentSecrets.has(secret)) delete msg['sds_config'];
        else {
          // Dangling: over ADS the snapshot should hold it; from the agent's SDS socket (which a static bootstrap
          // has no cluster for), agentSecrets should.
          const fromAgent = isObj(source) && isObj(source['api_config_source']);
          throw new StaticBootstrapError(
            `${what} "${String(root['name'])}": ${at} names secret "${secret}", which ${fromAgent ? "the proxy's agent serves: pass it as agentSecrets" : 'the snapshot lacks'}`,
          );
        }
      });
  listeners.forEach(resolveSecrets(LISTENER_TYPE, 'listener'));
  clusters.forEach(resolveSecrets(CLUSTER_TYPE, 'cluster'));

  // 4b
  for (const c of opts.agentClusters ?? []) {
    const name = String(c['name']);
    if (clusters.some((x) => x['name'] === name))
      throw new StaticBootstrapError(
        `cluster "${name}" is in the proxy's bootstrap and in the snapshot: Envoy would not let CDS replace the static one`,
      );
    clusters.push(clone(c));
  }

  // 5
  const bootstrap: Obj = {
    node: { id: opts.node.id, cluster: opts.node.cluster, ...(opts.node.locality ? { locality: { ...opts.node.locality } } : {}) },
    static_resources: { listeners, clusters, secrets: staticSecrets },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: opts.adminPort ?? 0 } } },
  };

  // 6: nothing may still ask the (absent) ADS stream for anything.
  const dangling: string[] = [];
  walkMessages(BOOTSTRAP_TYPE, bootstrap, (t, msg, at) => {
    if (t === CONFIG_SOURCE_TYPE && msg['ads'] !== undefined) dangling.push(at);
  });
  if (dangling.length > 0)
    throw new StaticBootstrapError(`still subscribed over ADS, which a static bootstrap does not have:\n  ${dangling.join('\n  ')}`);
  return { bootstrap, skipped };
}

const WRAPPER_DEFAULTS: Readonly<Record<string, unknown>> = {
  '.google.protobuf.DoubleValue': 0,
  '.google.protobuf.FloatValue': 0,
  '.google.protobuf.Int32Value': 0,
  '.google.protobuf.UInt32Value': 0,
  '.google.protobuf.Int64Value': '0',
  '.google.protobuf.UInt64Value': '0',
  '.google.protobuf.BoolValue': false,
  '.google.protobuf.StringValue': '',
  '.google.protobuf.BytesValue': '',
};

/**
 * Writes the default back into wrapper messages whose value the wire omitted. Decoding pushed bytes turns
 * `enforcing_success_rate: {value: 0}` into `{}` (a present wrapper holding the default); proto3 JSON must
 * say `0` for it, but control-plane/src/xds/json.ts (written for the translators' objects, which always spell
 * the value out) would render `{}` as an absent field, and Envoy would apply the field's own default
 * instead (100 for enforcing_success_rate). Returns a copy.
 */
export function withWrapperDefaults(typeName: string, value: Obj): Obj {
  const copy = clone(value);
  walkMessages(typeName, copy, (t, msg) => {
    const type = lookupType(t);
    for (const [key, v] of Object.entries(msg)) {
      const field = type.fields[key];
      const rt = field?.resolvedType;
      if (!field || !(rt instanceof protobuf.Type)) continue;
      const def = WRAPPER_DEFAULTS[rt.fullName];
      if (def === undefined) continue;
      const items = field.map && isObj(v) ? Object.values(v) : field.repeated && Array.isArray(v) ? v : [v];
      for (const item of items) if (isObj(item) && !('value' in item)) item['value'] = def;
    }
  });
  return copy;
}

/** The bootstrap as the proto3 JSON Envoy reads (`envoy -c file.json`). */
export function renderStaticBootstrap(bootstrap: Obj): string {
  return `${JSON.stringify(toProto3Json(BOOTSTRAP_TYPE, withWrapperDefaults(BOOTSTRAP_TYPE, bootstrap)), null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------------------------
// The golden cases (test/golden/cases/*.in.yaml) as input, built the way test/golden/golden.test.ts builds
// them: registry -> mesh -> proxyResources -> buildSnapshot (validate + encode) -> snapshotToJson (decode).

const casesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../golden/cases');

interface CaseFile {
  node: {
    id: string;
    user_agent_name?: string;
    locality?: { region: string; zone: string };
    metadata?: Record<string, string | number | boolean>;
  };
  registry: unknown;
  security?: MeshSecurity;
  trust?: TrustBundle;
}

export interface GoldenCase {
  readonly name: string;
  readonly node: CaseFile['node'];
  /** The case's own (placeholder) trust bundle, if the mesh is secured. */
  readonly trust?: TrustBundle;
  readonly trustDomain?: string;
  /** The SPIFFE ID the proxy's agent would hold (secured cases). */
  readonly workloadId?: string;
  /** The proxy's snapshot; `trust` replaces the case's own (e.g. a real bundle for a real Envoy). */
  snapshot(trust?: TrustBundle): SnapshotJson;
  /** Options for staticBootstrap: the case's node id and locality. */
  readonly options: StaticBootstrapOptions;
}

export function goldenCases(): GoldenCase[] {
  return readdirSync(casesDir)
    .filter((f) => f.endsWith('.in.yaml'))
    .sort()
    .map((file): GoldenCase => {
      const name = file.replace(/\.in\.yaml$/, '');
      const c = parse(readFileSync(path.join(casesDir, file), 'utf8')) as CaseFile;
      const proxy = proxyInfoFromNode({
        id: c.node.id,
        ...(c.node.user_agent_name ? { user_agent_name: c.node.user_agent_name } : {}),
        locality: c.node.locality ?? null,
        metadata: struct(c.node.metadata ?? {}) as never,
      });
      const td = c.security?.policy.trustDomain;
      const workloadId =
        td && c.trust
          ? proxy.role === 'sidecar'
            ? sidecarId(td, proxy.service ?? '')
            : gatewayId(td, proxy.gatewayName ?? 'default')
          : undefined;
      return {
        name,
        node: c.node,
        ...(c.trust ? { trust: c.trust } : {}),
        ...(td ? { trustDomain: td } : {}),
        ...(workloadId ? { workloadId } : {}),
        options: {
          node: { id: c.node.id, cluster: `mcpmesh-static-${name}`, ...(c.node.locality ? { locality: c.node.locality } : {}) },
          // What the gateway agent's bootstrap adds for a local-authz gateway (the socket is not opened by validate).
          ...(proxy.localAuthz ? { agentClusters: localAuthzClusters('/run/mcpmesh/authz.sock') } : {}),
        },
        snapshot(trust?: TrustBundle): SnapshotJson {
          const { mesh } = new MeshBuilder().build(parseRegistry(stringify(c.registry), file), c.security);
          const snap = buildSnapshot(snapshotKey(proxy), proxyResources(mesh, proxy, trust ?? c.trust), new ResourceEncoder());
          return snapshotToJson(snap) as SnapshotJson;
        },
      };
    });
}
