// The `mcpmesh sidecar` CLI as an operator runs it, for a stdio-only MCP server: it bridges
// server-everything (stdio) to HTTP, registers it in Consul, the control plane routes to it, a real MCP
// client calls a tool at the advertised endpoint, and SIGTERM drains and deregisters.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { consulControlPlaneOptions } from '../helpers/control-plane.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { EVERYTHING_BIN } from '../helpers/everything.ts';
import { waitFor } from '../helpers/wait.ts';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sidecar/src/cli.ts');

describe('mcpmesh sidecar CLI (stdio server through the bridge)', () => {
  let consul: TestConsul;
  let cp: ControlPlane;

  before(async () => {
    consul = await startConsul();
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    cp = await new ControlPlane(consulControlPlaneOptions(dir, consul)).start();
  });
  after(async () => {
    await cp?.stop();
    await consul?.stop();
  });

  it('rejects bad arguments with every problem named', () => {
    const r = spawnSync(process.execPath, [CLI, 'sidecar', '--service', 'Nope', '--port', '0', '--drain', 'soon'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--service: must be a DNS label \(got "Nope"\)/);
    assert.match(r.stderr, /--port: must be a port number 1-65535 \(got "0"\)/);
    assert.match(r.stderr, /--drain: must be a duration/);
  });

  it('serves a stdio server in the mesh and leaves cleanly on SIGTERM', async () => {
    const service = uniqueName('everything');
    const child = spawn(
      process.execPath,
      [
        CLI,
        'sidecar',
        '--service',
        service,
        '--stdio',
        '--no-envoy',
        '--address',
        '127.0.0.1',
        '--region',
        'eu-west',
        '--zone',
        'b',
        '--consul',
        consul.address,
        '--health-interval',
        '300ms',
        '--drain',
        '200ms',
        '--',
        process.execPath,
        EVERYTHING_BIN,
        'stdio',
      ],
      {
        env: { ...process.env, ...(consul.token ? { CONSUL_HTTP_TOKEN: consul.token } : {}), ENVOY_BIN: '' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let logs = '';
    child.stderr.on('data', (d: Buffer) => {
      logs += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const endpoint = await waitFor(
        'healthy endpoint in the gateway config',
        async () => {
          const dump = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?role=gateway`)).json()) as {
            endpoint: Array<{
              name: string;
              resource: {
                endpoints?: Array<{
                  locality?: { zone?: string };
                  lb_endpoints: Array<{
                    endpoint: { address: { socket_address: { address: string; port_value: number } } };
                    health_status: string;
                  }>;
                }>;
              };
            }>;
          };
          const loc = dump.endpoint.find((e) => e.name === `mcp.${service}` || e.name.startsWith(`mcp.${service}~`))?.resource
            .endpoints?.[0];
          const ep = loc?.lb_endpoints[0];
          return ep?.health_status === 'HEALTHY' ? { ...ep.endpoint.address.socket_address, zone: loc?.locality?.zone } : undefined;
        },
        30_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nsidecar log:\n${logs}`);
      });
      assert.equal(endpoint.zone, 'b');
      const client = new Client({ name: 'mesh-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`http://${endpoint.address}:${endpoint.port_value}/mcp`)));
      const result = await client.callTool({ name: 'echo', arguments: { message: 'through the mesh' } });
      const first = (result.content as Array<{ type: string; text?: string }>)[0];
      assert.equal(first?.text, 'Echo: through the mesh');
      await client.close();
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, logs);
    assert.match(logs, /deregistered from consul/);
    await waitFor('service gone from the mesh', async () => {
      const dump = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/config_dump?role=gateway`)).json()) as {
        cluster: Array<{ name: string }>;
      };
      return !dump.cluster.some((c) => c.name === `mcp.${service}`);
    });
  });
});
