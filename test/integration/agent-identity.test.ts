// The sidecar agent in a secured mesh, as an operator runs it (`mcpmesh sidecar --join-token ...` with Envoy
// in another container): it makes its key, gets its certificate from the CA with the token, serves it on its
// SDS socket, writes a bootstrap whose xDS channel is mTLS through that socket, and reports ready only once
// it holds a certificate. An Envoy stand-in reads the socket as Envoy would (SDS StreamSecrets) and then
// talks xDS with that certificate, as Envoy's bootstrap tells it to.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { SidecarAgent } from '../../sidecar/src/agent.ts';
import { parseSidecarArgs } from '../../sidecar/src/cli.ts';
import { decodeResources, node, RawAdsClient } from '../helpers/ads-client.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { waitFor } from '../helpers/wait.ts';
import { consulControlPlaneOptions, identityOnlySecurity } from '../helpers/control-plane.ts';

describe('sidecar agent with a join token: key beside the workload, certificate over SDS, mTLS xDS', () => {
  let consul: TestConsul;
  let cp: ControlPlane;
  let everything: RunningServer;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-agent-id-'));
  const service = uniqueName('weather');

  before(async () => {
    consul = await startConsul();
    everything = await startEverythingHttp();
    cp = await new ControlPlane(
      consulControlPlaneOptions(dir, consul, { consulExtra: { backoffFactorMs: 20 }, overrides: identityOnlySecurity('mesh.test') }),
    ).start();
  });
  after(async () => {
    await cp?.stop();
    await everything?.stop();
    await consul?.stop();
  });

  it('refuses a token for another service at the command line', async () => {
    const { token } = await cp.mintJoinToken('spiffe://mesh.test/mcp/billing');
    assert.throws(
      () =>
        parseSidecarArgs(
          ['--service', service, '--port', '7001', '--join-token', token, '--external-envoy', '--bootstrap-out', path.join(dir, 'x.json')],
          {},
        ),
      /--join-token: the token is for spiffe:\/\/mesh\.test\/mcp\/billing, but this agent is spiffe:\/\/mesh\.test\/mcp\//,
    );
  });

  it("gets its certificate, serves it on the SDS socket, and the bootstrap's mTLS xDS channel works with it", async () => {
    const { token } = await cp.mintJoinToken(`spiffe://mesh.test/mcp/${service}`);
    const bootstrapFile = path.join(dir, 'envoy.json');
    const { options } = parseSidecarArgs(
      [
        '--service',
        service,
        '--port',
        String(everything.port),
        '--address',
        '127.0.0.1',
        '--join-token',
        token,
        '--control-plane',
        `127.0.0.1:${cp.xdsPort}`,
        '--consul',
        consul.address,
        '--external-envoy',
        '--bootstrap-out',
        bootstrapFile,
        '--sds-socket',
        path.join(dir, 'sds.sock'),
        '--health-port',
        '0',
      ],
      consul.token ? { CONSUL_HTTP_TOKEN: consul.token } : {},
    );
    const agent = new SidecarAgent({
      ...options,
      healthIntervalMs: 200,
      healthTimeoutMs: 500,
      drainMs: 100,
      healthHost: '127.0.0.1',
      log: () => {},
    });
    await agent.start();
    try {
      await waitFor('the agent holds a certificate and is ready', async () => agent.readiness().ready, 10_000);

      // The bootstrap, as Envoy reads it: xDS over mTLS, its certificate from the agent's socket.
      const bootstrap = JSON.parse(readFileSync(bootstrapFile, 'utf8')) as {
        static_resources: { clusters: Array<{ name: string; transport_socket?: unknown; load_assignment?: unknown }> };
      };
      const xds = bootstrap.static_resources.clusters.find((c) => c.name === 'mcpmesh.xds');
      assert.match(
        JSON.stringify(xds?.transport_socket),
        /mcpmesh\.identity.*mcpmesh\.sds.*spiffe:\/\/mesh\.test\/control-plane.*mcpmesh\.bootstrap-trust/,
      );
      const sds = bootstrap.static_resources.clusters.find((c) => c.name === 'mcpmesh.sds');
      assert.match(
        JSON.stringify(sds?.load_assignment),
        new RegExp(`"pipe":\\{"path":"${path.join(dir, 'sds.sock').replaceAll('/', '\\/')}"`),
      );

      // The Envoy stand-in: both secrets the bootstrap names, from the socket.
      const local = new RawAdsClient(`unix:${path.join(dir, 'sds.sock')}`);
      const fetchSecret = async (name: string): Promise<Record<string, unknown>> => {
        const s = local.secrets();
        s.send({ type_url: TYPE_URLS.secret, resource_names: [name] });
        const r = decodeResources(await s.next('secret', 5_000))[0] as Record<string, unknown>;
        s.close();
        return r;
      };
      const identity = (await fetchSecret('mcpmesh.identity')) as {
        tls_certificate: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } };
      };
      const roots = (await fetchSecret('mcpmesh.bootstrap-trust')) as { validation_context: { trusted_ca: { inline_string: string } } };
      local.close();
      assert.equal(
        new X509Certificate(identity.tls_certificate.certificate_chain.inline_string).subjectAltName,
        `URI:spiffe://mesh.test/mcp/${service}`,
      );

      // ... then xDS with exactly that: mTLS, the control plane checked by its SPIFFE ID.
      const creds = grpc.credentials.createSsl(
        Buffer.from(roots.validation_context.trusted_ca.inline_string),
        Buffer.from(identity.tls_certificate.private_key.inline_string),
        Buffer.from(identity.tls_certificate.certificate_chain.inline_string),
        {
          checkServerIdentity: (_h, cert) =>
            cert.subjectaltname === 'URI:spiffe://mesh.test/control-plane' ? undefined : new Error(cert.subjectaltname),
        },
      );
      const ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`, {}, creds);
      const s = ads.sotw();
      s.send({ type_url: TYPE_URLS.listener, node: node(agent.serviceId, { role: 'sidecar', service, app_port: everything.port }) });
      const listeners = decodeResources(await s.next('listener', 5_000));
      assert.equal(listeners[0]?.['name'], 'sidecar.inbound');
      s.close();
      ads.close();
    } finally {
      await agent.stop();
    }
  });
});
