// A separate process holding ADS streams that stop reading, so the test process measures only the server's memory.
// usage: node stuck-clients.ts <address> <count>   prints "ready" once every stream got its first response.
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';

const [address, countText] = process.argv.slice(2);
const count = Number(countText);
const streams: AdsStream[] = [];
for (let i = 0; i < count; i++) {
  // One connection per stream, as separate proxies have.
  const c = new RawAdsClient(address as string, { 'grpc.use_local_subchannel_pool': 1 });
  const delta = i % 2 === 1;
  const s = delta ? c.delta() : c.sotw();
  const n = node(`stuck-${i}`, { role: 'gateway', listener_port: 8443 }, { region: 'eu-west', zone: 'a' });
  if (delta) {
    s.send({ node: n, type_url: TYPE_URLS.cluster });
    s.send({ type_url: TYPE_URLS.endpoint, resource_names_subscribe: ['*'] });
  } else {
    s.send({ node: n, type_url: TYPE_URLS.cluster, resource_names: [] });
    s.send({ type_url: TYPE_URLS.endpoint, resource_names: ['*'] });
  }
  streams.push(s);
}
await Promise.all(streams.map((s) => s.next('cluster', 30_000)));
for (const s of streams) s.call.pause();
process.stdout.write('ready\n');
// Stay (and never read) until the test kills this process.
setInterval(() => {}, 60_000);
