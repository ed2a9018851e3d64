// Proves the Consul stand-in against the real `consul` npm client (the one the control plane uses) and raw
// HTTP, including blocking-query timing and index reset. Timing: only the blocking-wait lower bound is tight;
// everything else waits generously so a loaded 2-core machine passes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Consul from 'consul';
import { waitFor } from '../helpers/wait.ts';
import { ConsulStandIn, parseGoDuration, type ConsulStandInOptions } from './server.ts';
import { startConsul, uniqueName, type TestConsul } from '../helpers/consul.ts';

interface HealthCheck {
  CheckID: string;
  Status: string;
  Output: string;
  ServiceID: string;
  Type: string;
  Name: string;
}
interface HealthEntry {
  Node: { Node: string; Address: string; Datacenter: string };
  Service: { ID: string; Service: string; Port: number; Tags: string[]; Weights: { Passing: number; Warning: number } };
  Checks: HealthCheck[];
}
type Watch = ReturnType<Consul['watch']>;

async function startStandIn(opts: ConsulStandInOptions = {}): Promise<{ s: ConsulStandIn; consul: Consul; close: () => Promise<void> }> {
  const s = new ConsulStandIn(opts);
  const port = await s.start();
  const consul = new Consul({ host: '127.0.0.1', port, ...(opts.aclToken ? { defaults: { token: opts.aclToken } } : {}) });
  return {
    s,
    consul,
    close: async () => {
      consul.destroy();
      await s.stop();
    },
  };
}

async function get(
  s: ConsulStandIn,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; index: bigint | undefined; body: unknown; text: string; ms: number }> {
  const t0 = performance.now();
  const r = await fetch(s.address + path, init);
  const text = await r.text();
  const ms = performance.now() - t0;
  const h = r.headers.get('x-consul-index');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: r.status, index: h === null ? undefined : BigInt(h), body, text, ms };
}

const put = (s: ConsulStandIn, path: string, body?: unknown): Promise<Response> =>
  fetch(s.address + path, {
    method: 'PUT',
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });

/** Records a watch's 'change' events (data + arrival time) and errors. */
function record(w: Watch): { changes: { data: HealthEntry[]; at: number }[]; errors: unknown[] } {
  const rec = { changes: [] as { data: HealthEntry[]; at: number }[], errors: [] as unknown[] };
  w.on('change', (data: HealthEntry[]) => rec.changes.push({ data, at: performance.now() }));
  w.on('error', (err: unknown) => rec.errors.push(err));
  return rec;
}

const statusOf = (entries: HealthEntry[], checkId: string): string | undefined =>
  entries.flatMap((e) => e.Checks).find((c) => c.CheckID === checkId)?.Status;

describe('Consul stand-in with the consul npm client', () => {
  let env: Awaited<ReturnType<typeof startStandIn>>;
  before(async () => {
    env = await startStandIn();
  });
  after(async () => {
    await env.close();
  });

  it('registers a TTL-checked service that shows in catalog and health, critical until passed', async () => {
    const { consul, s } = env;
    await consul.agent.service.register({
      name: 'web',
      id: 'web-1',
      port: 8080,
      tags: ['mcp', 'v1'],
      meta: { team: 'a' },
      check: { name: 'alive', ttl: '30s', timeout: '1s' },
    });

    const list = await consul.catalog.service.list();
    assert.deepEqual(list['web'], ['mcp', 'v1']);
    assert.deepEqual(list['consul'], [], 'like real Consul, the built-in consul service is listed');

    let health = (await consul.health.service('web')) as HealthEntry[];
    assert.equal(health.length, 1);
    assert.equal(health[0]?.Service.ID, 'web-1');
    assert.equal(health[0]?.Service.Port, 8080);
    assert.deepEqual(health[0]?.Service.Weights, { Passing: 1, Warning: 1 });
    assert.equal(health[0]?.Node.Datacenter, 'dc1');
    assert.deepEqual(
      health[0]?.Checks.map((c) => [c.CheckID, c.Status, c.Type]),
      [
        ['serfHealth', 'passing', ''],
        ['service:web-1', 'critical', 'ttl'],
      ],
    );
    assert.deepEqual(await consul.health.service({ service: 'web', passing: true }), [], '?passing hides the critical instance');

    await consul.agent.check.pass({ id: 'service:web-1', note: 'ok' });
    health = (await consul.health.service({ service: 'web', passing: true })) as HealthEntry[];
    assert.equal(statusOf(health, 'service:web-1'), 'passing');
    assert.equal(health[0]?.Checks[1]?.Output, 'ok');

    await consul.agent.check.warn('service:web-1');
    assert.deepEqual(await consul.health.service({ service: 'web', passing: true }), [], 'warning is not passing');
    await consul.agent.check.pass('service:web-1');

    const agentServices = await consul.agent.service.list();
    assert.equal(agentServices['web-1']?.Service, 'web');
    assert.equal(agentServices['consul'], undefined, 'the agent does not list the server-side consul service');
    assert.equal((await consul.agent.check.list())['service:web-1']?.Status, 'passing');
    assert.equal(await consul.status.leader(), '127.0.0.1:8300');
    assert.equal(((await consul.agent.self()) as { Config: { Datacenter: string } }).Config.Datacenter, 'dc1');
    const nodes = (await consul.catalog.service.nodes('web')) as {
      ServiceID: string;
      ServiceTags: string[];
      ServiceMeta: Record<string, string>;
    }[];
    assert.deepEqual(
      nodes.map((e) => [e.ServiceID, e.ServiceTags, e.ServiceMeta]),
      [['web-1', ['mcp', 'v1'], { team: 'a' }]],
    );
    assert.ok(s.requests > 0);
  });

  it('watch(health.service) fires promptly on a check change and not on unrelated writes', async () => {
    const { consul } = env;
    await consul.agent.service.register({ name: 'wx', id: 'wx-1', port: 1, check: { name: 'c', ttl: '60s', timeout: '1s' } });
    const w = consul.watch({ method: consul.health.service, options: { service: 'wx', wait: '5s' } });
    const rec = record(w);
    try {
      await waitFor('initial watch result', () => rec.changes.length >= 1, 10_000);
      assert.equal(statusOf(rec.changes[0]?.data ?? [], 'service:wx-1'), 'critical');
      await new Promise((r) => setTimeout(r, 200)); // let the watch park its blocking query

      // Unrelated: another service, and an idempotent TTL update (same status, same output).
      await consul.agent.service.register({ name: 'unrelated', port: 2, check: { name: 'c', ttl: '60s', timeout: '1s' } });
      await consul.agent.check.fail('service:wx-1');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(rec.changes.length, 1, 'no change event for writes that do not touch wx');

      const t0 = performance.now();
      await consul.agent.check.pass('service:wx-1');
      await waitFor('change after pass', () => rec.changes.length >= 2, 10_000, 10);
      const dt = (rec.changes[1]?.at ?? Infinity) - t0;
      assert.ok(dt < 1000, `change arrived after ${dt.toFixed(0)} ms`);
      assert.equal(statusOf(rec.changes[1]?.data ?? [], 'service:wx-1'), 'passing');
      assert.deepEqual(rec.errors, []);
    } finally {
      w.end();
    }
  });

  it('deregister removes the service from catalog, health and the agent', async () => {
    const { consul, s } = env;
    await consul.agent.service.register({ name: 'gone', id: 'gone-1', port: 3, check: { name: 'c', ttl: '60s', timeout: '1s' } });
    const before = await get(s, '/v1/health/service/gone');
    await consul.agent.service.deregister('gone-1');
    assert.equal((await consul.catalog.service.list())['gone'], undefined);
    assert.deepEqual(await consul.health.service('gone'), []);
    assert.equal((await consul.agent.check.list())['service:gone-1'], undefined, 'its checks go too');
    const afterDereg = await get(s, '/v1/health/service/gone');
    assert.ok(
      afterDereg.index !== undefined && before.index !== undefined && afterDereg.index > before.index,
      'the extinction index moves the dead service',
    );
    await consul.agent.service.deregister('gone-1'); // unknown ID: 200, as Consul
  });
});

describe('Consul stand-in blocking queries (raw HTTP)', () => {
  let env: Awaited<ReturnType<typeof startStandIn>>;
  before(async () => {
    env = await startStandIn();
  });
  after(async () => {
    await env.close();
  });

  it('waits for ?wait when nothing changes, answers at once when the index is stale', async () => {
    const { s } = env;
    assert.equal((await put(s, '/v1/agent/service/register', { Name: 'b', Check: { TTL: '60s' } })).status, 200);
    const first = await get(s, '/v1/health/service/b');
    assert.ok(first.index && first.index > 0n);

    const blocked = await get(s, `/v1/health/service/b?index=${first.index}&wait=300ms`);
    assert.ok(blocked.ms >= 250, `blocked only ${blocked.ms.toFixed(0)} ms`);
    assert.equal(blocked.index, first.index);

    const stale = await get(s, `/v1/health/service/b?index=${(first.index ?? 1n) - 1n}&wait=30s`);
    assert.ok(stale.ms < 5000, `stale index took ${stale.ms.toFixed(0)} ms`);
    assert.equal(stale.index, first.index);

    // A parked query returns as soon as its endpoint's index moves.
    const parked = get(s, `/v1/health/service/b?index=${first.index}&wait=30s`);
    await new Promise((r) => setTimeout(r, 100));
    await put(s, '/v1/agent/check/pass/service:b');
    const woke = await parked;
    assert.ok(woke.ms < 5000);
    assert.ok(woke.index && first.index && woke.index > first.index);
    assert.equal(statusOf(woke.body as HealthEntry[], 'service:b'), 'passing');
  });

  it('gives each endpoint its own index', async () => {
    const { s } = env;
    await put(s, '/v1/agent/service/register', { Name: 'i1', Check: { TTL: '60s' } });
    await put(s, '/v1/agent/service/register', { Name: 'i2', Check: { TTL: '60s' } });
    const h1 = (await get(s, '/v1/health/service/i1')).index;
    const cat = (await get(s, '/v1/catalog/services')).index;
    await put(s, '/v1/agent/check/pass/service:i2');
    assert.equal((await get(s, '/v1/health/service/i1')).index, h1, 'i2 health does not move i1');
    assert.equal((await get(s, '/v1/catalog/services')).index, cat, 'check changes do not move catalog/services');
    const h2 = (await get(s, '/v1/health/service/i2')).index;
    assert.equal(h2, s.index());
    await put(s, '/v1/agent/check/pass/service:i2'); // idempotent: no write
    assert.equal(s.index(), h2);
    await put(s, '/v1/agent/service/register', { Name: 'i1', Check: { TTL: '60s' } }); // identical re-registration
    assert.equal(s.index(), h2, 'an identical re-registration is not a write');
    assert.equal((await get(s, '/v1/health/service/i2?passing')).text.includes('"passing"'), true, 're-registration kept the status');
    await put(s, '/v1/agent/service/register', { Name: 'i1', Tags: ['new'], Check: { TTL: '60s' } });
    assert.ok(((await get(s, '/v1/catalog/services')).index ?? 0n) > (cat ?? 0n), 'tags change moves catalog/services');
    assert.equal((await get(s, '/v1/status/leader')).index, undefined, 'non-blocking endpoints send no index');
  });

  it('index reset: waiting queries return at once with the lower index and the consul watch keeps delivering', async () => {
    const { s, consul } = env;
    await put(s, '/v1/agent/service/register', { Name: 'r', Check: { TTL: '60s' } });
    for (let i = 0; i < 5; i++) await put(s, '/v1/agent/service/register', { Name: `pad${i}` });
    const w = consul.watch({ method: consul.health.service, options: { service: 'r', wait: '30s' } });
    const rec = record(w);
    try {
      await waitFor('initial watch result', () => rec.changes.length >= 1, 10_000);
      const high = (await get(s, '/v1/health/service/r')).index ?? 0n;
      await new Promise((r) => setTimeout(r, 200)); // the watch is parked at `high`
      const parked = get(s, `/v1/health/service/r?index=${high}&wait=30s`);
      await new Promise((r) => setTimeout(r, 100));

      s.resetIndex(2n);
      const woke = await parked;
      assert.ok(woke.ms < 5000, `abandoned query took ${woke.ms.toFixed(0)} ms`);
      assert.equal(woke.index, 2n);
      // Consul's rule: a request for an index above the current one waits (here: until `wait`).
      const future = await get(s, `/v1/health/service/r?index=${high}&wait=300ms`);
      assert.ok(future.ms >= 250 && future.index === 2n);

      const seen = rec.changes.length;
      const t0 = performance.now();
      await put(s, '/v1/agent/check/pass/service:r');
      await waitFor(
        'watch delivers the post-reset change',
        () => rec.changes.slice(seen).some((c) => statusOf(c.data, 'service:r') === 'passing'),
        10_000,
        10,
      );
      assert.ok(performance.now() - t0 < 5000, 'delivered well before the 30 s wait');
      assert.deepEqual(rec.errors, []);
      assert.equal(s.index(), 3n);
    } finally {
      w.end();
    }
  });

  it('validates index and wait, and parses Go durations', async () => {
    const { s } = env;
    assert.equal((await get(s, '/v1/catalog/services?index=abc')).status, 400);
    assert.equal((await get(s, '/v1/catalog/services?index=1&wait=5')).status, 400);
    assert.equal(parseGoDuration('1m30s'), 90_000);
    assert.equal(parseGoDuration('100ms'), 100);
    assert.equal(parseGoDuration('1.5s'), 1500);
    assert.equal(parseGoDuration('5'), undefined);
  });
});

describe('Consul stand-in checks', () => {
  it('TTL expiry, deferred output sync, default check IDs, stored HTTP/TCP checks', async () => {
    const { s, close } = await startStandIn({ checkUpdateIntervalMs: 1500 });
    try {
      const reg = await put(s, '/v1/agent/service/register', {
        name: 'multi',
        id: 'm1',
        port: 9,
        checks: [
          { ttl: '1s', status: 'passing' },
          { http: 'http://127.0.0.1:1/health', interval: '10s' },
          { CheckID: 'tcp-probe', TCP: '127.0.0.1:1', Interval: '5s', Status: 'warning' },
        ],
      });
      assert.equal(reg.status, 200);
      const checks = Object.fromEntries(s.checks().map((c) => [c.id, c]));
      assert.equal(checks['service:m1:1']?.status, 'passing', 'Status honoured, 1-based default ID');
      assert.equal(checks['service:m1:1']?.name, "Service 'multi' check");
      assert.equal(checks['service:m1:2']?.status, 'critical', 'HTTP checks start critical and are never run');
      assert.equal(checks['tcp-probe']?.status, 'warning');

      // Output-only changes reach health after checkUpdateIntervalMs, without a write before that.
      s.setCheckStatus('tcp-probe', 'passing', 'first');
      const idx = s.index();
      s.setCheckStatus('tcp-probe', 'passing', 'second');
      assert.equal(s.index(), idx);
      const agentView = (await get(s, '/v1/agent/checks')).body as Record<string, HealthCheck>;
      assert.equal(agentView['tcp-probe']?.Output, 'second');
      const outputOf = async (id: string): Promise<string | undefined> =>
        ((await get(s, '/v1/health/service/multi')).body as HealthEntry[])[0]?.Checks.find((c) => c.CheckID === id)?.Output;
      assert.equal(await outputOf('tcp-probe'), 'first');
      await waitFor('deferred output sync', async () => (await outputOf('tcp-probe')) === 'second', 10_000);
      assert.ok(s.index() > idx);

      // The TTL check was never updated: it expires.
      await waitFor('TTL expiry', () => s.checks().find((c) => c.id === 'service:m1:1')?.status === 'critical', 10_000);
      assert.equal(await outputOf('service:m1:1'), 'TTL expired');
      assert.equal((await put(s, '/v1/agent/check/pass/service:m1:2')).status, 404, 'HTTP checks have no TTL');

      // /v1/agent/check/update with {Status, Output}
      assert.equal((await put(s, '/v1/agent/check/update/service:m1:1', { Status: 'passing', Output: 'back' })).status, 200);
      assert.equal(s.checks().find((c) => c.id === 'service:m1:1')?.status, 'passing');
      assert.equal((await put(s, '/v1/agent/check/update/service:m1:1', { Status: 'bogus' })).status, 400);

      // Node health: serfHealth critical makes every instance unhealthy.
      s.setCheckStatus('serfHealth', 'critical');
      assert.deepEqual((await get(s, '/v1/health/service/multi?passing=true')).body, []);
      // replace-existing-checks drops checks left out of the new definition.
      await put(s, '/v1/agent/service/register?replace-existing-checks', { Name: 'multi', ID: 'm1', Check: { TTL: '60s' } });
      assert.deepEqual(
        s
          .checks()
          .filter((c) => c.serviceId === 'm1')
          .map((c) => c.id),
        ['service:m1'],
      );
      assert.deepEqual(
        s.services().map((x) => x.id),
        ['m1'],
      );
    } finally {
      await close();
    }
  });
});

describe('Consul stand-in errors and ACL', () => {
  it('answers 404, 405, 400 and the datacenter error as Consul does', async () => {
    const { s, consul, close } = await startStandIn({ datacenter: 'eu1' });
    try {
      assert.equal((await get(s, '/v1/nope')).status, 404);
      assert.equal((await get(s, '/v1/agent/check/pass/x')).status, 405);
      const bad = await put(s, '/v1/agent/service/register', '{not json');
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /^Request decode failed/);
      assert.equal((await put(s, '/v1/agent/service/register', { Port: 1 })).status, 400, 'Name is required');
      assert.equal(
        (await put(s, '/v1/agent/service/register', { Name: 'x', Check: { Interval: '10s' } })).status,
        400,
        'a check needs a kind',
      );
      const dc = await get(s, '/v1/health/service/x?dc=dc9');
      assert.deepEqual([dc.status, dc.text], [500, 'No path to datacenter']);
      await assert.rejects(consul.catalog.service.list({ dc: 'dc9' }), /No path to datacenter/);
      assert.equal((await get(s, '/v1/catalog/services?dc=eu1')).status, 200);
      assert.equal((await get(s, '/v1/catalog/services?filter=Service==x')).status, 400, 'filter is refused, not ignored');
    } finally {
      await close();
    }
  });

  it('enforces the ACL token from header, bearer or query', async () => {
    const { s, consul, close } = await startStandIn({ aclToken: 'secret' });
    try {
      const none = await get(s, '/v1/catalog/services');
      assert.deepEqual([none.status, none.text], [403, 'Permission denied']);
      const wrong = await get(s, '/v1/catalog/services', { headers: { 'X-Consul-Token': 'nope' } });
      assert.deepEqual([wrong.status, wrong.text], [403, 'ACL not found']);
      assert.equal((await put(s, '/v1/agent/service/register', { Name: 'x' })).status, 403);
      assert.equal((await get(s, '/v1/catalog/services', { headers: { Authorization: 'Bearer secret' } })).status, 200);
      assert.equal((await get(s, '/v1/catalog/services?token=secret')).status, 200);
      assert.equal((await get(s, '/v1/status/leader')).status, 200, 'status needs no token');

      // The consul client sends X-Consul-Token from its defaults.
      await consul.agent.service.register({ name: 'acl', port: 1 });
      assert.ok('acl' in (await consul.catalog.service.list()));
      const anon = new Consul({ host: '127.0.0.1', port: s.port });
      try {
        await assert.rejects(anon.catalog.service.list(), /Permission denied/);
        await assert.rejects(anon.catalog.service.list({ token: 'other' }), /ACL not found/);
      } finally {
        anon.destroy();
      }
    } finally {
      await close();
    }
  });
});

describe(`config entries (${process.env['CONSUL_HTTP_ADDR'] ? 'real Consul' : 'Consul stand-in'}): /v1/config as Consul documents it`, () => {
  let c: TestConsul;
  const name = uniqueName('cfg');
  const call = async (
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; index: bigint | undefined; body: unknown; text: string; ms: number }> => {
    const t0 = performance.now();
    const r = await fetch(c.address + path, {
      method,
      headers: c.token ? { 'X-Consul-Token': c.token } : {},
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.text();
    const h = r.headers.get('x-consul-index');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: r.status, index: h === null ? undefined : BigInt(h), body: parsed, text, ms: performance.now() - t0 };
  };
  before(async () => {
    c = await startConsul();
  });
  after(async () => {
    for (const k of ['service-resolver', 'service-defaults']) await call('DELETE', `/v1/config/${k}/${name}`).catch(() => undefined);
    await c.stop();
  });

  it('PUT writes an entry, GET by kind/name and by kind return it with CreateIndex/ModifyIndex, DELETE removes it', async () => {
    const put = await call('PUT', '/v1/config', {
      Kind: 'service-resolver',
      Name: name,
      ConnectTimeout: '2s',
      LoadBalancer: { Policy: 'round_robin' },
    });
    assert.equal(put.status, 200);
    assert.equal(put.body, true);
    const one = await call('GET', `/v1/config/service-resolver/${name}`);
    assert.equal(one.status, 200);
    const e = one.body as {
      Kind: string;
      Name: string;
      ConnectTimeout: string;
      LoadBalancer: { Policy: string };
      CreateIndex: number;
      ModifyIndex: number;
    };
    assert.equal(e.Kind, 'service-resolver');
    assert.equal(e.Name, name);
    assert.equal(e.LoadBalancer.Policy, 'round_robin');
    assert.ok(e.ModifyIndex > 0 && e.CreateIndex === e.ModifyIndex);
    assert.ok(one.index !== undefined && one.index > 0n, 'X-Consul-Index on a read');
    const list = await call('GET', '/v1/config/service-resolver');
    assert.ok((list.body as Array<{ Name: string }>).some((x) => x.Name === name));

    // Check-and-set: a stale index is refused with false, the current one accepted.
    assert.equal(
      (await call('PUT', `/v1/config?cas=${e.ModifyIndex + 1000}`, { Kind: 'service-resolver', Name: name, ConnectTimeout: '3s' })).body,
      false,
    );
    assert.equal((await call('PUT', '/v1/config?cas=0', { Kind: 'service-resolver', Name: name })).body, false, 'cas=0: only when absent');
    assert.equal(
      (await call('PUT', `/v1/config?cas=${e.ModifyIndex}`, { Kind: 'service-resolver', Name: name, ConnectTimeout: '3s' })).body,
      true,
    );

    assert.equal((await call('DELETE', `/v1/config/service-resolver/${name}`)).status, 200);
    assert.equal((await call('GET', `/v1/config/service-resolver/${name}`)).status, 404);
  });

  it('refuses what Consul refuses: an unknown kind, a missing name, a Consul-unknown LoadBalancer.Policy', async () => {
    assert.equal((await call('PUT', '/v1/config', { Kind: 'no-such-kind', Name: name })).status >= 400, true);
    assert.equal((await call('PUT', '/v1/config', { Kind: 'service-defaults' })).status >= 400, true);
    assert.equal(
      (await call('PUT', '/v1/config', { Kind: 'service-resolver', Name: name, LoadBalancer: { Policy: 'fancy' } })).status >= 400,
      true,
    );
    assert.equal((await call('PUT', '/v1/config', { Kind: 'proxy-defaults', Name: 'not-global' })).status >= 400, true);
  });

  it('GET /v1/config/:kind blocks on ?index until a config write, then answers with a higher X-Consul-Index', async () => {
    const first = await call('GET', '/v1/config/service-defaults');
    const idx = first.index as bigint;
    const waiting = call('GET', `/v1/config/service-defaults?index=${idx}&wait=20s`);
    await new Promise((r) => setTimeout(r, 300));
    await call('PUT', '/v1/config', {
      Kind: 'service-defaults',
      Name: name,
      Protocol: 'http',
      Meta: { 'mcpmesh/stream-idle-timeout': '2h' },
    });
    const woke = await waiting;
    assert.ok((woke.index as bigint) > idx, `index moved (${idx} -> ${woke.index})`);
    assert.ok(woke.ms >= 250 && woke.ms < 15_000, `answered after the write, not at once nor at the wait (${Math.round(woke.ms)} ms)`);
    assert.deepEqual((woke.body as Array<{ Name: string; Meta: Record<string, string> }>).find((x) => x.Name === name)?.Meta, {
      'mcpmesh/stream-idle-timeout': '2h',
    });
    // Without a change the query waits out `wait` and answers with the same index.
    const idle = await call('GET', `/v1/config/service-defaults?index=${woke.index}&wait=1s`);
    assert.equal(idle.index, woke.index);
    assert.ok(idle.ms >= 900, `waited (${Math.round(idle.ms)} ms)`);
  });
});
