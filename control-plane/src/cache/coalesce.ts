// Bursts of changes (an editor saving twice, Consul flapping) become one rebuild: wait for a quiet
// window, but never longer than maxDelay after the first change.
export class Coalescer<T> {
  private pending: { value: T } | undefined;
  private quietTimer: NodeJS.Timeout | undefined;
  private maxTimer: NodeJS.Timeout | undefined;
  private readonly quietMs: number;
  private readonly maxDelayMs: number;
  private readonly flushFn: (value: T) => void;
  private readonly merge: (prev: T, next: T) => T;

  /** `merge` folds a burst into one value; by default the latest wins. */
  constructor(quietMs: number, maxDelayMs: number, flush: (value: T) => void, merge: (prev: T, next: T) => T = (_p, n) => n) {
    this.quietMs = quietMs;
    this.maxDelayMs = maxDelayMs;
    this.flushFn = flush;
    this.merge = merge;
  }

  push(value: T): void {
    this.pending = { value: this.pending ? this.merge(this.pending.value, value) : value };
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.flush(), this.quietMs);
    this.maxTimer ??= setTimeout(() => this.flush(), this.maxDelayMs);
  }

  flush(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
    this.quietTimer = undefined;
    this.maxTimer = undefined;
    const p = this.pending;
    this.pending = undefined;
    if (p) this.flushFn(p.value);
  }

  stop(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
    this.pending = undefined;
  }
}
