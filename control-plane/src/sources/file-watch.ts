// Watching a config file the way editors and Kubernetes write them: editors replace the file (rename),
// ConfigMap volumes swap a symlinked directory, so the directory is watched, events for any name are
// debounced, and the content is compared with the last one seen (a touch or a swap to equal content is
// not a change).
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface FileWatchHandlers {
  /** New content; `observedAt` is performance.now() of the first event of the burst. */
  change(text: string, observedAt: number): void;
  error(err: Error): void;
}

export class FileWatch {
  readonly file: string;
  private readonly debounceMs: number;
  private readonly handlers: FileWatchHandlers;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private firstEventAt: number | undefined;

  constructor(file: string, handlers: FileWatchHandlers, opts: { debounceMs?: number } = {}) {
    this.file = path.resolve(file);
    this.handlers = handlers;
    this.debounceMs = opts.debounceMs ?? 100;
  }

  /** The content the watcher compares against (set after a successful first read by the owner). */
  seen(text: string): void {
    this.lastText = text;
  }

  start(): void {
    // Not filtered by name: a ConfigMap update renames `..data`, never the file itself.
    this.watcher = watch(path.dirname(this.file), () => {
      this.firstEventAt ??= performance.now();
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), this.debounceMs);
    });
  }

  private reload(): void {
    const observedAt = this.firstEventAt ?? performance.now();
    this.firstEventAt = undefined;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      // Forget the last content: the same file put back must be reported, so whoever shows this error clears it.
      this.lastText = undefined;
      this.handlers.error(new Error(`cannot read: ${(err as Error).message}`));
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    this.handlers.change(text, observedAt);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
