// Real gRPC servers standing in for MCP service endpoints in xDS tests: each answers with its own id,
// and can be told to fail (UNAVAILABLE) so outlier detection has something to eject.
import * as grpc from '@grpc/grpc-js';

export const WHO_METHOD = '/mcpmesh.test.Echo/Who';

const json = {
  serialize: (v: object): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): Record<string, string> => JSON.parse(b.toString() || '{}') as Record<string, string>,
};

export const echoService: grpc.ServiceDefinition = {
  Who: {
    path: WHO_METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

export interface Backend {
  id: string;
  port: number;
  failing: boolean;
  calls: number;
  stop(): Promise<void>;
}

export async function startBackend(id: string): Promise<Backend> {
  const server = new grpc.Server();
  const backend: Backend = {
    id,
    port: 0,
    failing: false,
    calls: 0,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => server.forceShutdown()),
  };
  server.addService(echoService, {
    Who: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      backend.calls += 1;
      if (backend.failing) cb({ code: grpc.status.UNAVAILABLE, details: `${id} is failing` });
      else cb(null, { id });
    },
  });
  backend.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return backend;
}

export const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo');
export type EchoClientInstance = InstanceType<typeof EchoClient> & {
  Who(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { id: string }) => void): grpc.ClientUnaryCall;
};

export function who(client: EchoClientInstance, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Who({}, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res?.id ?? '')));
  });
}

/** Makes `n` calls and counts answers by backend id ("error:<code>" for failures). */
export async function spread(client: EchoClientInstance, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    let key: string;
    try {
      key = await who(client);
    } catch (err) {
      key = `error:${(err as grpc.ServiceError).code}`;
    }
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}
