// ResourceEncoder.warm only saves work: a build after it (slices on the main thread, a huge resource in a worker
// thread) gives the same snapshot, or refuses the same resources with the same message, as a build without it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildSnapshot, ResourceEncoder, SnapshotError } from '../../control-plane/src/cache/snapshot.ts';
import type { XdsResource } from '../../control-plane/src/translate/resource.ts';

function routeTable(hosts: number, noDomainsAt?: number): XdsResource {
  const virtual_hosts = Array.from({ length: hosts }, (_, i) => ({
    name: `vh-${i}`,
    domains: i === noDomainsAt ? [] : [`svc-${i}.mesh`],
    routes: [{ match: { prefix: '/' }, direct_response: { status: 200 } }],
  }));
  return { kind: 'route', name: 'big', wildcard: false, body: { name: 'big', virtual_hosts } };
}

function built(resources: XdsResource[], warm: boolean): Promise<{ snapshot?: ReturnType<typeof buildSnapshot>; error?: string }> {
  const encoder = new ResourceEncoder();
  return (warm ? encoder.warm(resources, 5) : Promise.resolve()).then(() => {
    try {
      return { snapshot: buildSnapshot('k', resources, encoder) };
    } catch (err) {
      assert.ok(err instanceof SnapshotError);
      return { error: err.message };
    }
  });
}

describe('ResourceEncoder.warm', () => {
  it('a huge resource encoded in the worker gives the same bytes and versions', async () => {
    const resources = [routeTable(1_500)];
    const [cold, warmed] = await Promise.all([built(resources, false), built(resources, true)]);
    assert.ok(cold.snapshot && warmed.snapshot);
    assert.deepEqual(warmed.snapshot.versions, cold.snapshot.versions);
    const a = cold.snapshot.resources.route.get('big');
    const b = warmed.snapshot.resources.route.get('big');
    assert.ok(a && b);
    assert.ok(Buffer.isBuffer(b.bytes));
    assert.ok(Buffer.from(a.bytes).equals(Buffer.from(b.bytes)));
    assert.equal(b.body, resources[0]?.body);
  });

  it('a huge invalid resource is refused with the same message', async () => {
    const resources = [routeTable(1_500, 700)];
    const cold = await built(resources, false);
    const warmed = await built(resources, true);
    assert.ok(cold.error, 'the table with an empty domain is refused');
    assert.equal(warmed.error, cold.error);
  });
});
