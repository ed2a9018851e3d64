// Routing tuned beside the mesh's source: the routing file and Consul config entries, layered onto the specs a
// source produces (model/tuning.ts says who wins), with what `mcpmesh routing explain` and /debug/routing show.
// The control plane hands every mesh it builds through `tune` and reports what it published; an overlay change
// rebuilds the last mesh, and one whose mesh is refused is dropped again (last good routing).
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { ServiceSpec } from './model/mesh.ts';
import {
  applyOverlays,
  resolveTuning,
  serviceLayers,
  type KnobExplanation,
  type RoutingProblems,
  type RoutingView,
  type TuningOverlay,
} from './model/tuning.ts';
import type { BlockingQueryState } from './sources/blocking-query.ts';
import { ConsulConfigWatch } from './sources/consul-config.ts';
import type { ConsulSourceOptions } from './sources/consul.ts';
import { RoutingFileSource } from './sources/routing-file.ts';

export interface RoutingHost {
  /** Rebuilds the last mesh with the current overlays; false when that mesh is refused. */
  rebuild(): boolean;
  /** The control plane's per-source errors (/debug/sources, /readyz). */
  readonly errors: Record<string, string | undefined>;
  failed(source: string, err: Error, msg: string, fields?: Record<string, string>): void;
  /** The source reads fine again: its error clears and mcpmesh_source_up goes back to 1. */
  ok(source: string): void;
  readonly metrics: Metrics;
  readonly log: Logger;
}

export class RoutingLayers {
  private readonly host: RoutingHost;
  /** By origin; their order does not matter (ranks decide). */
  private readonly overlays = new Map<'file' | 'consul', TuningOverlay>();
  private file: RoutingFileSource | undefined;
  private consul: ConsulConfigWatch | undefined;
  /** Consul entries naming services that are not registered (or not MCP services), as the watch judged them. */
  private consulMissing: string[] = [];
  /** The tuned specs of the last published mesh, by name: what explain reads. */
  private last = new Map<string, ServiceSpec>();

  constructor(host: RoutingHost) {
    this.host = host;
  }

  /** The source's specs with every overlay applied. */
  tune(specs: readonly ServiceSpec[]): ServiceSpec[] {
    return applyOverlays(specs, [...this.overlays.values()]);
  }

  /** Records the tuned specs of a published mesh. */
  published(tuned: readonly ServiceSpec[]): void {
    this.last = new Map(tuned.map((s) => [s.name, s]));
    this.reportUnknownTargets();
  }

  /**
   * Replaces the overlay from one origin and rebuilds the mesh with it. When that mesh is refused the previous
   * overlay stays (last good routing) and this returns false.
   */
  setOverlay(origin: 'file' | 'consul', overlay: TuningOverlay): boolean {
    const prev = this.overlays.get(origin);
    this.overlays.set(origin, overlay);
    if (!this.host.rebuild()) {
      if (prev) this.overlays.set(origin, prev);
      else this.overlays.delete(origin);
      return false;
    }
    return true;
  }

  /** Every knob of a published service: effective value, where it came from, what it overrode. */
  explain(service: string): KnobExplanation[] | undefined {
    const spec = this.last.get(service);
    return spec && resolveTuning(serviceLayers(spec, [])).explain;
  }

  /** Services an overlay tunes that the published mesh does not have (reported, kept for when they appear). */
  unknownServices(): Array<{ origin: string; service: string }> {
    const out: Array<{ origin: string; service: string }> = [];
    for (const [origin, o] of this.overlays)
      for (const name of o.services.keys()) if (!this.last.has(name)) out.push({ origin, service: name });
    return out.sort((a, b) => (a.origin + a.service < b.origin + b.service ? -1 : 1));
  }

  private explained: { of: ReadonlyMap<string, ServiceSpec>; services: RoutingView['services'] } | undefined;

  /**
   * Every published service's knobs with provenance: the one answer /debug/routing, the console and
   * `mcpmesh status` all show. Resolved once per publish (the same object until the next), so a view can key
   * its own caches on it.
   */
  services(): RoutingView['services'] {
    if (this.explained?.of !== this.last) {
      const names = [...this.last.keys()].sort();
      this.explained = { of: this.last, services: Object.fromEntries(names.map((n) => [n, this.explain(n) as KnobExplanation[]])) };
    }
    return this.explained.services;
  }

  /** /debug/routing: one service's knobs, or every service's, with the routing problems the mesh knows of. */
  debug(service: string | undefined): { code: number; body: unknown } {
    const problems: RoutingProblems = {
      sources: Object.fromEntries(
        Object.entries(this.host.errors).filter((e): e is [string, string] => e[1] !== undefined && /^(routing|consul)/.test(e[0])),
      ),
      unknownServices: this.unknownServices(),
    };
    if (service !== undefined) {
      const knobs = this.explain(service);
      if (!knobs)
        return { code: 404, body: { error: `no service "${service}" in the published mesh`, services: [...this.last.keys()].sort() } };
      return { code: 200, body: { service, knobs, problems } };
    }
    return { code: 200, body: { services: this.services(), problems } satisfies RoutingView };
  }

  // Routing for a service the mesh does not have: an error naming the entry (or file) and field, kept so that
  // it applies when the service appears. Consul entries are judged by the watch against the whole catalog, so
  // that other teams' entries for non-MCP services are not reported.
  private reportUnknownTargets(): void {
    const lines: string[] = [...this.consulMissing];
    for (const [origin, o] of this.overlays) {
      if (origin === 'consul') continue;
      for (const [name, layers] of o.services) {
        if (this.last.has(name)) continue;
        const first = layers.flatMap((l) => Object.values(l.settings)).find((x) => x !== undefined);
        if (first)
          lines.push(
            `${first.from.where}: ${first.from.field}: no MCP service "${name}" in the mesh (${origin}; kept, applies when the service appears)`,
          );
      }
    }
    this.host.errors['routing-targets'] = lines.length > 0 ? lines.sort().join('\n') : undefined;
  }

  /** Watches Consul's proxy-defaults, service-defaults and service-resolver entries. */
  watchConsul(opts: ConsulSourceOptions, gateway: string | undefined): void {
    const { errors, failed, ok, metrics, log } = this.host;
    const w = new ConsulConfigWatch({ ...opts, ...(gateway ? { gateway } : {}) });
    this.consul = w;
    w.on('update', (u) => {
      for (const x of u.unsupported) {
        metrics.consulConfigUnsupported.inc({ kind: x.entry.split('/')[0] ?? '' });
        log.warn('consul config entry field not supported; ignored', { entry: x.entry, field: x.field, why: x.why });
      }
      this.consulMissing = u.missing.map((p) => `${p.entry}: ${p.field}: ${p.reason}`);
      const message = u.problems.map((p) => `${p.entry}: ${p.field}: ${p.reason}`).join('\n');
      // Counted and logged once per distinct set of problems, not on every answer of the watch.
      if (message !== (errors['routing-consul'] ?? '')) {
        if (message) failed('routing-consul', new Error(message), 'consul config entry refused; its last good version stays in force');
        else ok('routing-consul');
      }
      this.reportUnknownTargets();
      if (!this.setOverlay('consul', u.overlay)) {
        failed(
          'routing-consul',
          new Error('the mesh built with the Consul config entries is invalid (see "mesh update rejected")'),
          'consul config entries refused; the last good routing stays in force',
        );
      }
    });
    // A warning, not an error: the entries in force stay, and an unreachable Consul is the Consul source's error
    // to report (its catalog and health watches fail alike).
    w.on('error', (err) => {
      metrics.consulWatchErrors.inc({ watch: 'config' });
      metrics.sourceUp.set({ source: 'routing-consul-watch' }, 0);
      errors['routing-consul-watch'] = err.message;
      log.warn('consul config entry watch failed, retrying; the last good entries stay in force', {
        source: 'routing-consul-watch',
        error: err.message,
      });
    });
    w.on('recover', () => ok('routing-consul-watch'));
    w.start();
  }

  /** Loads and watches the routing file. A bad file is reported, never fatal: services keep their other layers. */
  watchFile(file: string): void {
    const { failed, ok, log } = this.host;
    const src = new RoutingFileSource(file);
    this.file = src;
    const rejected = 'routing file update rejected; the last good routing stays in force';
    const take = (overlay: TuningOverlay): void => {
      if (!this.setOverlay('file', overlay)) throw new Error(`${src.file}: the mesh built with it is invalid (see "mesh update rejected")`);
      ok('routing-file');
      log.info('routing file applied', { file: src.file, services: overlay.services.size });
    };
    src.on('update', (overlay) => {
      try {
        take(overlay);
      } catch (err) {
        failed('routing-file', err as Error, rejected, { file: src.file });
      }
    });
    src.on('error', (err) => failed('routing-file', err, rejected, { file: src.file }));
    try {
      take(src.load());
    } catch (err) {
      failed('routing-file', err as Error, 'routing file rejected; services use their other routing layers', { file: src.file });
    }
    src.start();
  }

  /** The Consul config-entry watches' loop states, for /debug/sources?watches. */
  watches(): BlockingQueryState[] {
    return this.consul?.queryStates() ?? [];
  }

  stop(): void {
    this.file?.stop();
    this.consul?.stop();
  }
}
