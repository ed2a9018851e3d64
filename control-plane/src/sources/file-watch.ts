// Watching a config file the way editors and Kubernetes write them: editors replace the file (rename),
// ConfigMap volumes swap a symlinked directory, so the directory is watched, events for any name are
// debounced, and the content is compared with the last one seen (a touch or a swap to equal content is
// not a change).
import { closeSync, fstatSync, openSync, readFileSync, readSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

/** A file over a reader's size limit: refused before it is read, so a huge file cannot exhaust the heap. */
export class FileTooLargeError extends Error {
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number, hint = '') {
    super(`is ${formatBytes(size)}, over the limit of ${formatBytes(limit)}; not read${hint ? ` (${hint})` : ''}`);
    this.name = 'FileTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

export function formatBytes(n: number): string {
  const mib = n / 1_048_576;
  return mib >= 1 ? `${n} bytes (${mib.toFixed(1)} MiB)` : `${n} bytes`;
}

/** "8388608", "8MiB", "512 KiB", "1G": a size limit from a flag or the environment; undefined if malformed. */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+)\s*(?:([KMG])(?:i?B)?)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = { '': 1, K: 1024, M: 1_048_576, G: 1_073_741_824 }[(m[2] ?? '').toUpperCase()] ?? 1;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * Reads a UTF-8 file of at most `maxBytes`. The size is checked on the open descriptor before reading, and
 * the read stops one byte past the limit, so a file that grows past it between the check and the read is refused too.
 */
export function readFileBounded(file: string, maxBytes: number, hint?: string): string {
  const fd = openSync(file, 'r');
  try {
    const { size } = fstatSync(fd);
    if (size > maxBytes) throw new FileTooLargeError(size, maxBytes, hint);
    // Read to the end: a file that grew after fstat is read whole while it stays within the limit.
    let buf = Buffer.allocUnsafe(size + 1);
    let len = 0;
    for (;;) {
      if (len === buf.length) {
        if (len > maxBytes) throw new FileTooLargeError(len, maxBytes, hint);
        const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(bigger, 0, 0, len);
        buf = bigger;
      }
      const n = readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
    }
    if (len > maxBytes) throw new FileTooLargeError(len, maxBytes, hint);
    return buf.toString('utf8', 0, len);
  } finally {
    closeSync(fd);
  }
}

export interface FileWatchHandlers {
  /** New content; `observedAt` is performance.now() of the first event of the burst. */
  change(text: string, observedAt: number): void;
  error(err: Error): void;
}

export class FileWatch {
  readonly file: string;
  private readonly debounceMs: number;
  private readonly maxBytes: number | undefined;
  private readonly sizeHint: string | undefined;
  private readonly handlers: FileWatchHandlers;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private firstEventAt: number | undefined;
  private readonly retryMs: number;
  private retry: NodeJS.Timeout | undefined;
  /** Watching failed and was reported once; the next successful start re-reads the file. */
  private watchBroken = false;
  private stopped = false;

  /** `maxBytes`: refuse (through `error`) a file larger than this without reading it; `sizeHint` says how to raise it. */
  constructor(
    file: string,
    handlers: FileWatchHandlers,
    opts: { debounceMs?: number; maxBytes?: number; sizeHint?: string; retryMs?: number } = {},
  ) {
    this.file = path.resolve(file);
    this.retryMs = opts.retryMs ?? 1000;
    this.handlers = handlers;
    this.debounceMs = opts.debounceMs ?? 100;
    this.maxBytes = opts.maxBytes;
    this.sizeHint = opts.sizeHint;
  }

  /** The content the watcher compares against (set after a successful first read by the owner). */
  seen(text: string): void {
    this.lastText = text;
  }

  start(): void {
    this.stopped = false;
    const dir = path.dirname(this.file);
    try {
      // Not filtered by name: a ConfigMap update renames `..data`, never the file itself.
      this.watcher = watch(dir, () => this.changed());
    } catch (err) {
      // A directory that is not there yet (a volume still mounting) must not end the process: report it, retry.
      this.watchFailed(new Error(`cannot watch ${dir}: ${(err as Error).message}`));
      return;
    }
    // Without a listener an FSWatcher error (the directory removed) would be thrown as an uncaught exception.
    this.watcher.on('error', (err) => {
      this.watcher?.close();
      this.watcher = undefined;
      this.watchFailed(new Error(`stopped watching ${dir}: ${err.message}`));
    });
    if (this.watchBroken) {
      // The file may have appeared or changed while nothing watched it.
      this.watchBroken = false;
      this.changed();
    }
  }

  private watchFailed(err: Error): void {
    if (!this.watchBroken) this.handlers.error(err);
    this.watchBroken = true;
    if (this.stopped) return;
    this.retry = setTimeout(() => this.start(), this.retryMs);
    this.retry.unref();
  }

  private changed(): void {
    this.firstEventAt ??= performance.now();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload(), this.debounceMs);
  }

  private reload(): void {
    const observedAt = this.firstEventAt ?? performance.now();
    this.firstEventAt = undefined;
    let text: string;
    try {
      text = this.maxBytes === undefined ? readFileSync(this.file, 'utf8') : readFileBounded(this.file, this.maxBytes, this.sizeHint);
    } catch (err) {
      // Forget the last content: once the file is back as it was, that is a change worth reporting (it clears the error).
      this.lastText = undefined;
      this.handlers.error(err instanceof FileTooLargeError ? err : new Error(`cannot read: ${(err as Error).message}`));
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    this.handlers.change(text, observedAt);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
