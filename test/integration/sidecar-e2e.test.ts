// End to end without Envoy: the sidecar agent registers a real MCP server (server-everything) in Consul,
// the control plane picks it up, and an ADS client sees the endpoint; a hung server goes critical and
// unhealthy; stopping the agent removes the endpoint.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { consulControlPlaneOptions } from '../helpers/control-plane.ts';
import { SidecarAgent } from '../../sidecar/src/agent.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { waitFor } from '../helpers/wait.ts';

interface Dump {
  endpoint: Array<{
    name: string;
    resource: {
      endpoints?: Array<{
        lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } }; health_status?: string }>;
      }>;
    };
  }>;
}

describe(`sidecar agent -> ${process.env['CONSUL_HTTP_ADDR'] ? 'real Consul' : 'Consul stand-in'} -> control plane -> xDS`, () => {
  let consul: TestConsul;
  let cp: ControlPlane;
  let everything: RunningServer;
  const service = uniqueName('everything');

  async function endpoints(): Promise<string[] | undefined> {
    const dump = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?role=gateway`)).json()) as Dump;
    const cla = dump.endpoint.find((e) => e.name === `mcp.${service}` || e.name.startsWith(`mcp.${service}~`));
    if (!cla) return undefined;
    return (cla.resource.endpoints ?? []).flatMap((l) =>
      l.lb_endpoints.map(
        (e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}=${e.health_status}`,
      ),
    );
  }

  before(async () => {
    consul = await startConsul();
    everything = await startEverythingHttp();
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    cp = await new ControlPlane(consulControlPlaneOptions(dir, consul, { consulExtra: { backoffFactorMs: 20 } })).start();
  });
  after(async () => {
    await cp?.stop();
    everything?.child.kill('SIGCONT');
    await everything?.stop();
    await consul?.stop();
  });

  it('registers, tracks MCP health, and deregisters on stop', async () => {
    const logs: string[] = [];
    const agent = new SidecarAgent({
      service,
      address: '127.0.0.1',
      appPort: everything.port,
      inboundPort: 15006,
      mcpPath: '/mcp',
      protocol: '2025-11-25',
      transport: 'streamable-http',
      region: 'eu-west',
      zone: 'a',
      consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}) },
      controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
      healthIntervalMs: 200,
      healthTimeoutMs: 500,
      drainMs: 300,
      healthPort: 0,
      healthHost: '127.0.0.1',
      log: (level, msg, f) => void logs.push(`${level} ${msg} ${JSON.stringify(f ?? {})}`),
    });
    await agent.start();
    const probe = async (p: string): Promise<string> => {
      const r = await fetch(`http://127.0.0.1:${agent.healthPort}${p}`);
      return `${r.status} ${await r.text()}`;
    };
    try {
      assert.match(await probe('/healthz'), /^200 ok/);
      assert.equal(agent.advertisedPort, everything.port, 'without Envoy the MCP server port is advertised');
      const healthy = await waitFor(
        'endpoint healthy in the gateway config',
        async () => (await endpoints())?.join() === `127.0.0.1:${everything.port}=HEALTHY`,
        15_000,
      );
      assert.ok(healthy);
      assert.match(await probe('/readyz'), /^200 ready: MCP ping ok/);
      if (consul.standin) {
        const check = consul.standin.checks().find((c) => c.id === agent.checkId);
        assert.equal(check?.status, 'passing');
        assert.match(check?.output ?? '', /MCP ping ok/);
        const reg = consul.standin.services().find((s) => s.id === agent.serviceId);
        assert.deepEqual(reg?.tags, ['mcp']);
        assert.equal(reg?.meta['mcp-protocol'], '2025-11-25');
        assert.equal(reg?.meta['region'], 'eu-west');
      }
      // Freeze the server: the kernel still accepts TCP, but nothing answers MCP.
      everything.child.kill('SIGSTOP');
      await waitFor(
        'endpoint unhealthy after the MCP check fails',
        async () => (await endpoints())?.join() === `127.0.0.1:${everything.port}=UNHEALTHY`,
        15_000,
      );
      // Kubernetes sees what Consul sees: the readiness probe fails with the MCP check, liveness does not.
      assert.match(await probe('/readyz'), /^503 not ready: MCP server unhealthy/);
      assert.match(await probe('/healthz'), /^200 ok/);
      everything.child.kill('SIGCONT');
      await waitFor('healthy again', async () => (await endpoints())?.join() === `127.0.0.1:${everything.port}=HEALTHY`, 15_000);
    } finally {
      await agent.stop();
    }
    await waitFor('service gone after the agent stopped', async () => (await endpoints()) === undefined, 15_000);
    assert.ok(
      logs.some((l) => l.includes('deregistered from consul')),
      logs.join('\n'),
    );
  });

  it('with Envoy in another container: writes the bootstrap, advertises the inbound port, starts no Envoy', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-ext-'));
    const bootstrapPath = path.join(dir, 'envoy', 'bootstrap.json');
    const name = uniqueName('external');
    const agent = new SidecarAgent({
      service: name,
      address: '127.0.0.1',
      appPort: everything.port,
      inboundPort: 15123,
      mcpPath: '/mcp',
      protocol: '2025-11-25',
      transport: 'streamable-http',
      externalEnvoy: true,
      bootstrapPath,
      consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}) },
      controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
      healthIntervalMs: 200,
      drainMs: 0,
      log: () => {},
    });
    await agent.start();
    try {
      assert.equal(agent.advertisedPort, 15123);
      const bootstrap = JSON.parse(readFileSync(bootstrapPath, 'utf8')) as { node: { id: string; metadata: Record<string, unknown> } };
      assert.equal(bootstrap.node.id, agent.serviceId);
      assert.deepEqual(
        [bootstrap.node.metadata['role'], bootstrap.node.metadata['app_port'], bootstrap.node.metadata['inbound_port']],
        ['sidecar', everything.port, 15123],
      );
      if (consul.standin) {
        await waitFor('registered', async () => consul.standin?.services().some((s) => s.id === agent.serviceId) ?? false, 10_000);
        const reg = consul.standin.services().find((s) => s.id === agent.serviceId);
        assert.equal(reg?.port, 15123);
        assert.equal(reg?.meta['mcpmesh-sidecar'], 'envoy');
      }
    } finally {
      await agent.stop();
    }
  });
});
