// Aggregated Discovery Service over gRPC: state-of-the-world and delta (incremental) xDS on one port.
// Responses are encoded once per snapshot and resource selection and then written as bytes to every
// stream that needs them, so a push to a thousand identical proxies encodes once.
//
// One client must not be able to take what others need: every stream respects backpressure (a stream that is
// not draining holds at most a bounded amount of unsent data, and only the newest pending push per type is
// kept), a stream left unread past a limit is closed, and streams per connection and per peer, names per
// request and node size are limited, each refusal with RESOURCE_EXHAUSTED, a message and a metric.
import * as grpc from '@grpc/grpc-js';
import type { Http2Stream } from 'node:http2';
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
import { ENVOY_XDS_MAX_RECEIVE_BYTES, GRPC_DEFAULT_MAX_RECEIVE_BYTES, XDS_MAX_RECEIVE_BYTES, XDS_MAX_SEND_BYTES } from './xds-limits.ts';

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';

interface DiscoveryRequest {
  /** Not in the proto: the encoded size of `node`, measured while decoding. */
  nodeBytes?: number;
  version_info?: string;
  node?: PbNode | null;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

interface DeltaDiscoveryRequest {
  nodeBytes?: number;
  node?: PbNode | null;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

function decoder<T extends { nodeBytes?: number }>(typeName: string): (b: Buffer) => T {
  const type = lookupType(typeName);
  const nodeType = lookupType('envoy.config.core.v3.Node');
  return (b) => {
    const msg = type.decode(b) as unknown as { node?: object | null };
    const out = type.toObject(msg as never, { longs: String, enums: String, arrays: true, objects: true }) as T;
    if (msg.node) out.nodeBytes = nodeType.encode(msg.node).finish().length;
    return out;
  };
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

/** What one client may take from the ADS server. Every limit refuses with RESOURCE_EXHAUSTED and a metric. */
export interface AdsLimits {
  /** A stream whose client reads nothing for this long while responses wait is closed. */
  stallTimeoutMs: number;
  /** Unsent bytes a stream may hold before pushes to it wait (and coalesce) until the client reads. */
  maxBufferedBytes: number;
  /** ADS streams on one HTTP/2 connection (Envoy and gRPC clients use one). */
  maxStreamsPerConnection: number;
  /** ADS streams from one IP address (not per identity: every sidecar of a service shares its identity). */
  maxStreamsPerPeer: number;
  /** resource_names in one request (SotW), or subscribed names of one type (delta). */
  maxResourceNames: number;
  /** Encoded size of the node message (id, metadata, locality...). */
  maxNodeBytes: number;
  /** Largest response sent to a proxyless gRPC client (what gRPC accepts by default; its bootstrap cannot raise it). */
  proxylessMaxResponseBytes: number;
  /** Largest response sent to Envoy (what the generated bootstrap lets it receive). */
  envoyMaxResponseBytes: number;
}

export const DEFAULT_ADS_LIMITS: Readonly<AdsLimits> = {
  stallTimeoutMs: 60_000,
  maxBufferedBytes: 256 * 1024,
  maxStreamsPerConnection: 16,
  maxStreamsPerPeer: 1024,
  maxResourceNames: 20_000,
  maxNodeBytes: 64 * 1024,
  proxylessMaxResponseBytes: GRPC_DEFAULT_MAX_RECEIVE_BYTES,
  envoyMaxResponseBytes: ENVOY_XDS_MAX_RECEIVE_BYTES,
};

// Selections keyed by client-chosen name lists are cached per snapshot only up to this many; past it they are
// computed for the one stream and dropped, so odd name lists cannot grow the server.
const MAX_CACHED_SELECTIONS = 64;

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
  limits?: Partial<AdsLimits>;
}

/** The most a client of this kind accepts in one message. */
function clientMaxReceive(proxy: ProxyInfo, limits: AdsLimits): number {
  return proxy.proxyless ? limits.proxylessMaxResponseBytes : limits.envoyMaxResponseBytes;
}

/** The address part of grpc-js's peer string ("1.2.3.4:5678", "[::1]:5678" or "::1:5678"). */
function peerAddress(peer: string): string {
  const i = peer.lastIndexOf(':');
  return i > 0 ? peer.slice(0, i).replace(/^\[(.*)\]$/, '$1') : peer;
}

/**
 * The HTTP/2 stream under a grpc-js server call, to reset a stream whose client stopped reading: its status
 * would otherwise wait behind the unread data for as long as the connection lives. grpc-js keeps it private
 * (call.call.nextCall.stream in 1.10-1.14); when its shape changes this finds nothing and the stream ends
 * with the connection instead.
 */
function http2StreamOf(call: object): Http2Stream | undefined {
  const inner = (call as { call?: { nextCall?: { stream?: unknown }; stream?: unknown } }).call;
  const stream = inner?.nextCall?.stream ?? inner?.stream;
  return stream && typeof (stream as Http2Stream).close === 'function' ? (stream as Http2Stream) : undefined;
}

/**
 * Writes to one stream with backpressure. While the client has more than `maxBufferedBytes` unsent, pushes are
 * not written: only which types are due is remembered (the newest config is read when the stream drains), so
 * a slow or stuck client holds a bounded amount of memory however many edits happen. A stream that stays
 * blocked for `stallTimeoutMs` is handed to `onStall`.
 */
class Outbox {
  private buffered = 0;
  private readonly due = new Map<ResourceKind, boolean>();
  private stallTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly call: grpc.ServerDuplexStream<unknown, Buffer>;
  private readonly limits: AdsLimits;
  private readonly flush: (kind: ResourceKind, force: boolean) => void;
  private readonly onStall: () => void;
  private readonly onCoalesced: (kind: ResourceKind) => void;

  constructor(
    call: grpc.ServerDuplexStream<unknown, Buffer>,
    limits: AdsLimits,
    hooks: {
      flush: (kind: ResourceKind, force: boolean) => void;
      onStall: () => void;
      onCoalesced: (kind: ResourceKind) => void;
    },
  ) {
    this.call = call;
    this.limits = limits;
    this.flush = hooks.flush;
    this.onStall = hooks.onStall;
    this.onCoalesced = hooks.onCoalesced;
  }

  get blocked(): boolean {
    return this.buffered >= this.limits.maxBufferedBytes;
  }

  /** Remembers that `kind` is due (force: send even if unchanged, e.g. a new subscription). */
  defer(kind: ResourceKind, force: boolean): void {
    const prev = this.due.get(kind);
    if (prev !== undefined) this.onCoalesced(kind);
    this.due.set(kind, force || prev === true);
  }

  write(bytes: Buffer): void {
    if (this.closed) return;
    const size = bytes.length;
    this.buffered += size;
    // grpc-js calls back once the message is handed to HTTP/2, which happens only as the client's flow-control
    // window allows: that is the signal that the client reads.
    this.call.write(bytes, () => this.written(size));
    if (this.blocked && !this.stallTimer) {
      this.stallTimer = setTimeout(() => this.onStall(), this.limits.stallTimeoutMs);
      this.stallTimer.unref();
    }
  }

  private written(size: number): void {
    this.buffered -= size;
    if (this.blocked || this.closed) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    // Make before break: clusters and endpoints before the listeners and routes that use them.
    for (const kind of RESOURCE_KINDS) {
      if (this.blocked) break;
      const force = this.due.get(kind);
      if (force === undefined) continue;
      this.due.delete(kind);
      this.flush(kind, force);
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.due.clear();
  }
}

/**
 * Why a proxy whose TLS certificate says `peerId` may not be `proxy`, or undefined when it may. The control
 * plane believes the certificate, never the node: `spiffe://<td>/mcp/<s>` is the sidecar of `s`, and
 * `spiffe://<td>/gateway/<n>` gateway `n` (Envoy or proxyless gRPC).
 */
export function peerMismatch(proxy: ProxyInfo, peerId: string | undefined): { code: grpc.status; reason: string } | undefined {
  if (peerId === undefined) {
    return {
      code: grpc.status.UNAUTHENTICATED,
      reason:
        'this xDS port requires mTLS: present the workload certificate your agent obtained from the mesh CA (none was presented, or it is not from this mesh)',
    };
  }
  const segments = peerId
    .replace(/^spiffe:\/\/[^/]+/, '')
    .split('/')
    .filter(Boolean);
  const [kind, name] = segments;
  const claims =
    proxy.role === 'sidecar'
      ? `role sidecar, service ${proxy.service ?? '(none)'}`
      : `role gateway, gateway name ${proxy.gatewayName ?? 'default'}`;
  const ok =
    segments.length === 2 &&
    ((kind === 'mcp' && proxy.role === 'sidecar' && proxy.service === name) ||
      (kind === 'gateway' && proxy.role === 'gateway' && (proxy.gatewayName ?? 'default') === name));
  return ok
    ? undefined
    : { code: grpc.status.PERMISSION_DENIED, reason: `node "${proxy.id}" claims ${claims}, but its certificate is ${peerId}` };
}

/** A live ADS stream, from its first byte (before it names its node) to its close. */
interface LiveStream {
  /** Ends the stream with a status the client sees (sent after what is already queued). */
  terminate(code: grpc.status, details: string): void;
}

export class AdsServer {
  private readonly server: grpc.Server;
  private readonly opts: AdsServerOptions;
  readonly limits: Readonly<AdsLimits>;
  private readonly selections = new WeakMap<Snapshot, Map<string, Selection>>();
  private readonly encodeResponse: (msg: object) => Buffer;
  private readonly encodeDelta: (msg: object) => Buffer;
  private readonly live = new Set<LiveStream>();
  private readonly perConnection = new Map<string, number>();
  private readonly perPeer = new Map<string, number>();
  private draining = false;
  private readonly refusalLog = new Map<string, { at: number; suppressed: number }>();

  constructor(opts: AdsServerOptions) {
    this.opts = opts;
    this.limits = { ...DEFAULT_ADS_LIMITS, ...opts.limits };
    const resp = lookupType('envoy.service.discovery.v3.DiscoveryResponse');
    const delta = lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse');
    this.encodeResponse = (m) => Buffer.from(resp.encode(resp.fromObject(m)).finish());
    this.encodeDelta = (m) => Buffer.from(delta.encode(delta.fromObject(m)).finish());
    this.server = new grpc.Server({
      // Proxies hold one stream for hours: keep them alive and notice dead peers.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': XDS_MAX_RECEIVE_BYTES,
      'grpc.max_send_message_length': XDS_MAX_SEND_BYTES,
      // A backstop above the per-connection ADS limit (which answers with a clear status) that also bounds
      // streams a client opens without ever sending a request, and leaves room for the CA's Sign calls.
      'grpc.max_concurrent_streams': this.limits.maxStreamsPerConnection * 2 + 16,
    });
    const identity = (b: Buffer): Buffer => b;
    const definition: grpc.ServiceDefinition = {
      StreamAggregatedResources: {
        path: `${SERVICE}StreamAggregatedResources`,
        requestStream: true,
        responseStream: true,
        requestSerialize: identity,
        requestDeserialize: decoder<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest'),
        responseSerialize: identity,
        responseDeserialize: identity,
        originalName: 'streamAggregatedResources',
      },
      DeltaAggregatedResources: {
        path: `${SERVICE}DeltaAggregatedResources`,
        requestStream: true,
        responseStream: true,
        requestSerialize: identity,
        requestDeserialize: decoder<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
        responseSerialize: identity,
        responseDeserialize: identity,
        originalName: 'deltaAggregatedResources',
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

  /** ADS streams open now (named or not yet). */
  get streamCount(): number {
    return this.live.size;
  }

  /**
   * From now on new streams are refused with UNAVAILABLE, so a proxy that reaches this replica while it drains
   * goes on to another at once rather than after the drain closes it.
   */
  refuseNewStreams(): void {
    this.draining = true;
  }

  /**
   * Closes every stream with UNAVAILABLE, each at a random moment within `windowMs`, so proxies reconnect
   * (to another replica, the load balancer having stopped sending here) spread out rather than all at once.
   * New streams are refused with UNAVAILABLE from now on. Resolves when every stream is closed.
   */
  async drain(windowMs: number): Promise<void> {
    this.draining = true;
    const streams = [...this.live];
    this.opts.log.info('draining xDS streams', { streams: streams.length, window_ms: windowMs });
    await Promise.all(
      streams.map(
        (s) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => {
              s.terminate(grpc.status.UNAVAILABLE, 'control plane replica is shutting down; reconnect (to another replica)');
              resolve();
            }, Math.random() * windowMs);
            t.unref();
          }),
      ),
    );
  }

  async close(): Promise<void> {
    this.draining = true;
    for (const s of [...this.live]) s.terminate(grpc.status.UNAVAILABLE, 'control plane is shutting down');
    // A client that stopped reading never lets its status out: shutting down must not wait for it forever.
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      t.unref();
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    this.server.forceShutdown();
  }

  private fail(call: grpc.ServerDuplexStream<unknown, Buffer>, code: grpc.status, reason: string, details: string): void {
    this.opts.metrics.streamErrors.inc({ reason });
    this.opts.log.warn('closing xDS stream', { reason, details, peer: call.getPeer() });
    call.emit('error', { code, details });
  }

  /**
   * A limit refused a stream or request: counted by reason, closed with RESOURCE_EXHAUSTED, and logged with the
   * peer, at most once a second per reason (a client refused 10,000 times must not flood the log).
   */
  private refuse(call: grpc.ServerDuplexStream<unknown, Buffer>, reason: string, details: string): void {
    this.opts.metrics.refused.inc({ reason });
    const now = Date.now();
    const last = this.refusalLog.get(reason);
    if (!last || now - last.at >= 1000) {
      this.opts.log.warn('refusing xDS stream: limit reached', {
        reason,
        details,
        peer: call.getPeer(),
        ...(last?.suppressed ? { suppressed_since_last: last.suppressed } : {}),
      });
      this.refusalLog.set(reason, { at: now, suppressed: 0 });
    } else last.suppressed += 1;
    call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details });
  }

  /**
   * Counts a new stream against its connection and peer, or refuses it. Returns the stream's handle, or
   * undefined when refused.
   */
  private admit(call: grpc.ServerDuplexStream<unknown, Buffer>, outbox: () => Outbox | undefined): LiveStream | undefined {
    if (this.draining) {
      this.opts.metrics.refused.inc({ reason: 'draining' });
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane replica is shutting down; connect to another replica' });
      return undefined;
    }
    const connection = call.getPeer();
    const peer = peerAddress(connection);
    const onConnection = this.perConnection.get(connection) ?? 0;
    const onPeer = this.perPeer.get(peer) ?? 0;
    if (onConnection >= this.limits.maxStreamsPerConnection) {
      this.refuse(
        call,
        'streams_per_connection',
        `too many xDS streams on one connection (limit ${this.limits.maxStreamsPerConnection}); a proxy needs one`,
      );
      return undefined;
    }
    if (onPeer >= this.limits.maxStreamsPerPeer) {
      this.refuse(call, 'streams_per_peer', `too many xDS streams from ${peer} (limit ${this.limits.maxStreamsPerPeer})`);
      return undefined;
    }
    this.perConnection.set(connection, onConnection + 1);
    this.perPeer.set(peer, onPeer + 1);
    let released = false;
    const stream: LiveStream = {
      terminate: (code, details) => {
        // A stream that already ended (the client left during a drain window) has nothing to end.
        if (released) return;
        outbox()?.close();
        call.emit('error', { code, details });
      },
    };
    const release = (): void => {
      if (released) return;
      released = true;
      this.live.delete(stream);
      outbox()?.close();
      const c = (this.perConnection.get(connection) ?? 1) - 1;
      if (c > 0) this.perConnection.set(connection, c);
      else this.perConnection.delete(connection);
      const p = (this.perPeer.get(peer) ?? 1) - 1;
      if (p > 0) this.perPeer.set(peer, p);
      else this.perPeer.delete(peer);
    };
    this.live.add(stream);
    call.on('cancelled', release);
    call.on('error', release);
    call.on('close', release);
    call.on('finish', release);
    return stream;
  }

  /** Closes a stream whose client has not read for stallTimeoutMs; its queued data is dropped with it. */
  private stalled(call: grpc.ServerDuplexStream<unknown, Buffer>, status: ProxyStatus | undefined): void {
    const seconds = Math.round(this.limits.stallTimeoutMs / 1000);
    this.opts.metrics.stalledStreams.inc();
    this.opts.log.warn('closing xDS stream: client stopped reading', {
      proxy: status?.proxy.id,
      peer: call.getPeer(),
      stall_timeout_s: seconds,
    });
    call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `the client did not read responses for ${seconds} s` });
    // The status cannot pass the unread data: reset the stream (a client sees RESOURCE_EXHAUSTED) to free it.
    http2StreamOf(call)?.close(11 /* NGHTTP2_ENHANCE_YOUR_CALM */);
  }

  /** Checks a request's node size; refuses the stream when too big. */
  private nodeTooBig(call: grpc.ServerDuplexStream<unknown, Buffer>, nodeBytes: number | undefined): boolean {
    if (nodeBytes === undefined || nodeBytes <= this.limits.maxNodeBytes) return false;
    this.refuse(call, 'node_size', `node message is ${nodeBytes} bytes (limit ${this.limits.maxNodeBytes}); keep node metadata small`);
    return true;
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
        this.fail(
          call,
          mismatch.code,
          mismatch.code === grpc.status.UNAUTHENTICATED ? 'unauthenticated' : 'identity_mismatch',
          mismatch.reason,
        );
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
      metrics.connectedProxies.dec({ role: proxy.role, mode });
      for (const kind of RESOURCE_KINDS) metrics.proxyNacked.remove({ proxy: proxy.id, type: kind });
      log.info('proxy disconnected', { proxy: proxy.id, role: proxy.role, mode });
    };
    call.on('end', () => {
      close();
      call.end();
    });
    call.on('cancelled', close);
    call.on('error', close);
    call.on('close', close);
    return { status, snapshot: () => current };
  }

  private recordAck(
    status: ProxyStatus,
    kind: ResourceKind,
    t: TypeStatus,
    version: string,
    error: { message?: string } | null | undefined,
  ): void {
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
      log.warn('proxy rejected config (NACK)', {
        proxy: status.proxy.id,
        type: kind,
        version: t.sentVersion,
        accepted: version,
        error_detail: t.lastNack,
      });
    } else {
      t.ackedVersion = version;
      t.ackedAt = Date.now();
      if (t.nackedVersion !== undefined) metrics.proxyNacked.remove({ proxy: status.proxy.id, type: kind });
    }
    this.opts.convergence.answered(status);
  }

  /** A response too big for this client is not sent: the proxy keeps its config, the operator is told once per version. */
  private tooLarge(
    status: ProxyStatus,
    kind: ResourceKind,
    t: TypeStatus,
    version: string,
    bytes: number,
    limit: number,
    what: string,
  ): void {
    if (t.oversizedVersion === version) return;
    t.oversizedVersion = version;
    t.lastError = `${what} is ${bytes} bytes, over the ${limit} bytes this client accepts; not sent (the proxy keeps its previous config)`;
    this.opts.metrics.refused.inc({ reason: 'response_size' });
    this.opts.log.error('xDS response too large for the client; not sent', {
      proxy: status.proxy.id,
      type: kind,
      bytes,
      limit,
      hint: status.proxy.proxyless
        ? 'proxyless gRPC clients accept 4 MiB: split the mesh (fewer services per gateway name)'
        : 'use delta xDS (ads_config api_type DELTA_GRPC), which sends big updates in parts',
    });
  }

  /** A request's resource_names (or a delta subscription) larger than the limit closes the stream. */
  private tooManyNames(call: grpc.ServerDuplexStream<unknown, Buffer>, kind: string, count: number): boolean {
    if (count <= this.limits.maxResourceNames) return false;
    this.refuse(call, 'resource_names', `${count} resource names for ${kind} (limit ${this.limits.maxResourceNames})`);
    return true;
  }

  private sotw(call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>): void {
    const subs = new Map<ResourceKind, Subscription>();
    let session: ReturnType<AdsServer['attach']>;
    let outbox: Outbox | undefined;
    if (!this.admit(call, () => outbox)) return;
    const send = (kind: ResourceKind, force: boolean): void => {
      if (!session || !outbox) return;
      if (outbox.blocked) {
        outbox.defer(kind, force);
        return;
      }
      const status = session.status;
      const snapshot = session.snapshot();
      const sub = subs.get(kind);
      if (!snapshot || !sub) return;
      const selection = this.sotwSelection(snapshot, kind, sub);
      const t = this.opts.tracker.type(status, kind);
      if (!force && t.sentVersion === selection.version) return;
      const resp = this.sotwResponse(kind, selection);
      const limit = clientMaxReceive(status.proxy, this.limits);
      if (resp.bytes.length > limit) {
        this.tooLarge(
          status,
          kind,
          t,
          selection.version,
          resp.bytes.length,
          limit,
          `the ${kind} response (${selection.chosen.length} resources)`,
        );
        return;
      }
      t.sentVersion = resp.version;
      t.sentNonce = resp.nonce;
      t.sentAt = performance.now();
      t.lastError = undefined;
      this.opts.metrics.pushes.inc({ type: kind, mode: 'sotw' });
      outbox.write(resp.bytes);
    };
    outbox = new Outbox(call, this.limits, {
      flush: send,
      onStall: () => this.stalled(call, session?.status),
      onCoalesced: (kind) => this.opts.metrics.coalesced.inc({ type: kind, mode: 'sotw' }),
    });
    call.on('data', (req: DiscoveryRequest) => {
      if (this.nodeTooBig(call, req.nodeBytes)) return;
      if (!session) {
        session = this.attach(call, req.node, 'sotw', () => {
          // Make before break: clusters and endpoints before the listeners and routes that use them.
          for (const kind of RESOURCE_KINDS) send(kind, false);
        });
        if (!session) return;
      }
      const kind = kindOfTypeUrl(req.type_url ?? '');
      if (!kind) {
        this.opts.log.debug('ignoring request for unsupported type', { proxy: session.status.proxy.id, type_url: req.type_url });
        return;
      }
      const names = req.resource_names ?? [];
      if (this.tooManyNames(call, kind, names.length)) return;
      const status = session.status;
      const t = this.opts.tracker.type(status, kind);
      const nonce = req.response_nonce ?? '';
      this.opts.log.debug('sotw request', {
        proxy: status.proxy.id,
        type: kind,
        names: names.length,
        nonce,
        version: req.version_info,
        sent_nonce: t.sentNonce,
        nack: req.error_detail?.message,
      });
      if (nonce !== '') {
        // A stale nonce answers a response that has since been superseded: nothing to do.
        if (nonce !== t.sentNonce) return;
        this.recordAck(status, kind, t, req.version_info ?? '', req.error_detail);
      }
      const prev = subs.get(kind);
      const wildcard =
        names.includes('*') || (names.length === 0 && (kind === 'listener' || kind === 'cluster') && (!prev || prev.wildcard));
      const sub: Subscription = { wildcard, names: new Set(names.filter((n) => n !== '*')) };
      const changed = !prev || namesKey(prev) !== namesKey(sub);
      subs.set(kind, sub);
      if (changed) send(kind, true);
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
      const version =
        sub.wildcard && chosen.length === snapshot.resources[kind].size
          ? snapshot.versions[kind]
          : hash(chosen.map((r) => `${r.name}\0${r.version}`).join('\n'));
      sel = { version, chosen };
      // Proxies of a class ask for the same lists, which the first few entries cover; other lists are
      // client-chosen and served uncached.
      if (perSnapshot.size < MAX_CACHED_SELECTIONS) perSnapshot.set(key, sel);
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
    let outbox: Outbox | undefined;
    if (!this.admit(call, () => outbox)) return;
    const send = (kind: ResourceKind, always: boolean): void => {
      if (!session || !outbox) return;
      if (outbox.blocked) {
        outbox.defer(kind, always);
        return;
      }
      const status = session.status;
      const snapshot = session.snapshot();
      const st = states.get(kind);
      if (!snapshot || !st) return;
      const all = snapshot.resources[kind];
      const typeUrl = TYPE_URLS[kind];
      const t = this.opts.tracker.type(status, kind);
      const limit = clientMaxReceive(status.proxy, this.limits);
      // Room for the envelope (type URL, nonce, version) and each resource's own wrapping.
      const budget = limit - 4096;
      const sizeOf = (r: EncodedResource): number => r.bytes.length + r.name.length + r.version.length + typeUrl.length + 32;
      const updates: EncodedResource[] = [];
      for (const r of all.values()) {
        const inScope = (st.wildcard && r.wildcard) || st.names.has(r.name);
        if (!inScope || st.known.get(r.name) === r.version) continue;
        if (sizeOf(r) > budget) this.tooLarge(status, kind, t, `${r.name}@${r.version}`, sizeOf(r), limit, `${kind} "${r.name}"`);
        else updates.push(r);
      }
      const removed = [...st.known.keys()].filter((n) => !all.has(n));
      if (!always && updates.length === 0 && removed.length === 0) return;
      // A big update goes out in parts that each fit the client: delta xDS lets every response carry any subset.
      const parts: EncodedResource[][] = [[]];
      let used = removed.reduce((n, name) => n + name.length + 4, 0);
      for (const r of updates) {
        const size = sizeOf(r);
        if (used + size > budget && (parts.at(-1) as EncodedResource[]).length > 0) {
          parts.push([]);
          used = 0;
        }
        (parts.at(-1) as EncodedResource[]).push(r);
        used += size;
      }
      for (const r of updates) st.known.set(r.name, r.version);
      for (const n of removed) st.known.delete(n);
      t.sentVersion = snapshot.versions[kind];
      t.sentAt = performance.now();
      parts.forEach((part, i) => {
        const nonce = nextNonce();
        t.sentNonce = nonce;
        this.opts.metrics.pushes.inc({ type: kind, mode: 'delta' });
        outbox?.write(
          this.encodeDelta({
            system_version_info: snapshot.versions[kind],
            type_url: typeUrl,
            nonce,
            resources: part.map((r) => ({ name: r.name, version: r.version, resource: { type_url: typeUrl, value: r.bytes } })),
            removed_resources: i === 0 ? removed : [],
          }),
        );
      });
    };
    outbox = new Outbox(call, this.limits, {
      flush: send,
      onStall: () => this.stalled(call, session?.status),
      onCoalesced: (kind) => this.opts.metrics.coalesced.inc({ type: kind, mode: 'delta' }),
    });
    call.on('data', (req: DeltaDiscoveryRequest) => {
      if (this.nodeTooBig(call, req.nodeBytes)) return;
      if (!session) {
        session = this.attach(call, req.node, 'delta', () => {
          for (const kind of RESOURCE_KINDS) send(kind, false);
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
      const initial = Object.entries(req.initial_resource_versions ?? {});
      let st = states.get(kind);
      if (this.tooManyNames(call, kind, subscribe.length + initial.length + (st?.names.size ?? 0))) return;
      const first = !st;
      if (!st) {
        st = {
          wildcard: subscribe.length === 0 && (kind === 'listener' || kind === 'cluster'),
          names: new Set(),
          known: new Map(initial),
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
      if (subscribe.length > 0 || unsubscribe.length > 0 || first) send(kind, first);
    });
  }
}
