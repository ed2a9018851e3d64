// The embedded registry: a YAML file listing MCP services and endpoints. It is the default source
// (no Consul needed). Edits are picked up live; a bad edit is reported and the last good mesh stays.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, isNode, join, Reader } from '../model/reader.ts';
import { MCP_PROTOCOLS, MCP_TRANSPORTS, type MeshEndpoint } from '../model/types.ts';
import { RANK, readSections, resolveTuning, SECTIONS, withLayers, type Layer, type Provenance } from '../model/tuning.ts';
import type { ServiceSpec } from '../model/mesh.ts';
import { FileWatch } from './file-watch.ts';

const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LOCALITY_PART = /^[A-Za-z0-9._-]{1,63}$/;

function readEndpoint(r: Reader, raw: unknown, path: string): MeshEndpoint | undefined {
  if (!isNode(raw)) {
    r.fail(path, 'must be a mapping with address and port');
    return undefined;
  }
  r.onlyKeys(raw, path, ['address', 'port', 'locality', 'weight', 'healthy']);
  const address = r.string(raw, 'address', path, { required: true });
  if (address !== undefined && isIP(address) === 0) r.fail(join(path, 'address'), `${JSON.stringify(address)} is not an IPv4 or IPv6 address`);
  const port = r.integer(raw, 'port', path, 1, 65535, { required: true });
  const loc = r.object(raw, 'locality', path);
  const locPath = join(path, 'locality');
  if (loc) r.onlyKeys(loc, locPath, ['region', 'zone']);
  const locality = {
    region: (loc && r.string(loc, 'region', locPath, { pattern: LOCALITY_PART, hint: 'must be 1-63 letters, digits, ".", "_" or "-"' })) ?? '',
    zone: (loc && r.string(loc, 'zone', locPath, { pattern: LOCALITY_PART, hint: 'must be 1-63 letters, digits, ".", "_" or "-"' })) ?? '',
  };
  const weight = r.integer(raw, 'weight', path, 1, 128) ?? 1;
  const healthy = r.boolean(raw, 'healthy', path) ?? true;
  if (address === undefined || port === undefined || isIP(address) === 0) return undefined;
  return { address, port, locality, weight, healthy };
}

/** Parses and checks registry YAML. Throws ConfigError naming the file, each bad path and why. */
export function parseRegistry(text: string, source: string): ServiceSpec[] {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(source, doc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}, column ${e.linePos?.[0]?.col ?? '?'}`, reason: e.message.split('\n')[0] ?? e.code })));
  }
  const root: unknown = doc.toJS();
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
    const name = r.string(raw, 'name', p, { required: true, pattern: SERVICE_NAME, hint: 'must be a DNS label: lower-case letters, digits and "-", at most 63' });
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
      if (owner !== undefined && owner !== name) r.fail(`${p}.routing.hosts[${h}]`, `host "${host}" is already routed to service "${owner}"`);
      seenHosts.set(host, name ?? p);
    }
    if (name !== undefined && protocol !== undefined) out.push(withLayers({ name, protocol, transport, sidecar, endpoints, routing, outlierDetection, healthCheck, circuitBreakers }, layers));
  });
  if (r.problems.length > 0) throw new ConfigError(source, r.problems);
  return out;
}

export interface RegistryFileEvents {
  /** The new specs, and performance.now() when the file change was first noticed. */
  update: [ServiceSpec[], number];
  error: [Error];
}

/** The registry file, watched live (sources/file-watch.ts). */
export class RegistryFileSource extends EventEmitter<RegistryFileEvents> {
  readonly file: string;
  private readonly watch: FileWatch;

  constructor(file: string, opts: { debounceMs?: number } = {}) {
    super();
    this.file = path.resolve(file);
    this.watch = new FileWatch(this.file, {
      change: (text, observedAt) => {
        try {
          this.emit('update', parseRegistry(text, this.file), observedAt);
        } catch (err) {
          this.emit('error', err as Error);
        }
      },
      error: (err) => this.emit('error', new ConfigError(this.file, [{ path: '', reason: err.message }])),
    }, opts);
  }

  /** Reads the file once; throws ConfigError (or the read error) if the first version is unusable. */
  load(): ServiceSpec[] {
    const text = readFileSync(this.file, 'utf8');
    const specs = parseRegistry(text, this.file);
    this.watch.seen(text);
    return specs;
  }

  start(): void {
    this.watch.start();
  }

  stop(): void {
    this.watch.stop();
  }
}
