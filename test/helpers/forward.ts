// Pieces of the "play Envoy in a test" harnesses: calling the authorizer, reading the client's request,
// forwarding an allowed request upstream, and listing every tool a client can see.
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CHECK_PATH } from '../../control-plane/src/authz/server.ts';
import { decodeCheckResponse, type DecodedCheckResponse } from '../policy/helpers.ts';

const identity = (b: Buffer): Buffer => b;

/**
 * ext_authz's side of the call: an encoded CheckRequest to the authorizer at `at` (a port on 127.0.0.1, or a gRPC
 * target such as `unix:/path`, a gateway agent's socket), decoded answer back.
 */
export function authzChecker(at: number | string): { check(req: Buffer): Promise<DecodedCheckResponse>; close(): void } {
  const client = new grpc.Client(typeof at === 'number' ? `127.0.0.1:${at}` : at, grpc.credentials.createInsecure());
  return {
    check: (req) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(CHECK_PATH, identity, identity, req, (err, resp) =>
          err ? reject(err) : resolve(decodeCheckResponse(resp as Buffer)),
        );
      }),
    close: () => client.close(),
  };
}

/**
 * The client's request as a proxy sees it: the whole body and its headers (joined), all of them: Envoy keeps a
 * client's own x-jwt-payload (jwt_authn's forward_payload_header would append to it), so whatever reads
 * claims must take them from jwt_authn's metadata instead.
 */
export async function readClientRequest(req: http.IncomingMessage): Promise<{ headers: Record<string, string>; body: Buffer }> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(',') : v;
  return { headers, body: Buffer.concat(chunks) };
}

/** Hop-by-hop headers (and the ones the forwarder recomputes) that never cross a proxy. */
export const HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'host',
  'content-length',
]);

/**
 * The router's part after ext_authz said OK: forward the buffered request to `upstream` without the headers
 * in `drop`, plus `extra`, and stream the answer back with the authorizer's response headers added.
 */
export function forwardAllowed(
  method: string | undefined,
  headers: Record<string, string>,
  body: Buffer,
  res: http.ServerResponse,
  upstream: URL,
  o: { drop: readonly string[]; extra?: Record<string, string>; check: DecodedCheckResponse },
): void {
  const fwd: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k) && !o.drop.includes(k)) fwd[k] = v;
  Object.assign(fwd, o.extra ?? {});
  fwd['host'] = upstream.host;
  if (body.length > 0) fwd['content-length'] = String(body.length);
  const up = http.request({ host: upstream.hostname, port: upstream.port, path: upstream.pathname, method, headers: fwd }, (ur) => {
    const back: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) back[k] = v;
    for (const h of o.check.ok_response?.response_headers_to_add ?? []) if (h.header?.key) back[h.header.key] = h.header.value ?? '';
    res.writeHead(ur.statusCode ?? 502, back);
    ur.pipe(res);
  });
  up.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502).end(err.message);
    else res.destroy();
  });
  res.on('close', () => up.destroy());
  up.end(body);
}

/** Every tool the client is shown, across pages, sorted. */
export async function allToolNames(client: Client): Promise<string[]> {
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listTools(cursor ? { cursor } : {});
    names.push(...page.tools.map((t) => t.name));
    cursor = page.nextCursor;
  } while (cursor);
  return names.sort();
}
