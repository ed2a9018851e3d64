// The Consul stand-in (test/consul-standin) for the benchmark's Consul path, in its own process (forked by
// test/bench/server.ts): Consul is a separate process in a real deployment, and this keeps its CPU out of the
// control plane's event loop and RSS figures. It only serves HTTP; the registrations arrive over its API.
//
// Protocol with the parent (IPC messages):
//   child  -> { type: 'ready', address }   listening ('http://127.0.0.1:PORT').
//   parent -> { type: 'close' }            stop and exit.
import { ConsulStandIn } from '../consul-standin/server.ts';

export type FromConsul = { type: 'ready'; address: string } | { type: 'error'; message: string };
export type ToConsul = { type: 'close' };

async function main(): Promise<void> {
  // checkUpdateIntervalMs 0: check changes reach the catalog at once (real agents defer output-only changes).
  const standin = new ConsulStandIn({ checkUpdateIntervalMs: 0 });
  await standin.start(0, '127.0.0.1');
  let closing = false;
  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    await standin.stop();
    if (process.connected) process.disconnect();
    process.exit(0);
  };
  process.on('message', (m: ToConsul) => {
    if (m.type === 'close') void close();
  });
  process.on('disconnect', () => void close());
  process.send?.({ type: 'ready', address: standin.address } satisfies FromConsul);
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: (err as Error).stack ?? String(err) } satisfies FromConsul);
  process.exit(1);
});
