// Envoy external processor (envoy.service.ext_proc.v3.ExternalProcessor/Process) that gives every caller
// a tools/list showing only the tools it may call. Served like the ADS server (server/ads.ts): a hand-made
// ServiceDefinition, protobufjs codecs from Envoy's own protos, responses encoded to bytes here.
//
// Envoy side: put extProcFilterConfig(<cluster of this server>) (config.ts) in the listener's HTTP filters
// before the router, and extProcRouteOverride(<service>) in each MCP route's typed_per_filter_config.
// One ext_proc stream = one HTTP stream; the per-stream logic is HttpStreamProcessor (processor.ts).
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { createLogger, type Logger } from '../log.ts';
import { lookupType } from '../xds/proto.ts';
import {
  HttpStreamProcessor,
  ProtocolError,
  type ProcessingRequest,
  type ProcessingResponse,
  type ToolFilterFactory,
} from './processor.ts';
import { ExtProcStats } from './stats.ts';

export type { ToolFilterContext, ToolFilterFactory } from './processor.ts';
export { extProcFilterConfig, extProcRouteOverride, FILTER_PROCESSING_MODE } from './config.ts';
export { serviceOf } from './context.ts';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';
export const PROCESS_PATH = `/${EXT_PROC_SERVICE}/Process`;
const REQUEST_TYPE = 'envoy.service.ext_proc.v3.ProcessingRequest';
const RESPONSE_TYPE = 'envoy.service.ext_proc.v3.ProcessingResponse';

export interface ExtProcServerOptions {
  /** Who may see which tools (see ToolFilterFactory). */
  readonly toolFilter: ToolFilterFactory;
  readonly log?: Logger;
  /** Where to register the mcpmesh_extproc_events_total counter (optional; stats.counts always works). */
  readonly registry?: Registry;
  /** Largest SSE event held while looking for the tools/list response (default 8 MiB). */
  readonly maxEventBytes?: number;
  /** Largest request body inspected for tools/list (default 4 MiB). */
  readonly maxRequestBodyBytes?: number;
}

/** A request that could not be decoded: reported as INVALID_ARGUMENT rather than grpc-js's generic error. */
interface Undecodable {
  readonly undecodable: string;
}

type Incoming = ProcessingRequest | Undecodable;

function requestDecoder(): (b: Buffer) => Incoming {
  const type = lookupType(REQUEST_TYPE);
  return (b) => {
    try {
      return type.toObject(type.decode(b), { longs: String, enums: String, oneofs: true }) as ProcessingRequest;
    } catch (err) {
      return { undecodable: (err as Error).message };
    }
  };
}

/** Encodes a ProcessingResponse (plain object, enum names allowed). */
export function encodeProcessingResponse(msg: ProcessingResponse): Buffer {
  const type = lookupType(RESPONSE_TYPE);
  return Buffer.from(type.encode(type.fromObject(msg)).finish());
}

function metadataRecord(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k.toLowerCase()] = typeof v === 'string' ? v : v.toString('utf8');
  return out;
}

export class ExtProcServer {
  readonly stats: ExtProcStats;
  private readonly opts: ExtProcServerOptions;
  private readonly log: Logger;
  private readonly calls = new Set<grpc.ServerDuplexStream<Incoming, Buffer>>();
  private server: grpc.Server | undefined;

  constructor(opts: ExtProcServerOptions) {
    this.opts = opts;
    this.log = opts.log ?? createLogger({ component: 'control-plane.extproc' });
    this.stats = new ExtProcStats(opts.registry);
  }

  /** The ServiceDefinition and handlers, to mount on an existing grpc.Server (e.g. next to ADS). */
  addTo(server: grpc.Server): void {
    const identity = (b: Buffer): Buffer => b;
    const definition: grpc.ServiceDefinition = {
      Process: {
        path: PROCESS_PATH,
        requestStream: true,
        responseStream: true,
        requestSerialize: identity,
        requestDeserialize: requestDecoder(),
        responseSerialize: identity,
        responseDeserialize: identity,
        originalName: 'process',
      },
    };
    server.addService(definition, {
      Process: (call: grpc.ServerDuplexStream<Incoming, Buffer>) => this.process(call),
    });
  }

  /** Starts a dedicated gRPC server; returns the bound port. */
  listen(host: string, port: number): Promise<number> {
    const server = new grpc.Server({
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.max_send_message_length': 16 * 1024 * 1024,
    });
    this.addTo(server);
    this.server = server;
    return new Promise((resolve, reject) => {
      server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  async close(): Promise<void> {
    for (const call of this.calls) call.end();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    server.forceShutdown();
  }

  private process(call: grpc.ServerDuplexStream<Incoming, Buffer>): void {
    this.stats.inc('streams');
    this.calls.add(call);
    const encode = encodeProcessingResponse;
    const proc = new HttpStreamProcessor({
      toolFilter: this.opts.toolFilter,
      stats: this.stats,
      log: this.log,
      grpcMetadata: metadataRecord(call.metadata),
      ...(this.opts.maxEventBytes !== undefined ? { maxEventBytes: this.opts.maxEventBytes } : {}),
      ...(this.opts.maxRequestBodyBytes !== undefined ? { maxRequestBodyBytes: this.opts.maxRequestBodyBytes } : {}),
    });
    let finished = false;
    const finish = (status?: { code: grpc.status; details: string }): void => {
      if (finished) return;
      finished = true;
      this.calls.delete(call);
      if (status) {
        this.stats.inc('errors');
        this.log.warn('ext_proc stream failed', { code: grpc.status[status.code], details: status.details, peer: call.getPeer() });
        call.emit('error', status);
      } else {
        call.end();
      }
    };
    call.on('data', (req: Incoming) => {
      if (finished) return;
      if ('undecodable' in req)
        return finish({ code: grpc.status.INVALID_ARGUMENT, details: `undecodable ProcessingRequest: ${req.undecodable}` });
      let out: Buffer | undefined;
      let close = false;
      try {
        const result = proc.handle(req);
        out = result.response ? encode(result.response) : undefined;
        close = result.close === true;
      } catch (err) {
        if (err instanceof ProtocolError) return finish({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
        this.log.error('ext_proc processing failed', { error: (err as Error).stack ?? String(err) });
        return finish({ code: grpc.status.INTERNAL, details: 'external processor failed' });
      }
      if (out) call.write(out);
      if (close) finish();
    });
    call.on('end', () => finish());
    call.on('cancelled', () => {
      finished = true;
      this.calls.delete(call);
    });
    call.on('error', () => {
      finished = true;
      this.calls.delete(call);
    });
  }
}
