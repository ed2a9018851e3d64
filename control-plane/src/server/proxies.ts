// Per-proxy bookkeeping of what was sent, ACKed and NACKed: the answer to "what does proxy X run?".
import type { ProxyInfo } from '../model/types.ts';
import type { ResourceKind } from '../xds/proto.ts';

export type XdsMode = 'sotw' | 'delta';

export interface TypeStatus {
  sentVersion?: string;
  sentNonce?: string;
  sentAt?: number;
  ackedVersion?: string;
  ackedAt?: number;
  nackedVersion?: string;
  nackedAt?: number;
  lastNack?: string;
  nacks: number;
  /** Why the latest config of this type was not sent (e.g. too large for the client); cleared by the next send. */
  lastError?: string;
  /** The version last refused as too large, so it is logged and counted once. */
  oversizedVersion?: string;
}

export interface ProxyStatus {
  readonly streamId: number;
  readonly proxy: ProxyInfo;
  readonly mode: XdsMode;
  readonly peer: string;
  readonly connectedAt: number;
  readonly types: Partial<Record<ResourceKind, TypeStatus>>;
}

export class ProxyTracker {
  private readonly streams = new Map<number, ProxyStatus>();
  private nextId = 1;

  open(proxy: ProxyInfo, mode: XdsMode, peer: string): ProxyStatus {
    const s: ProxyStatus = { streamId: this.nextId++, proxy, mode, peer, connectedAt: Date.now(), types: {} };
    this.streams.set(s.streamId, s);
    return s;
  }

  close(s: ProxyStatus): void {
    this.streams.delete(s.streamId);
  }

  type(s: ProxyStatus, kind: ResourceKind): TypeStatus {
    return (s.types[kind] ??= { nacks: 0 });
  }

  list(): ProxyStatus[] {
    return [...this.streams.values()];
  }

  byNodeId(id: string): ProxyStatus | undefined {
    return this.list().find((s) => s.proxy.id === id);
  }

  get count(): number {
    return this.streams.size;
  }
}
