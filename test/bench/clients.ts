// Benchmark xDS clients, run in their own process (forked by test/bench/server.ts). Each client is one
// gateway proxy with its own HTTP/2 connection and one SotW ADS stream: wildcard CDS first (optional),
// then EDS for one service. Every EDS response is decoded fully (DiscoveryResponse and each
// ClusterLoadAssignment) and ACKed with its version_info and nonce, as Envoy would.
//
// Protocol with the parent (IPC messages):
//   parent -> { type: 'connect', count }   open `count` more streams; reply { type: 'connected', total } when every
//                                           new stream has ACKed its initial CDS (if any) and EDS.
//   parent -> { type: 'expect', round, port? }  arm a round; reply { type: 'armed', round }. The round completes when
//                                           every stream has received (decoded, checked, ACKed) one more EDS response;
//                                           then reply { type: 'acked', round, versions }.
//   parent -> { type: 'close' }            cancel everything and exit.
//   child  -> { type: 'error', message }   any stream failure or unexpected response.
import * as grpc from '@grpc/grpc-js';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { node } from '../helpers/ads-client.ts';
import { BENCH_REGION, BENCH_ZONE } from './mesh.ts';

export interface ClientsConfig {
  address: string;
  /** EDS resource every client subscribes to. */
  edsName: string;
  /** Ask for wildcard CDS first and subscribe to EDS once the cluster list arrives (as Envoy does). */
  cds: boolean;
}

export type ToClients = { type: 'connect'; count: number } | { type: 'expect'; round: number; port?: number } | { type: 'close' };

export type FromClients =
  | { type: 'connected'; total: number }
  | { type: 'armed'; round: number }
  | { type: 'acked'; round: number; versions: string[] }
  | { type: 'error'; message: string };

const ADS_SOTW = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const DECODE_OPTS = { longs: String, enums: String, arrays: true, objects: true } as const;

interface Any {
  type_url: string;
  value: Uint8Array;
}
interface Response {
  version_info: string;
  nonce: string;
  type_url: string;
  resources: Any[];
}
interface Cla {
  cluster_name: string;
  endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { port_value: number } } } }> }>;
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? '') as ClientsConfig;
  const send = (m: FromClients): void => {
    process.send?.(m);
  };
  const fail = (message: string): void => {
    send({ type: 'error', message });
  };

  const reqType = lookupType('envoy.service.discovery.v3.DiscoveryRequest');
  const respType = lookupType('envoy.service.discovery.v3.DiscoveryResponse');
  const claType = lookupType(TYPE_URLS.endpoint);
  const encodeReq = (m: object): Buffer => Buffer.from(reqType.encode(reqType.fromObject(m)).finish());
  const identity = (b: Buffer): Buffer => b;

  interface Stream {
    client: grpc.Client;
    call: grpc.ClientDuplexStream<object, Buffer>;
    synced: boolean;
    /** Last round this stream has answered. */
    round: number;
    lastVersion: string;
  }
  const streams: Stream[] = [];
  let closing = false;

  // Connect bookkeeping.
  let waitingSync = 0;
  let batchDone: (() => void) | undefined;
  // Round bookkeeping.
  let round = 0;
  let expectPort: number | undefined;
  let remaining = 0;
  const versions = new Set<string>();

  const onEds = (s: Stream, r: Response): void => {
    // Full decode of every resource: what a proxy does before it can apply (and ACK) the config.
    let sawPort = expectPort === undefined;
    for (const any of r.resources) {
      if (any.type_url !== TYPE_URLS.endpoint) throw new Error(`unexpected resource type ${any.type_url} in EDS response`);
      const cla = claType.toObject(claType.decode(any.value), DECODE_OPTS) as Cla;
      if (cla.cluster_name !== cfg.edsName) throw new Error(`EDS response for ${cla.cluster_name}, subscribed to ${cfg.edsName}`);
      if (!sawPort) {
        for (const loc of cla.endpoints)
          for (const e of loc.lb_endpoints) if (e.endpoint.address.socket_address.port_value === expectPort) sawPort = true;
      }
    }
    if (r.resources.length !== 1) throw new Error(`EDS response carries ${r.resources.length} resources, expected 1`);
    s.call.write({ type_url: TYPE_URLS.endpoint, resource_names: [cfg.edsName], version_info: r.version_info, response_nonce: r.nonce });
    s.lastVersion = r.version_info;
    if (!s.synced) {
      s.synced = true;
      s.round = round;
      waitingSync -= 1;
      if (waitingSync === 0) batchDone?.();
      return;
    }
    if (s.round === round) throw new Error(`extra EDS response (version ${r.version_info}) in round ${round}`);
    if (!sawPort) throw new Error(`round ${round}: EDS response lacks the changed endpoint port ${expectPort}`);
    s.round = round;
    versions.add(r.version_info);
    remaining -= 1;
    if (remaining === 0) send({ type: 'acked', round, versions: [...versions] });
  };

  const open = (id: number): void => {
    // A distinct option and a local subchannel pool: one HTTP/2 connection per client, as separate Envoys have.
    const client = new grpc.Client(cfg.address, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'mcpmesh.bench_client': id,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    const call = client.makeBidiStreamRequest(ADS_SOTW, encodeReq, identity);
    const s: Stream = { client, call, synced: false, round: 0, lastVersion: '' };
    streams.push(s);
    let subscribed = false;
    const subscribeEds = (withNode: boolean): void => {
      subscribed = true;
      call.write({
        type_url: TYPE_URLS.endpoint,
        resource_names: [cfg.edsName],
        ...(withNode ? { node: nodeMsg } : {}),
      });
    };
    const nodeMsg = node(`bench-gw-${id}`, { role: 'gateway' }, { region: BENCH_REGION, zone: BENCH_ZONE });
    call.on('data', (b: Buffer) => {
      try {
        const r = respType.toObject(respType.decode(b), DECODE_OPTS) as Response;
        if (r.type_url === TYPE_URLS.cluster) {
          // Connect-time only (not measured): the envelope is decoded, the clusters are not.
          call.write({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: r.version_info, response_nonce: r.nonce });
          if (!subscribed) subscribeEds(false);
        } else if (r.type_url === TYPE_URLS.endpoint) {
          onEds(s, r);
        } else {
          throw new Error(`unexpected response type ${r.type_url}`);
        }
      } catch (err) {
        fail(`client ${id}: ${(err as Error).message}`);
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (!closing) fail(`client ${id}: stream error: ${err.message}`);
    });
    call.on('end', () => {
      if (!closing) fail(`client ${id}: server ended the stream`);
    });
    if (cfg.cds) call.write({ type_url: TYPE_URLS.cluster, resource_names: [], node: nodeMsg });
    else subscribeEds(true);
  };

  const connect = async (count: number): Promise<void> => {
    // Open in batches and let each batch sync (CDS + EDS ACKed) before the next: a thousand simultaneous
    // handshakes and CDS responses would only measure the pile-up.
    const batch = 25;
    for (let i = 0; i < count; i += batch) {
      const n = Math.min(batch, count - i);
      const synced = new Promise<void>((resolve) => {
        batchDone = resolve;
      });
      waitingSync += n;
      for (let j = 0; j < n; j++) open(streams.length);
      await synced;
    }
    send({ type: 'connected', total: streams.length });
  };

  process.on('message', (m: ToClients) => {
    if (m.type === 'connect') {
      void connect(m.count);
    } else if (m.type === 'expect') {
      round = m.round;
      expectPort = m.port;
      remaining = streams.length;
      versions.clear();
      send({ type: 'armed', round });
    } else if (m.type === 'close') {
      closing = true;
      for (const s of streams) {
        s.call.cancel();
        s.client.close();
      }
      process.disconnect?.();
      setTimeout(() => process.exit(0), 50).unref();
    }
  });
  process.on('disconnect', () => {
    // Parent gone: do not linger.
    if (!closing) process.exit(0);
  });
}

main();
