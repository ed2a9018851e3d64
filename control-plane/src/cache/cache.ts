// Per-proxy-class snapshots. A mesh update rebuilds every snapshot in use and swaps them all at once,
// or none: if any resource fails validation the whole update is refused and proxies keep their config.
import type { Mesh, ProxyInfo, TrustBundle } from '../model/types.ts';
import { proxyResources } from '../translate/proxy.ts';
import { snapshotKey } from '../xds/node.ts';
import { RESOURCE_KINDS } from '../xds/proto.ts';
import { buildSnapshot, ResourceEncoder, type Snapshot } from './snapshot.ts';

export type SnapshotListener = (s: Snapshot) => void;

interface Entry {
  readonly proxy: ProxyInfo;
  snapshot: Snapshot | undefined;
  readonly listeners: Set<SnapshotListener>;
}

// Built on every update even with no proxy connected, so a bad registry is refused at once.
const REFERENCE_GATEWAY: ProxyInfo = { id: 'reference-gateway', role: 'gateway', listenerPort: 8080 };

/** The trust bundle a proxy gets (undefined: no workload identities in this mesh). */
export type TrustResolver = (proxy: ProxyInfo) => TrustBundle | undefined;

export class SnapshotCache {
  private mesh: Mesh | undefined;
  private readonly entries = new Map<string, Entry>();
  private readonly encoder = new ResourceEncoder();
  private trust: TrustResolver = () => undefined;

  /** The trust bundle comes from outside the mesh model (the CA): set how to find it. */
  setTrustResolver(resolver: TrustResolver): void {
    this.trust = resolver;
  }

  /** Rebuilds every snapshot from the current mesh, e.g. after a certificate rotated. */
  refresh(): { changed: number } {
    return this.mesh ? this.setMesh(this.mesh) : { changed: 0 };
  }

  get ready(): boolean {
    return this.mesh !== undefined;
  }

  get currentMesh(): Mesh | undefined {
    return this.mesh;
  }

  get size(): number {
    return this.entries.size;
  }

  private build(mesh: Mesh, proxy: ProxyInfo): Snapshot {
    return buildSnapshot(snapshotKey(proxy), proxyResources(mesh, proxy, this.trust(proxy)), this.encoder);
  }

  /** Rebuilds every snapshot for `mesh`. Throws SnapshotError (nothing changes) if any is invalid. */
  setMesh(mesh: Mesh): { changed: number } {
    if (!this.entries.has(snapshotKey(REFERENCE_GATEWAY))) {
      this.entries.set(snapshotKey(REFERENCE_GATEWAY), { proxy: REFERENCE_GATEWAY, snapshot: this.build(mesh, REFERENCE_GATEWAY), listeners: new Set() });
    }
    const next = new Map<string, Snapshot>();
    for (const [key, e] of this.entries) next.set(key, this.build(mesh, e.proxy));
    this.mesh = mesh;
    this.encoder.rotate();
    const changed: Entry[] = [];
    for (const [key, snap] of next) {
      const e = this.entries.get(key) as Entry;
      const prev = e.snapshot;
      if (!prev || RESOURCE_KINDS.some((k) => prev.versions[k] !== snap.versions[k])) changed.push(e);
      e.snapshot = snap;
    }
    for (const e of changed) for (const l of e.listeners) l(e.snapshot as Snapshot);
    return { changed: changed.length };
  }

  /** The snapshot for a proxy (built on first use) plus a subscription to its updates. */
  watch(proxy: ProxyInfo, listener: SnapshotListener): { snapshot: Snapshot | undefined; cancel: () => void } {
    const key = snapshotKey(proxy);
    let e = this.entries.get(key);
    if (!e) {
      e = { proxy, snapshot: this.mesh ? this.build(this.mesh, proxy) : undefined, listeners: new Set() };
      this.entries.set(key, e);
    }
    const entry = e;
    entry.listeners.add(listener);
    return {
      snapshot: entry.snapshot,
      cancel: () => {
        entry.listeners.delete(listener);
        if (entry.listeners.size === 0 && key !== snapshotKey(REFERENCE_GATEWAY)) this.entries.delete(key);
      },
    };
  }

  /** What a proxy like this would get now, without subscribing (admin config dump). */
  peek(proxy: ProxyInfo): Snapshot | undefined {
    const e = this.entries.get(snapshotKey(proxy));
    if (e?.snapshot) return e.snapshot;
    return this.mesh ? this.build(this.mesh, proxy) : undefined;
  }
}
