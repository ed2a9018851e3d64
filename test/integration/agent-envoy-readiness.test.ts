// Issue 12 findings on the sidecar agent: readiness follows Envoy (a missing binary or a dead Envoy means
// not ready and a critical Consul check, and the spawn is retried with backoff, ENOENT included), and a
// --stdio agent without Envoy binds its bridge where it advertises (the address must be reachable).
// Envoy is the clearly named stand-in script (test/sidecar/fixtures/envoy-standin.mjs): no Envoy here.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SidecarAgent, type BridgeFactory, type SidecarAgentOptions } from '../../sidecar/src/agent.ts';
import { StdioBridge } from '../../sidecar/src/bridge/stdio-bridge.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { EVERYTHING_BIN, startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { waitFor } from '../helpers/wait.ts';

const STANDIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '../sidecar/fixtures/envoy-standin.mjs');
const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-agent-envoy-'));

describe('sidecar agent readiness follows its Envoy', () => {
  let consul: TestConsul;
  let everything: RunningServer;
  const agents: SidecarAgent[] = [];
  const logs: string[] = [];

  const agent = (over: Partial<SidecarAgentOptions>): SidecarAgent => {
    const a = new SidecarAgent({
      service: uniqueName('weather'),
      address: '127.0.0.1',
      appPort: everything.port,
      inboundPort: 15006,
      mcpPath: '/mcp',
      protocol: '2025-11-25',
      transport: 'streamable-http',
      consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}) },
      controlPlane: { host: '127.0.0.1', port: 1 },
      bootstrapPath: path.join(dir, `${agents.length}.json`),
      healthIntervalMs: 200,
      healthTimeoutMs: 2000,
      drainMs: 0,
      healthPort: 0,
      healthHost: '127.0.0.1',
      log: (level, msg, f) => void logs.push(`${level} ${msg} ${JSON.stringify(f ?? {})}`),
      ...over,
    });
    agents.push(a);
    return a;
  };
  const readyz = async (a: SidecarAgent): Promise<string> => {
    const r = await fetch(`http://127.0.0.1:${a.healthPort}/readyz`);
    return `${r.status} ${await r.text()}`;
  };

  before(async () => {
    consul = await startConsul();
    everything = await startEverythingHttp();
  });
  after(async () => {
    for (const a of agents) await a.stop();
    await everything?.stop();
    await consul?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a missing Envoy binary: not ready, Consul check critical with the reason, and the spawn is retried', async () => {
    const a = agent({ envoyBin: path.join(dir, 'no-such-envoy') });
    await a.start();
    await waitFor(
      'three spawn attempts',
      () => logs.filter((l) => l.includes('starting envoy') && l.includes('no-such-envoy')).length >= 3,
      15_000,
    );
    assert.match(await readyz(a), /^503 not ready: envoy is not running \(envoy failed to start: spawn \S+no-such-envoy ENOENT\)/);
    assert.ok(
      logs.some((l) => l.startsWith('error envoy failed to start; retrying') && l.includes('ENOENT')),
      logs.join('\n'),
    );
    if (consul.standin) {
      await waitFor(
        'a check update after the MCP probe',
        () =>
          consul.standin
            ?.checks()
            .find((c) => c.id === a.checkId)
            ?.output.includes('envoy is not running'),
        10_000,
      );
      const check = consul.standin.checks().find((c) => c.id === a.checkId);
      assert.equal(check?.status, 'critical', 'the MCP server answers, but nothing can reach it without Envoy');
    }
  });

  it('a running Envoy: ready; killed: not ready until the supervisor has it back', async () => {
    const runs = path.join(dir, 'standin-runs.log');
    process.env['ENVOY_STANDIN_LOG'] = runs;
    process.env['ENVOY_STANDIN_MODE'] = 'run';
    const a = agent({ envoyBin: STANDIN });
    await a.start();
    await waitFor('ready with Envoy up and the MCP check passing', async () => (await readyz(a)).startsWith('200'), 15_000);
    if (consul.standin)
      await waitFor('check passing', () => consul.standin?.checks().find((c) => c.id === a.checkId)?.status === 'passing', 10_000);
    await waitFor('the stand-in recorded its start', () => existsSync(runs) && readFileSync(runs, 'utf8').includes('pid'), 10_000);
    const pid = (JSON.parse(readFileSync(runs, 'utf8').trim().split('\n')[0] ?? '{}') as { pid: number }).pid;
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'not ready while Envoy is down',
      async () => /^503 not ready: envoy is not running \(envoy exited \(SIGKILL\)\)/.test(await readyz(a)),
      5_000,
    );
    await waitFor('ready again after the restart', async () => (await readyz(a)).startsWith('200'), 15_000);
    // Ready again as soon as the new process exists; the stand-in records its start once Node has booted.
    await waitFor(
      'the supervisor started Envoy again',
      () =>
        readFileSync(runs, 'utf8')
          .trim()
          .split('\n')
          .filter((l) => !l.includes('sigterm')).length >= 2,
      15_000,
    );
  });
});

const lanAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((a) => a?.family === 'IPv4' && !a.internal)?.address;

describe('a --stdio agent binds its bridge where it is reached', () => {
  let consul: TestConsul;
  const hosts: string[] = [];
  const bridges: BridgeFactory = (o) => {
    hosts.push(o.host);
    return new StdioBridge(o);
  };
  before(async () => {
    consul = await startConsul();
  });
  after(async () => {
    await consul?.stop();
  });

  const options = (address: string, over: Partial<SidecarAgentOptions> = {}): SidecarAgentOptions => ({
    service: uniqueName('stdio'),
    address,
    appPort: 0,
    inboundPort: 15006,
    mcpPath: '/mcp',
    protocol: '2025-11-25',
    transport: 'streamable-http',
    consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}) },
    controlPlane: { host: '127.0.0.1', port: 1 },
    healthIntervalMs: 500,
    healthTimeoutMs: 5000,
    drainMs: 0,
    bootstrapPath: path.join(dir, `stdio-${hosts.length}.json`),
    stdio: { command: process.execPath, args: [EVERYTHING_BIN, 'stdio'] },
    log: () => {},
    ...over,
  });

  it('without Envoy: on the advertised address, and an MCP client there gets through', {
    skip: lanAddress ? false : 'no non-loopback IPv4 address on this machine',
  }, async () => {
    const a = new SidecarAgent(options(lanAddress as string), bridges);
    await a.start();
    try {
      assert.equal(hosts.at(-1), lanAddress);
      assert.equal(a.advertisedPort, a.appPort, 'without Envoy the bridge port is advertised');
      if (consul.standin) assert.equal(consul.standin.services().find((s) => s.id === a.serviceId)?.address, lanAddress);
      const client = new Client({ name: 'reach-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`http://${lanAddress}:${a.advertisedPort}/mcp`)));
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'echo'));
      await client.close();
      await waitFor('MCP check passing through the advertised address', () => a.readiness().ready, 15_000);
    } finally {
      await a.stop();
    }
  });

  it('behind Envoy: on loopback only (Envoy is its only caller)', async () => {
    process.env['ENVOY_STANDIN_LOG'] = path.join(dir, 'standin-stdio.log');
    process.env['ENVOY_STANDIN_MODE'] = 'run';
    const a = new SidecarAgent(options(lanAddress ?? '127.0.0.1', { envoyBin: STANDIN }), bridges);
    await a.start();
    try {
      assert.equal(hosts.at(-1), '127.0.0.1');
      assert.equal(a.advertisedPort, 15006);
      assert.ok(existsSync(path.join(dir, 'standin-stdio.log')));
    } finally {
      await a.stop();
    }
  });
});
