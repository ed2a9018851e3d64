// Counters of the tools/list processor: plain numbers (always) and Prometheus counters (when given a registry).
import { Counter, type Registry } from 'prom-client';

export type ExtProcEvent =
  /** ext_proc streams opened (one per HTTP stream). */
  | 'streams'
  /** Streams whose caller the ToolFilterFactory does not filter (or that are not tools/list at all). */
  | 'passthrough'
  /** tools/list requests seen from filtered callers. */
  | 'tools_list_requests'
  /** tools/list responses inspected (JSON bodies or SSE events). */
  | 'responses_filtered'
  /** Tools removed from responses. */
  | 'tools_hidden'
  /** tools/list responses passed unchanged because they were not valid JSON. */
  | 'malformed'
  /** tools/list responses passed unchanged because they were content-encoded (compressed). */
  | 'encoded'
  /** SSE events above the size limit: the rest of that stream passed unchanged. */
  | 'oversize'
  /** Decider failures (treated as "hide everything"), protocol violations and internal errors. */
  | 'errors';

const EVENTS: readonly ExtProcEvent[] = [
  'streams',
  'passthrough',
  'tools_list_requests',
  'responses_filtered',
  'tools_hidden',
  'malformed',
  'encoded',
  'oversize',
  'errors',
];

export class ExtProcStats {
  readonly counts: Record<ExtProcEvent, number>;
  private readonly counter: Counter<'event'> | undefined;

  constructor(registry?: Registry) {
    this.counts = Object.fromEntries(EVENTS.map((e) => [e, 0])) as Record<ExtProcEvent, number>;
    this.counter = registry
      ? new Counter({
          name: 'mcpmesh_extproc_events_total',
          help: 'tools/list external processor: streams, tools/list requests, filtered responses, hidden tools, responses passed unchanged (malformed, encoded, oversize) and errors',
          labelNames: ['event'] as const,
          registers: [registry],
        })
      : undefined;
  }

  inc(event: ExtProcEvent, by = 1): void {
    if (by <= 0) return;
    this.counts[event] += by;
    this.counter?.inc({ event }, by);
  }
}
