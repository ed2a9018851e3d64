// A raw ADS client that behaves like a gateway's Envoy for CDS and EDS: it ACKs every response, subscribes to
// the EDS names the clusters point at (following renames, as Envoy does), and keeps the latest of each, with
// the exact bytes and versions it was sent (for byte-for-byte comparisons between control planes).
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, type AdsStream, type Msg } from './ads-client.ts';

interface Held {
  version: string;
  bytes: Map<string, string>;
  decoded: Map<string, Msg>;
}

export class MeshFollower {
  readonly stream: AdsStream;
  cds: Held = { version: '', bytes: new Map(), decoded: new Map() };
  eds: Held = { version: '', bytes: new Map(), decoded: new Map() };
  responses = 0;
  private edsNames = '';
  private edsNonce = '';

  constructor(stream: AdsStream, node: Msg) {
    this.stream = stream;
    stream.call.on('data', (m: Msg) => this.onResponse(m));
    stream.send({ type_url: TYPE_URLS.cluster, resource_names: [], node });
  }

  private onResponse(m: Msg): void {
    this.responses += 1;
    const resources = decodeResources(m);
    const raw = m['resources'] as Array<{ value: Uint8Array }>;
    const name = (r: Msg): string => String(r['name'] ?? r['cluster_name'] ?? '');
    const held: Held = {
      version: String(m['version_info']),
      bytes: new Map(resources.map((r, i) => [name(r), Buffer.from(raw[i]?.value ?? []).toString('base64')])),
      decoded: new Map(resources.map((r) => [name(r), r])),
    };
    if (m['type_url'] === TYPE_URLS.cluster) {
      this.cds = held;
      this.stream.send({ type_url: TYPE_URLS.cluster, resource_names: [], version_info: m['version_info'], response_nonce: m['nonce'] });
      const names = [...held.decoded.values()]
        .map((c) => (c['eds_cluster_config'] as { service_name?: string } | undefined)?.service_name)
        .filter((n): n is string => !!n)
        .sort();
      if (names.join('\n') !== this.edsNames) {
        this.edsNames = names.join('\n');
        this.stream.send({
          type_url: TYPE_URLS.endpoint,
          resource_names: names,
          version_info: this.eds.version,
          response_nonce: this.edsNonce,
        });
      }
    } else if (m['type_url'] === TYPE_URLS.endpoint) {
      this.eds = held;
      this.edsNonce = String(m['nonce']);
      this.stream.send({
        type_url: TYPE_URLS.endpoint,
        resource_names: this.edsNames ? this.edsNames.split('\n') : [],
        version_info: m['version_info'],
        response_nonce: m['nonce'],
      });
    }
  }

  /** Cluster names held. */
  clusters(): string[] {
    return [...this.cds.decoded.keys()].sort();
  }

  /** The EDS name cluster `cluster` points at. */
  edsName(cluster: string): string | undefined {
    return (this.cds.decoded.get(cluster)?.['eds_cluster_config'] as { service_name?: string } | undefined)?.service_name;
  }

  /** `address:port=HEALTH` of a cluster's endpoints, sorted; undefined when the cluster or its endpoints are not held. */
  endpoints(cluster: string): string[] | undefined {
    const eds = this.edsName(cluster);
    const cla = eds === undefined ? undefined : this.eds.decoded.get(eds);
    if (!cla) return undefined;
    const out: string[] = [];
    for (const l of (cla['endpoints'] as Array<{
      lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } }; health_status?: string }>;
    }>) ?? []) {
      for (const e of l.lb_endpoints)
        out.push(
          `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}=${e.health_status ?? 'UNKNOWN'}`,
        );
    }
    return out.sort();
  }

  close(): void {
    this.stream.close();
  }
}
