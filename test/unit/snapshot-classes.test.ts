// Snapshot classes reduce a gateway's claimed locality to what the mesh knows, without changing what it gets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { effectiveLocality, knownLocalities, SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { Mesh, ProxyInfo } from '../../control-plane/src/model/types.ts';
import { loadAssignment } from '../../control-plane/src/translate/endpoints.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';

// Zone "" (an endpoint without a zone, as Consul can report) is not writable in a registry file: set it after parsing.
const mesh = (endpoints: string): Mesh => {
  const specs = parseRegistry(`services:\n  - name: weather\n    protocol: "2025-11-25"\n    endpoints:\n${endpoints}`, 'test').map(
    (s) => ({
      ...s,
      endpoints: s.endpoints.map((e) => (e.locality.zone === 'nozone' ? { ...e, locality: { ...e.locality, zone: '' } } : e)),
    }),
  );
  return new MeshBuilder().build(specs, undefined).mesh;
};
const ep = (ip: string, region: string, zone: string): string =>
  `      - { address: ${ip}, port: 7001, locality: { region: "${region}", zone: "${zone}" } }\n`;

describe('snapshot classes by known locality', () => {
  const m = mesh(ep('10.0.0.1', 'eu', 'a') + ep('10.0.0.2', 'eu', 'nozone') + ep('10.0.0.3', 'us', 'a'));
  const known = knownLocalities(m);

  it('keeps a known locality, drops an unknown region, and gives an unknown zone one that no endpoint has', () => {
    assert.deepEqual(effectiveLocality({ region: 'eu', zone: 'a' }, known), { region: 'eu', zone: 'a' });
    assert.equal(effectiveLocality({ region: 'mars', zone: 'a' }, known), undefined);
    // Zone "" is an endpoint's zone in eu: an unknown zone must not be mistaken for it.
    assert.deepEqual(effectiveLocality({ region: 'eu', zone: 'zz' }, known), { region: 'eu', zone: '?' });
    assert.deepEqual(effectiveLocality({ region: 'us', zone: 'zz' }, known), { region: 'us', zone: '' });
  });

  it('serves a proxy in an unknown zone exactly what its own locality would have given it', () => {
    const cache = new SnapshotCache();
    cache.setMesh(m);
    const gw = (zone: string, region = 'eu'): ProxyInfo => ({
      id: `gw-${region}-${zone}`,
      role: 'gateway',
      listenerPort: 8443,
      locality: { region, zone },
    });
    const a = cache.watch(gw('zz'), () => {});
    const b = cache.watch(gw('yy'), () => {});
    const c = cache.watch(gw('q', 'mars'), () => {});
    const d = cache.watch({ id: 'none', role: 'gateway', listenerPort: 8443 }, () => {});
    assert.equal(a.snapshot, b.snapshot, 'two unknown zones of one region share a snapshot');
    assert.equal(c.snapshot, d.snapshot, 'an unknown region is no preference');
    const eds = a.snapshot?.resources.endpoint.get([...a.snapshot.resources.endpoint.keys()][0] as string);
    const zoneless = (eds?.body['endpoints'] as Array<{ priority: number; locality: { region: string; zone: string } }> | undefined)?.find(
      (l) => l.locality.region === 'eu' && l.locality.zone === '',
    );
    assert.equal(zoneless?.priority, 0, "same region, other zone: the first priority there is (no endpoint in the proxy's own zone)");
    const us = (eds?.body['endpoints'] as Array<{ priority: number; locality: { region: string } }> | undefined)?.find(
      (l) => l.locality.region === 'us',
    );
    assert.equal(us?.priority, 1, 'another region comes after');
    // And byte for byte what the proxy's own claim gives, computed without any class reduction.
    const svc = m.services[0];
    assert.ok(svc);
    assert.deepEqual(eds?.body, loadAssignment(svc, { region: 'eu', zone: 'zz' }).body);
    const far = c.snapshot?.resources.endpoint.get(eds?.name ?? '');
    assert.deepEqual(far?.body, loadAssignment(svc, { region: 'mars', zone: 'q' }).body);
    for (const w of [a, b, c, d]) w.cancel();
  });
});
