// The MCP authorizer decides on the message the server will execute (issue 11, part 1), over real gRPC with
// Envoy's CheckRequest shapes: only JSON in UTF-8, one BOM dropped as servers drop it, no invalid UTF-8,
// exact methods, no control characters, resource URIs normalized, batches capped and denials small, an
// unforgeable decision cache, and a clear answer when jwt_authn's metadata cannot be read.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { Registry } from 'prom-client';
import { CHECK_PATH, AuthzServer } from '../../control-plane/src/authz/server.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { lookupType } from '../../control-plane/src/xds/proto.ts';
import { decodeCheckResponse, encodeCheckRequest, headerOf, type CheckSpec, type DecodedCheckResponse } from './helpers.ts';
import type { JsonRpcErrorReply } from '../../control-plane/src/authz/check.ts';

const require = createRequire(import.meta.url);

/** The JSON-RPC error response in a denial's body (a denied batch answers with an array of them). */

const POLICY_YAML = `
trustDomain: mcpmesh.local
roles:
  analyst:
    allow:
      - { service: weather, tools: ["get_*", echo] }
      - { service: files, tools: ["*"], resources: ["file:///reports/*"] }
    deny:
      - { service: files, tools: [drop_cache] }
  ops:
    allow:
      - { service: weather, tools: ["get_*"] }
  zz2:
    allow:
      - { service: weather, tools: [admin_reset] }
  operator:
    allow:
      - { service: files, resources: ["file:///*"] }
    deny:
      - { service: files, resources: ["file:///etc/*"] }
`;

const ANALYST = { sub: 'alice', roles: ['analyst'] };
const identity = (b: Buffer): Buffer => b;
const call = (id: number | string, name: string): Record<string, unknown> => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {} },
});
const read = (id: number, uri: string): Record<string, unknown> => ({ jsonrpc: '2.0', id, method: 'resources/read', params: { uri } });
const POLYGLOT = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_forecast+ACI-+ACw-+ACI-name+ACI-:+ACI-admin_reset"}}';

/** The CheckResponse holds only valid UTF-8: decoding and re-encoding it changes no byte (U+FFFD would). */
function assertValidUtf8(resp: Buffer): void {
  const t = lookupType('envoy.service.auth.v3.CheckResponse');
  assert.ok(Buffer.from(t.encode(t.decode(resp)).finish()).equals(resp), 'the CheckResponse carries invalid UTF-8');
}

describe('MCP authorizer: one decision on canonical input', () => {
  let server: AuthzServer;
  let client: grpc.Client;

  const checkRaw = (req: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(CHECK_PATH, identity, identity, req, (err, resp) => (err ? reject(err) : resolve(resp as Buffer)));
    });
  const checkBytes = async (s: CheckSpec): Promise<{ r: DecodedCheckResponse; bytes: Buffer }> => {
    const bytes = await checkRaw(encodeCheckRequest({ service: 'weather', metadataClaims: ANALYST, ...s }));
    assertValidUtf8(bytes);
    return { r: decodeCheckResponse(bytes), bytes };
  };
  const check = async (s: CheckSpec): Promise<DecodedCheckResponse> => (await checkBytes(s)).r;
  const verdict = (r: DecodedCheckResponse): { status: number; decision?: string; body?: JsonRpcErrorReply } => {
    if (r.ok_response) return { status: 200, decision: headerOf(r.ok_response.response_headers_to_add, 'x-mcpmesh-decision') };
    return {
      status: Number(r.denied_response?.status?.code),
      decision: headerOf(r.denied_response?.headers, 'x-mcpmesh-decision'),
      body: JSON.parse(r.denied_response?.body ?? 'null'),
    };
  };

  before(async () => {
    server = new AuthzServer({ policy: parsePolicy(POLICY_YAML, 'canonical.yaml'), registry: new Registry() });
    client = new grpc.Client(`127.0.0.1:${await server.listen('127.0.0.1', 0)}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
  });

  describe('Content-Type: application/json in UTF-8 only', () => {
    it('express.json() really runs the UTF-7 polyglot as admin_reset (why any other charset is refused)', async () => {
      const express = require('express') as (() => {
        use(m: unknown): void;
        post(p: string, h: (req: { body: unknown }, res: { json(v: unknown): void }) => void): void;
        listen(port: number, host: string, cb: () => void): http.Server;
      }) & { json(): unknown };
      const app = express();
      app.use(express.json());
      app.post('/mcp', (req, res) => res.json(req.body));
      const srv = await new Promise<http.Server>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      try {
        const res = await fetch(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/mcp`, {
          method: 'POST',
          headers: { 'content-type': 'application/json; charset=utf-7' },
          body: POLYGLOT,
        });
        assert.equal(((await res.json()) as { params: { name: string } }).params.name, 'admin_reset');
      } finally {
        srv.close();
      }
      // Read as UTF-8 (what the authorizer reads), the same bytes call a get_* tool the analyst may call.
      assert.equal((JSON.parse(POLYGLOT) as { params: { name: string } }).params.name.startsWith('get_forecast'), true);
    });

    it('refuses the UTF-7 polyglot with 415 and a JSON-RPC error', async () => {
      const v = verdict(await check({ body: POLYGLOT, headers: { 'content-type': 'application/json; charset=utf-7' } }));
      assert.equal(v.status, 415);
      assert.equal(v.decision, 'deny; rule=unsupported-media-type');
      assert.equal(v.body?.jsonrpc, '2.0');
      assert.equal(v.body?.error.code, -32600);
      assert.match(v.body?.error.message ?? '', /^Unsupported Media Type: charset "utf-7" is not accepted/);
    });

    it('refuses every other charset, media type, a missing, malformed or repeated Content-Type', async () => {
      const cases: Array<[string, CheckSpec]> = [
        ['utf-16', { headers: { 'content-type': 'application/json; charset=utf-16' } }],
        ['UTF-16LE quoted', { headers: { 'content-type': 'application/json; charset="UTF-16LE"' } }],
        ['latin1', { headers: { 'content-type': 'application/json;charset=latin1' } }],
        ['iso-8859-1', { headers: { 'content-type': 'application/json; charset=iso-8859-1' } }],
        ['text/plain', { headers: { 'content-type': 'text/plain' } }],
        ['form', { headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
        ['+json suffix', { headers: { 'content-type': 'application/vnd.api+json' } }],
        ['other parameter', { headers: { 'content-type': 'application/json; boundary=x' } }],
        ['two charsets', { headers: { 'content-type': 'application/json; charset=utf-8; charset=utf-7' } }],
        ['unclosed quote', { headers: { 'content-type': 'application/json; charset="utf-8' } }],
        ['none', { omitHeaders: ['content-type'] }],
        ['joined copies', { headers: { 'content-type': 'application/json, text/plain' } }],
        ['repeated (raw header map)', { rawHeaders: true, extraHeaders: [['content-type', 'application/json']] }],
      ];
      for (const [name, spec] of cases) {
        const v = verdict(await check({ body: call(1, 'get_forecast'), ...spec }));
        assert.equal(v.status, 415, name);
        assert.equal(v.body?.error.code, -32600, name);
      }
    });

    it('accepts application/json with no charset or charset=utf-8, any case, quoted or not', async () => {
      for (const ct of [
        'application/json',
        'Application/JSON',
        'application/json; charset=utf-8',
        'application/json;charset=UTF-8',
        'application/json; Charset="utf-8"',
      ]) {
        const v = verdict(await check({ body: call(1, 'get_forecast'), headers: { 'content-type': ct } }));
        assert.equal(v.status, 200, ct);
      }
    });

    it('GET and DELETE carry no body: no Content-Type needed', async () => {
      const v = verdict(await check({ method: 'GET', omitHeaders: ['content-type'] }));
      assert.equal(v.status, 200);
    });
  });

  describe('bytes: one BOM as servers drop it, UTF-8 only', () => {
    it('the SDK transport and body-parser both drop exactly one leading BOM (what the authorizer mirrors)', () => {
      const bom = Buffer.from([0xef, 0xbb, 0xbf]);
      const one = Buffer.concat([bom, Buffer.from('{"a":1}')]);
      // @modelcontextprotocol/sdk 1.x readRequestBody: new TextDecoder() (ignoreBOM false).
      assert.equal(new TextDecoder().decode(one), '{"a":1}');
      // express.json(): body-parser 2.x decodes with iconv-lite, which strips the BOM.
      const iconv = require('iconv-lite') as { decode(b: Buffer, enc: string): string };
      assert.equal(iconv.decode(one, 'utf-8'), '{"a":1}');
      assert.equal(iconv.decode(Buffer.concat([bom, one]), 'utf-8').charCodeAt(0), 0xfeff, 'a second BOM stays (and is not JSON)');
    });

    it('decides a body behind one BOM, like the server reads it; two BOMs are not JSON (400)', async () => {
      const bom = Buffer.from([0xef, 0xbb, 0xbf]);
      const ok = verdict(await check({ bodyBytes: Buffer.concat([bom, Buffer.from(JSON.stringify(call(1, 'get_forecast')))]) }));
      assert.equal(ok.status, 200);
      const denied = verdict(await check({ bodyBytes: Buffer.concat([bom, Buffer.from(JSON.stringify(call(2, 'admin_reset')))]) }));
      assert.equal(denied.status, 403);
      assert.equal(denied.body?.id, 2);
      const two = verdict(await check({ bodyBytes: Buffer.concat([bom, bom, Buffer.from(JSON.stringify(call(3, 'get_forecast')))]) }));
      assert.equal(two.status, 400);
      assert.equal(two.body?.error.code, -32700);
    });

    it('refuses bytes that are not UTF-8 (overlong, encoded surrogate, stray continuation) with 400', async () => {
      for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
        const body = Buffer.concat([
          Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_'),
          Buffer.from(bad),
          Buffer.from('"}}'),
        ]);
        const v = verdict(await check({ bodyBytes: body }));
        assert.equal(v.status, 400, Buffer.from(bad).toString('hex'));
        assert.match(v.body?.error.message ?? '', /not valid UTF-8/);
      }
    });

    it('refuses them in the body string field too (no pack_as_bytes), instead of deciding on U+FFFD', async () => {
      const t = lookupType('envoy.service.auth.v3.CheckRequest');
      const buf = Buffer.from(
        t
          .encode(
            t.fromObject({
              attributes: {
                request: {
                  http: {
                    method: 'POST',
                    headers: { 'content-type': 'application/json' },
                    body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_QQ"}}',
                  },
                },
                context_extensions: { mcp_service: 'weather' },
                metadata_context: {
                  filter_metadata: {
                    'envoy.filters.http.jwt_authn': {
                      fields: {
                        jwt_payload: { structValue: { fields: { roles: { listValue: { values: [{ stringValue: 'analyst' }] } } } } },
                      },
                    },
                  },
                },
              },
            }),
          )
          .finish(),
      );
      const at = buf.indexOf('get_QQ') + 4;
      buf[at] = 0xc0;
      buf[at + 1] = 0xaf;
      const resp = await checkRaw(buf);
      assertValidUtf8(resp);
      const v = verdict(decodeCheckResponse(resp));
      assert.equal(v.status, 400);
      assert.match(v.body?.error.message ?? '', /not valid UTF-8/);
    });

    it('a lone surrogate in a name (JSON escape) is refused, and no answer carries invalid UTF-8', async () => {
      const v = verdict(await check({ body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_\\ud800x"}}' }));
      assert.equal(v.status, 400);
      assert.match(v.body?.error.message ?? '', /lone UTF-16 surrogate/);
      // Long names of astral characters: whatever is cut for an answer is never half a pair.
      for (const name of ['get_'.concat('😀'.repeat(100)), 'zz_'.concat('😀'.repeat(100))]) await checkBytes({ body: call(1, name) });
      await checkBytes({ body: { jsonrpc: '\ud83d'.repeat(200), id: 1, method: 'ping' } });
    });
  });

  describe('exact methods; no control characters or edge whitespace in names and URIs', () => {
    it('a control character in a name is refused (400); the glob get_* would have matched it', async () => {
      for (const name of ['get_forecast\u0000x', 'get_forecast\nadmin_reset', 'get_\u007f', 'get_\u0085x']) {
        const v = verdict(await check({ body: call(1, name) }));
        assert.equal(v.status, 400, JSON.stringify(name));
        assert.match(v.body?.error.message ?? '', /control character/);
      }
    });

    it('edge whitespace is refused: "drop_cache " does not slip past the exact deny through "*"', async () => {
      const exact = verdict(await check({ service: 'files', body: call(1, 'drop_cache') }));
      assert.equal(exact.decision, 'deny; rule=roles.analyst.deny[0]');
      for (const name of ['drop_cache ', ' drop_cache', 'drop_cache\u00a0', '\ufeffdrop_cache']) {
        const v = verdict(await check({ service: 'files', body: call(1, name) }));
        assert.equal(v.status, 400, JSON.stringify(name));
        assert.match(v.body?.error.message ?? '', /whitespace/);
      }
    });

    it('method names are exact: no folding, no trimming; near-misses of a naming method are refused', async () => {
      for (const method of ['Tools/Call', 'TOOLS/CALL', 'tools/call ', ' tools/call', 'tools/call\u0000', 'resources/READ']) {
        const v = verdict(
          await check({ body: { jsonrpc: '2.0', id: 1, method, params: { name: 'admin_reset', uri: 'file:///etc/passwd' } } }),
        );
        assert.equal(v.status, 400, JSON.stringify(method));
        assert.equal(v.decision, 'deny; rule=malformed-request');
      }
    });

    it('a URI with a control character is refused', async () => {
      const v = verdict(await check({ service: 'files', body: read(1, 'file:///reports/a\u0000.txt') }));
      assert.equal(v.status, 400);
    });
  });

  describe('resource URIs normalized before matching; ambiguous encodings refused', () => {
    it('dot segments are resolved as the server resolves them: file:///reports/../etc/passwd is /etc/passwd', async () => {
      for (const uri of [
        'file:///reports/../etc/passwd',
        'file:///reports/%2e%2e/etc/passwd',
        'file:///reports/.%2E/etc/passwd',
        'file:///reports/./../etc/passwd',
      ]) {
        const v = verdict(await check({ service: 'files', body: read(1, uri) }));
        assert.equal(v.status, 403, uri);
        assert.equal(v.decision, 'deny; rule=default-deny', uri);
        assert.match(v.body?.error.message ?? '', /resource "file:\/\/\/etc\/passwd"/, uri);
      }
      // Resolving can also land inside what is allowed.
      for (const uri of ['file:///reports/q1/../q2.pdf', 'file:///etc/../reports/q2.pdf', 'FILE:///reports/%71%32.pdf']) {
        assert.equal(verdict(await check({ service: 'files', body: read(1, uri) })).status, 200, uri);
      }
    });

    it('spellings WHATWG URL (the SDK) reads as file:///etc/...: localhost, no slashes, upper case (fuzz finding)', async () => {
      const operator = { sub: 'o', roles: ['operator'] };
      assert.equal(
        verdict(await check({ service: 'files', metadataClaims: operator, body: read(1, 'file:///reports/a.txt') })).status,
        200,
      );
      for (const uri of [
        'file://localhost/etc/passwd',
        'file://LOCALHOST/reports/../etc/passwd',
        'file:/etc/passwd',
        'file:etc/passwd',
        'FILE:///etc/passwd',
        'file:///etc/./passwd',
      ]) {
        const v = verdict(await check({ service: 'files', metadataClaims: operator, body: read(1, uri) }));
        assert.equal(v.decision, 'deny; rule=roles.operator.deny[0]', uri);
      }
    });

    it('encoded "/", "%00", backslashes, double encoding, empty segments are refused (400)', async () => {
      for (const uri of [
        'file:///reports%2F..%2Fetc/passwd',
        'file:///reports/%2fetc',
        'file:///reports/a%00.txt',
        'file:///reports\\..\\etc\\passwd',
        'file:///reports/%5C..',
        'file:///reports/%252e%252e/etc',
        'file:///reports//x',
        'file:///reports/%C0%AE%C0%AE/etc',
      ]) {
        const v = verdict(await check({ service: 'files', body: read(1, uri) }));
        assert.equal(v.status, 400, uri);
        assert.equal(v.decision, 'deny; rule=malformed-request', uri);
      }
    });
  });

  it('duplicate JSON keys: the last wins, as JSON.parse (and so the server) reads them', async () => {
    const v = verdict(
      await check({ body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_forecast","name":"admin_reset"}}' }),
    );
    assert.equal(v.status, 403);
    assert.match(v.body?.error.message ?? '', /tool "admin_reset"/);
  });

  describe('batches capped, denials bounded', () => {
    const ping = (id: number): Record<string, unknown> => ({ jsonrpc: '2.0', id, method: 'ping' });

    it('at most 100 messages (the SDK cap): 101 is 400', async () => {
      assert.equal(verdict(await check({ body: Array.from({ length: 100 }, (_, i) => ping(i)) })).status, 200);
      const v = verdict(await check({ body: Array.from({ length: 101 }, (_, i) => ping(i)) }));
      assert.equal(v.status, 400);
      assert.match(v.body?.error.message ?? '', /batch of 101 messages; at most 100/);
    });

    it('a 1 MiB batch of pings with one denied call does not produce a multi-MB answer', async () => {
      const batch: unknown[] = [];
      let size = 0;
      for (let i = 0; size < 1 << 20; i++) {
        const m = i === 5 ? call(i, 'admin_reset') : ping(i);
        batch.push(m);
        size += JSON.stringify(m).length + 1;
      }
      const { r } = await checkBytes({ body: batch });
      const body = r.denied_response?.body ?? '';
      assert.ok(Buffer.byteLength(body) < 4096, `denial body is ${Buffer.byteLength(body)} bytes`);
    });

    it('a denied batch of 100: one error per request up to 10, then one summary', async () => {
      const batch = Array.from({ length: 100 }, (_, i) => call(i, i === 50 ? 'admin_reset' : 'get_forecast'));
      const v = verdict(await check({ body: batch }));
      assert.equal(v.status, 403);
      assert.ok(Array.isArray(v.body));
      const replies = v.body as unknown as JsonRpcErrorReply[];
      assert.deepEqual(
        replies.map((e: { id: unknown }) => e.id),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, null],
      );
      assert.match(replies[10]?.error.message ?? '', /^90 more requests of this batch are not executed: batch element \[50\]/);
    });

    it('a megabyte name or id is not echoed back whole', async () => {
      const name = `admin_${'x'.repeat(1 << 20)}`;
      const { r } = await checkBytes({ body: call(`id-${'y'.repeat(1 << 19)}`, name) });
      const body = r.denied_response?.body ?? '';
      assert.ok(Buffer.byteLength(body) < 2048, `denial body is ${Buffer.byteLength(body)} bytes`);
      assert.ok((r.status?.message ?? '').length <= 1100, 'status message is bounded');
      const parsed = JSON.parse(body) as { id: unknown; error: { message: string } };
      assert.equal(parsed.id, null, 'an over-long id is answered with null');
      assert.match(parsed.error.message, /more characters\)/);
    });
  });

  it('decision cache: roles ["ops\\u0001zz2"] do not share the entry of ["ops", "zz2"]', async () => {
    const both = verdict(await check({ metadataClaims: { sub: 'a', roles: ['ops', 'zz2'] }, body: call(1, 'admin_reset') }));
    assert.equal(both.decision, 'allow; rule=roles.zz2.allow[0]');
    const forged = verdict(await check({ metadataClaims: { sub: 'm', roles: ['ops\u0001zz2'] }, body: call(1, 'admin_reset') }));
    assert.equal(forged.status, 403);
    assert.equal(forged.decision, 'deny; rule=default-deny');
  });

  describe('jwt_authn metadata the authorizer cannot read', () => {
    it('a payload that is not a Struct: 500 with the reason, not an anonymous caller', async () => {
      const t = lookupType('envoy.service.auth.v3.CheckRequest');
      const obj = {
        attributes: {
          request: {
            http: { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(call(1, 'get_forecast')) },
          },
          context_extensions: { mcp_service: 'weather' },
          metadata_context: {
            filter_metadata: {
              'envoy.filters.http.jwt_authn': { fields: { jwt_payload: { stringValue: 'eyJyb2xlcyI6WyJhbmFseXN0Il19' } } },
            },
          },
        },
      };
      const resp = decodeCheckResponse(await checkRaw(Buffer.from(t.encode(t.fromObject(obj)).finish())));
      assert.equal(Number(resp.denied_response?.status?.code), 500);
      assert.equal(resp.status?.code, 13);
      assert.match(
        resp.status?.message ?? '',
        /^bad-claims-metadata: jwt_authn metadata cannot be read: "jwt_payload" under envoy.filters.http.jwt_authn is not a Struct/,
      );
      assert.equal(JSON.parse(resp.denied_response?.body ?? '{}').error.code, -32603);
    });

    it('metadata bytes that do not decode: a 500 answer with the reason, not a gRPC INTERNAL error', async () => {
      const t = lookupType('envoy.service.auth.v3.CheckRequest');
      const valid = Buffer.from(
        t
          .encode(
            t.fromObject({
              attributes: {
                request: {
                  http: { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(call(1, 'get_forecast')) },
                },
                context_extensions: { mcp_service: 'weather' },
              },
            }),
          )
          .finish(),
      );
      // attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"] = bytes that are no Struct.
      const ids = {
        attributes: t.fields['attributes']?.id as number,
        metadataContext: lookupType('envoy.service.auth.v3.AttributeContext').fields['metadata_context']?.id as number,
        filterMetadata: lookupType('envoy.config.core.v3.Metadata').fields['filter_metadata']?.id as number,
      };
      const entry = protobuf.Writer.create()
        .uint32((1 << 3) | 2)
        .string('envoy.filters.http.jwt_authn')
        .uint32((2 << 3) | 2)
        .bytes(Buffer.from([0x0a, 0x05, 0x0a, 0xff, 0xff]))
        .finish();
      const md = protobuf.Writer.create()
        .uint32((ids.filterMetadata << 3) | 2)
        .bytes(entry)
        .finish();
      const attrs = protobuf.Writer.create()
        .uint32((ids.metadataContext << 3) | 2)
        .bytes(md)
        .finish();
      const extra = protobuf.Writer.create()
        .uint32((ids.attributes << 3) | 2)
        .bytes(attrs)
        .finish();
      const resp = decodeCheckResponse(await checkRaw(Buffer.concat([valid, Buffer.from(extra)])));
      assert.equal(Number(resp.denied_response?.status?.code), 500);
      assert.match(resp.status?.message ?? '', /^bad-claims-metadata: jwt_authn metadata cannot be read: /);
    });
  });
});
