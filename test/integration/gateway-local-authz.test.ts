// The data path survives the control plane: a gateway started with `--policy` (the gateway agent, through the
// very code `mcpmesh gateway` runs, minus the Envoy binary) serves the MCP authorizer and the tools/list
// processor on its own Unix socket, and the harness playing the gateway's Envoy (jwt_authn -> ext_authz ->
// ext_proc -> router, as in security-e2e.test.ts) reaches them there, as the bootstrap's static clusters would.
// A REAL MCP SDK client calls a REAL MCP server (server-everything) through it.
//
//   1. The control plane (secured, same policy file) tells this gateway's node (local_authz) no authorizer
//      clusters, while its filters still name them and its bootstrap holds them.
//   2. Authorized calls succeed and denied ones fail, decided by the agent.
//   3. The control plane is stopped entirely: the same, for open sessions and new ones.
//   4. A policy edit (allow a denied tool) reaches the next call, still without a control plane; a broken edit or
//      a trust domain change is refused with file, path and reason in the agent's log, and the last good policy
//      keeps deciding.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { extProcFilterConfig, extProcRouteOverride } from '../../control-plane/src/extproc/config.ts';
import { createLogger, silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { AUTHZ_CLUSTER, EXT_PROC_CLUSTER } from '../../control-plane/src/translate/naming.ts';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { envoyBootstrap } from '../../sidecar/src/bootstrap.ts';
import { parseGatewayArgs, startGatewayAgent, type GatewayAgent, type ParsedGateway } from '../../sidecar/src/gateway-cli.ts';
import { EnvoyExtProcProxy } from '../extproc/harness.ts';
import { decodeResources, RawAdsClient, type Msg } from '../helpers/ads-client.ts';
import { startEverythingHttp, type RunningServer } from '../helpers/everything.ts';
import { allToolNames } from '../helpers/forward.ts';
import { startGateway, type Gateway } from '../helpers/gateway-harness.ts';
import { waitFor } from '../helpers/wait.ts';

const ISSUER = 'http://127.0.0.1/oauth';
const AUDIENCE = 'mcp-mesh';
const SERVICE = 'everything';

const policyYaml = (echoerTools: string, trustDomain = 'mcpmesh.local'): string => `
trustDomain: ${trustDomain}
providers:
  - { name: dev, issuer: "${ISSUER}", audiences: [${AUDIENCE}], jwksUri: "${ISSUER}/jwks" }
roles:
  echoer:
    allow:
      - { service: ${SERVICE}, tools: [${echoerTools}] }
  summer:
    allow:
      - { service: ${SERVICE}, tools: [get-sum] }
`;

/** A 403 from the authorizer for `tool`, as the SDK client reports it. */
function forbidden(tool: string) {
  return (err: Error & { code?: number }): boolean => {
    assert.equal(err.code, 403, err.message);
    const body = JSON.parse(err.message.slice(err.message.indexOf('{'))) as { error: { code: number; message: string } };
    assert.equal(body.error.code, -32003, err.message);
    assert.match(body.error.message, new RegExp(`tool "${tool}" on service "${SERVICE}" is denied by policy rule`));
    return true;
  };
}

/** `v` with every Any decoded into its message, recursively (the listener's filters live in nested Anys). */
function expandAnys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(expandAnys);
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return v;
  const o = v as Record<string, unknown>;
  if (typeof o['type_url'] === 'string' && o['value'] instanceof Uint8Array) {
    const t = lookupType(o['type_url']);
    return expandAnys(t.toObject(t.decode(o['value']), { enums: String, longs: String, arrays: true }));
  }
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, expandAnys(x)]));
}

/** Whether anything accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('the data path survives the control plane: the gateway agent decides with the last good policy', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-local-authz-'));
  const policyFile = path.join(dir, 'policy.yaml');
  const socket = path.join(dir, 'run', 'authz.sock');
  let edits = 0;
  /** Replaces the file the way editors and ConfigMap updates do: a new file renamed over the old one. */
  const writePolicy = (text: string): void => {
    const tmp = path.join(dir, `.policy.${edits++}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, policyFile);
  };
  const agentLog: Array<Record<string, unknown>> = [];
  let issuer: DevIssuer;
  let everything: RunningServer;
  let cp: ControlPlane | undefined;
  let cpPorts: { xds: number; authz: number };
  let parsed: ParsedGateway;
  let agent: GatewayAgent;
  let extProc: EnvoyExtProcProxy;
  let gateway: Gateway;
  const clients: Client[] = [];

  const tokenFor = async (role: string): Promise<string> => (await issuer.sign({ subject: `agent-${role}`, roles: [role] })).token;
  async function connect(role: string): Promise<Client> {
    const client = new Client({ name: 'local-authz-e2e', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(gateway.url), {
        requestInit: { headers: { authorization: `Bearer ${await tokenFor(role)}` } },
      }),
    );
    clients.push(client);
    return client;
  }
  const echo = async (client: Client, message: string): Promise<unknown> =>
    (await client.callTool({ name: 'echo', arguments: { message } })).content;
  const sum = async (client: Client): Promise<string> =>
    JSON.stringify((await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 40 } })).content);
  const agentErrors = (): Array<Record<string, unknown>> =>
    agentLog.filter((l) => l['msg'] === 'policy update rejected; the last good policy stays in force');

  before(async () => {
    issuer = await DevIssuer.create({ issuer: ISSUER, audience: AUDIENCE });
    everything = await startEverythingHttp();
    writeFileSync(
      path.join(dir, 'registry.yaml'),
      `services:\n  - { name: ${SERVICE}, protocol: "2025-11-25", endpoints: [{ address: 127.0.0.1, port: ${new URL(everything.url).port} }] }\n`,
    );
    writePolicy(policyYaml('echo'));
    const text = policyYaml('echo');
    // Plain xDS (development) so the test's raw ADS client can play the gateway's Envoy without a certificate.
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'registry.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      xdsInsecure: true,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      security: { policy: parsePolicy(text, policyFile), publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } },
      policyFile: { path: policyFile, text },
    }).start();
    cpPorts = { xds: cp.xdsPort, authz: cp.authzPort };
    // The gateway agent, as `mcpmesh gateway --policy FILE` starts it (--no-envoy: no Envoy binary here).
    parsed = parseGatewayArgs(
      [
        '--name',
        'public',
        '--id',
        'gw-local-1',
        '--no-envoy',
        '--control-plane',
        `127.0.0.1:${cp.xdsPort}`,
        '--policy',
        policyFile,
        '--authz-socket',
        socket,
      ],
      {},
    );
    agent = await startGatewayAgent(
      parsed,
      createLogger({ component: 'gateway', write: (line) => agentLog.push(JSON.parse(line) as Record<string, unknown>) }),
    );
    // Envoy's ext_proc filter and ext_authz filter, reaching the agent's socket (the bootstrap's static clusters).
    extProc = new EnvoyExtProcProxy({
      filter: extProcFilterConfig(EXT_PROC_CLUSTER),
      routeOverride: extProcRouteOverride(SERVICE),
      processorPort: `unix:${socket}`,
      upstream: new URL(everything.url).origin,
      attributeValues: { 'xds.cluster_name': `mcp.${SERVICE}` },
    });
    const extProcOrigin = await extProc.listen();
    gateway = await startGateway(issuer, `unix:${socket}`, new URL(new URL(everything.url).pathname, extProcOrigin), SERVICE);
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await gateway?.close();
    await extProc?.close();
    await agent?.stop();
    await cp?.stop();
    await everything?.stop();
  });

  it('the control plane sends this gateway no authorizer clusters; its filters name them and its bootstrap holds them', async () => {
    const bootstrap = envoyBootstrap(parsed.bootstrap);
    const statics = (bootstrap['static_resources'] as { clusters: Array<Record<string, unknown>> }).clusters;
    for (const name of [AUTHZ_CLUSTER, EXT_PROC_CLUSTER]) {
      const c = statics.find((x) => x['name'] === name);
      assert.ok(c, `the bootstrap holds ${name}`);
      assert.match(JSON.stringify(c['load_assignment']), new RegExp(`"pipe":\\{"path":"${socket.replaceAll('/', '\\/')}"\\}`));
    }
    // Envoy's first requests: wildcard CDS and LDS with the bootstrap's node.
    const xds = new RawAdsClient(`127.0.0.1:${cpPorts.xds}`);
    try {
      const ask = async (node: unknown): Promise<{ clusters: Msg[]; listeners: Msg[] }> => {
        const s = xds.sotw();
        s.send({ type_url: TYPE_URLS.cluster, node });
        const cds = await s.next('cluster');
        s.send({ type_url: TYPE_URLS.listener });
        const lds = await s.next('listener');
        s.close();
        return { clusters: decodeResources(cds), listeners: decodeResources(lds) };
      };
      const local = await ask(bootstrap['node']);
      const names = local.clusters.map((c) => String(c['name']));
      assert.ok(names.includes(`mcp.${SERVICE}`), names.join(', '));
      assert.ok(
        !names.includes(AUTHZ_CLUSTER) && !names.includes(EXT_PROC_CLUSTER),
        `no authorizer clusters over CDS: ${names.join(', ')}`,
      );
      const listener = JSON.stringify(expandAnys(local.listeners));
      assert.ok(
        listener.includes(`"cluster_name":"${AUTHZ_CLUSTER}"`) && listener.includes(`"cluster_name":"${EXT_PROC_CLUSTER}"`),
        'ext_authz and ext_proc still name them',
      );
      // The same gateway without --policy still gets the control plane's.
      const remote = await ask({
        id: 'gw-remote-1',
        cluster: 'gateway-public',
        metadata: { fields: { role: { stringValue: 'gateway' }, gateway_name: { stringValue: 'public' } } },
      });
      assert.ok(remote.clusters.some((c) => c['name'] === AUTHZ_CLUSTER));
    } finally {
      xds.close();
    }
  });

  it('with the control plane up: the agent decides (echoer sees and calls echo; get-sum is refused)', async () => {
    const client = await connect('echoer');
    assert.deepEqual(await allToolNames(client), ['echo']);
    assert.ok(
      extProc.log.some((e) => e.method === 'POST' && e.bodyMutations > 0),
      "the tools/list response went through the agent's processor",
    );
    assert.deepEqual(await echo(client, 'via the agent'), [{ type: 'text', text: 'Echo: via the agent' }]);
    await assert.rejects(sum(client), forbidden('get-sum'));
    assert.match(await sum(await connect('summer')), /42/);
    // Not one of those reached the control plane's own authorizer.
    assert.doesNotMatch(
      await (cp as ControlPlane).metrics.registry.getSingleMetricAsString('mcpmesh_authz_decisions_total'),
      /mcpmesh_authz_decisions_total\{/,
    );
  });

  it('with every control-plane replica down: authorized calls keep succeeding, denied ones keep failing', async () => {
    const before = clients[0];
    assert.ok(before, 'a session opened while the control plane was up');
    await cp?.stop();
    cp = undefined;
    assert.equal(await listening(cpPorts.xds), false, 'xDS is down');
    assert.equal(await listening(cpPorts.authz), false, "the control plane's authorizer is down");
    // The session opened before, and a new one.
    assert.deepEqual(await echo(before, 'still here'), [{ type: 'text', text: 'Echo: still here' }]);
    await assert.rejects(sum(before), forbidden('get-sum'));
    const client = await connect('echoer');
    assert.deepEqual(await allToolNames(client), ['echo']);
    assert.deepEqual(await echo(client, 'no control plane'), [{ type: 'text', text: 'Echo: no control plane' }]);
    await assert.rejects(sum(client), forbidden('get-sum'));
    await assert.rejects(echo(await connect('summer'), 'nope'), forbidden('echo'));
  });

  it('a policy edit reaches the next call without a control plane: get-sum allowed for echoer', async () => {
    const client = await connect('echoer');
    await assert.rejects(sum(client), forbidden('get-sum'));
    writePolicy(policyYaml('echo, get-sum'));
    await waitFor('the agent applies the edit', () => agentLog.some((l) => l['msg'] === 'policy applied'), 10_000);
    assert.match(await sum(client), /42/, 'the same session, the next call');
    assert.deepEqual(await allToolNames(client), ['echo', 'get-sum'], 'and tools/list shows it');
    assert.deepEqual(agentErrors(), []);
  });

  it("a broken edit is refused with file, path and reason in the agent's log; the last good policy keeps deciding", async () => {
    writePolicy(`${policyYaml('echo, get-sum')}    deny:\n      - { service: ${SERVICE}, tools: ["bad[glob"] }\n`);
    const err = await waitFor('the broken edit is refused', () => agentErrors()[0], 10_000);
    assert.equal(err['file'], policyFile);
    assert.equal(err['level'], 'error');
    assert.equal(err['gateway'], 'public', 'the line says which gateway');
    assert.match(String(err['error']), new RegExp(`^${policyFile.replaceAll('.', '\\.')}: 1 problem`));
    assert.match(String(err['error']), /roles\.summer\.deny\[0\]\.tools\[0\]: "bad\[glob": only "\*" is a wildcard/);
    assert.equal(agent.localAuthz?.lastError, String(err['error']));
    const client = await connect('echoer');
    assert.match(await sum(client), /42/, 'still the last good policy');
  });

  it('the trust domain may not change at runtime; a later good edit applies (and can take a permission away)', async () => {
    writePolicy(policyYaml('echo', 'other.local'));
    await waitFor(
      'the trust domain change is refused',
      () => agentErrors().find((l) => /trustDomain: changed from "mcpmesh\.local" to "other\.local"/.test(String(l['error']))),
      10_000,
    );
    const client = await connect('echoer');
    assert.match(await sum(client), /42/, 'still the last good policy');
    const applied = agentLog.filter((l) => l['msg'] === 'policy applied').length;
    writePolicy(policyYaml('echo'));
    await waitFor('the good edit applies', () => agentLog.filter((l) => l['msg'] === 'policy applied').length > applied, 10_000);
    await assert.rejects(sum(client), forbidden('get-sum'));
    assert.deepEqual(await allToolNames(client), ['echo']);
    assert.equal(agent.localAuthz?.lastError, undefined);
  });
});
