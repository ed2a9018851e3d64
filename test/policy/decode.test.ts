// The hot-path CheckRequest decoder against a full protobufjs decode of Envoy's CheckRequest: same input for
// every shape Envoy can send (headers map or raw header map, body or raw_body, context extensions, jwt_authn
// metadata, unknown size), and proto3 merge semantics for repeated fields.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HEADERS_READ } from '../../control-plane/src/authz/check.ts';
import { decodeCheckInput, decodeCheckInputReference, type DecodedCheck } from '../../control-plane/src/authz/decode.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import { checkRequestObject, encodeCheckRequest, type CheckSpec } from './helpers.ts';

function view(d: DecodedCheck): Record<string, unknown> {
  return {
    method: d.method,
    path: d.path,
    requestId: d.requestId,
    size: d.size,
    body: typeof d.body === 'string' ? d.body : Buffer.from(d.body).toString('utf8'),
    bodyIsBytes: typeof d.body !== 'string',
    contextExtensions: { ...d.contextExtensions },
    headers: Object.fromEntries(HEADERS_READ.map((h) => [h, d.header(h)])),
    counts: Object.fromEntries(HEADERS_READ.map((h) => [h, d.headerCount(h)])),
    metadataClaims: d.metadataClaims,
  };
}

const CASES: Array<[string, CheckSpec]> = [
  [
    'tools/call with claims',
    {
      service: 'weather',
      claims: { sub: 'a', roles: ['x', 'y'] },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'écho ✓' } },
    },
  ],
  [
    'raw body and raw header map',
    { service: 'weather', claims: { sub: 'a' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}', asBytes: true, rawHeaders: true },
  ],
  ['GET without body or service', { method: 'GET', headers: { 'x-mcp-service': 'files' } }],
  ['partial body, unknown size', { service: 'w', body: '{"jsonrpc"', size: -1, headers: { 'x-envoy-auth-partial-body': 'true' } }],
  ['size beyond 32 bits', { service: 'w', body: '', size: 5_000_000_000 }],
  [
    'jwt_authn metadata',
    { service: 'w', metadataClaims: { sub: 'm', roles: ['r'], n: 3, ok: true, nested: { a: [1, 'b', null] } }, body: '{}' },
  ],
  ['upper-case header names', { service: 'w', headers: { 'X-Request-Id': 'abc', 'X-JWT-Payload': 'e30' }, body: '' }],
  [
    'repeated MCP headers, raw header map',
    {
      service: 'w',
      rawHeaders: true,
      headers: { 'mcp-name': 'a' },
      extraHeaders: [
        ['mcp-name', 'b'],
        ['Mcp-Name', ''],
        ['mcp-method', 'tools/call'],
      ],
      body: '{}',
    },
  ],
  ['repeated MCP headers, joined map', { service: 'w', headers: { 'mcp-name': 'a' }, extraHeaders: [['mcp-name', 'b']], body: '{}' }],
  [
    'large body and headers',
    {
      service: 'w',
      headers: { authorization: `Bearer ${'t'.repeat(5000)}` },
      body: { jsonrpc: '2.0', id: 'x', method: 'tools/call', params: { name: 'n', arguments: { blob: 'z'.repeat(100_000) } } },
    },
  ],
];

describe('decodeCheckInput', () => {
  for (const [name, spec] of CASES) {
    it(`agrees with a full protobufjs decode: ${name}`, () => {
      const buf = encodeCheckRequest(spec);
      assert.deepEqual(view(decodeCheckInput(buf, 'jwt_payload')), view(decodeCheckInputReference(buf, 'jwt_payload')));
    });
  }

  it('reads what the authorizer needs', () => {
    const d = decodeCheckInput(
      encodeCheckRequest({
        service: 'weather',
        claims: { sub: 'a' },
        body: 'B',
        size: -1,
        headers: { 'x-envoy-auth-partial-body': 'true' },
      }),
      'jwt_payload',
    );
    assert.equal(d.method, 'POST');
    assert.equal(d.size, -1);
    assert.equal(d.body, 'B');
    assert.deepEqual({ ...d.contextExtensions }, { mcp_service: 'weather' });
    assert.equal(d.header('x-envoy-auth-partial-body'), 'true');
    assert.equal(d.header('x-jwt-payload'), Buffer.from('{"sub":"a"}').toString('base64url'));
    assert.equal(d.header('authorization'), undefined, 'headers the authorizer does not read are skipped');
    assert.equal(d.requestId, 'req-1');
  });

  it('merges repeated message fields and keeps the last scalar, as protobuf does', () => {
    const t = lookupType('envoy.service.auth.v3.CheckRequest');
    const a = Buffer.from(
      t.encode(t.fromObject(checkRequestObject({ service: 'first', body: 'one', headers: { 'x-request-id': 'r1' } }))).finish(),
    );
    const b = Buffer.from(
      t.encode(t.fromObject({ attributes: { request: { http: { body: 'two' } }, context_extensions: { other: 'x' } } })).finish(),
    );
    const both = Buffer.concat([a, b]);
    const lean = view(decodeCheckInput(both, 'jwt_payload'));
    assert.deepEqual(lean, view(decodeCheckInputReference(both, 'jwt_payload')));
    assert.equal(lean['body'], 'two');
    assert.equal(lean['method'], 'POST');
    assert.deepEqual(lean['contextExtensions'], { mcp_service: 'first', other: 'x' });
  });

  it('counts each copy of a header in a raw header map (encode_raw_headers); the joined map cannot tell', () => {
    const raw = decodeCheckInput(
      encodeCheckRequest({ service: 'w', rawHeaders: true, headers: { 'mcp-name': 'a' }, extraHeaders: [['MCP-NAME', 'b']], body: '{}' }),
      'jwt_payload',
    );
    assert.equal(raw.header('mcp-name'), 'a,b');
    assert.equal(raw.headerCount('mcp-name'), 2);
    assert.equal(raw.headerCount('mcp-method'), 0);
    const joined = decodeCheckInput(
      encodeCheckRequest({ service: 'w', headers: { 'mcp-name': 'a' }, extraHeaders: [['mcp-name', 'b']], body: '{}' }),
      'jwt_payload',
    );
    assert.equal(joined.header('mcp-name'), 'a,b');
    assert.equal(joined.headerCount('mcp-name'), undefined);
  });

  it('keeps a body string field that is not UTF-8 as bytes (so the check refuses it, not U+FFFD)', () => {
    const buf = encodeCheckRequest({ service: 'w', body: '{"name":"QQ"}' });
    const at = buf.indexOf('QQ');
    buf[at] = 0xc0;
    buf[at + 1] = 0xaf;
    const d = decodeCheckInput(buf, 'jwt_payload');
    assert.ok(d.body instanceof Uint8Array);
    assert.deepEqual([...(d.body as Uint8Array).subarray(9, 11)], [0xc0, 0xaf]);
  });

  it('refuses truncated messages', () => {
    const buf = encodeCheckRequest({ service: 'w', body: 'x'.repeat(100) });
    assert.throws(() => decodeCheckInput(buf.subarray(0, buf.length - 10), 'jwt_payload'));
  });
});
