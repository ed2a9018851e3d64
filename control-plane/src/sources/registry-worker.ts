// Worker-thread side of parseRegistryOffThread (registry-file.ts): YAML parsing and checking of a large
// registry takes tens of milliseconds on the fast path (registry-yaml.ts) and seconds when a file needs the
// `yaml` library (about 2 s for 10,000 services), which on the main thread would stall every xDS stream, the
// admin port and the probes.
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from '../model/reader.ts';
import { layersOf } from '../model/tuning.ts';
import { parseRegistry, type RegistryWorkerInput, type RegistryWorkerMessage } from './registry-file.ts';

const port = parentPort;
if (!port) throw new Error('registry-worker.ts runs only as a worker thread');
const { text, source, batch } = workerData as RegistryWorkerInput;
const send = (m: RegistryWorkerMessage): void => port.postMessage(m);
try {
  const specs = parseRegistry(text, source);
  // In batches: the main thread deserializes each message in its own task, so no single one blocks its loop long.
  for (let i = 0; i < specs.length; i += batch) {
    const slice = specs.slice(i, i + batch);
    send({ kind: 'specs', specs: slice, layers: slice.map(layersOf) });
  }
  send({ kind: 'done', count: specs.length });
} catch (err) {
  if (err instanceof ConfigError) send({ kind: 'invalid', problems: err.problems });
  else send({ kind: 'crash', message: (err as Error).message });
}
