// Same Consul state, same config everywhere: a control plane that lived through the history (a service removed
// and re-added, a service whose oldest instance left), a second replica started afterwards, and a restart of the
// first serve byte-identical CDS and EDS resources with identical versions to a raw ADS client, and identical
// versions for every resource type (/debug/config_dump). The re-added service still gets a new EDS name on the
// replica that saw it go (grpc-js-xds ignores an identical re-add), because the name comes from Consul's
// CreateIndex rather than from a counter in memory.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { node, RawAdsClient } from '../helpers/ads-client.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';
import { MeshFollower } from '../helpers/mesh-follower.ts';
import { waitFor } from '../helpers/wait.ts';

interface Replica {
  cp: ControlPlane;
  ads: RawAdsClient;
  f: MeshFollower;
}

describe(`replicas and a restart on the same Consul state (${process.env['CONSUL_HTTP_ADDR'] ? 'real Consul' : 'Consul stand-in'})`, () => {
  let consul: TestConsul;
  let dir: string;
  const replicas: Replica[] = [];
  const alpha = uniqueName('alpha');
  const beta = uniqueName('beta');
  const gamma = uniqueName('gamma');
  const ids: string[] = [];

  const register = async (name: string, id: string, ip: string): Promise<void> => {
    ids.push(id);
    const r = await fetch(`${consul.address}/v1/agent/service/register`, {
      method: 'PUT',
      headers: consul.token ? { 'X-Consul-Token': consul.token } : {},
      body: JSON.stringify({ Name: name, ID: id, Address: ip, Port: 7000, Tags: ['mcp'], Meta: { region: 'eu-west', zone: 'a' } }),
    });
    assert.equal(r.status, 200);
  };
  const deregister = async (id: string): Promise<void> => {
    const r = await fetch(`${consul.address}/v1/agent/service/deregister/${id}`, {
      method: 'PUT',
      headers: consul.token ? { 'X-Consul-Token': consul.token } : {},
    });
    assert.equal(r.status, 200);
  };

  async function replica(): Promise<Replica> {
    const unused = path.join(dir, 'unused.yaml');
    writeFileSync(unused, 'services: []\n');
    const cp = await new ControlPlane({
      registryFile: unused,
      consul: { address: consul.address, ...(consul.token ? { token: consul.token } : {}), wait: '5s' },
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      quietMs: 10,
      maxDelayMs: 100,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
    }).start();
    const ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
    const f = new MeshFollower(ads.sotw(), node(`gw-${replicas.length}`, { role: 'gateway' }, { region: 'eu-west', zone: 'a' }));
    const r = { cp, ads, f };
    replicas.push(r);
    return r;
  }

  async function stop(r: Replica): Promise<void> {
    r.f.close();
    r.ads.close();
    await r.cp.stop();
  }

  /** What a gateway holds, byte for byte, plus every type's version from the control plane itself. */
  async function held(r: Replica): Promise<string> {
    const dump = (await (
      await fetch(`http://127.0.0.1:${r.cp.adminPort}/debug/config_dump?role=gateway&region=eu-west&zone=a`)
    ).json()) as { versions: Record<string, string> };
    return JSON.stringify({
      cds: { version: r.f.cds.version, resources: [...r.f.cds.bytes].sort() },
      eds: { version: r.f.eds.version, resources: [...r.f.eds.bytes].sort() },
      versions: dump.versions,
    });
  }

  /** For failure messages: names and versions, not the bytes. */
  const summary = (r: Replica): string =>
    JSON.stringify({ cds: [r.f.cds.version, [...r.f.cds.bytes.keys()]], eds: [r.f.eds.version, [...r.f.eds.bytes.keys()]] });

  const ours = (r: Replica): string[] => r.f.clusters().filter((c) => [alpha, beta, gamma].some((n) => c === `mcp.${n}`));

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-replicas-'));
    consul = await startConsul();
  });

  after(async () => {
    for (const r of replicas) await stop(r).catch(() => undefined);
    for (const id of ids) await deregister(id).catch(() => undefined);
    await consul?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serve byte-identical resources and versions', async () => {
    await register(alpha, `${alpha}-1`, '10.0.1.1');
    await register(alpha, `${alpha}-2`, '10.0.1.2');
    await register(beta, `${beta}-1`, '10.0.2.1');
    await register(gamma, `${gamma}-1`, '10.0.3.1');
    await register(gamma, `${gamma}-2`, '10.0.3.2');
    const a = await replica();
    await waitFor('first replica has the three services', () => ours(a).length === 3, 15_000);
    const betaBefore = a.f.edsName(`mcp.${beta}`);

    // History the first replica lives through: beta removed and re-added, gamma's oldest instance leaves.
    await deregister(`${beta}-1`);
    await waitFor('beta withdrawn', () => !ours(a).includes(`mcp.${beta}`), 15_000);
    await register(beta, `${beta}-1`, '10.0.2.1');
    await deregister(`${gamma}-1`);
    await waitFor(
      'beta back, gamma down to one instance',
      () => ours(a).length === 3 && a.f.endpoints(`mcp.${gamma}`)?.length === 1 && a.f.endpoints(`mcp.${beta}`)?.length === 1,
      15_000,
    );
    const betaAfter = a.f.edsName(`mcp.${beta}`);
    assert.notEqual(betaAfter, betaBefore, 'a re-added service gets a new EDS name (clients cache removed resources)');

    const b = await replica();
    await waitFor(
      'second replica agrees with the first, byte for byte',
      async () => (await held(a)) === (await held(b)) && ours(b).length === 3,
      15_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nfirst:  ${summary(a)}\nsecond: ${summary(b)}`);
    });
    assert.equal(b.f.edsName(`mcp.${beta}`), betaAfter);

    const before = await held(a);
    const beforeSummary = summary(a);
    await stop(a);
    replicas.splice(replicas.indexOf(a), 1);
    const c = await replica();
    await waitFor('the restarted replica serves what the first served', async () => (await held(c)) === before, 15_000).catch(
      (err: Error) => {
        throw new Error(`${err.message}\nbefore restart: ${beforeSummary}\nafter restart:  ${summary(c)}`);
      },
    );
    assert.equal(await held(c), await held(b));
  });
});
