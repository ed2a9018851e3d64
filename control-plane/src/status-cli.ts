// `mcpmesh status`: the mesh as the control plane serves it, in one screen (what `istioctl proxy-status` and
// `consul catalog services` give): services with their endpoints by locality and health, connected proxies
// with what each resource type was sent, ACKed and NACKed (and the last NACK's text), source errors, and
// certificate expiry, and per service the routing knobs that are not the built-in defaults, with their source.
// Read-only: it reads the admin API's /debug/mesh, /debug/proxies, /debug/sources and /debug/routing.
import type { ParseArgsOptionsConfig } from 'node:util';
import { nonDefaultKnobs, showProvenance, type RoutingView } from './model/tuning.ts';
import type { MeshStatusView } from './server/status.ts';
import type { TypeStatus } from './server/proxies.ts';
import { RESOURCE_KINDS, type ResourceKind } from './xds/proto.ts';
import { parseCli } from './cli-args.ts';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:18001';

const USAGE = `usage: mcpmesh status [options]
  --admin URL            control plane admin address          [$MCPMESH_ADMIN_URL or ${DEFAULT_ADMIN_URL}]
  --admin-token T        its admin token, when it listens beyond loopback           [$MCPMESH_ADMIN_TOKEN]
  --json                 print what the admin API answered, as one JSON document
`;

/** One entry of /debug/proxies (server/admin.ts). */
export interface ProxyView {
  readonly id: string;
  readonly role: string;
  readonly mode: string;
  readonly peer: string;
  readonly locality: { readonly region: string; readonly zone: string } | null;
  readonly service: string | null;
  readonly connectedAt: string;
  readonly types: Partial<Record<ResourceKind, TypeStatus>>;
}

export interface StatusReport {
  readonly admin: string;
  readonly mesh: MeshStatusView;
  readonly proxies: readonly ProxyView[];
  readonly sourceErrors: Record<string, string>;
  /** /debug/routing: every knob of every service, with provenance; null when the control plane has no routing view. */
  readonly routing: RoutingView | null;
}

/** Reads the three admin endpoints. Throws an Error that says what to do when the control plane is not there. */
export async function fetchStatus(admin: string, adminToken?: string): Promise<StatusReport> {
  const get = async <T>(path: string, absent?: T): Promise<T> => {
    let res: Response;
    try {
      res = await fetch(new URL(path, admin), {
        headers: adminToken ? { authorization: `Bearer ${adminToken}` } : {},
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new Error(
        `cannot reach the control plane's admin API at ${admin} (${cause}): is it running (npm start)? Point at another with --admin URL or MCPMESH_ADMIN_URL`,
      );
    }
    if (res.status === 404 && absent !== undefined) return absent;
    if (!res.ok) {
      const body = await res.text();
      const hint =
        res.status === 401 || res.status === 403 ? ' (beyond loopback the admin API needs --admin-token or MCPMESH_ADMIN_TOKEN)' : '';
      throw new Error(`${admin}${path} answered HTTP ${res.status}${hint}: ${body.trim().slice(0, 300)}`);
    }
    return (await res.json()) as T;
  };
  const [mesh, proxies, sources, routing] = await Promise.all([
    get<MeshStatusView>('/debug/mesh'),
    get<ProxyView[]>('/debug/proxies'),
    get<Record<string, string | null | undefined>>('/debug/sources'),
    get<RoutingView | null>('/debug/routing', null),
  ]);
  const sourceErrors = Object.fromEntries(
    Object.entries(sources)
      .filter((e): e is [string, string] => typeof e[1] === 'string')
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  const sorted = [...proxies].sort((a, b) => (a.role + a.id < b.role + b.id ? -1 : 1));
  return { admin, mesh, proxies: sorted, sourceErrors, routing };
}

/** "in 23h", "in 364d", "EXPIRED 2h ago". */
export function until(iso: string, now = Date.now()): string {
  const ms = Date.parse(iso) - now;
  const abs = Math.abs(ms);
  const span =
    abs >= 2 * 86_400_000
      ? `${Math.floor(abs / 86_400_000)}d`
      : abs >= 3_600_000
        ? `${Math.floor(abs / 3_600_000)}h`
        : `${Math.max(0, Math.floor(abs / 60_000))}m`;
  return ms > 0 ? `in ${span}` : `EXPIRED ${span} ago`;
}

const short = (v: string | undefined): string => (v === undefined ? '-' : v.length > 12 ? v.slice(0, 12) : v);

function typeLine(kind: ResourceKind, t: TypeStatus): string {
  const state =
    t.nackedVersion !== undefined && t.sentVersion === t.nackedVersion
      ? 'NACKED'
      : t.sentVersion !== undefined && t.sentVersion === t.ackedVersion
        ? 'SYNCED'
        : t.sentVersion === undefined
          ? 'NOT SENT'
          : 'STALE (sent, not ACKed yet)';
  return `    ${kind.padEnd(8)} ${state.padEnd(8)} sent ${short(t.sentVersion).padEnd(12)} acked ${short(t.ackedVersion).padEnd(12)} nacked ${short(t.nackedVersion)}${t.nacks > 0 ? ` (${t.nacks} NACK${t.nacks === 1 ? '' : 's'})` : ''}`;
}

/** One line: the knobs that differ from the built-in defaults and who set them (all of them: --json, routing explain). */
function routingLine(routing: RoutingView | null, service: string): string {
  const knobs = routing?.services[service];
  if (!knobs) return 'routing: not reported by this control plane';
  const changed = nonDefaultKnobs(knobs);
  if (changed.length === 0) return 'routing: built-in defaults';
  return `routing: ${changed.map((k) => `${k.knob} ${k.shown} (${showProvenance(k.from)})`).join('; ')}`;
}

/** The text report. Every section is always printed, saying "none" rather than disappearing. */
export function renderStatus(r: StatusReport, now = Date.now()): string {
  const out: string[] = [];
  out.push(
    `control plane ${r.admin}`,
    `  source: ${r.mesh.source}`,
    `  mesh published: ${r.mesh.publishedAt ?? 'not yet (see source errors)'}`,
    '',
  );
  const eps = r.mesh.services.flatMap((s) => s.endpoints);
  out.push(
    `SERVICES (${r.mesh.services.length}; endpoints ${eps.filter((e) => e.healthy).length} healthy, ${eps.filter((e) => !e.healthy).length} unhealthy)`,
  );
  if (r.mesh.services.length === 0) out.push('  none');
  for (const s of r.mesh.services) {
    out.push(`  ${s.name}  ${s.protocol} ${s.transport}  ${s.endpoints.filter((e) => e.healthy).length}/${s.endpoints.length} healthy`);
    const byLocality = [...s.endpoints].sort((a, b) =>
      `${a.region}/${a.zone}/${a.address}:${a.port}` < `${b.region}/${b.zone}/${b.address}:${b.port}` ? -1 : 1,
    );
    for (const e of byLocality) {
      out.push(
        `    ${`${e.region || '-'}/${e.zone || '-'}`.padEnd(16)} ${`${e.address}:${e.port}`.padEnd(22)} ${e.health}  weight ${e.weight}`,
      );
    }
    out.push(`    ${routingLine(r.routing, s.name)}`);
  }
  out.push('', `PROXIES (${r.proxies.length} connected)`);
  if (r.proxies.length === 0) out.push('  none connected');
  for (const p of r.proxies) {
    const where = p.locality ? `${p.locality.region}/${p.locality.zone}` : '-';
    out.push(`  ${p.id}  ${p.role}${p.service ? ` of ${p.service}` : ''}  ${where}  ${p.mode}  from ${p.peer}  since ${p.connectedAt}`);
    const kinds = RESOURCE_KINDS.filter((k) => p.types[k] !== undefined);
    if (kinds.length === 0) out.push('    nothing asked for yet');
    for (const k of kinds) {
      const t = p.types[k] as TypeStatus;
      out.push(typeLine(k, t));
      if (t.lastNack !== undefined) out.push(`             last NACK: ${t.lastNack}`);
    }
  }
  const errors = Object.entries(r.sourceErrors);
  out.push('', `SOURCE ERRORS (${errors.length})`);
  if (errors.length === 0) out.push('  none');
  for (const [source, message] of errors) out.push(`  ${source}: ${message.replaceAll('\n', '\n    ')}`);
  out.push('', 'CERTIFICATES');
  const c = r.mesh.certificates;
  if (!c) {
    out.push('  none: the mesh is not secured (start the control plane with --policy)');
  } else {
    out.push(`  CA (trust domain ${c.trustDomain})  expires ${c.ca.notAfter} (${until(c.ca.notAfter, now)})`);
    out.push(
      `  ${c.controlPlane.spiffeId}  expires ${c.controlPlane.notAfter ?? '-'}${c.controlPlane.notAfter ? ` (${until(c.controlPlane.notAfter, now)})` : ''}`,
    );
    if (c.issued.length === 0) out.push('  no workload certificate signed yet');
    for (const i of c.issued)
      out.push(`  ${i.spiffeId}  expires ${i.notAfter} (${until(i.notAfter, now)})  serial ${i.serial}  (${i.attestedBy})`);
  }
  return `${out.join('\n')}\n`;
}

export async function statusMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const options = {
    admin: { type: 'string' },
    'admin-token': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const args = parseCli('mcpmesh status', argv, options, USAGE);
  if (typeof args === 'number') return args;
  const { values } = args;
  const admin = values.admin ?? env['MCPMESH_ADMIN_URL'] ?? DEFAULT_ADMIN_URL;
  let report: StatusReport;
  try {
    report = await fetchStatus(admin, values['admin-token'] ?? env['MCPMESH_ADMIN_TOKEN']);
  } catch (err) {
    process.stderr.write(`mcpmesh status: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderStatus(report));
  return 0;
}
