// The embedded registry: a YAML file listing MCP services and endpoints. It is the default source
// (no Consul needed). Edits are picked up live; a bad edit is reported and the last good mesh stays.
// Big files: refused above a size limit before they are read, and parsed in a worker thread so that the
// seconds a large mesh takes never stall the event loop (xDS streams, admin, probes).
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseDocument } from 'yaml';
import { readSimpleYaml } from './registry-yaml.ts';
import { ConfigError, isNode, join, Reader, type Problem } from '../model/reader.ts';
import { MCP_PROTOCOLS, MCP_TRANSPORTS, type MeshEndpoint } from '../model/types.ts';
import { RANK, readSections, resolveTuning, SECTIONS, withLayers, type Layer, type Provenance } from '../model/tuning.ts';
import type { ServiceSpec } from '../model/mesh.ts';
import { FileTooLargeError, FileWatch, readFileBounded } from './file-watch.ts';

/** Largest registry file read (about 55,000 one-endpoint services); larger ones are refused unread. */
export const DEFAULT_REGISTRY_MAX_BYTES = 8 * 1_048_576;
const SIZE_HINT = 'raise the limit with --registry-max-bytes or MCPMESH_REGISTRY_MAX_BYTES';
/**
 * Heap of a parse worker. A 7.7 MiB file (56,000 services) needs between 512 MiB and 1 GiB for its YAML
 * document; a worker that runs out is ended alone (ERR_WORKER_OUT_OF_MEMORY) and the file reported, where the
 * main thread would abort the whole process.
 */
export const DEFAULT_WORKER_HEAP_MB = 1536;
/** Services per message from the worker: each message is deserialized in one task of the main loop. */
const WORKER_BATCH = 500;

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LOCALITY_PART = /^[A-Za-z0-9._-]{1,63}$/;

function readEndpoint(r: Reader, raw: unknown, path: string): MeshEndpoint | undefined {
  if (!isNode(raw)) {
    r.fail(path, 'must be a mapping with address and port');
    return undefined;
  }
  r.onlyKeys(raw, path, ['address', 'port', 'locality', 'weight', 'healthy']);
  const address = r.string(raw, 'address', path, { required: true });
  if (address !== undefined && isIP(address) === 0)
    r.fail(join(path, 'address'), `${JSON.stringify(address)} is not an IPv4 or IPv6 address`);
  const port = r.integer(raw, 'port', path, 1, 65535, { required: true });
  const loc = r.object(raw, 'locality', path);
  const locPath = join(path, 'locality');
  if (loc) r.onlyKeys(loc, locPath, ['region', 'zone']);
  const locality = {
    region:
      (loc && r.string(loc, 'region', locPath, { pattern: LOCALITY_PART, hint: 'must be 1-63 letters, digits, ".", "_" or "-"' })) ?? '',
    zone: (loc && r.string(loc, 'zone', locPath, { pattern: LOCALITY_PART, hint: 'must be 1-63 letters, digits, ".", "_" or "-"' })) ?? '',
  };
  const weight = r.integer(raw, 'weight', path, 1, 128) ?? 1;
  const healthy = r.boolean(raw, 'healthy', path) ?? true;
  if (address === undefined || port === undefined || isIP(address) === 0) return undefined;
  return { address, port, locality, weight, healthy, healthFrom: { source: 'registry', declared: raw['healthy'] !== undefined } };
}

/** Parses and checks registry YAML. Throws ConfigError naming the file, each bad path and why. */
export function parseRegistry(text: string, source: string): ServiceSpec[] {
  // The fast reader gives the same object as `yaml` or nothing; any problem is reported from `yaml`'s parse, so
  // a bad file reads exactly as it always did (the extra parse costs only when the file is refused anyway).
  const fast = readSimpleYaml(text);
  if (fast !== undefined) {
    try {
      return readRegistry(fast, source);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  }
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
  return readRegistry(doc.toJS(), source);
}

/** Checks a parsed registry document and turns it into specs. */
function readRegistry(root: unknown, source: string): ServiceSpec[] {
  const r = new Reader();
  if (!isNode(root)) throw new ConfigError(source, [{ path: '', reason: 'must be a mapping with a "services" list' }]);
  r.onlyKeys(root, '', ['services', 'defaults']);
  const from = (field: string): Provenance => ({ source: 'registry', where: source, field });
  const defaults = r.object(root, 'defaults', '');
  if (defaults) r.onlyKeys(defaults, 'defaults', SECTIONS);
  const meshLayer: Layer = { scope: 'mesh', rank: RANK.registry, settings: defaults ? readSections(r, defaults, 'defaults', from) : {} };
  const services = r.list(root, 'services', '');
  if (!services) r.fail('services', 'is required (a list of MCP services)');
  const out: ServiceSpec[] = [];
  const seen = new Map<string, string>();
  // Service names are hosts too (`weather` routes to weather): a host may belong to one service only.
  const seenHosts = new Map<string, string>();
  for (const raw of services ?? []) if (isNode(raw) && typeof raw['name'] === 'string') seenHosts.set(raw['name'], raw['name']);
  (services ?? []).forEach((raw, i) => {
    const p = `services[${i}]`;
    if (!isNode(raw)) {
      r.fail(p, 'must be a mapping with name, protocol and endpoints');
      return;
    }
    r.onlyKeys(raw, p, ['name', 'protocol', 'transport', 'sidecar', 'endpoints', ...SECTIONS]);
    const name = r.string(raw, 'name', p, {
      required: true,
      pattern: SERVICE_NAME,
      hint: 'must be a DNS label: lower-case letters, digits and "-", at most 63',
    });
    if (name !== undefined) {
      const prev = seen.get(name);
      if (prev) r.fail(join(p, 'name'), `duplicate service name "${name}" (also at ${prev})`);
      seen.set(name, p);
    }
    const protocol = r.oneOf(raw, 'protocol', p, MCP_PROTOCOLS, { required: true });
    const transport = r.oneOf(raw, 'transport', p, MCP_TRANSPORTS) ?? 'streamable-http';
    const sidecar = r.boolean(raw, 'sidecar', p) ?? false;
    const layers: Layer[] = [meshLayer, { scope: 'service', rank: RANK.registry, settings: readSections(r, raw, p, from) }];
    const { routing, outlierDetection, healthCheck, circuitBreakers } = resolveTuning(layers).tuned;
    const eps = r.list(raw, 'endpoints', p) ?? [];
    const endpoints: MeshEndpoint[] = [];
    const seenEp = new Map<string, number>();
    eps.forEach((e, j) => {
      const ep = readEndpoint(r, e, `${p}.endpoints[${j}]`);
      if (!ep) return;
      const key = `${ep.address}:${ep.port}`;
      const prev = seenEp.get(key);
      if (prev !== undefined) r.fail(`${p}.endpoints[${j}]`, `duplicate endpoint ${key} (also at endpoints[${prev}])`);
      seenEp.set(key, j);
      endpoints.push(ep);
    });
    for (const [h, host] of routing.hosts.entries()) {
      const owner = seenHosts.get(host);
      if (owner !== undefined && owner !== name)
        r.fail(`${p}.routing.hosts[${h}]`, `host "${host}" is already routed to service "${owner}"`);
      seenHosts.set(host, name ?? p);
    }
    if (name !== undefined && protocol !== undefined)
      out.push(
        withLayers({ name, protocol, transport, sidecar, endpoints, routing, outlierDetection, healthCheck, circuitBreakers }, layers),
      );
  });
  if (r.problems.length > 0) throw new ConfigError(source, r.problems);
  return out;
}

/** What registry-worker.ts is started with. */
export interface RegistryWorkerInput {
  readonly text: string;
  readonly source: string;
  readonly batch: number;
}

/** What registry-worker.ts answers: batches of specs then `done`, or why the file was refused. */
export type RegistryWorkerMessage =
  // Layers travel beside their specs: withLayers keeps them in a WeakMap, which a structured clone leaves behind.
  | { readonly kind: 'specs'; readonly specs: ServiceSpec[]; readonly layers: (readonly Layer[])[] }
  | { readonly kind: 'done'; readonly count: number }
  | { readonly kind: 'invalid'; readonly problems: readonly Problem[] }
  | { readonly kind: 'crash'; readonly message: string };

/**
 * parseRegistry in a worker thread: the same result or ConfigError, without blocking the caller's event loop.
 * Aborting `signal` ends the worker (a newer edit makes the parse in flight useless).
 */
export function parseRegistryOffThread(
  text: string,
  source: string,
  opts: { signal?: AbortSignal; heapMb?: number } = {},
): Promise<ServiceSpec[]> {
  const { signal } = opts;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const input: RegistryWorkerInput = { text, source, batch: WORKER_BATCH };
    const worker = new Worker(new URL('./registry-worker.ts', import.meta.url), {
      workerData: input,
      resourceLimits: { maxOldGenerationSizeMb: opts.heapMb ?? DEFAULT_WORKER_HEAP_MB },
    });
    const specs: ServiceSpec[] = [];
    let settled = false;
    const onAbort = (): void => finish(signal?.reason as Error);
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      if (err) reject(err);
      else resolve(specs);
    };
    const broken = (reason: string): Error => new ConfigError(source, [{ path: '', reason }]);
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: RegistryWorkerMessage) => {
      switch (m.kind) {
        case 'specs':
          m.specs.forEach((s, i) => {
            specs.push(withLayers(s, m.layers[i] ?? []));
          });
          break;
        case 'done':
          finish(specs.length === m.count ? undefined : broken(`parser sent ${specs.length} of ${m.count} services`));
          break;
        case 'invalid':
          finish(new ConfigError(source, m.problems));
          break;
        case 'crash':
          finish(broken(`could not be parsed: ${m.message}`));
          break;
      }
    });
    worker.on('error', (err) => finish(broken(`could not be parsed: ${err.message}`)));
    worker.on('exit', (code) => finish(broken(`parser exited (code ${code}) before it finished`)));
  });
}

export interface RegistryFileEvents {
  /** The new specs, and performance.now() when the file change was first noticed. */
  update: [ServiceSpec[], number];
  error: [Error];
}

/** The registry file, watched live (sources/file-watch.ts). */
export class RegistryFileSource extends EventEmitter<RegistryFileEvents> {
  readonly file: string;
  readonly maxBytes: number;
  private readonly watch: FileWatch;
  /** The parse in flight: a newer version of the file aborts it, so only the newest result is ever emitted. */
  private parsing: AbortController | undefined;
  private stopped = false;

  constructor(file: string, opts: { debounceMs?: number; maxBytes?: number } = {}) {
    super();
    this.file = path.resolve(file);
    this.maxBytes = opts.maxBytes ?? DEFAULT_REGISTRY_MAX_BYTES;
    this.watch = new FileWatch(
      this.file,
      {
        change: (text, observedAt) => {
          this.parseNewest(text).then(
            (specs) => specs && this.emit('update', specs, observedAt),
            (err: Error) => this.emit('error', err),
          );
        },
        error: (err) => {
          this.parsing?.abort();
          this.emit('error', new ConfigError(this.file, [{ path: '', reason: err.message }]));
        },
      },
      { ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}), maxBytes: this.maxBytes, sizeHint: SIZE_HINT },
    );
  }

  /** Parses off the main thread; resolves undefined when a newer version superseded this one. */
  private async parseNewest(text: string): Promise<ServiceSpec[] | undefined> {
    this.parsing?.abort();
    const ac = new AbortController();
    this.parsing = ac;
    try {
      return await parseRegistryOffThread(text, this.file, { signal: ac.signal });
    } catch (err) {
      if (ac.signal.aborted) return undefined;
      throw err;
    } finally {
      if (this.parsing === ac) this.parsing = undefined;
    }
  }

  /**
   * Reads and parses the file once (size-checked, in a worker). Rejects with ConfigError naming the file if
   * this first version is unusable: too big, unreadable, not YAML, or invalid.
   */
  async load(): Promise<ServiceSpec[]> {
    let text: string;
    try {
      text = readFileBounded(this.file, this.maxBytes, SIZE_HINT);
    } catch (err) {
      const reason = err instanceof FileTooLargeError ? err.message : `cannot read: ${(err as Error).message}`;
      throw new ConfigError(this.file, [{ path: '', reason }]);
    }
    const specs = await this.parseNewest(text);
    if (!specs) throw new ConfigError(this.file, [{ path: '', reason: 'load superseded (the source was stopped or the file changed)' }]);
    this.watch.seen(text);
    return specs;
  }

  start(): void {
    // A load that stop() cut short still ends in start(): it must not leave a watcher behind.
    if (!this.stopped) this.watch.start();
  }

  stop(): void {
    this.stopped = true;
    this.watch.stop();
    this.parsing?.abort();
  }
}
