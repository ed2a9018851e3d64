// The authorizer's caches change nothing but speed: callers cached by a hash of jwt_authn's metadata bytes are
// still told apart byte for byte when every hash collides, and bounded caches decide as no cache does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authorize, CallerCache, DecisionCache } from '../../control-plane/src/authz/check.ts';
import { decodeCheckInput, decodeCheckInputReference } from '../../control-plane/src/authz/decode.ts';
import { compilePolicy } from '../../control-plane/src/policy/engine.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { encodeCheckRequest } from './helpers.ts';

const cp = compilePolicy(
  parsePolicy(
    `
trustDomain: mcpmesh.local
roles:
  analyst:
    allow:
      - { service: weather, tools: ["get_*", echo] }
  ops:
    allow:
      - { service: weather, tools: ["get_*"] }
  admin:
    allow:
      - { service: weather, tools: ["*"] }
`,
    'test',
  ),
);

const request = (roles: string[], tool: string, sub = 'x'): Buffer =>
  encodeCheckRequest({
    service: 'weather',
    rawHeaders: true,
    metadataClaims: { sub, roles },
    body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool } },
  });

/** The decision with no cache at all, from a full protobufjs decode. */
const uncached = (buf: Buffer): string => {
  const o = authorize(cp, decodeCheckInputReference(buf, 'jwt_payload'));
  return `${o.verdict} ${o.rule} ${o.subject}`;
};

describe('authorizer caches', () => {
  it('tells callers apart by their metadata bytes when every hash collides, buckets bounded', () => {
    const callers = new CallerCache(4096, () => 42);
    const decisions = new DecisionCache();
    // Same length metadata, different roles and subjects: more callers than a bucket holds, interleaved.
    const reqs = [
      request(['analyst'], 'echo', 'a1'),
      request(['ops'], 'echo', 'o1'),
      request(['admin'], 'echo', 'd1'),
      request(['ops'], 'echo', 'o2'),
      request(['analyst'], 'echo', 'a2'),
      request([], 'echo', 'n1'),
      request(['admin'], 'drop', 'd2'),
    ];
    const want = reqs.map(uncached);
    assert.deepEqual(new Set(want.map((w) => w.split(' ')[0])), new Set(['allow', 'deny']));
    for (let round = 0; round < 5; round++) {
      reqs.forEach((buf, i) => {
        const o = authorize(cp, decodeCheckInput(buf, 'jwt_payload'), { callers, decisions });
        assert.equal(`${o.verdict} ${o.rule} ${o.subject}`, want[i], `round ${round}, request ${i}`);
      });
    }
  });

  it("reads the payload under the decoder's key: the same bytes under another key are another caller", () => {
    const callers = new CallerCache();
    const buf = request(['admin'], 'drop');
    assert.equal(authorize(cp, decodeCheckInput(buf, 'jwt_payload'), { callers }).verdict, 'allow');
    // No payload under "other": anonymous, denied, although the very same bytes were cached above.
    assert.equal(authorize(cp, decodeCheckInput(buf, 'other'), { callers }).verdict, 'deny');
  });

  it('decides as no cache does when the caches overflow', () => {
    const callers = new CallerCache(2, () => 7);
    const decisions = new DecisionCache(3);
    const reqs: Buffer[] = [];
    for (let i = 0; i < 12; i++)
      reqs.push(request([['analyst', 'ops', 'admin'][i % 3] as string], ['echo', 'get_x', 'drop', `t${i}`][i % 4] as string, `s${i}`));
    const want = reqs.map(uncached);
    for (let round = 0; round < 3; round++) {
      reqs.forEach((buf, i) => {
        const o = authorize(cp, decodeCheckInput(buf, 'jwt_payload'), { callers, decisions });
        assert.equal(`${o.verdict} ${o.rule} ${o.subject}`, want[i], `round ${round}, request ${i}`);
      });
    }
  });
});
