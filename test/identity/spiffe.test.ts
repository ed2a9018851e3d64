// SPIFFE ID construction and validation (SPIFFE-ID.md: scheme, trust domain characters, path segments).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  gatewayId,
  isSpiffeId,
  parseSpiffeId,
  sidecarId,
  SpiffeIdError,
  trustDomainId,
  validateSpiffeId,
  validateTrustDomain,
  workloadRole,
} from '../../control-plane/src/identity/spiffe.ts';

describe('SPIFFE IDs', () => {
  it('builds sidecar, gateway and trust-domain IDs', () => {
    assert.equal(sidecarId('mcpmesh.local', 'weather'), 'spiffe://mcpmesh.local/mcp/weather');
    assert.equal(gatewayId('mcpmesh.local', 'edge-1'), 'spiffe://mcpmesh.local/gateway/edge-1');
    assert.equal(trustDomainId('prod.example_org'), 'spiffe://prod.example_org');
  });

  it('tells the proxy role back from a workload identity', () => {
    assert.equal(workloadRole(sidecarId('mesh.test', 'weather')), 'sidecar');
    assert.equal(workloadRole(gatewayId('mesh.test', 'mcp')), 'gateway');
    assert.equal(workloadRole('spiffe://mesh.test/other/x'), undefined);
    assert.equal(workloadRole(trustDomainId('mesh.test')), undefined);
  });

  it('parses valid IDs', () => {
    assert.deepEqual(parseSpiffeId('spiffe://example.org/ns/Prod/sa/Web_1.2-x'), {
      trustDomain: 'example.org',
      path: '/ns/Prod/sa/Web_1.2-x',
    });
    assert.deepEqual(parseSpiffeId('spiffe://example.org'), { trustDomain: 'example.org', path: '' });
    for (const id of ['spiffe://a/b', 'spiffe://1.2.3.4/x', 'spiffe://td/...', 'spiffe://t-d_x.y/a.b']) assert.ok(isSpiffeId(id), id);
  });

  const invalid: Array<[string, RegExp]> = [
    ['', /empty/],
    ['http://example.org/a', /must start with "spiffe:\/\/"/],
    ['SPIFFE://example.org/a', /scheme must be lower-case/],
    ['spiffe://', /trust domain is empty/],
    ['spiffe:///a', /trust domain is empty/],
    ['spiffe://Example.org/a', /must be lower case/],
    ['spiffe://example.org:8080/a', /must not contain a port/],
    ['spiffe://user@example.org/a', /userinfo/],
    ['spiffe://exa mple.org', /invalid character " "/],
    ['spiffe://example.org/', /must not be just "\/"/],
    ['spiffe://example.org/a/', /segment is empty/],
    ['spiffe://example.org//a', /segment is empty/],
    ['spiffe://example.org/a/./b', /"\." is not allowed/],
    ['spiffe://example.org/a/../b', /"\.\." is not allowed/],
    ['spiffe://example.org/a%20b', /percent-encoded/],
    ['spiffe://example.org/a b', /invalid character " "/],
    ['spiffe://example.org/a?x=1', /query/],
    ['spiffe://example.org/a#frag', /fragment/],
    ['spiffe://example.org/caf\u00e9', /invalid character "\u00e9"/],
    [`spiffe://${'a'.repeat(256)}/x`, /at most 255/],
    [`spiffe://example.org/${'a'.repeat(2048)}`, /longer than 2048 bytes/],
  ];
  for (const [id, why] of invalid) {
    it(`rejects ${JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}...` : id)}`, () => {
      assert.equal(isSpiffeId(id), false);
      assert.throws(
        () => validateSpiffeId(id),
        (e: unknown) => e instanceof SpiffeIdError && why.test(e.message) && e.message.startsWith('invalid SPIFFE ID'),
      );
    });
  }

  it('validates trust domains with clear errors', () => {
    assert.equal(validateTrustDomain('mcpmesh.local'), 'mcpmesh.local');
    assert.throws(() => validateTrustDomain('spiffe://mcpmesh.local'), /bare name, without "spiffe:\/\/"/);
    assert.throws(() => validateTrustDomain('MCPMesh'), /must be lower case \(character 1 is "M"\)/);
    assert.throws(() => validateTrustDomain(''), /empty/);
  });

  it('refuses service and gateway names that are not one path segment', () => {
    assert.throws(
      () => sidecarId('mcpmesh.local', 'a/b'),
      /cannot build a SPIFFE ID in mcpmesh.local from "mcp\/a\/b": .*invalid character "\/"/,
    );
    assert.throws(() => sidecarId('mcpmesh.local', ''), /segment is empty/);
    assert.throws(() => gatewayId('mcpmesh.local', '..'), /"\.\." is not allowed/);
    assert.throws(() => sidecarId('Bad', 'x'), /must be lower case/);
  });
});
