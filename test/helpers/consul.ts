// A Consul for tests: the real one when CONSUL_HTTP_ADDR is set, otherwise the stand-in (test/consul-standin).
import { ConsulStandIn, type ConsulStandInOptions } from '../consul-standin/server.ts';

export interface TestConsul {
  address: string;
  token?: string;
  /** Present only with the stand-in: lets a test flip checks or reset the index. */
  standin?: ConsulStandIn;
  real: boolean;
  stop(): Promise<void>;
}

export async function startConsul(opts: ConsulStandInOptions = {}): Promise<TestConsul> {
  const real = process.env['CONSUL_HTTP_ADDR'];
  if (real) {
    const token = process.env['CONSUL_HTTP_TOKEN'];
    return { address: real, ...(token ? { token } : {}), real: true, stop: async () => {} };
  }
  const standin = new ConsulStandIn({ checkUpdateIntervalMs: 0, ...opts });
  await standin.start();
  return { address: standin.address, ...(opts.aclToken ? { token: opts.aclToken } : {}), standin, real: false, stop: () => standin.stop() };
}

/** Service names unique per run, so tests can share a real Consul. */
export function uniqueName(base: string): string {
  return `${base}-${process.pid}-${Math.floor(Math.random() * 1e6)}`.slice(0, 63);
}
