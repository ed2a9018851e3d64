// Convergence: time from a source change (a Consul index change, a registry file event) to the last
// affected proxy ACKing the config it produced. The same idea as Istio's proxy convergence time.
import type { Counter, Histogram } from 'prom-client';
import type { ProxyStatus, ProxyTracker } from './proxies.ts';

interface Round {
  readonly source: string;
  readonly startedAt: number;
  readonly pending: Set<number>;
  readonly timer: NodeJS.Timeout;
}

/** A stream is settled when every type it was sent has been answered (ACK, or NACK: it keeps its old config). */
export function settled(s: ProxyStatus): boolean {
  for (const t of Object.values(s.types)) {
    if (t.sentVersion !== undefined && t.ackedVersion !== t.sentVersion && t.nackedVersion !== t.sentVersion) return false;
  }
  return true;
}

export class ConvergenceTracker {
  private readonly rounds = new Set<Round>();
  private readonly tracker: ProxyTracker;
  private readonly histogram: Histogram<'source'>;
  private readonly timeouts: Counter<'source'>;
  private readonly timeoutMs: number;

  constructor(tracker: ProxyTracker, histogram: Histogram<'source'>, timeouts: Counter<'source'>, timeoutMs = 60_000) {
    this.tracker = tracker;
    this.histogram = histogram;
    this.timeouts = timeouts;
    this.timeoutMs = timeoutMs;
  }

  /** Call right after a publish: the streams that were just sent something are the affected ones. */
  begin(source: string, startedAt: number): void {
    const pending = new Set(
      this.tracker
        .list()
        .filter((s) => !settled(s))
        .map((s) => s.streamId),
    );
    if (pending.size === 0) return;
    const round: Round = {
      source,
      startedAt,
      pending,
      timer: setTimeout(() => {
        // Proxies that never answer must not hold a round open forever.
        this.rounds.delete(round);
        this.timeouts.inc({ source });
      }, this.timeoutMs),
    };
    round.timer.unref();
    this.rounds.add(round);
  }

  /** Call after a stream's ACK/NACK was recorded. */
  answered(s: ProxyStatus): void {
    if (this.rounds.size === 0 || !settled(s)) return;
    this.drop(s.streamId);
  }

  closed(streamId: number): void {
    this.drop(streamId);
  }

  private drop(streamId: number): void {
    for (const r of this.rounds) {
      if (!r.pending.delete(streamId) || r.pending.size > 0) continue;
      clearTimeout(r.timer);
      this.rounds.delete(r);
      this.histogram.observe({ source: r.source }, (performance.now() - r.startedAt) / 1000);
    }
  }

  stop(): void {
    for (const r of this.rounds) clearTimeout(r.timer);
    this.rounds.clear();
  }
}
