// Worker-thread side of ResourceEncoder.warm (snapshot.ts): validates and encodes resources too big to slice (the
// gateway's route table has a virtual host per service: at 10,000 services, 0.3-0.7 s in one go), so the main
// thread's event loop keeps running meanwhile. Each result is keyed by the content hash of the body received,
// exactly as the main thread keys its own, so it serves only a resource whose JSON is the same.
import { parentPort, workerData } from 'node:worker_threads';
import type { XdsResource } from '../translate/resource.ts';
import { encodeResource, hash, type EncodeWorkerResult } from './snapshot.ts';

const port = parentPort;
if (!port) throw new Error('encode-worker.ts runs only as a worker thread');
for (const r of workerData as readonly XdsResource[]) {
  const version = hash(JSON.stringify(r.body));
  const out = encodeResource(r, version);
  const result: EncodeWorkerResult = 'violations' in out ? { version, violations: out.violations } : { version, bytes: out.bytes };
  port.postMessage(result);
}
