// Aggregated Discovery Service over gRPC: state-of-the-world and delta (incremental) xDS on one port.
// Responses are encoded once per snapshot and resource selection and then written as bytes to every
// stream that needs them, so a push to a thousand identical proxies encodes once.
import * as grpc from '@grpc/grpc-js';
import type { SnapshotCache } from '../cache/cache.ts';
import { hash, type EncodedResource, type Snapshot } from '../cache/snapshot.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { ProxyInfo } from '../model/types.ts';
import { proxyInfoFromNode, type PbNode } from '../xds/node.ts';
import { kindOfTypeUrl, lookupType, RESOURCE_KINDS, TYPE_URLS, type ResourceKind } from '../xds/proto.ts';
import type { ConvergenceTracker } from './convergence.ts';
import { callerSpiffeId } from './identity.ts';
import type { ProxyStatus, ProxyTracker, TypeStatus, XdsMode } from './proxies.ts';

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';

interface DiscoveryRequest {
  version_info?: string;
  node?: PbNode | null;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

interface DeltaDiscoveryRequest {
  node?: PbNode | null;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

function decoder<T>(typeName: string): (b: Buffer) => T {
  const type = lookupType(typeName);
  return (b) => type.toObject(type.decode(b), { longs: String, enums: String, arrays: true, objects: true }) as T;
}

// Which names a subscription covers. LDS and CDS treat an empty first request as "everything" (legacy wildcard).
interface Subscription {
  wildcard: boolean;
  names: Set<string>;
}

function selected(snapshot: Snapshot, kind: ResourceKind, sub: Subscription): EncodedResource[] {
  const all = snapshot.resources[kind];
  const out: EncodedResource[] = [];
  for (const r of all.values()) if ((sub.wildcard && r.wildcard) || sub.names.has(r.name)) out.push(r);
  return out;
}

function namesKey(sub: Subscription): string {
  return `${sub.wildcard ? '*' : ''}|${[...sub.names].sort().join(',')}`;
}

let nonceCounter = 0;
function nextNonce(): string {
  nonceCounter += 1;
  return nonceCounter.toString(36);
}

interface EncodedResponse {
  readonly version: string;
  readonly nonce: string;
  readonly bytes: Buffer;
}

interface Selection {
  readonly version: string;
  readonly chosen: readonly EncodedResource[];
  response?: EncodedResponse;
}

export interface AdsServerOptions {
  cache: SnapshotCache;
  tracker: ProxyTracker;
  convergence: ConvergenceTracker;
  metrics: Metrics;
  log: Logger;
  /**
   * A secured mesh: every stream must present a workload certificate from the mesh CA (mTLS), and the node's
   * claims (role, service, gateway name) must be that certificate's. Unset: plain development mode.
   */
  requireIdentity?: boolean;
}

/**
 * Why a proxy whose TLS certificate says `peerId` may not be `proxy`, or undefined when it may. The control
 * plane believes the certificate, never the node: `spiffe://<td>/mcp/<s>` is the sidecar of `s`, and
 * `spiffe://<td>/gateway/<n>` gateway `n` (Envoy or proxyless gRPC).
 */
export function peerMismatch(proxy: ProxyInfo, peerId: string | undefined): { code: grpc.status; reason: string } | undefined {
  if (peerId === undefined) {
    return { code: grpc.status.UNAUTHENTICATED, reason: 'this xDS port requires mTLS: present the workload certificate your agent obtained from the mesh CA (none was presented, or it is not from this mesh)' };
  }
  const segments = peerId.replace(/^spiffe:\/\/[^/]+/, '').split('/').filter(Boolean);
  const [kind, name] = segments;
  const claims = proxy.role === 'sidecar' ? `role sidecar, service ${proxy.service ?? '(none)'}` : `role gateway, gateway name ${proxy.gatewayName ?? 'default'}`;
  const ok = segments.length === 2 && ((kind === 'mcp' && proxy.role === 'sidecar' && proxy.service === name)
    || (kind === 'gateway' && proxy.role === 'gateway' && (proxy.gatewayName ?? 'default') === name));
  return ok ? undefined : { code: grpc.status.PERMISSION_DENIED, reason: `node "${proxy.id}" claims ${claims}, but its certificate is ${peerId}` };
}

export class AdsServer {
  private readonly server: grpc.Server;
  private readonly opts: AdsServerOptions;
  private readonly selections = new WeakMap<Snapshot, Map<string, Selection>>();
  private readonly encodeResponse: (msg: object) => Buffer;
  private readonly encodeDelta: (msg: object) => Buffer;
  private readonly closers = new Set<() => void>();

  constructor(opts: AdsServerOptions) {
    this.opts = opts;
    const resp = lookupType('envoy.service.discovery.v3.DiscoveryResponse');
    const delta = lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse');
    this.encodeResponse = (m) => Buffer.from(resp.encode(resp.fromObject(m)).finish());
    this.encodeDelta = (m) => Buffer.from(delta.encode(delta.fromObject(m)).finish());
    this.server = new grpc.Server({
      // Proxies hold one stream for hours: keep them alive and notice dead peers.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
    });
    const identity = (b: Buffer): Buffer => b;
    const definition: grpc.ServiceDefinition = {
      StreamAggregatedResources: {
        path: `${SERVICE}StreamAggregatedResources`, requestStream: true, responseStream: true,
        requestSerialize: identity, requestDeserialize: decoder<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest'),
        responseSerialize: identity, responseDeserialize: identity, originalName: 'streamAggregatedResources',
      },
      DeltaAggregatedResources: {
        path: `${SERVICE}DeltaAggregatedResources`, requestStream: true, responseStream: true,
        requestSerialize: identity, requestDeserialize: decoder<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
        responseSerialize: identity, responseDeserialize: identity, originalName: 'deltaAggregatedResources',
      },
    };
    this.server.addService(definition, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>) => this.sotw(call),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, Buffer>) => this.delta(call),
    });
  }

  /** Adds another service to this port (the CA's signing service shares the xDS port and its TLS). */
  mount(add: (server: grpc.Server) => void): void {
    add(this.server);
  }

  listen(host: string, port: number, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  async close(): Promise<void> {
    for (const c of this.closers) c();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }

  private fail(call: grpc.ServerDuplexStream<unknown, Buffer>, code: grpc.status, reason: string, details: string): void {
    this.opts.metrics.streamErrors.inc({ reason });
    this.opts.log.warn('closing xDS stream', { reason, details, peer: call.getPeer() });
    call.emit('error', { code, details });
  }

  /** Common stream lifecycle: the first request names the node; the stream then follows that node's snapshot. */
  private attach(
    call: grpc.ServerDuplexStream<unknown, Buffer>,
    node: PbNode | null | undefined,
    mode: XdsMode,
    onSnapshot: (status: ProxyStatus, s: Snapshot) => void,
  ): { status: ProxyStatus; snapshot: () => Snapshot | undefined } | undefined {
    let proxy: ProxyInfo;
    try {
      proxy = proxyInfoFromNode(node);
    } catch (err) {
      this.fail(call, grpc.status.INVALID_ARGUMENT, 'bad_node', (err as Error).message);
      return undefined;
    }
    const { tracker, metrics, cache, log } = this.opts;
    if (this.opts.requireIdentity) {
      const mismatch = peerMismatch(proxy, callerSpiffeId(call));
      if (mismatch) {
        this.fail(call, mismatch.code, mismatch.code === grpc.status.UNAUTHENTICATED ? 'unauthenticated' : 'identity_mismatch', mismatch.reason);
        return undefined;
      }
    }
    const status = tracker.open(proxy, mode, call.getPeer());
    let current: Snapshot | undefined;
    let watch: ReturnType<SnapshotCache['watch']>;
    try {
      watch = cache.watch(proxy, (s) => {
        current = s;
        onSnapshot(status, s);
      });
    } catch (err) {
      tracker.close(status);
      this.fail(call, grpc.status.INTERNAL, 'snapshot_failed', (err as Error).message);
      return undefined;
    }
    current = watch.snapshot;
    metrics.connectedProxies.inc({ role: proxy.role, mode });
    log.info('proxy connected', { proxy: proxy.id, role: proxy.role, mode, peer: status.peer });
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      watch.cancel();
      tracker.close(status);
      this.opts.convergence.closed(status.streamId);
      this.closers.delete(end);
      metrics.connectedProxies.dec({ role: proxy.role, mode });
      for (const kind of RESOURCE_KINDS) metrics.proxyNacked.remove({ proxy: proxy.id, type: kind });
      log.info('proxy disconnected', { proxy: proxy.id, role: proxy.role, mode });
    };
    const end = (): void => {
      close();
      call.end();
    };
    this.closers.add(end);
    call.on('end', end);
    call.on('cancelled', close);
    call.on('error', close);
    call.on('close', close);
    return { status, snapshot: () => current };
  }

  private recordAck(status: ProxyStatus, kind: ResourceKind, t: TypeStatus, version: string, error: { message?: string } | null | undefined): void {
    const { metrics, log } = this.opts;
    if (t.sentAt !== undefined) metrics.pushDuration.observe({ type: kind }, (performance.now() - t.sentAt) / 1000);
    t.sentAt = undefined;
    if (error) {
      t.nacks += 1;
      t.nackedVersion = t.sentVersion;
      t.nackedAt = Date.now();
      t.lastNack = error.message ?? '';
      metrics.nacks.inc({ type: kind, role: status.proxy.role });
      metrics.proxyNacked.set({ proxy: status.proxy.id, type: kind }, 1);
      // The proxy keeps its last good config; we keep serving and wait for the next change.
      log.warn('proxy rejected config (NACK)', { proxy: status.proxy.id, type: kind, version: t.sentVersion, accepted: version, error_detail: t.lastNack });
    } else {
      t.ackedVersion = version;
      t.ackedAt = Date.now();
      if (t.nackedVersion !== undefined) metrics.proxyNacked.remove({ proxy: status.proxy.id, type: kind });
    }
    this.opts.convergence.answered(status);
  }

  private sotw(call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>): void {
    const subs = new Map<ResourceKind, Subscription>();
    let session: ReturnType<AdsServer['attach']>;
    const send = (status: ProxyStatus, kind: ResourceKind, force: boolean): void => {
      const snapshot = session?.snapshot();
      const sub = subs.get(kind);
      if (!snapshot || !sub) return;
      const selection = this.sotwSelection(snapshot, kind, sub);
      const t = this.opts.tracker.type(status, kind);
      if (!force && t.sentVersion === selection.version) return;
      const resp = this.sotwResponse(kind, selection);
      t.sentVersion = resp.version;
      t.sentNonce = resp.nonce;
      t.sentAt = performance.now();
      this.opts.metrics.pushes.inc({ type: kind, mode: 'sotw' });
      call.write(resp.bytes);
    };
    call.on('data', (req: DiscoveryRequest) => {
      if (!session) {
        session = this.attach(call, req.node, 'sotw', (status) => {
          // Make before break: clusters and endpoints before the listeners and routes that use them.
          for (const kind of RESOURCE_KINDS) send(status, kind, false);
        });
        if (!session) return;
      }
      const kind = kindOfTypeUrl(req.type_url ?? '');
      if (!kind) {
        this.opts.log.debug('ignoring request for unsupported type', { proxy: session.status.proxy.id, type_url: req.type_url });
        return;
      }
      const status = session.status;
      const t = this.opts.tracker.type(status, kind);
      const nonce = req.response_nonce ?? '';
      this.opts.log.debug('sotw request', { proxy: status.proxy.id, type: kind, names: req.resource_names, nonce, version: req.version_info, sent_nonce: t.sentNonce, nack: req.error_detail?.message });
      if (nonce !== '') {
        // A stale nonce answers a response that has since been superseded: nothing to do.
        if (nonce !== t.sentNonce) return;
        this.recordAck(status, kind, t, req.version_info ?? '', req.error_detail);
      }
      const names = req.resource_names ?? [];
      const prev = subs.get(kind);
      const wildcard = names.includes('*') || (names.length === 0 && (kind === 'listener' || kind === 'cluster') && (!prev || prev.wildcard));
      const sub: Subscription = { wildcard, names: new Set(names.filter((n) => n !== '*')) };
      const changed = !prev || namesKey(prev) !== namesKey(sub);
      subs.set(kind, sub);
      if (changed) send(status, kind, true);
    });
  }

  /** Which resources a subscription gets from a snapshot, and their version: cheap, so it runs before deciding to send. */
  private sotwSelection(snapshot: Snapshot, kind: ResourceKind, sub: Subscription): Selection {
    let perSnapshot = this.selections.get(snapshot);
    if (!perSnapshot) {
      perSnapshot = new Map();
      this.selections.set(snapshot, perSnapshot);
    }
    const key = `${kind}|${namesKey(sub)}`;
    let sel = perSnapshot.get(key);
    if (!sel) {
      const chosen = selected(snapshot, kind, sub);
      const version = sub.wildcard && chosen.length === snapshot.resources[kind].size
        ? snapshot.versions[kind]
        : hash(chosen.map((r) => `${r.name}\0${r.version}`).join('\n'));
      sel = { version, chosen };
      perSnapshot.set(key, sel);
    }
    return sel;
  }

  /** The encoded DiscoveryResponse for a selection, built once and written to every stream that needs it. */
  private sotwResponse(kind: ResourceKind, sel: Selection): EncodedResponse {
    if (sel.response) return sel.response;
    const typeUrl = TYPE_URLS[kind];
    const nonce = nextNonce();
    const bytes = this.encodeResponse({
      version_info: sel.version,
      resources: sel.chosen.map((r) => ({ type_url: typeUrl, value: r.bytes })),
      type_url: typeUrl,
      nonce,
    });
    sel.response = { version: sel.version, nonce, bytes };
    return sel.response;
  }

  private delta(call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, Buffer>): void {
    interface DeltaState extends Subscription {
      /** What the client holds: name -> version. */
      known: Map<string, string>;
    }
    const states = new Map<ResourceKind, DeltaState>();
    let session: ReturnType<AdsServer['attach']>;
    const send = (status: ProxyStatus, kind: ResourceKind, always: boolean): void => {
      const snapshot = session?.snapshot();
      const st = states.get(kind);
      if (!snapshot || !st) return;
      const all = snapshot.resources[kind];
      const updates: EncodedResource[] = [];
      for (const r of all.values()) {
        const inScope = (st.wildcard && r.wildcard) || st.names.has(r.name);
        if (inScope && st.known.get(r.name) !== r.version) updates.push(r);
      }
      const removed = [...st.known.keys()].filter((n) => !all.has(n));
      if (!always && updates.length === 0 && removed.length === 0) return;
      for (const r of updates) st.known.set(r.name, r.version);
      for (const n of removed) st.known.delete(n);
      const nonce = nextNonce();
      const typeUrl = TYPE_URLS[kind];
      const t = this.opts.tracker.type(status, kind);
      t.sentVersion = snapshot.versions[kind];
      t.sentNonce = nonce;
      t.sentAt = performance.now();
      this.opts.metrics.pushes.inc({ type: kind, mode: 'delta' });
      call.write(this.encodeDelta({
        system_version_info: snapshot.versions[kind],
        type_url: typeUrl,
        nonce,
        resources: updates.map((r) => ({ name: r.name, version: r.version, resource: { type_url: typeUrl, value: r.bytes } })),
        removed_resources: removed,
      }));
    };
    call.on('data', (req: DeltaDiscoveryRequest) => {
      if (!session) {
        session = this.attach(call, req.node, 'delta', (status) => {
          for (const kind of RESOURCE_KINDS) send(status, kind, false);
        });
        if (!session) return;
      }
      const kind = kindOfTypeUrl(req.type_url ?? '');
      if (!kind) return;
      const status = session.status;
      const t = this.opts.tracker.type(status, kind);
      const nonce = req.response_nonce ?? '';
      if (nonce !== '' && nonce === t.sentNonce) this.recordAck(status, kind, t, t.sentVersion ?? '', req.error_detail);
      const subscribe = req.resource_names_subscribe ?? [];
      const unsubscribe = req.resource_names_unsubscribe ?? [];
      let st = states.get(kind);
      const first = !st;
      if (!st) {
        st = {
          wildcard: subscribe.length === 0 && (kind === 'listener' || kind === 'cluster'),
          names: new Set(),
          known: new Map(Object.entries(req.initial_resource_versions ?? {})),
        };
        states.set(kind, st);
      }
      for (const n of subscribe) {
        if (n === '*') st.wildcard = true;
        else {
          st.names.add(n);
          // A re-subscribe asks for the resource again even if the client had it.
          if (!first) st.known.delete(n);
        }
      }
      for (const n of unsubscribe) {
        if (n === '*') st.wildcard = false;
        else {
          st.names.delete(n);
          st.known.delete(n);
        }
      }
      if (subscribe.length > 0 || unsubscribe.length > 0 || first) send(status, kind, first);
    });
  }
}
