// Per-proxy-class snapshots. A mesh update rebuilds every snapshot in use and swaps them all at once,
// or none: if any resource fails validation the whole update is refused and proxies keep their config.
//
// A class is what a proxy's config depends on, never what it merely claims: a locality no endpoint of the
// mesh has changes nothing in the endpoints a proxy gets (translate/endpoints.ts ranks endpoints by distance
// from the proxy, and an unknown zone or region is equally far from all of them), so proxies that claim one
// share a class with proxies that ask for no preference (unknown region) or for their region only (unknown
// zone). A client that invents a zone per stream therefore cannot multiply the snapshots rebuilt per edit.
import type { Locality, Mesh, MeshService, ProxyInfo, TrustBundle } from '../model/types.ts';
import { proxyResources } from '../translate/proxy.ts';
import { snapshotKey } from '../xds/node.ts';
import { RESOURCE_KINDS } from '../xds/proto.ts';
import { buildSnapshot, ResourceEncoder, type Snapshot } from './snapshot.ts';

export type SnapshotListener = (s: Snapshot) => void;

interface Watcher {
  /** The proxy as it described itself: its class is recomputed from this when the mesh's localities change. */
  readonly proxy: ProxyInfo;
  readonly listener: SnapshotListener;
  key: string;
  /** The snapshot this watcher last saw, so a proxy that moved class is told only when its config changed. */
  last: Snapshot | undefined;
}

interface Entry {
  /** The class representative a snapshot is built for (locality already reduced to what the mesh knows). */
  readonly proxy: ProxyInfo;
  snapshot: Snapshot | undefined;
  readonly watchers: Set<Watcher>;
}

// Built on every update even with no proxy connected, so a bad registry is refused at once.
const REFERENCE_GATEWAY: ProxyInfo = { id: 'reference-gateway', role: 'gateway', listenerPort: 8080 };
const REFERENCE_KEY = snapshotKey(REFERENCE_GATEWAY);

/** The trust bundle a proxy gets (undefined: no workload identities in this mesh). */
export type TrustResolver = (proxy: ProxyInfo) => TrustBundle | undefined;

/** Zones per region that some endpoint of the mesh is in. */
export type KnownLocalities = ReadonlyMap<string, ReadonlySet<string>>;

export function knownLocalities(mesh: Mesh | undefined): KnownLocalities {
  const out = new Map<string, Set<string>>();
  for (const s of mesh?.services ?? []) {
    for (const [region, zone] of localitiesOf(s)) {
      let zones = out.get(region);
      if (!zones) out.set(region, (zones = new Set()));
      zones.add(zone);
    }
  }
  return out;
}

// Every build asks for every service's localities: an unchanged service (same object) answers from memory.
const serviceLocalities = new WeakMap<MeshService, ReadonlyArray<readonly [string, string]>>();
function localitiesOf(s: MeshService): ReadonlyArray<readonly [string, string]> {
  let out = serviceLocalities.get(s);
  if (!out) {
    const seen = new Map<string, readonly [string, string]>();
    for (const ep of s.endpoints) seen.set(`${ep.locality.region}\0${ep.locality.zone}`, [ep.locality.region, ep.locality.zone]);
    out = [...seen.values()];
    serviceLocalities.set(s, out);
  }
  return out;
}

/**
 * The locality a proxy's config is built for: its own when the mesh has endpoints there, its region with a
 * zone no endpoint has when only the region is known, none when even the region is unknown.
 */
export function effectiveLocality(loc: Locality | undefined, known: KnownLocalities): Locality | undefined {
  if (!loc) return undefined;
  const zones = known.get(loc.region);
  if (!zones) return undefined;
  if (zones.has(loc.zone)) return loc;
  // Any zone the region lacks ranks the same; pick one deterministically so the class is shared.
  let zone = '';
  while (zones.has(zone)) zone += '?';
  return { region: loc.region, zone };
}

function classOf(proxy: ProxyInfo, known: KnownLocalities): ProxyInfo {
  if (proxy.role !== 'gateway' || !proxy.locality) return proxy;
  const locality = effectiveLocality(proxy.locality, known);
  if (locality === proxy.locality) return proxy;
  const { locality: _dropped, ...rest } = proxy;
  return locality ? { ...rest, locality } : rest;
}

export class SnapshotCache {
  private mesh: Mesh | undefined;
  private known: KnownLocalities = new Map();
  private entries = new Map<string, Entry>();
  private readonly encoder = new ResourceEncoder();
  private trust: TrustResolver = () => undefined;

  /** The trust bundle comes from outside the mesh model (the CA): set how to find it. */
  setTrustResolver(resolver: TrustResolver): void {
    this.trust = resolver;
  }

  /** Rebuilds every snapshot from the current mesh, e.g. after a certificate rotated. */
  refresh(): { changed: number; proxies: number } {
    return this.mesh ? this.setMesh(this.mesh) : { changed: 0, proxies: 0 };
  }

  get ready(): boolean {
    return this.mesh !== undefined;
  }

  get currentMesh(): Mesh | undefined {
    return this.mesh;
  }

  /** Snapshot classes held (each built once per mesh update). */
  get size(): number {
    return this.entries.size;
  }

  private build(mesh: Mesh, proxy: ProxyInfo): Snapshot {
    const key = snapshotKey(proxy);
    // The class's current snapshot lets the build skip what did not change (buildSnapshot's `previous`).
    return buildSnapshot(key, proxyResources(mesh, proxy, this.trust(proxy)), this.encoder, this.entries.get(key)?.snapshot);
  }

  /**
   * Rebuilds every snapshot for `mesh`. Throws SnapshotError (nothing changes) if any is invalid. Returns how
   * many classes' snapshots changed for their watchers, and how many watchers were handed one.
   */
  setMesh(mesh: Mesh): { changed: number; proxies: number } {
    const known = knownLocalities(mesh);
    // Classes are regrouped first: a zone the new mesh adds (or drops) moves its proxies to another class.
    const next = new Map<string, Entry>();
    next.set(REFERENCE_KEY, { proxy: REFERENCE_GATEWAY, snapshot: undefined, watchers: new Set() });
    for (const e of this.entries.values()) {
      for (const w of e.watchers) {
        const cls = classOf(w.proxy, known);
        const k = snapshotKey(cls);
        let n = next.get(k);
        if (!n) next.set(k, (n = { proxy: cls, snapshot: undefined, watchers: new Set() }));
        n.watchers.add(w);
      }
    }
    const built = new Map<string, Snapshot>();
    for (const [key, e] of next) built.set(key, this.build(mesh, e.proxy));
    this.mesh = mesh;
    this.known = known;
    this.encoder.rotate();
    const notify: Array<[Watcher, Snapshot]> = [];
    for (const [key, e] of next) {
      const snap = built.get(key) as Snapshot;
      e.snapshot = snap;
      for (const w of e.watchers) {
        w.key = key;
        const prev = w.last;
        if (!prev || RESOURCE_KINDS.some((k) => prev.versions[k] !== snap.versions[k])) notify.push([w, snap]);
        w.last = snap;
      }
    }
    this.entries = next;
    for (const [w, snap] of notify) w.listener(snap);
    return { changed: new Set(notify.map(([, snap]) => snap)).size, proxies: notify.length };
  }

  /**
   * Validates and encodes, yielding to the event loop every `sliceMs`, what setMesh(mesh) would, for the classes
   * in use now: the setMesh that follows then stalls the loop only for what is left (translation, the checks
   * across resources, the swap). Publishes nothing and changes no output; see ResourceEncoder.warm.
   */
  async warm(mesh: Mesh, sliceMs = 15): Promise<void> {
    const known = knownLocalities(mesh);
    const classes = new Map<string, ProxyInfo>([[REFERENCE_KEY, REFERENCE_GATEWAY]]);
    for (const e of this.entries.values()) {
      for (const w of e.watchers) {
        const cls = classOf(w.proxy, known);
        classes.set(snapshotKey(cls), cls);
      }
    }
    for (const cls of classes.values()) {
      await this.encoder.warm(proxyResources(mesh, cls, this.trust(cls)), sliceMs);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** The snapshot for a proxy (built on first use of its class) plus a subscription to its updates. */
  watch(proxy: ProxyInfo, listener: SnapshotListener): { snapshot: Snapshot | undefined; cancel: () => void } {
    const cls = classOf(proxy, this.known);
    const key = snapshotKey(cls);
    let e = this.entries.get(key);
    if (!e) {
      e = { proxy: cls, snapshot: this.mesh ? this.build(this.mesh, cls) : undefined, watchers: new Set() };
      this.entries.set(key, e);
    }
    const w: Watcher = { proxy, listener, key, last: e.snapshot };
    e.watchers.add(w);
    return {
      snapshot: e.snapshot,
      cancel: () => {
        const entry = this.entries.get(w.key);
        if (!entry?.watchers.delete(w)) return;
        if (entry.watchers.size === 0 && w.key !== REFERENCE_KEY) this.entries.delete(w.key);
      },
    };
  }

  /** What a proxy like this would get now, without subscribing (admin config dump). */
  peek(proxy: ProxyInfo): Snapshot | undefined {
    const cls = classOf(proxy, this.known);
    const e = this.entries.get(snapshotKey(cls));
    if (e?.snapshot) return e.snapshot;
    return this.mesh ? this.build(this.mesh, cls) : undefined;
  }
}
