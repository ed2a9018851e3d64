// The MCP authorizer fuzz in `npm test` (issue 11, item 5; design in authz-fuzz.ts and README.md): a fixed
// seed, 10,000 cases through the gateway model (header RBAC + the real authorizer over gRPC), every case the
// mesh allows (and a seeded 5% of the others) replayed to two real MCP SDK servers. No server may run what
// the policy denies. Then one fixed case per finding of issue 11.
//   MCPMESH_FUZZ_SEED=S MCPMESH_FUZZ_CASES=N node --test test/fuzz/authz-fuzz.test.ts   (other seed or size)
//   node test/fuzz/run.ts --seed S --cases N                                            (longer runs)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatCase, formatSummary, FuzzHarness } from './authz-fuzz.ts';
import { fixedCase, generateCase } from './generators.ts';
import { REGRESSIONS } from './regressions.ts';

const SEED = process.env['MCPMESH_FUZZ_SEED'] ?? '20260728';
const CASES = Number(process.env['MCPMESH_FUZZ_CASES'] ?? 10_000);
if (!Number.isInteger(CASES) || CASES <= 0)
  throw new Error(`MCPMESH_FUZZ_CASES must be a positive integer (got ${process.env['MCPMESH_FUZZ_CASES']})`);

describe('MCP authorizer fuzz (issue 11)', () => {
  let harness: FuzzHarness | undefined;
  const h = (): FuzzHarness => harness as FuzzHarness;
  before(async () => {
    harness = await FuzzHarness.start();
  });
  after(async () => {
    await harness?.close();
  });

  it('a seed and an index always give the same case, byte for byte', () => {
    for (const i of [0, 1, 17, 4242]) {
      const a = generateCase(SEED, i);
      const b = generateCase(SEED, i);
      assert.deepEqual(
        [a.headers, Buffer.from(a.body), a.service, a.caller.name],
        [b.headers, Buffer.from(b.body), b.service, b.caller.name],
      );
    }
    assert.notDeepEqual(Buffer.from(generateCase(SEED, 0).body), Buffer.from(generateCase(`${SEED}x`, 0).body));
  });

  it('the machinery sees both outcomes: an allowed call runs, a denied one is refused and would have run', async () => {
    const headers: Array<[string, string]> = [
      ['Content-Type', 'application/json'],
      ['Accept', 'application/json, text/event-stream'],
      ['MCP-Protocol-Version', '2025-11-25'],
    ];
    const call = (name: string): string => JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: {} } });
    const ok = await h().runCase(
      fixedCase({ name: 'sanity-allowed', service: 'weather', caller: 'reader', headers, body: call('get_forecast') }),
    );
    assert.equal(ok.verdict?.allowed, true);
    assert.deepEqual(
      ok.replies.map((r) => [r.oracle, r.status, r.ran]),
      [
        ['plain', 200, [{ kind: 'tool', name: 'get_forecast' }]],
        ['express', 200, [{ kind: 'tool', name: 'get_forecast' }]],
      ],
    );
    const no = await h().runCase(
      fixedCase({ name: 'sanity-denied', service: 'weather', caller: 'reader', headers, body: call('admin_reset') }),
      true,
    );
    assert.equal(no.verdict?.allowed, false);
    assert.equal(no.verdict?.status, 403);
    assert.equal(no.failure, false);
    assert.deepEqual(
      no.violations.map((v) => [v.oracle, v.action]),
      [
        ['plain', { kind: 'tool', name: 'admin_reset' }],
        ['express', { kind: 'tool', name: 'admin_reset' }],
      ],
    );
  });

  it(`seed ${SEED}, ${CASES} cases: no server runs a handler the policy denies on a request the mesh allows`, {
    timeout: 300_000,
  }, async (t) => {
    console.log(`authz fuzz seed ${SEED} (${CASES} cases; reproduce one with: node test/fuzz/run.ts --seed ${SEED} --case <index>)`);
    const s = await h().run({ seed: SEED, cases: CASES });
    const summary = formatSummary(s);
    console.log(summary);
    t.diagnostic(summary);
    assert.deepEqual(s.harnessErrors.slice(0, 5).map(formatCase), [], 'every case is decided and replayed without a harness error');
    assert.ok(s.allowed > 0 && s.denied > 0, 'both outcomes occur');
    assert.ok(s.allowedRan > 0, 'replays of allowed cases reach handlers');
    assert.ok(s.blocked > 0, 'the generators produce requests on which a server would run a denied handler');
    assert.equal(
      s.failureCount,
      0,
      `${s.failureCount} failure(s) for seed ${SEED}; the first:\n\n${s.failures.slice(0, 8).map(formatCase).join('\n\n')}`,
    );
  });

  describe('regressions: one fixed case per finding of issue 11', () => {
    for (const r of REGRESSIONS) {
      it(`${r.id}: ${r.finding}`, async () => {
        const { result, problems } = await h().runRegression(r);
        assert.deepEqual(problems, [], `\n${formatCase(result)}`);
      });
    }
  });
});
