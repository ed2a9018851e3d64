// Admin HTTP: health, readiness, Prometheus metrics and debug views of what proxies get.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SnapshotCache } from '../cache/cache.ts';
import type { Snapshot } from '../cache/snapshot.ts';
import type { Metrics } from '../metrics.ts';
import type { ProxyInfo } from '../model/types.ts';
import { lookupType, RESOURCE_KINDS, TYPE_URLS } from '../xds/proto.ts';
import type { ProxyTracker } from './proxies.ts';
import { OAuthError, type DevIssuer } from '../auth/dev-issuer.ts';

export interface AdminOptions {
  cache: SnapshotCache;
  tracker: ProxyTracker;
  metrics: Metrics;
  /** Last error of each source, shown by /readyz and /debug/sources. */
  sourceErrors: () => Record<string, string | undefined>;
  /** The development OAuth issuer, when enabled: token endpoint, JWKS and metadata under /oauth. */
  oauth?: DevIssuer;
}

export const OAUTH_PATHS = {
  token: '/oauth/token',
  jwks: '/oauth/jwks',
  metadata: '/.well-known/oauth-authorization-server',
} as const;

function readBody(req: http.IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error(`request body over ${limit} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

/** A snapshot as JSON, each resource decoded back from the exact bytes a proxy receives. */
export function snapshotToJson(s: Snapshot): Record<string, unknown> {
  const out: Record<string, unknown> = { key: s.key, versions: s.versions };
  for (const kind of RESOURCE_KINDS) {
    const type = lookupType(TYPE_URLS[kind]);
    out[kind] = [...s.resources[kind].values()].map((r) => ({
      name: r.name,
      version: r.version,
      resource: type.toObject(type.decode(r.bytes), { longs: String, enums: String, json: true }),
    }));
  }
  return out;
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body, null, 2) + '\n');
}

export class AdminServer {
  private readonly server: http.Server;
  private readonly opts: AdminOptions;

  constructor(opts: AdminOptions) {
    this.opts = opts;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => json(res, 500, { error: (err as Error).message }));
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const { cache, tracker, metrics } = this.opts;
    switch (url.pathname) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz':
        if (cache.ready) res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
        else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: no snapshot built yet\n${JSON.stringify(this.opts.sourceErrors())}\n`);
        return;
      case '/metrics':
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
        return;
      case '/debug/proxies':
        json(res, 200, tracker.list().map((s) => ({
          id: s.proxy.id, role: s.proxy.role, mode: s.mode, peer: s.peer, locality: s.proxy.locality ?? null,
          service: s.proxy.service ?? null, connectedAt: new Date(s.connectedAt).toISOString(), types: s.types,
        })));
        return;
      case '/debug/sources':
        json(res, 200, this.opts.sourceErrors());
        return;
      case OAUTH_PATHS.jwks:
      case OAUTH_PATHS.token:
      case OAUTH_PATHS.metadata:
      case `${OAUTH_PATHS.metadata}/oauth`:
        return this.oauth(req, res, url);
      case '/debug/config_dump': {
        const snap = this.configFor(url);
        if ('error' in snap) return json(res, snap.code, { error: snap.error });
        json(res, 200, snapshotToJson(snap.snapshot));
        return;
      }
      default:
        json(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/metrics', '/debug/proxies', '/debug/sources', '/debug/config_dump?node=<id>', '/debug/config_dump?role=gateway&region=&zone='] });
    }
  }

  // A connected proxy by node id, or a hypothetical one described by query parameters.
  private configFor(url: URL): { snapshot: Snapshot } | { error: string; code: number } {
    const nodeId = url.searchParams.get('node');
    let proxy: ProxyInfo | undefined;
    if (nodeId) {
      proxy = this.opts.tracker.byNodeId(nodeId)?.proxy;
      if (!proxy) return { error: `no connected proxy with node id "${nodeId}"`, code: 404 };
    } else {
      const role = url.searchParams.get('role') ?? 'gateway';
      const region = url.searchParams.get('region') ?? '';
      const zone = url.searchParams.get('zone') ?? '';
      const locality = region || zone ? { region, zone } : undefined;
      if (role === 'gateway') proxy = { id: 'config-dump', role, listenerPort: Number(url.searchParams.get('port') ?? 8080), ...(locality ? { locality } : {}) };
      else if (role === 'sidecar') {
        const service = url.searchParams.get('service');
        if (!service) return { error: 'role=sidecar needs service=<name>', code: 400 };
        proxy = { id: 'config-dump', role, service, listenerPort: Number(url.searchParams.get('port') ?? 15006), appPort: Number(url.searchParams.get('app_port') ?? 8080) };
      } else return { error: `role must be gateway or sidecar (got "${role}")`, code: 400 };
    }
    const snapshot = this.opts.cache.peek(proxy);
    if (!snapshot) return { error: 'no snapshot built yet', code: 503 };
    return { snapshot };
  }

  private async oauth(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const issuer = this.opts.oauth;
    if (!issuer) return json(res, 404, { error: 'the development OAuth issuer is not enabled on this control plane' });
    if (url.pathname === OAUTH_PATHS.jwks) return json(res, 200, issuer.jwks());
    const base = new URL(issuer.issuer).origin;
    if (url.pathname !== OAUTH_PATHS.token) return json(res, 200, issuer.metadata(`${base}${OAUTH_PATHS.token}`, `${base}${OAUTH_PATHS.jwks}`));
    if (req.method !== 'POST') return json(res, 405, { error: 'invalid_request', error_description: 'use POST with application/x-www-form-urlencoded' });
    try {
      const answer = await issuer.tokenEndpoint(new URLSearchParams(await readBody(req)), req.headers.authorization);
      res.setHeader('cache-control', 'no-store');
      json(res, 200, answer);
    } catch (err) {
      if (err instanceof OAuthError) return json(res, err.status, { error: err.code, error_description: err.message });
      throw err;
    }
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve((this.server.address() as AddressInfo).port));
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
