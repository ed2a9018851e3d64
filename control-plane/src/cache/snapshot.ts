// A snapshot is the complete, validated, encoded resource set for one class of proxies. It is built
// whole or not at all: a proxy never receives half of a config. Validated means: Envoy's schema and PGV
// rules (xds/validate.ts), then Envoy's C++ load-time rules (xds/envoy-rules.ts), per resource and across them.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { ProtoObject, XdsResource } from '../translate/resource.ts';
import { lookupType, RESOURCE_KINDS, TYPE_URLS, type ResourceKind } from '../xds/proto.ts';
import { checkEnvoyRules, checkSnapshotRules, SNAPSHOT_RULES, type SnapshotBodies } from '../xds/envoy-rules.ts';
import { formatViolations, validateMessage, type Violation } from '../xds/validate.ts';

/** Heap of the encode worker: the 10,000-service route table and its encoding need well under this. */
const ENCODE_WORKER_HEAP_MB = 1024;

export interface EncodedResource {
  readonly kind: ResourceKind;
  readonly name: string;
  /** Content hash of the resource: its version in delta xDS. */
  readonly version: string;
  readonly body: ProtoObject;
  /** The serialized resource (value of the Any in a DiscoveryResponse). */
  readonly bytes: Uint8Array;
  readonly wildcard: boolean;
}

export interface Snapshot {
  readonly key: string;
  readonly resources: Readonly<Record<ResourceKind, ReadonlyMap<string, EncodedResource>>>;
  /** Per type: hash over the (name, version) pairs, i.e. version_info in state-of-the-world xDS. */
  readonly versions: Readonly<Record<ResourceKind, string>>;
}

export interface ResourceFailure {
  readonly kind: ResourceKind;
  readonly name: string;
  readonly violations: readonly Violation[];
}

export class SnapshotError extends Error {
  readonly failures: readonly ResourceFailure[];
  readonly inconsistencies: readonly string[];
  constructor(key: string, failures: readonly ResourceFailure[], inconsistencies: readonly string[]) {
    const lines = [...failures.map((f) => formatViolations(`${f.kind} "${f.name}"`, f.violations)), ...inconsistencies];
    super(`snapshot for ${key} rejected:\n${lines.join('\n')}`);
    this.name = 'SnapshotError';
    this.failures = failures;
    this.inconsistencies = inconsistencies;
  }
}

export function hash(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 16);
}

/** An encoder's result for one resource content. */
export interface Slot {
  readonly out: EncodedResource | ResourceFailure;
  /** The generation that last used it. */
  used: number;
}

/**
 * Validation and encoding are the expensive part of a build, and most resources are unchanged from one
 * build to the next: results are remembered by identity and by content hash while in use (a generation
 * that does not use one forgets it).
 */
export class ResourceEncoder {
  private generation = 0;
  private readonly byContent = new Map<string, Slot>();
  // Translators hand back the very same object for an unchanged resource: no need to even serialize it.
  private readonly byIdentity = new WeakMap<XdsResource, Slot>();

  encode(r: XdsResource): EncodedResource | ResourceFailure {
    return this.slot(r).out;
  }

  /** Marks slots as used by the generation in progress (a build that skipped their resources as unchanged). */
  keep(slots: readonly Slot[]): void {
    for (const slot of slots) slot.used = this.generation;
  }

  slot(r: XdsResource): Slot {
    const known = this.byIdentity.get(r);
    if (known) {
      // Still in use, so still remembered by content: a service whose change is undone finds its old resource
      // (not validated again, and the same object in the next snapshot, which then skips it too).
      known.used = this.generation;
      return known;
    }
    const version = hash(JSON.stringify(r.body));
    const key = `${r.kind}\0${r.wildcard ? 1 : 0}\0${version}`;
    let slot = this.byContent.get(key);
    if (!slot) {
      slot = { out: encodeResource(r, version), used: this.generation };
      this.byContent.set(key, slot);
    }
    slot.used = this.generation;
    this.byIdentity.set(r, slot);
    return slot;
  }

  /**
   * Validates and encodes `resources` ahead of a build, in slices of about `sliceMs` with the event loop let run
   * between them, so that a big first build does not stall probes and xDS streams for seconds. It only fills
   * this cache: the build that follows (buildSnapshot) finds each result by identity and produces exactly what
   * it would have without it. A resource too big for a slice (isHuge) is validated and encoded in a worker thread.
   */
  async warm(resources: readonly XdsResource[], sliceMs: number): Promise<void> {
    // A resource too big to validate within a slice goes to a worker thread, in parallel with the slices.
    const huge = resources.filter((r) => !this.byIdentity.has(r) && isHuge(r));
    const offThread = huge.length > 0 ? this.warmOffThread(huge) : undefined;
    let sliceStart = performance.now();
    for (const r of resources) {
      if (huge.includes(r)) continue;
      this.slot(r);
      if (performance.now() - sliceStart >= sliceMs) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
    await offThread;
  }

  /**
   * Fills the content cache with the worker's results for `resources`. Never fails: whatever the worker does not
   * deliver, the build does on the main thread as before.
   */
  private warmOffThread(resources: readonly XdsResource[]): Promise<void> {
    return new Promise((resolve) => {
      let worker: Worker;
      try {
        worker = new Worker(new URL('./encode-worker.ts', import.meta.url), {
          workerData: resources,
          // Its own heap limit, like the registry's parse worker: running out ends only the worker (the build
          // then does the work itself).
          resourceLimits: { maxOldGenerationSizeMb: ENCODE_WORKER_HEAP_MB },
        });
      } catch {
        return resolve();
      }
      let i = 0;
      const done = (): void => {
        void worker.terminate();
        resolve();
      };
      worker.on('message', (m: EncodeWorkerResult) => {
        const r = resources[i++] as XdsResource;
        const key = `${r.kind}\0${r.wildcard ? 1 : 0}\0${m.version}`;
        if (!this.byContent.has(key)) {
          const out: EncodedResource | ResourceFailure =
            'violations' in m
              ? { kind: r.kind, name: r.name, violations: m.violations }
              : { kind: r.kind, name: r.name, version: m.version, body: r.body, bytes: asBuffer(m.bytes), wildcard: r.wildcard };
          this.byContent.set(key, { out, used: this.generation });
        }
        if (i === resources.length) done();
      });
      worker.on('error', done);
      worker.on('exit', done);
    });
  }

  /** Starts a new generation: what the one ending did not use is forgotten. */
  rotate(): void {
    for (const [key, slot] of this.byContent) if (slot.used < this.generation) this.byContent.delete(key);
    this.generation++;
  }
}

/** What encode-worker.ts answers per resource: the content hash of the body it received, and the result. */
export type EncodeWorkerResult =
  | { readonly version: string; readonly bytes: Uint8Array }
  | { readonly version: string; readonly violations: readonly Violation[] };

/** protobufjs hands back a Buffer on the main thread; a worker's arrives as a plain Uint8Array (same memory). */
function asBuffer(bytes: Uint8Array): Uint8Array {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A resource whose validation alone would stall the event loop for long (a top-level list of 1,000+ entries). */
function isHuge(r: XdsResource): boolean {
  for (const v of Object.values(r.body)) if (Array.isArray(v) && v.length >= 1_000) return true;
  return false;
}

/** Validates (schema, then Envoy's load-time rules) and encodes one resource. */
export function encodeResource(r: XdsResource, version: string): EncodedResource | ResourceFailure {
  const typeName = TYPE_URLS[r.kind];
  // Envoy's own load-time rules come second: they read fields the schema has already vouched for.
  const schema = validateMessage(typeName, r.body);
  const violations = schema.length > 0 ? schema : checkEnvoyRules(r.kind, r.body);
  if (violations.length > 0) return { kind: r.kind, name: r.name, violations };
  const type = lookupType(typeName);
  const bytes = type.encode(type.fromObject(r.body)).finish();
  return { kind: r.kind, name: r.name, version, body: r.body, bytes, wildcard: r.wildcard };
}

function isFailure(x: EncodedResource | ResourceFailure): x is ResourceFailure {
  return 'violations' in x;
}

/** Every EDS name a cluster asks for and every RDS name a listener asks for must be in the snapshot. */
export function inconsistencies(resources: Readonly<Record<ResourceKind, ReadonlyMap<string, EncodedResource>>>): string[] {
  const out: string[] = [];
  for (const c of resources.cluster.values()) {
    const eds = c.body['eds_cluster_config'] as { service_name?: string } | undefined;
    if (c.body['type'] === 'EDS') {
      const name = eds?.service_name || c.name;
      if (!resources.endpoint.has(name)) out.push(`cluster "${c.name}" references endpoints "${name}", which the snapshot lacks`);
    }
  }
  for (const l of resources.listener.values()) {
    for (const rds of routeNamesOf(l.body)) {
      if (!resources.route.has(rds)) out.push(`listener "${l.name}" references route configuration "${rds}", which the snapshot lacks`);
    }
  }
  for (const kind of ['cluster', 'listener'] as const) {
    for (const r of resources[kind].values()) {
      for (const name of secretNamesOf(r.body)) {
        if (!resources.secret.has(name)) out.push(`${kind} "${r.name}" references secret "${name}", which the snapshot lacks`);
      }
    }
  }
  return out;
}

const SECRET_REFS = new Set(['tls_certificate_sds_secret_configs', 'validation_context_sds_secret_config']);

/**
 * SDS secret names a resource fetches over ADS, wherever its TLS contexts sit. (A proxy's own certificate
 * comes from its agent's local SDS server, not from the snapshot.)
 */
function secretNamesOf(body: ProtoObject): readonly string[] {
  // Every build checks every cluster: an unchanged resource keeps its body object, so it is walked once.
  let names = secretNamesByBody.get(body);
  if (!names) {
    names = collectSecretNames(body, []);
    secretNamesByBody.set(body, names);
  }
  return names;
}
const secretNamesByBody = new WeakMap<ProtoObject, readonly string[]>();

function collectSecretNames(body: unknown, out: string[]): string[] {
  if (Array.isArray(body)) for (const x of body) collectSecretNames(x, out);
  else if (typeof body === 'object' && body !== null) {
    for (const [k, v] of Object.entries(body)) {
      if (SECRET_REFS.has(k)) {
        for (const ref of Array.isArray(v) ? v : [v]) {
          const r = ref as { name?: string; sds_config?: { ads?: unknown } };
          if (r.sds_config?.ads !== undefined) out.push(String(r.name));
        }
      } else collectSecretNames(v, out);
    }
  }
  return out;
}

function routeNamesOf(listener: ProtoObject): string[] {
  const hcms: ProtoObject[] = [];
  const api = (listener['api_listener'] as { api_listener?: ProtoObject } | undefined)?.api_listener;
  if (api) hcms.push(api);
  for (const chain of (listener['filter_chains'] as { filters?: { typed_config?: ProtoObject }[] }[] | undefined) ?? []) {
    for (const f of chain.filters ?? []) if (f.typed_config) hcms.push(f.typed_config);
  }
  return hcms.flatMap((h) => {
    const rds = h['rds'] as { route_config_name?: string } | undefined;
    return rds?.route_config_name ? [rds.route_config_name] : [];
  });
}

/** Envoy's rules that span resources (xds/envoy-rules.ts), on the snapshot's plain objects. */
function envoySnapshotRules(
  byKind: Readonly<Record<ResourceKind, ReadonlyMap<string, EncodedResource>>>,
  changed?: ReadonlySet<ResourceKind>,
): string[] {
  if (changed && !SNAPSHOT_RULES.some((r) => r.reads.some((k) => changed.has(k)))) return [];
  const bodies = Object.fromEntries(
    RESOURCE_KINDS.map((k) => [k, new Map([...byKind[k]].map(([n, r]) => [n, r.body]))]),
  ) as unknown as SnapshotBodies;
  return checkSnapshotRules(bodies, changed);
}

export function typeVersion(entries: ReadonlyMap<string, EncodedResource>): string {
  return versionOfSorted(new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

/** typeVersion of a map already in name order (a snapshot's): no second sort of 10,000 names on every build. */
function versionOfSorted(sorted: ReadonlyMap<string, EncodedResource>): string {
  const lines: string[] = [];
  for (const [name, r] of sorted) lines.push(`${name}\0${r.version}`);
  return hash(lines.join('\n'));
}

function byName(entries: Iterable<[string, EncodedResource]>): Map<string, EncodedResource> {
  return new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** What a snapshot was built from, in input order: the next build of its class compares against it. */
interface Inputs {
  readonly resources: readonly XdsResource[];
  readonly slots: readonly Slot[];
}
const inputsOf = new WeakMap<Snapshot, Inputs>();

/**
 * The common case, one service changed: the same resources in the same order, a few of them new objects of
 * the same kind and name. Each is validated and encoded (or found by content); the rest is the previous
 * snapshot's. Undefined when the input is not of that shape or something is refused: the full path decides.
 */
function patchSnapshot(
  key: string,
  resources: readonly XdsResource[],
  encoder: ResourceEncoder,
  previous: Snapshot,
  before: Inputs,
): Snapshot | undefined {
  const slots = before.slots.slice();
  const changes: Array<readonly [ResourceKind, string, EncodedResource]> = [];
  for (let i = 0; i < resources.length; i++) {
    const r = resources[i] as XdsResource;
    const p = before.resources[i] as XdsResource;
    if (r === p) continue;
    if (r.kind !== p.kind || r.name !== p.name || r.wildcard !== p.wildcard) return undefined;
    const slot = encoder.slot(r);
    if (isFailure(slot.out)) return undefined;
    slots[i] = slot;
    if (slot.out !== previous.resources[r.kind].get(r.name)) changes.push([r.kind, r.name, slot.out]);
  }
  encoder.keep(slots);
  const changed = new Set(changes.map(([k]) => k));
  const byKind = { ...previous.resources } as Record<ResourceKind, ReadonlyMap<string, EncodedResource>>;
  const versions = { ...previous.versions };
  for (const k of changed) {
    // The same names: setting an existing key keeps the map's (sorted) order.
    const next = new Map(previous.resources[k]);
    for (const [kind, name, enc] of changes) if (kind === k) next.set(name, enc);
    byKind[k] = next;
    versions[k] = versionOfSorted(next);
  }
  // Names are unchanged, so references can only break through cluster or listener bodies.
  const refsMayBreak = changed.has('cluster') || changed.has('listener');
  const problems = [...(refsMayBreak ? inconsistencies(byKind) : []), ...envoySnapshotRules(byKind, changed)];
  if (problems.length > 0) return undefined;
  const snap: Snapshot = { key, resources: byKind, versions };
  inputsOf.set(snap, { resources, slots });
  return snap;
}

/**
 * Validates, encodes and checks a resource set. Throws SnapshotError naming every bad resource and field.
 *
 * `previous`, the last snapshot published for the same key, only saves work: what it shares with this one
 * (same encoded resources by kind and name) is neither sorted nor hashed again, and the checks that span
 * resources run only when a kind they read changed (the previous snapshot passed them, and they are pure
 * functions of what they read). The result is the same as without it.
 */
export function buildSnapshot(key: string, resources: readonly XdsResource[], encoder: ResourceEncoder, previous?: Snapshot): Snapshot {
  const before = previous && inputsOf.get(previous);
  if (previous && before && before.resources.length === resources.length) {
    const patched = patchSnapshot(key, resources, encoder, previous, before);
    if (patched) return patched;
  }
  const slots: Slot[] = [];
  const byKind = Object.fromEntries(RESOURCE_KINDS.map((k) => [k, new Map<string, EncodedResource>()])) as Record<
    ResourceKind,
    Map<string, EncodedResource>
  >;
  const failures: ResourceFailure[] = [];
  const dupes: string[] = [];
  for (const r of resources) {
    const slot = encoder.slot(r);
    slots.push(slot);
    const enc = slot.out;
    if (isFailure(enc)) {
      failures.push({ ...enc, name: r.name });
      continue;
    }
    if (byKind[r.kind].has(r.name)) dupes.push(`two ${r.kind} resources are named "${r.name}"`);
    byKind[r.kind].set(r.name, enc);
  }
  // Per kind: did any resource change (`changed`), and did the set of names change (`renamed`)?
  const changed = new Set<ResourceKind>();
  const renamed = new Set<ResourceKind>();
  for (const k of RESOURCE_KINDS) {
    const prev = previous?.resources[k];
    if (!prev || prev.size !== byKind[k].size) {
      changed.add(k);
      renamed.add(k);
      continue;
    }
    for (const [name, r] of byKind[k]) {
      const p = prev.get(name);
      if (p === r) continue;
      changed.add(k);
      if (!p) {
        renamed.add(k);
        break;
      }
    }
  }
  // inconsistencies() reads cluster and listener bodies and the names of endpoints, routes and secrets.
  const refsMayBreak =
    !previous ||
    changed.has('cluster') ||
    changed.has('listener') ||
    renamed.has('endpoint') ||
    renamed.has('route') ||
    renamed.has('secret');
  const problems = [
    ...dupes,
    ...(failures.length === 0
      ? [...(refsMayBreak ? inconsistencies(byKind) : []), ...envoySnapshotRules(byKind, previous ? changed : undefined)]
      : []),
  ];
  if (failures.length > 0 || problems.length > 0) throw new SnapshotError(key, failures, problems);
  const sorted = {} as Record<ResourceKind, ReadonlyMap<string, EncodedResource>>;
  const versions = {} as Record<ResourceKind, string>;
  for (const k of RESOURCE_KINDS) {
    const prev = previous?.resources[k];
    if (prev && previous && !changed.has(k)) {
      sorted[k] = prev;
      versions[k] = previous.versions[k];
      continue;
    }
    // Same names as before: the previous order holds, so no sort.
    const next =
      prev && !renamed.has(k) ? new Map([...prev.keys()].map((n) => [n, byKind[k].get(n) as EncodedResource])) : byName(byKind[k]);
    sorted[k] = next;
    versions[k] = versionOfSorted(next);
  }
  const snap: Snapshot = { key, resources: sorted, versions };
  inputsOf.set(snap, { resources, slots });
  return snap;
}
