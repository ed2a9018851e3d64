// Worker thread entry of the fuzz's oracles: starts both SDK servers (oracle-servers.ts), reports their
// ports, and closes them when the parent says so.
import { parentPort } from 'node:worker_threads';
import { startOracleServers } from './oracle-servers.ts';

const port = parentPort;
if (!port) throw new Error('oracle-worker.ts runs as a worker thread (see oracles.ts)');
const servers = await startOracleServers();
port.on('message', (m: unknown) => {
  if (m === 'close') void servers.close().then(() => port.close());
});
port.postMessage({ ports: servers.ports });
