// The gateway half of "play Envoy in a test" for a secured MCP service: jwt_authn (verify the bearer token with
// a dev issuer; 401 otherwise), then ext_authz (a Check over gRPC with the body and the verified claims as
// jwt_authn metadata), then on to `next` (the ext_proc emulator of test/extproc/harness.ts, which routes to
// the server). The authorizer is whatever serves Envoy's Authorization service at `authz`: the control plane's
// port, or a gateway agent's Unix socket (`unix:/path`).
import http from 'node:http';
import type net from 'node:net';
import type { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import type { JsonValue } from '../../control-plane/src/translate/resource.ts';
import { HARNESS_METADATA_HEADER, harnessMetadataHeader } from '../extproc/harness.ts';
import { encodeCheckRequest } from '../policy/helpers.ts';
import { authzChecker, forwardAllowed, readClientRequest } from './forward.ts';

export interface Gateway {
  /** Where an MCP client connects: http://127.0.0.1:<port>/mcp/<service>. */
  url: string;
  close(): Promise<void>;
}

/** jwt_authn + ext_authz (with_request_body) for `service`, in front of `next`. */
export async function startGateway(issuer: DevIssuer, authz: number | string, next: URL, service: string): Promise<Gateway> {
  const checker = authzChecker(authz);
  const check = checker.check;
  const sockets = new Set<net.Socket>();
  const server = http.createServer(async (req, res) => {
    try {
      const { headers, body } = await readClientRequest(req);
      // jwt_authn (requires the dev provider): no token or an invalid one -> 401.
      const auth = headers['authorization'] ?? '';
      if (!auth.startsWith('Bearer ')) {
        res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('Jwt is missing');
        return;
      }
      let claims: Record<string, unknown>;
      try {
        claims = { ...(await issuer.verify(auth.slice(7))) };
      } catch (err) {
        res
          .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer error="invalid_token"' })
          .end((err as Error).message);
        return;
      }
      // jwt_authn's verified payload travels on as dynamic metadata (one Envoy, split in two hops here).
      headers[HARNESS_METADATA_HEADER] = harnessMetadataHeader({
        'envoy.filters.http.jwt_authn': { jwt_payload: claims as Record<string, JsonValue> },
      });
      // ext_authz: body as bytes, claims as jwt_authn dynamic metadata, the service as context extension.
      const r = await check(
        encodeCheckRequest({
          method: req.method ?? 'GET',
          path: `/mcp/${service}`,
          service,
          body: body.toString('utf8'),
          size: body.length,
          asBytes: true,
          headers: { ...headers, ':method': req.method ?? 'GET', ':path': req.url ?? '/' },
          metadataClaims: claims,
        }),
      );
      if (r.denied_response) {
        const out: Record<string, string> = {};
        for (const h of r.denied_response.headers ?? []) if (h.header?.key) out[h.header.key] = h.header.value ?? '';
        res.writeHead(Number(r.denied_response.status?.code ?? 403), out).end(r.denied_response.body ?? '');
        return;
      }
      // On to ext_proc (then the router): without the client's token, with the verified payload header and
      // the route's service name.
      forwardAllowed(req.method, headers, body, res, next, { drop: ['authorization'], extra: { 'x-mcp-service': service }, check: r });
    } catch (err) {
      // Envoy's ext_authz with failure_mode_allow false and status_on_error 503: an unreachable authorizer denies.
      if (!res.headersSent) res.writeHead(503).end((err as Error).message);
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/mcp/${service}`,
    close: async () => {
      checker.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
