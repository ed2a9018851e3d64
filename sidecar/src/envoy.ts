// Starts Envoy with the generated bootstrap and keeps it running: restarts it with exponential backoff
// when it exits on its own, and stops it (SIGTERM, then SIGKILL) when the agent shuts down.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

export type Log = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/** ENVOY_BIN, else `envoy` on PATH; undefined when there is none (the agent then runs without a proxy). */
export function findEnvoy(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env['ENVOY_BIN'];
  if (explicit) return explicit;
  for (const dir of (env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'envoy');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface EnvoySupervisorOptions {
  bin: string;
  bootstrapPath: string;
  /** Extra arguments, e.g. ['--log-level', 'info']. */
  args?: string[];
  /** Seconds Envoy drains listeners on shutdown (--drain-time-s). */
  drainSeconds?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** A run at least this long resets the backoff. */
  stableAfterMs?: number;
  log: Log;
}

export class EnvoySupervisor {
  private readonly opts: Required<Omit<EnvoySupervisorOptions, 'args'>> & { args: string[] };
  private child: ChildProcess | undefined;
  /** Set once the OS started the process ('spawn'); a binary that cannot start never is. */
  private spawned = false;
  private stopping = false;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** How many times Envoy was (re)started. */
  starts = 0;
  /** Why the last Envoy is gone (spawn error such as ENOENT, or its exit code / signal); undefined while it runs. */
  lastFailure: string | undefined = 'not started yet';

  constructor(opts: EnvoySupervisorOptions) {
    this.opts = { args: [], drainSeconds: 5, backoffInitialMs: 500, backoffMaxMs: 30_000, stableAfterMs: 30_000, ...opts };
    this.backoffMs = this.opts.backoffInitialMs;
  }

  get running(): boolean {
    return this.spawned && this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.stopping) return;
    const { bin, bootstrapPath, drainSeconds, log } = this.opts;
    // No hot restart: the supervisor always starts a fresh Envoy, and two Envoys on one host (a VM with
    // several sidecars, the demo) would otherwise both claim hot-restart base id 0 and the second would exit.
    const args = ['-c', bootstrapPath, '--drain-time-s', String(drainSeconds), '--disable-hot-restart', ...this.opts.args];
    const startedAt = Date.now();
    this.starts += 1;
    log('info', 'starting envoy', { bin, args, attempt: this.starts });
    const child = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    this.child = child;
    this.spawned = false;
    child.once('spawn', () => {
      if (this.child !== child) return;
      this.spawned = true;
      this.lastFailure = undefined;
    });
    // A binary that cannot start (ENOENT, EACCES) emits 'error' and maybe no 'exit': both paths end here,
    // once, and both retry with backoff (a missing binary may be installed or mounted later).
    let gone = false;
    const onGone = (why: string, fields: Record<string, unknown>): void => {
      if (gone) return;
      gone = true;
      if (this.child === child) {
        this.child = undefined;
        this.spawned = false;
      }
      this.lastFailure = why;
      if (this.stopping) return;
      if (Date.now() - startedAt >= this.opts.stableAfterMs) this.backoffMs = this.opts.backoffInitialMs;
      log(
        fields['error'] !== undefined ? 'error' : 'warn',
        fields['error'] !== undefined ? 'envoy failed to start; retrying' : 'envoy exited; restarting',
        { bin, ...fields, restart_in_ms: this.backoffMs, attempt: this.starts },
      );
      this.timer = setTimeout(() => this.start(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, this.opts.backoffMaxMs);
    };
    child.once('error', (err) => onGone(`envoy failed to start: ${err.message}`, { error: err.message }));
    child.once('exit', (code, signal) => onGone(`envoy exited (${signal ?? `code ${code}`})`, { code, signal }));
  }

  /** SIGTERM, then SIGKILL after the drain time plus a grace second. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), (this.opts.drainSeconds + 1) * 1000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
