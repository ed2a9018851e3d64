// Keeps one current workload certificate per SPIFFE ID and replaces it well before it expires.
//
// - `get(id)` issues on first use and then returns the current certificate (concurrent first calls share
//   one issuance).
// - Each identity has one unref'd timer, set for when less than `renewBelow` (default 50%) of the
//   certificate's lifetime is left, minus a little jitter so identities issued together do not all renew
//   in the same instant. At that moment the old certificate still has half its life: the control plane
//   pushes the new SDS secret, Envoy uses it for new handshakes, and connections already open keep going
//   on the old one (TLS checks a certificate's validity only at the handshake).
// - A renewal fires the `onRotate(spiffeId, cert)` listeners (not the first issuance: `get` returns that).
// - A failed renewal keeps the current certificate, reports the error, and retries with backoff.
import { DEFAULT_LEAF_TTL_MS, type IssuedCert, type IssueRequest } from './ca.ts';
import { parseSpiffeId } from './spiffe.ts';

/** What the manager needs from a CA (CertificateAuthority fits). */
export interface Issuer {
  issue(req: IssueRequest): Promise<IssuedCert>;
}

export type RotateListener = (spiffeId: string, cert: IssuedCert) => void;
export type ErrorListener = (spiffeId: string, error: Error) => void;

export const DEFAULT_RENEW_BELOW = 0.5;
export const DEFAULT_JITTER = 0.05;
export const DEFAULT_RETRY_MS = 1000;
export const MAX_RETRY_MS = 60_000;
/** setTimeout's longest delay; longer waits are done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface CertificateManagerOptions {
  readonly ca: Issuer;
  /** Lifetime asked for each certificate. Default DEFAULT_LEAF_TTL_MS (24 h). */
  readonly ttlMs?: number;
  /** Renew when less than this fraction of the lifetime remains, 0 < f < 1. Default 0.5. */
  readonly renewBelow?: number;
  /** Renew up to this fraction of the lifetime earlier still, at random, 0 <= j < 1 - renewBelow. Default 0.05. */
  readonly jitter?: number;
  /** First retry delay after a failed renewal; doubles per failure up to MAX_RETRY_MS. Default 1 s. */
  readonly retryMs?: number;
  readonly onRotate?: RotateListener;
  /** Renewal failures and listener exceptions. Default: none (they are still counted). */
  readonly onError?: ErrorListener;
}

export interface CertificateInfo {
  readonly spiffeId: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When the manager will next try to renew it. */
  readonly renewAt: Date;
}

interface Entry {
  readonly spiffeId: string;
  current: IssuedCert | undefined;
  /** When the current certificate was requested: its lifetime is counted from here, not from the backdated notBefore. */
  issuedAt: number;
  renewAt: number;
  timer: NodeJS.Timeout | undefined;
  inflight: Promise<IssuedCert> | undefined;
  failures: number;
}

export class CertificateManager {
  readonly #ca: Issuer;
  readonly #ttlMs: number;
  readonly #renewBelow: number;
  readonly #jitter: number;
  readonly #retryMs: number;
  readonly #onError: ErrorListener | undefined;
  readonly #listeners = new Set<RotateListener>();
  readonly #entries = new Map<string, Entry>();
  #stopped = false;
  #issued = 0;
  #rotations = 0;
  #failures = 0;

  constructor(opts: CertificateManagerOptions) {
    this.#ca = opts.ca;
    this.#ttlMs = opts.ttlMs ?? DEFAULT_LEAF_TTL_MS;
    this.#renewBelow = opts.renewBelow ?? DEFAULT_RENEW_BELOW;
    this.#jitter = opts.jitter ?? DEFAULT_JITTER;
    this.#retryMs = opts.retryMs ?? DEFAULT_RETRY_MS;
    this.#onError = opts.onError;
    if (!(this.#ttlMs > 0) || !Number.isFinite(this.#ttlMs))
      throw new RangeError(`ttlMs must be a positive number of milliseconds (got ${this.#ttlMs})`);
    if (!(this.#renewBelow > 0 && this.#renewBelow < 1))
      throw new RangeError(`renewBelow must be between 0 and 1, exclusive (got ${this.#renewBelow})`);
    if (!(this.#jitter >= 0 && this.#jitter < 1 - this.#renewBelow))
      throw new RangeError(`jitter must be at least 0 and below 1 - renewBelow = ${1 - this.#renewBelow} (got ${this.#jitter})`);
    if (!(this.#retryMs > 0)) throw new RangeError(`retryMs must be positive (got ${this.#retryMs})`);
    if (opts.onRotate) this.#listeners.add(opts.onRotate);
  }

  /** Certificates issued so far (first issuances and renewals). */
  get issuedTotal(): number {
    return this.#issued;
  }

  /** Renewals (certificates that replaced a previous one). */
  get rotationsTotal(): number {
    return this.#rotations;
  }

  /** Failed issuances (first or renewal). */
  get failuresTotal(): number {
    return this.#failures;
  }

  /** Adds a rotation listener; returns a function that removes it. */
  onRotate(listener: RotateListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * The current certificate for `spiffeId`, issuing one on first use. If its renewal time has passed without
   * a renewal (event loop stalled, machine suspended), renews first; if that fails and the current
   * certificate is still valid, returns it anyway.
   */
  async get(spiffeId: string): Promise<IssuedCert> {
    if (this.#stopped) throw new Error('CertificateManager is stopped');
    let e = this.#entries.get(spiffeId);
    if (!e) {
      parseSpiffeId(spiffeId);
      e = { spiffeId, current: undefined, issuedAt: 0, renewAt: 0, timer: undefined, inflight: undefined, failures: 0 };
      this.#entries.set(spiffeId, e);
    }
    const current = e.current;
    if (current && Date.now() < e.renewAt) return current;
    if (!current) {
      try {
        return await this.#renew(e);
      } catch (err) {
        // Nothing to fall back on: forget the identity so the next get starts afresh.
        if (this.#entries.get(spiffeId) === e && !e.current) this.#entries.delete(spiffeId);
        throw err;
      }
    }
    try {
      return await this.#renew(e);
    } catch (err) {
      if (current.notAfter.getTime() > Date.now()) return e.current ?? current;
      throw err;
    }
  }

  /** The current certificate, without issuing. */
  peek(spiffeId: string): IssuedCert | undefined {
    return this.#entries.get(spiffeId)?.current;
  }

  /** Renews now (e.g. after the CA changed). Issues if the identity is new. Listeners fire as for a timed renewal. */
  async renew(spiffeId: string): Promise<IssuedCert> {
    if (this.#stopped) throw new Error('CertificateManager is stopped');
    const e = this.#entries.get(spiffeId);
    return e?.current ? this.#renew(e) : this.get(spiffeId);
  }

  /** Stops managing `spiffeId` (e.g. its service left the mesh). Returns whether it was managed. */
  release(spiffeId: string): boolean {
    const e = this.#entries.get(spiffeId);
    if (!e) return false;
    if (e.timer) clearTimeout(e.timer);
    this.#entries.delete(spiffeId);
    return true;
  }

  /** What is held, by SPIFFE ID, for metrics and debug pages. */
  certificates(): CertificateInfo[] {
    const out: CertificateInfo[] = [];
    for (const e of this.#entries.values()) {
      if (!e.current) continue;
      out.push({
        spiffeId: e.spiffeId,
        serial: e.current.serial,
        notBefore: e.current.notBefore,
        notAfter: e.current.notAfter,
        renewAt: new Date(e.renewAt),
      });
    }
    return out.sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
  }

  /** Cancels every timer; `get` refuses afterwards. Certificates already handed out stay valid. */
  stop(): void {
    this.#stopped = true;
    for (const e of this.#entries.values()) {
      if (e.timer) clearTimeout(e.timer);
      e.timer = undefined;
    }
  }

  #renew(e: Entry): Promise<IssuedCert> {
    if (e.inflight) return e.inflight;
    const p = this.#issue(e);
    e.inflight = p;
    const clear = (): void => {
      if (e.inflight === p) e.inflight = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  async #issue(e: Entry): Promise<IssuedCert> {
    const requestedAt = Date.now();
    let cert: IssuedCert;
    try {
      cert = await this.#ca.issue({ spiffeId: e.spiffeId, ttlMs: this.#ttlMs });
    } catch (err) {
      this.#failures += 1;
      e.failures += 1;
      const error = err instanceof Error ? err : new Error(String(err));
      if (e.current && this.#live(e)) {
        this.#report(e.spiffeId, error);
        const delay = Math.min(this.#retryMs * 2 ** (e.failures - 1), MAX_RETRY_MS);
        e.renewAt = Date.now() + delay;
        this.#schedule(e);
      }
      throw error;
    }
    this.#issued += 1;
    if (!this.#live(e)) return cert; // released or stopped meanwhile: hand it out, but do not track it
    const replaced = e.current !== undefined;
    e.current = cert;
    e.failures = 0;
    e.issuedAt = requestedAt;
    const lifetime = Math.max(0, cert.notAfter.getTime() - requestedAt);
    const early = this.#renewBelow + this.#jitter * Math.random();
    e.renewAt = cert.notAfter.getTime() - early * lifetime;
    this.#schedule(e);
    if (replaced) {
      this.#rotations += 1;
      for (const l of [...this.#listeners]) {
        try {
          l(e.spiffeId, cert);
        } catch (err) {
          this.#report(e.spiffeId, err instanceof Error ? err : new Error(String(err)));
        }
      }
    }
    return cert;
  }

  #live(e: Entry): boolean {
    return !this.#stopped && this.#entries.get(e.spiffeId) === e;
  }

  #schedule(e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    const delay = Math.max(0, e.renewAt - Date.now());
    e.timer = setTimeout(
      () => {
        e.timer = undefined;
        if (!this.#live(e)) return;
        if (Date.now() < e.renewAt) {
          this.#schedule(e); // a wait longer than setTimeout allows, done in steps
          return;
        }
        // Failures are reported and rescheduled inside #issue.
        this.#renew(e).catch(() => undefined);
      },
      Math.min(delay, MAX_TIMER_MS),
    );
    e.timer.unref();
  }

  #report(spiffeId: string, error: Error): void {
    if (!this.#onError) return;
    try {
      this.#onError(spiffeId, error);
    } catch {
      // a failing error handler must not break rotation
    }
  }
}
