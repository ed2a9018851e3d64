// The console's view of the mesh: one plain JSON document built from what the control plane already holds
// (the published mesh, the proxy tracker, the policy in force, metric samples). Pure and deterministic
// (sorted), so the page never guesses and the tests can read the same document the browser renders.
//
// Key material. Nothing here is copied from a Snapshot, a Secret or a token: the inputs are the mesh model
// (addresses, localities, health), the tracker's versions and NACK texts, the policy's rules, and
// certificate *expiry dates*. The types below have no field that could carry a key, token or client secret.
import type { Locality, Mesh, MeshService } from '../model/types.ts';
import { nonDefaultKnobs, showProvenance, type KnobExplanation } from '../model/tuning.ts';
import type { ProxyStatus } from '../server/proxies.ts';
import { healthOrigin, healthText } from '../server/status.ts';
import type { ResourceKind } from '../xds/proto.ts';
import { RESOURCE_KINDS } from '../xds/proto.ts';
import { loadAssignment } from '../translate/endpoints.ts';
import { compilePolicy, decide, servicePolicyOf, type CompiledRule } from '../policy/engine.ts';
import type { McpAction, Policy } from '../policy/types.ts';
import { gatewayId, sidecarId } from '../identity/spiffe.ts';

export interface EndpointView {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** From the source (registry flag, Consul checks): false means the endpoint gets no traffic. */
  readonly healthy: boolean;
  /**
   * On unhealthy endpoints (the page shows them one by one): who said so, as `mcpmesh status` prints it
   * ("UNHEALTHY (consul checks: critical)"). Healthy ones share ServiceView.healthFrom: 10,000 copies of
   * "healthy (registry default, not checked)" would be a third of the document.
   */
  readonly health?: string;
}

export interface LocalityView {
  readonly region: string;
  readonly zone: string;
  /** Priority a proxy at the vantage locality gets for this locality (0 = tried first), from the EDS translator. */
  readonly priority: number;
  readonly endpoints: readonly EndpointView[];
}

export interface ServiceView {
  readonly name: string;
  readonly protocol: string;
  readonly transport: string;
  readonly incarnation: number;
  readonly hosts: readonly string[];
  readonly healthy: number;
  readonly unhealthy: number;
  /** Who said so, distinct and sorted ("declared in registry, not checked", "consul checks: passing"). */
  readonly healthFrom: readonly string[];
  readonly localities: readonly LocalityView[];
  /** The service's own connected sidecars (every connected gateway routes to every service: ConsoleState.gateways). */
  readonly sidecars: readonly string[];
  /** Routing knobs whose value is not the built-in one, with their source; every knob: /ui/api/routing?service=. */
  readonly routing: readonly KnobView[];
}

/** One routing knob as /debug/routing explains it, with its source as `mcpmesh routing explain` prints it. */
export interface KnobView {
  readonly knob: string;
  readonly shown: string;
  readonly source: string;
}

export const knobView = (k: KnobExplanation): KnobView => ({ knob: k.knob, shown: k.shown, source: showProvenance(k.from) });

export interface TypeView {
  readonly type: ResourceKind;
  readonly sent?: string;
  readonly acked?: string;
  readonly nacked?: string;
  /** The proxy's error_detail text for its last NACK of this type. */
  readonly lastNack?: string;
  readonly nacks: number;
  /** Sent but neither ACKed nor NACKed yet. */
  readonly pending: boolean;
}

export interface ProxyView {
  readonly id: string;
  readonly role: string;
  readonly mode: string;
  readonly proxyless: boolean;
  readonly locality: Locality | null;
  readonly service: string | null;
  /** The SPIFFE identity the mesh gives this proxy (its certificate must say so when xDS is mTLS); null without a policy. */
  readonly identity: string | null;
  readonly connectedAt: string;
  /** Last time a response to it was answered (ACK or NACK), or when one is still pending, when it was sent. */
  readonly lastPushAt: string | null;
  readonly status: 'converged' | 'pending' | 'nacked';
  readonly types: readonly TypeView[];
}

export type CellOutcome = 'allow' | 'deny' | 'shadow';

export interface PolicyColumn {
  readonly kind: 'service' | 'tool' | 'resource' | 'prompt';
  /** The name or pattern as the policy writes it; a pattern is evaluated as that literal text. */
  readonly name: string;
  readonly pattern: boolean;
}

export interface PolicyCell {
  readonly outcome: CellOutcome;
  readonly rule: string;
}

/**
 * One matrix, shared by every service it applies to: services covered by the same rules, with the same mode,
 * required scopes and protocol, get the same decisions (1,000 services behind `service: "*"` are one table).
 */
export interface PolicyGroupView {
  /** Sorted; the first names the group on the page and in explain links. */
  readonly services: readonly string[];
  /** MCP revision of the services in the mesh ('' for services the policy names that are not in the mesh). */
  readonly protocol: string;
  readonly mode: string;
  readonly requiredScopes: readonly string[];
  readonly columns: readonly PolicyColumn[];
  /** cells[roleIndex][columnIndex]. */
  readonly cells: readonly (readonly PolicyCell[])[];
}

export interface PolicyView {
  readonly roleClaim: string;
  readonly roles: readonly string[];
  readonly groups: readonly PolicyGroupView[];
}

/** A count of authorizer decisions: by rule (mcpmesh_authz_rule_decisions_total) or by tool (mcpmesh_authz_decisions_total). */
export interface DecisionRow {
  readonly service: string;
  /** The deciding rule, or the tool (`other` for tools the policy does not name literally, '' for other methods). */
  readonly by: string;
  readonly decision: string;
  readonly total: number;
  /** Counted during the last minute (from samples of the counter). */
  readonly recent: number;
}

export interface SeriesPoint {
  readonly at: string;
  /** Changes that converged in this interval, and their mean time to the last ACK. */
  readonly rounds: number;
  readonly meanMs: number | null;
}

export interface HealthView {
  readonly ready: boolean;
  readonly source: string;
  readonly sources: readonly { readonly name: string; readonly error: string | null }[];
  readonly snapshots: {
    readonly builds: number;
    readonly rejected: number;
    readonly meanMs: number | null;
    readonly lastMs: number | null;
    readonly keys: number;
  };
  readonly certificates: readonly { readonly identity: string; readonly notAfter: string }[];
  readonly ca: { readonly notAfter: string } | null;
}

export interface ConsoleState {
  readonly generatedAt: string;
  /** The locality the priorities are computed for ("as a gateway in region/zone sees them"). */
  readonly vantage: Locality | null;
  /** Every locality known from endpoints and proxies, as "region/zone", sorted. */
  readonly localities: readonly string[];
  readonly services: readonly ServiceView[];
  /** Connected gateways: each routes to every service. */
  readonly gateways: readonly string[];
  readonly proxies: readonly ProxyView[];
  readonly policy: PolicyView | null;
  readonly decisions: { readonly byRule: readonly DecisionRow[]; readonly byTool: readonly DecisionRow[] };
  readonly convergence: readonly SeriesPoint[];
  readonly health: HealthView;
  /** Why endpoints never show as ejected: say it on the page rather than show a column that is always empty. */
  readonly notes: readonly string[];
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const localityKey = (l: Locality): string => `${l.region}/${l.zone}`;

export function parseLocality(s: string | null | undefined): Locality | undefined {
  if (!s) return undefined;
  const i = s.indexOf('/');
  return i < 0 ? { region: s, zone: '' } : { region: s.slice(0, i), zone: s.slice(i + 1) };
}

/** Priorities from the EDS translator itself, so the page shows what a proxy at `vantage` is sent. */
function localitiesOf(svc: MeshService, vantage: Locality | undefined): LocalityView[] {
  const cla = loadAssignment(svc, vantage).body as { endpoints: Array<{ locality: Locality; priority: number }> };
  const priority = new Map(cla.endpoints.map((l) => [localityKey(l.locality), l.priority]));
  const groups = new Map<string, { locality: Locality; eps: EndpointView[] }>();
  for (const ep of svc.endpoints) {
    const key = localityKey(ep.locality);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { locality: ep.locality, eps: [] }));
    g.eps.push({
      address: ep.address,
      port: ep.port,
      weight: ep.weight,
      healthy: ep.healthy,
      ...(ep.healthy ? {} : { health: healthText(ep) }),
    });
  }
  return [...groups.entries()]
    .map(([key, g]) => ({ region: g.locality.region, zone: g.locality.zone, priority: priority.get(key) ?? 0, endpoints: g.eps }))
    .sort((a, b) => a.priority - b.priority || byString(localityKey(a), localityKey(b)));
}

/** `routing`: every published service's knobs (RoutingLayers.services(), what /debug/routing serves). */
export function servicesView(
  mesh: Mesh | undefined,
  proxies: readonly ProxyStatus[],
  vantage: Locality | undefined,
  routing: Readonly<Record<string, readonly KnobExplanation[]>> = {},
): ServiceView[] {
  if (!mesh) return [];
  const sidecars = new Map<string, string[]>();
  for (const p of proxies) {
    if (p.proxy.role !== 'sidecar' || !p.proxy.service) continue;
    const l = sidecars.get(p.proxy.service) ?? [];
    l.push(p.proxy.id);
    sidecars.set(p.proxy.service, l);
  }
  return mesh.services.map((svc) => {
    const healthy = svc.endpoints.filter((e) => e.healthy).length;
    return {
      name: svc.name,
      protocol: svc.protocol,
      transport: svc.transport,
      incarnation: svc.incarnation,
      hosts: svc.routing.hosts,
      healthy,
      unhealthy: svc.endpoints.length - healthy,
      healthFrom: [...new Set(svc.endpoints.map((e) => healthOrigin(e.healthFrom)))].sort(byString),
      localities: localitiesOf(svc, vantage),
      sidecars: (sidecars.get(svc.name) ?? []).sort(byString),
      routing: nonDefaultKnobs(routing[svc.name] ?? []).map(knobView),
    };
  });
}

/** performance.now() timestamps (the tracker's sentAt) as wall-clock ISO text. */
function wallClock(perfMs: number, nowMs: number, perfNow: number): string {
  return new Date(nowMs - (perfNow - perfMs)).toISOString();
}

export function proxiesView(
  proxies: readonly ProxyStatus[],
  trustDomain: string | undefined,
  nowMs = Date.now(),
  perfNow = performance.now(),
): ProxyView[] {
  return proxies
    .map((s): ProxyView => {
      const p = s.proxy;
      let last: number | undefined;
      let pendingSince: number | undefined;
      const types: TypeView[] = [];
      for (const kind of RESOURCE_KINDS) {
        const t = s.types[kind];
        if (!t) continue;
        const pending = t.sentVersion !== undefined && t.ackedVersion !== t.sentVersion && t.nackedVersion !== t.sentVersion;
        for (const at of [t.ackedAt, t.nackedAt]) if (at !== undefined && (last === undefined || at > last)) last = at;
        if (pending && t.sentAt !== undefined) pendingSince = pendingSince === undefined ? t.sentAt : Math.max(pendingSince, t.sentAt);
        types.push({
          type: kind,
          nacks: t.nacks,
          pending,
          ...(t.sentVersion !== undefined ? { sent: t.sentVersion } : {}),
          ...(t.ackedVersion !== undefined ? { acked: t.ackedVersion } : {}),
          ...(t.nackedVersion !== undefined ? { nacked: t.nackedVersion } : {}),
          ...(t.lastNack !== undefined ? { lastNack: t.lastNack } : {}),
        });
      }
      // A NACK counts while the proxy runs an older config than the one sent (it was not ACKed since).
      const nacked = types.some((t) => t.nacked !== undefined && t.nacked === t.sent && t.acked !== t.sent);
      const identity =
        trustDomain === undefined
          ? null
          : p.role === 'sidecar' && p.service
            ? sidecarId(trustDomain, p.service)
            : gatewayId(trustDomain, p.gatewayName ?? 'default');
      return {
        id: p.id,
        role: p.role,
        mode: s.mode,
        proxyless: p.proxyless === true,
        locality: p.locality ?? null,
        service: p.service ?? null,
        identity,
        connectedAt: new Date(s.connectedAt).toISOString(),
        lastPushAt:
          pendingSince !== undefined ? wallClock(pendingSince, nowMs, perfNow) : last !== undefined ? new Date(last).toISOString() : null,
        status: nacked ? 'nacked' : types.some((t) => t.pending) ? 'pending' : 'converged',
        types,
      };
    })
    .sort((a, b) => byString(a.id, b.id));
}

type ItemList = 'tools' | 'resources' | 'prompts';
const COLUMN_KINDS: ReadonlyArray<readonly [ItemList, 'tool' | 'resource' | 'prompt']> = [
  ['tools', 'tool'],
  ['resources', 'resource'],
  ['prompts', 'prompt'],
];

function actionOf(c: PolicyColumn): McpAction {
  switch (c.kind) {
    case 'service':
      return { kind: 'service' };
    case 'tool':
      return { kind: 'tool', name: c.name };
    case 'resource':
      return { kind: 'resource', uri: c.name };
    case 'prompt':
      return { kind: 'prompt', name: c.name };
  }
}

/** The columns of one service: service-level access, then every tool/resource/prompt name or pattern a rule that covers the service writes. */
function columnsOf(rules: readonly CompiledRule[]): PolicyColumn[] {
  const cols: PolicyColumn[] = [{ kind: 'service', name: '(connect, list)', pattern: false }];
  for (const [list, kind] of COLUMN_KINDS) {
    const names = new Set<string>();
    for (const rule of rules) for (const n of rule.target[list] ?? []) names.add(n);
    for (const n of [...names].sort(byString)) cols.push({ kind, name: n, pattern: n.includes('*') });
  }
  return cols;
}

/**
 * Roles × services × items, each cell decided by the authorizer's own engine (`decide`) for a caller with
 * that one role and the service's required scopes. A denial on a shadow-mode service is `shadow`: logged,
 * not enforced. Services are grouped first (PolicyGroupView), so the engine runs once per distinct matrix.
 */
export function policyView(policy: Policy | undefined, mesh: Mesh | undefined): PolicyView | null {
  if (!policy) return null;
  const compiled = compilePolicy(policy);
  const roles = policy.roles.map((r) => r.name);
  const rules = [...compiled.roles.values()].flatMap((r) => [...r.allow, ...r.deny]);
  const names = new Set<string>(mesh?.services.map((s) => s.name) ?? []);
  const protocols = new Map(mesh?.services.map((s) => [s.name, s.protocol]) ?? []);
  for (const s of compiled.knownServices) names.add(s);
  const groups = new Map<string, { services: string[]; protocol: string; covering: CompiledRule[] }>();
  for (const service of [...names].sort(byString)) {
    const covering = rules.filter((r) => r.service.test(service));
    const svc = servicePolicyOf(compiled, service);
    const protocol = protocols.get(service) ?? '';
    const key = JSON.stringify([covering.map((r) => r.id), svc.mode, svc.requiredScopes, protocol]);
    const g = groups.get(key);
    if (g) g.services.push(service);
    else groups.set(key, { services: [service], protocol, covering });
  }
  return {
    roleClaim: policy.roleClaim,
    roles,
    groups: [...groups.values()].map(({ services, protocol, covering }) => {
      const service = services[0] as string;
      const svc = servicePolicyOf(compiled, service);
      const columns = columnsOf(covering);
      const cells = roles.map((role) =>
        columns.map((c) => {
          const d = decide(compiled, { service, roles: [role], scopes: svc.requiredScopes, action: actionOf(c) });
          const outcome: CellOutcome = d.allow ? 'allow' : svc.mode === 'shadow' ? 'shadow' : 'deny';
          return { outcome, rule: d.rule };
        }),
      );
      return { services, protocol, mode: svc.mode, requiredScopes: svc.requiredScopes, columns, cells };
    }),
  };
}

export function gatewaysOf(proxies: readonly ProxyStatus[]): string[] {
  return proxies
    .filter((p) => p.proxy.role === 'gateway')
    .map((p) => p.proxy.id)
    .sort(byString);
}

export function localitiesKnown(mesh: Mesh | undefined, proxies: readonly ProxyStatus[]): string[] {
  const set = new Set<string>();
  for (const s of mesh?.services ?? []) for (const e of s.endpoints) set.add(localityKey(e.locality));
  for (const p of proxies) if (p.proxy.locality) set.add(localityKey(p.proxy.locality));
  return [...set].sort(byString);
}

/** Default vantage: the first connected gateway's locality, else the first endpoint locality. */
export function defaultVantage(localities: readonly string[], proxies: readonly ProxyStatus[]): Locality | undefined {
  const gw = proxies
    .filter((p) => p.proxy.role === 'gateway' && p.proxy.locality)
    .map((p) => localityKey(p.proxy.locality as Locality))
    .sort(byString)[0];
  return parseLocality(gw ?? localities[0]);
}
