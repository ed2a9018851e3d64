// The blocking-query loop against a scripted HTTP server: every failure is reported and retried, the loop
// never ends on its own, a failure or a backwards index makes the next read fresh (no ?index), and a good
// answer after failures reports recovery even when nothing changed.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import {
  backoffDelay,
  BlockingQuery,
  type BlockingQueryError,
  waitMs,
  type ChangeInfo,
} from '../../control-plane/src/sources/blocking-query.ts';
import { waitFor } from '../helpers/wait.ts';

interface Step {
  status?: number;
  index?: string | null;
  body?: string;
  hang?: boolean;
  delayMs?: number;
}

/** Answers each request with the next step (the last step repeats); records each request's ?index. */
async function scripted(steps: Step[]): Promise<{ url: string; seen: Array<string | null>; close: () => Promise<void> }> {
  const seen: Array<string | null> = [];
  let i = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    seen.push(url.searchParams.get('index'));
    const step = steps[Math.min(i++, steps.length - 1)] ?? {};
    if (step.hang) return;
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (step.index !== null) headers['X-Consul-Index'] = step.index ?? '5';
    // A blocking read with the same index answers after a short "wait" rather than spinning the test.
    const delay = step.delayMs ?? (url.searchParams.has('index') && steps.length <= i ? 50 : 0);
    setTimeout(() => {
      res.writeHead(step.status ?? 200, headers);
      res.end(step.body ?? '{"a":["mcp"]}');
    }, delay);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1/catalog/services`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const objectOfTags = (b: unknown): Record<string, string[]> => {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new Error('expected an object');
  return b as Record<string, string[]>;
};

function run(url: string, extra: { timeoutMarginMs?: number; backoffBaseMs?: number } = {}) {
  const changes: Array<{ value: Record<string, string[]>; info: ChangeInfo }> = [];
  const errors: BlockingQueryError[] = [];
  let recovered = 0;
  const q = new BlockingQuery({
    name: 'catalog',
    url,
    wait: '1s',
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    validate: objectOfTags,
    onChange: (value, info) => changes.push({ value, info }),
    onError: (e) => errors.push(e),
    onRecover: () => {
      recovered += 1;
    },
    ...extra,
  });
  q.start();
  return { q, changes, errors, recovered: () => recovered };
}

describe('BlockingQuery', () => {
  const closers: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of closers) await c();
  });

  for (const [what, bad, kind] of [
    ['a missing X-Consul-Index', { index: null }, 'index'],
    ['an X-Consul-Index of 0', { index: '0' }, 'index'],
    ['an HTTP 400', { status: 400, body: 'Bad request' }, 'status'],
    ['an HTTP 500', { status: 500, body: 'rpc error' }, 'status'],
    ['a body that is not JSON', { body: '{"a":' }, 'decode'],
    ['a wrong shape', { body: '[]' }, 'shape'],
  ] as const) {
    it(`keeps watching after ${what}, re-reads from index 0 and reports recovery`, async () => {
      const srv = await scripted([{ index: '5' }, bad, { index: '5', body: '{"b":["mcp"]}' }]);
      closers.push(srv.close);
      const r = run(srv.url);
      try {
        await waitFor('recovery', () => (r.recovered() === 1 ? true : undefined), 5000);
        assert.equal(r.errors.length, 1);
        assert.equal(r.errors[0]?.kind, kind);
        assert.match(r.errors[0]?.message ?? '', /^catalog: /);
        // Same index as before the failure, different data: still delivered, because the read was fresh.
        assert.deepEqual(
          r.changes.map((c) => [c.info.index, c.info.fresh, Object.keys(c.value)]),
          [
            ['5', true, ['a']],
            ['5', true, ['b']],
          ],
        );
        assert.deepEqual(srv.seen.slice(0, 3), [null, '5', null]);
        const st = r.q.state();
        assert.equal(st.healthy, true);
        assert.equal(st.errors, 1);
        assert.equal(st.lastErrorKind, kind);
      } finally {
        r.q.stop();
      }
    });
  }

  it('re-reads at once from index 0 when the index goes backwards', async () => {
    const srv = await scripted([{ index: '50' }, { index: '7', body: '{"c":[]}' }, { index: '7', body: '{"c":[]}' }]);
    closers.push(srv.close);
    const r = run(srv.url);
    try {
      await waitFor('third request', () => (srv.seen.length >= 4 ? true : undefined), 5000);
      assert.deepEqual(srv.seen.slice(0, 4), [null, '50', null, '7']);
      assert.deepEqual(
        r.changes.map((c) => [c.info.index, c.info.fresh]),
        [
          ['50', true],
          ['7', true],
          ['7', true],
        ],
      );
      assert.equal(r.errors.length, 0);
      assert.equal(r.q.state().resets, 1);
    } finally {
      r.q.stop();
    }
  });

  it('does not deliver an unchanged index from a blocking read', async () => {
    const srv = await scripted([{ index: '9' }]);
    closers.push(srv.close);
    const r = run(srv.url);
    try {
      await waitFor('three requests', () => (srv.seen.length >= 3 ? true : undefined), 5000);
      assert.equal(r.changes.length, 1);
      assert.equal(r.recovered(), 0);
    } finally {
      r.q.stop();
    }
  });

  it('does not spin on a server that answers blocking queries at once with the same index', async () => {
    const srv = await scripted([{ index: '9', delayMs: 0 }]);
    closers.push(srv.close);
    const r = run(srv.url, { backoffBaseMs: 50 });
    try {
      await new Promise((res) => setTimeout(res, 500));
      assert.ok(srv.seen.length <= 15, `${srv.seen.length} requests in 500 ms`);
      assert.equal(r.changes.length, 1);
    } finally {
      r.q.stop();
    }
  });

  it('abandons a hung answer and retries', async () => {
    const srv = await scripted([{ hang: true }, { index: '3' }]);
    closers.push(srv.close);
    const r = run(srv.url, { timeoutMarginMs: 200 });
    try {
      await waitFor('recovery', () => (r.recovered() === 1 ? true : undefined), 5000);
      assert.equal(r.errors[0]?.kind, 'timeout');
      assert.equal(r.changes.length, 1);
    } finally {
      r.q.stop();
    }
  });

  it('reports network errors, keeps retrying, and stop() ends it', async () => {
    const srv = await scripted([{ index: '1' }]);
    await srv.close();
    const r = run(srv.url);
    await waitFor('three errors', () => (r.errors.length >= 3 ? true : undefined), 5000);
    assert.ok(
      r.errors.every((e) => e.kind === 'network'),
      r.errors.map((e) => e.message).join('; '),
    );
    assert.equal(r.q.state().healthy, false);
    assert.equal(r.q.state().consecutiveFailures, r.errors.length);
    r.q.stop();
    const n = r.errors.length;
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(r.errors.length, n, 'no query after stop()');
  });

  it('treats an answer its consumer throws on as an error, and offers it again', async () => {
    const srv = await scripted([{ index: '4' }]);
    closers.push(srv.close);
    let calls = 0;
    const errors: BlockingQueryError[] = [];
    let recovered = 0;
    const q = new BlockingQuery({
      name: 'catalog',
      url: srv.url,
      wait: '1s',
      backoffBaseMs: 5,
      backoffMaxMs: 20,
      validate: objectOfTags,
      onChange: () => {
        if (++calls === 1) throw new Error('boom');
      },
      onError: (e) => errors.push(e),
      onRecover: () => {
        recovered += 1;
      },
    });
    q.start();
    try {
      await waitFor('recovery', () => (recovered === 1 ? true : undefined), 5000);
      assert.equal(calls, 2, 'the same answer is delivered again after the failure');
      assert.equal(errors[0]?.kind, 'shape');
      assert.match(errors[0]?.message ?? '', /refused by its consumer: boom/);
    } finally {
      q.stop();
    }
  });

  it('backs off with jitter within a small cap', () => {
    assert.equal(
      backoffDelay(1, 100, 2000, () => 0),
      50,
    );
    assert.equal(
      backoffDelay(1, 100, 2000, () => 1),
      100,
    );
    assert.equal(
      backoffDelay(3, 100, 2000, () => 1),
      400,
    );
    assert.equal(
      backoffDelay(50, 100, 2000, () => 1),
      2000,
    );
    assert.equal(
      backoffDelay(50, 100, 2000, () => 0),
      1000,
    );
    assert.equal(waitMs('5m'), 300_000);
    assert.equal(waitMs('1500ms'), 1500);
    assert.equal(waitMs('1h'), 600_000, "Consul's cap");
    assert.throws(() => waitMs('0'), /not a Consul wait/);
    assert.throws(() => waitMs('5 minutes'), /not a Consul wait/);
  });
});
