// The routing file (GitOps): the registry's `defaults` and per-service routing blocks, for services from any
// source (the registry or Consul), watched like the registry and validated by the same readers. A bad edit is
// refused with file, path and reason; the last good routing stays in force.
//
//   defaults:                      # mesh-wide
//     routing: { streamIdleTimeout: 2h }
//   services:
//     weather:                     # a service name, from whichever source
//       routing: { maxStreamDuration: 10m, lbPolicy: round_robin }
//       outlierDetection: { consecutive5xx: 2, baseEjectionTime: 5s }
//       healthCheck: { interval: 5s }
//       circuitBreakers: { maxRequests: 5000 }
//
// `mcpPath` and `hosts` are what the service is, not how it is tuned: they stay with the source.
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, isNode, join, Reader } from '../model/reader.ts';
import { RANK, readSections, SECTIONS, type Layer, type Provenance, type TuningOverlay } from '../model/tuning.ts';
import { FileTooLargeError, FileWatch, readFileBounded } from './file-watch.ts';

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Parses and checks a routing file. Throws ConfigError naming the file, each bad path and why. */
export function parseRoutingFile(text: string, source: string): TuningOverlay {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: `line ${e.linePos?.[0]?.line ?? '?'}, column ${e.linePos?.[0]?.col ?? '?'}`,
        reason: e.message.split('\n')[0] ?? e.code,
      })),
    );
  }
  const root: unknown = doc.toJS() ?? {};
  if (!isNode(root)) throw new ConfigError(source, [{ path: '', reason: 'must be a mapping with "defaults" and/or "services"' }]);
  const r = new Reader();
  const from = (field: string): Provenance => ({ source: 'file', where: source, field });
  r.onlyKeys(root, '', ['defaults', 'services']);
  const defaults = r.object(root, 'defaults', '');
  if (defaults) r.onlyKeys(defaults, 'defaults', SECTIONS);
  const mesh: Layer[] = defaults
    ? [{ scope: 'mesh', rank: RANK.file, settings: readSections(r, defaults, 'defaults', from, { identity: false }) }]
    : [];
  const services = new Map<string, Layer[]>();
  const list = r.object(root, 'services', '');
  for (const [name, raw] of Object.entries(list ?? {})) {
    const p = join('services', name);
    if (!SERVICE_NAME.test(name)) r.fail(p, 'must be a service name: a DNS label of lower-case letters, digits and "-", at most 63');
    if (!isNode(raw)) {
      r.fail(p, `must be a mapping with any of: ${SECTIONS.join(', ')}`);
      continue;
    }
    r.onlyKeys(raw, p, SECTIONS);
    services.set(name, [{ scope: 'service', rank: RANK.file, settings: readSections(r, raw, p, from, { identity: false }) }]);
  }
  if (r.problems.length > 0) throw new ConfigError(source, r.problems);
  return { mesh, services };
}

export interface RoutingFileEvents {
  update: [TuningOverlay, number];
  error: [Error];
}

/** The routing file, watched live (sources/file-watch.ts). */
/**
 * Largest routing file read. It holds overrides only (a few hundred bytes per tuned service) and is parsed on the
 * main thread, so a limit keeps a runaway file from stalling xDS; larger ones are refused unread.
 */
export const DEFAULT_ROUTING_MAX_BYTES = 1_048_576;
const SIZE_HINT = 'a routing file holds overrides only: tune many services mesh-wide (defaults) or in Consul config entries';

export class RoutingFileSource extends EventEmitter<RoutingFileEvents> {
  readonly file: string;
  readonly maxBytes: number;
  private readonly watch: FileWatch;

  constructor(file: string, opts: { debounceMs?: number; maxBytes?: number } = {}) {
    super();
    this.file = path.resolve(file);
    this.maxBytes = opts.maxBytes ?? DEFAULT_ROUTING_MAX_BYTES;
    this.watch = new FileWatch(
      this.file,
      {
        change: (text, observedAt) => {
          try {
            this.emit('update', parseRoutingFile(text, this.file), observedAt);
          } catch (err) {
            this.emit('error', err as Error);
          }
        },
        error: (err) => this.emit('error', new ConfigError(this.file, [{ path: '', reason: err.message }])),
      },
      { ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}), maxBytes: this.maxBytes, sizeHint: SIZE_HINT },
    );
  }

  /** Reads the file once; throws ConfigError (or the read error) if the first version is unusable. */
  load(): TuningOverlay {
    let text: string;
    try {
      text = readFileBounded(this.file, this.maxBytes, SIZE_HINT);
    } catch (err) {
      if (err instanceof FileTooLargeError) throw new ConfigError(this.file, [{ path: '', reason: err.message }]);
      throw err;
    }
    const overlay = parseRoutingFile(text, this.file);
    this.watch.seen(text);
    return overlay;
  }

  start(): void {
    this.watch.start();
  }

  stop(): void {
    this.watch.stop();
  }
}
