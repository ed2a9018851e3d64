// A real grpc-js-xds client in a secured mesh: its xDS traffic goes through the local agent's relay (mTLS to
// the control plane with the agent's certificate; grpc-js-xds itself can only dial plain), and its calls to
// the service's replicas are mTLS configured by xDS, with the identity and CA from gRPC's file_watcher
// certificate provider reading the files the agent writes. The replicas require a client certificate from
// the mesh and present weather's identity, which the client checks.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { WorkloadIdentity } from '../../sidecar/src/identity.ts';
import { XdsRelay } from '../../sidecar/src/xds-relay.ts';
import { EchoClient, echoService, who, type EchoClientInstance } from '../helpers/grpc-backends.ts';
import { waitFor } from '../helpers/wait.ts';
import { emptyControlPlaneOptions, identityOnlySecurity } from '../helpers/control-plane.ts';

const TD = 'mesh.test';
const quiet = (): void => {};

describe("grpc-js-xds over mTLS: xDS through the agent's relay, calls with certificate-provider TLS", () => {
  let cp: ControlPlane;
  let relay: XdsRelay;
  const agents: WorkloadIdentity[] = [];
  const servers: grpc.Server[] = [];
  const clients: EchoClientInstance[] = [];
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-proxyless-'));
  let xds: typeof import('@grpc/grpc-js-xds');

  const identity = async (spiffeId: string, extra: { dir?: string } = {}): Promise<WorkloadIdentity> => {
    const { token } = await cp.mintJoinToken(spiffeId);
    const a = new WorkloadIdentity({
      controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
      credential: { type: 'join-token', token },
      log: quiet,
      ...extra,
    });
    agents.push(a);
    await a.start();
    return a;
  };

  /** A replica of weather that speaks only mTLS: weather's certificate, clients from the mesh CA. */
  async function replica(id: string, w: WorkloadIdentity): Promise<number> {
    const held = w.current;
    assert.ok(held);
    const server = new grpc.Server();
    server.addService(echoService, { Who: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { id }) });
    servers.push(server);
    return new Promise((resolve, reject) =>
      server.bindAsync(
        '127.0.0.1:0',
        grpc.ServerCredentials.createSsl(
          Buffer.from(held.bundlePem),
          [{ private_key: Buffer.from(held.keyPem), cert_chain: Buffer.from(held.certChainPem) }],
          true,
        ),
        (err, port) => (err ? reject(err) : resolve(port)),
      ),
    );
  }

  before(async () => {
    const options = emptyControlPlaneOptions(dir, identityOnlySecurity(TD));
    cp = await new ControlPlane(options).start();
    const weather = await identity(`spiffe://${TD}/mcp/weather`);
    const ports = [await replica('w1', weather), await replica('w2', weather)];
    writeFileSync(
      options.registryFile,
      `services:\n  - name: weather\n    protocol: "2025-11-25"\n    sidecar: true\n    endpoints:\n${ports.map((p) => `      - { address: 127.0.0.1, port: ${p} }`).join('\n')}\n`,
    );

    // The client's agent: the gateway identity "apps", its files for the certificate provider, the relay.
    const files = path.join(dir, 'apps');
    const apps = await identity(`spiffe://${TD}/gateway/apps`, { dir: files });
    relay = new XdsRelay({ controlPlane: { host: '127.0.0.1', port: cp.xdsPort }, identity: () => apps.current, log: quiet });
    const relayPort = await relay.listen('127.0.0.1:0');
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${relayPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: {
        id: 'apps-1',
        cluster: 'apps',
        locality: { region: 'eu-west', zone: 'a' },
        metadata: { role: 'gateway', gateway_name: 'apps' },
      },
      certificate_providers: {
        mcpmesh: {
          plugin_name: 'file_watcher',
          config: {
            certificate_file: path.join(files, 'cert.pem'),
            private_key_file: path.join(files, 'key.pem'),
            ca_certificate_file: path.join(files, 'bundle.pem'),
            refresh_interval: '1s',
          },
        },
      },
    });
    xds = await import('@grpc/grpc-js-xds');
    xds.register();
  });

  after(async () => {
    for (const c of clients) c.close();
    await relay?.close();
    for (const a of agents) a.stop();
    for (const s of servers) s.forceShutdown();
    await cp?.stop();
    // grpc-js-xds's xDS client is process-wide with no close(): exit once the results are written.
    setTimeout(() => process.exit(process.exitCode ?? 0), 1000);
  });

  it('resolves xds:///weather through the relay and calls both replicas over mTLS', async () => {
    // XdsChannelCredentials: TLS as the cluster's xDS config says (certificate providers), plain otherwise.
    const c = new EchoClient('xds:///weather', new xds.XdsChannelCredentials(grpc.credentials.createInsecure())) as EchoClientInstance;
    clients.push(c);
    const seen = new Set<string>();
    await waitFor(
      'calls reach both mTLS-only replicas',
      async () => {
        seen.add(await who(c).catch(() => ''));
        return seen.has('w1') && seen.has('w2');
      },
      20_000,
    );
    const proxies = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/proxies`)).json()) as Array<{
      id: string;
      peer: string;
      role: string;
    }>;
    assert.ok(
      proxies.some((p) => p.id === 'apps-1' && p.role === 'gateway'),
      JSON.stringify(proxies),
    );
  });

  it("the cluster it got asks for certificate-provider TLS checking weather's identity, and a plain client cannot reach a replica", async () => {
    const dump = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?node=apps-1`)).json()) as {
      cluster?: Array<{ name: string; resource: { transport_socket?: unknown } }>;
      endpoint?: Array<{
        resource: { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { port_value: number } } } }> }> };
      }>;
    };
    const cluster = dump.cluster?.find((x) => x.name === 'mcp.weather');
    assert.ok(cluster, JSON.stringify(dump).slice(0, 300));
    const tls = (cluster.resource.transport_socket as { typed_config: { common_tls_context: Record<string, unknown> } }).typed_config
      .common_tls_context;
    assert.deepEqual(tls, {
      tls_certificate_provider_instance: { instance_name: 'mcpmesh' },
      validation_context: {
        ca_certificate_provider_instance: { instance_name: 'mcpmesh' },
        match_subject_alt_names: [{ exact: 'spiffe://mesh.test/mcp/weather' }],
      },
    });
    const port = dump.endpoint?.[0]?.resource.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address.port_value;
    assert.ok(port);
    const plain = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as EchoClientInstance;
    clients.push(plain);
    await assert.rejects(who(plain, 1000));
  });
});
