// The admin port as an attacker on the network sees it. A secured control plane (policy, CA, dev issuer) with
// a gateway and a sidecar connected over ADS, plus an admin server over a snapshot that does carry private
// keys (a workload identity secret, a chain file that by mistake holds its key, a cluster with an inline TLS
// certificate): every route, query variant, method and unknown path is requested, and no answer may contain
// a private key. Then the exposure rules: beyond loopback /debug and the token endpoint need the admin token
// (401 without or with a wrong one, 403 when none is configured), probes and metrics stay open; on loopback
// no token is needed but the Host must be a loopback name (DNS rebinding).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { buildSnapshot, ResourceEncoder, type Snapshot } from '../../control-plane/src/cache/snapshot.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { CertificateAuthority, type IssuedCert } from '../../control-plane/src/identity/ca.ts';
import { identitySecret, trustBundleSecret, trustSecretName, workloadSecretName } from '../../control-plane/src/identity/sds.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import {
  ADMIN_REALM,
  ADMIN_ROUTES,
  AdminServer,
  NEVER_SHOWN,
  snapshotToDebugJson,
  snapshotToJson,
  type CertificateFacts,
  type CertificateSummary,
  type DebugSnapshot,
  type SecretSummary,
} from '../../control-plane/src/server/admin.ts';
import { ProxyTracker } from '../../control-plane/src/server/proxies.ts';
import { any, type XdsResource } from '../../control-plane/src/translate/resource.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';
import { caWithValidity } from '../identity/pki.ts';

const TD = 'mcpmesh.local';
const policy = parsePolicy(readFileSync(new URL('../../deploy/policy.example.yaml', import.meta.url), 'utf8'), 'policy.example.yaml');
const DEV_SECRET = 'admin-surface-dev-secret';
const TOKEN = 'admin-surface-token-0123456789abcdef';
const GW_ID = 'admin-test-gw';
const SC_ID = 'admin-test-sc';

// ---- HTTP with full control (Host, HEAD, raw paths) ----

interface Target {
  readonly host: string;
  readonly port: number;
}
interface Req {
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}
interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function send(t: Target, r: Req): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: t.host, port: t.port, method: r.method, path: r.path, headers: r.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(r.body);
  });
}
const get = (t: Target, p: string, headers: Record<string, string> = {}): Promise<Reply> => send(t, { method: 'GET', path: p, headers });
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
const form = (o: Record<string, string>): string => new URLSearchParams(o).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/** Every request worth making: each route by GET and HEAD, query variants, the token endpoint's cases, unknown paths. */
function everyRequest(extraAuth: Record<string, string> = {}): Req[] {
  const out: Req[] = [];
  for (const p of Object.keys(ADMIN_ROUTES)) out.push({ method: 'GET', path: p }, { method: 'HEAD', path: p });
  const dumps = [
    '',
    '?role=gateway',
    '?role=gateway&region=eu-west&zone=a',
    '?role=gateway&port=8443',
    '?role=gateway&port=abc',
    '?role=sidecar&service=weather',
    '?role=sidecar&service=weather&port=15006&app_port=7001',
    '?role=sidecar',
    '?role=sidecar&service=not-a-service',
    '?role=bogus',
    `?node=${GW_ID}`,
    `?node=${SC_ID}`,
    '?node=keyed-gw',
    '?node=missing',
  ];
  for (const q of dumps) out.push({ method: 'GET', path: `/debug/config_dump${q}` }, { method: 'HEAD', path: `/debug/config_dump${q}` });
  out.push({ method: 'POST', path: '/debug/config_dump?role=gateway' }, { method: 'GET', path: '/debug/proxies?verbose=1' });
  for (const body of ['{"service":"weather"}', '{"gateway":"default","ttl":"5m"}', '{"service":"Not A Name"}', 'nope']) {
    out.push({ method: 'POST', path: '/admin/join-token', headers: { 'content-type': 'application/json' }, body });
  }
  const token = (body: string, headers: Record<string, string> = {}): Req => ({
    method: 'POST',
    path: '/oauth/token',
    headers: { ...FORM, ...extraAuth, ...headers },
    body,
  });
  out.push(
    token(form({ grant_type: 'client_credentials', client_id: 'dev', client_secret: DEV_SECRET })),
    token(form({ grant_type: 'client_credentials', client_id: 'dev', client_secret: 'wrong' })),
    token(form({ grant_type: 'client_credentials' }), { authorization: `Basic ${Buffer.from(`dev:${DEV_SECRET}`).toString('base64')}` }),
    token('not a form', { 'content-type': 'application/json' }),
  );
  for (const p of [
    '/',
    '/nope',
    '/debug',
    '/debug/',
    '/debug/config_dump/',
    '/DEBUG/CONFIG_DUMP',
    '//debug/config_dump',
    '/debug/%2e%2e/debug/config_dump?role=gateway',
    '/debug/config_dump%3Frole=gateway',
    '/oauth',
    '/oauth/',
    '/.well-known/openid-configuration',
    '/metrics/../debug/config_dump?role=gateway',
  ]) {
    out.push({ method: 'GET', path: p }, { method: 'HEAD', path: p });
  }
  return out.map((r) => (r.path === '/oauth/token' && r.method === 'POST' ? r : { ...r, headers: { ...extraAuth, ...r.headers } }));
}

// ---- key material ----

/** Strings that only a leaked private key would put in a response. */
class KeyMaterial {
  private readonly needles = new Map<string, string>([['PRIVATE KEY', 'a PEM private key header']]);

  add(label: string, keyPem: string): void {
    const lines = keyPem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
    assert.ok(lines.length > 0, `${label}: a key with a body`);
    // Each full base64 line: a partial leak (one line, a re-wrapped body) is caught, not only the whole key.
    for (const l of lines) if (l.length >= 16) this.needles.set(l, `${label} (base64 line)`);
    this.needles.set(lines.join(''), `${label} (base64 body)`);
    // The PEM text itself base64-encoded, as an inline_bytes DataSource would render it.
    this.needles.set(Buffer.from(keyPem).toString('base64').slice(0, 64), `${label} (PEM as inline_bytes)`);
  }

  /** The needles found in `text`. */
  found(text: string): string[] {
    return [...this.needles].filter(([n]) => text.includes(n)).map(([, what]) => what);
  }
}

// ---- a snapshot that carries keys, served by its own admin server ----

/** A cache that answers every config dump with one fixed snapshot. */
class FixedCache extends SnapshotCache {
  private readonly fixed: Snapshot;
  constructor(fixed: Snapshot) {
    super();
    this.fixed = fixed;
  }
  override peek(): Snapshot {
    return this.fixed;
  }
  override get ready(): boolean {
    return true;
  }
}

function keyedSnapshot(leaf: IssuedCert, bundlePem: string): Snapshot {
  const secret = (name: string, body: XdsResource['body']): XdsResource => ({ kind: 'secret', name, wildcard: true, body });
  const inlineTls: XdsResource = {
    kind: 'cluster',
    name: 'inline-tls',
    wildcard: true,
    body: {
      name: 'inline-tls',
      type: 'STATIC',
      connect_timeout: { seconds: 1 },
      load_assignment: {
        cluster_name: 'inline-tls',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9 } } } }] }],
      },
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
          common_tls_context: {
            tls_certificates: [{ certificate_chain: { inline_string: leaf.certPem }, private_key: { inline_string: leaf.keyPem } }],
          },
        }),
      },
    },
  };
  return buildSnapshot(
    'gateway|keyed',
    [
      secret(workloadSecretName(), identitySecret(workloadSecretName(), leaf)),
      secret(trustSecretName(), trustBundleSecret(trustSecretName(), bundlePem, { matchSpiffeIds: [`spiffe://${TD}/gateway/*`] })),
      // A chain file that by mistake holds the key too: only its certificate may show.
      secret('mcpmesh.mistake', identitySecret('mcpmesh.mistake', { certPem: leaf.certPem, chainPem: leaf.keyPem, keyPem: leaf.keyPem })),
      inlineTls,
    ],
    new ResourceEncoder(),
  );
}

const isFacts = (c: CertificateSummary | undefined): c is CertificateFacts => c !== undefined && 'sha256_fingerprint' in c;
const secretOf = (d: DebugSnapshot, name: string): SecretSummary => {
  const s = d.secret.find((x) => x.name === name)?.resource;
  assert.ok(s, `secret ${name} in the dump (has: ${d.secret.map((x) => x.name).join(', ')})`);
  return s;
};

async function awaitSecret(s: AdsStream, name: string): Promise<void> {
  for (;;) {
    const resp = await s.next('secret', 10_000);
    s.send({ type_url: TYPE_URLS.secret, resource_names: [name], version_info: resp['version_info'], response_nonce: resp['nonce'] });
    if (decodeResources(resp).some((r) => r['name'] === name)) return;
  }
}

/** A local address other than loopback, to bind an admin server "on the network". */
function networkAddress(): string | undefined {
  const all = Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .filter((a) => !a.internal);
  return (all.find((a) => a.family === 'IPv4') ?? all.find((a) => a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80')))
    ?.address;
}

describe('admin surface', () => {
  let cp: ControlPlane;
  let ads: RawAdsClient;
  const streams: AdsStream[] = [];
  let caPem: string;
  let leaf: IssuedCert;
  let keyed: Snapshot;
  let keyedAdmin: AdminServer;
  let devIssuer: DevIssuer;
  const keys = new KeyMaterial();
  let cpAdmin: Target;
  let keyedTarget: Target;

  before(async () => {
    const caParts = await caWithValidity(new Date(Date.now() - 3600_000), new Date(Date.now() + 30 * 86400_000));
    const ca = await CertificateAuthority.fromPem({ ...caParts, trustDomain: TD });
    caPem = caParts.certPem;
    keys.add('CA key', caParts.keyPem);
    leaf = await ca.issue({ spiffeId: `spiffe://${TD}/gateway/default` });
    keys.add('workload key', leaf.keyPem);
    devIssuer = await DevIssuer.create({
      issuer: 'http://127.0.0.1:18001/oauth',
      audience: 'mcp-mesh',
      clients: { dev: { secret: DEV_SECRET, roles: ['*'] } },
    });

    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      devIssuer,
      ca,
      security: { policy, publicUrl: 'https://mcp.example.com', authz: { host: '127.0.0.1', port: 18002 } },
      // The raw ADS client has no workload certificate: plain xDS, development mode.
      xdsInsecure: true,
    }).start();
    cpAdmin = { host: '127.0.0.1', port: cp.adminPort };
    ads = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
    const gw = ads.sotw();
    gw.send({ type_url: TYPE_URLS.secret, resource_names: [trustSecretName()], node: node(GW_ID, { role: 'gateway' }) });
    const sc = ads.sotw();
    sc.send({
      type_url: TYPE_URLS.secret,
      resource_names: [trustSecretName()],
      node: node(SC_ID, { role: 'sidecar', service: 'weather', app_port: 7001 }),
    });
    streams.push(gw, sc);
    await Promise.all([awaitSecret(gw, trustSecretName()), awaitSecret(sc, trustSecretName())]);

    keyed = keyedSnapshot(leaf, ca.bundlePem);
    const tracker = new ProxyTracker();
    tracker.open({ id: 'keyed-gw', role: 'gateway', listenerPort: 8080 }, 'sotw', 'ipv4:192.0.2.10:50000');
    keyedAdmin = new AdminServer({
      cache: new FixedCache(keyed),
      tracker,
      metrics: new Metrics({ processMetrics: false }),
      sourceErrors: () => ({ registry: undefined }),
      oauth: devIssuer,
    });
    keyedTarget = { host: '127.0.0.1', port: await keyedAdmin.listen(0) };
  });
  after(async () => {
    for (const s of streams) s.close();
    ads?.close();
    await keyedAdmin?.close();
    await cp?.stop();
  });

  it('knows every route admin.ts serves (a new route must be added to this test)', () => {
    assert.deepEqual(Object.keys(ADMIN_ROUTES).sort(), [
      '/.well-known/oauth-authorization-server',
      '/.well-known/oauth-authorization-server/oauth',
      '/admin/join-token',
      '/debug/config_dump',
      '/debug/mesh',
      '/debug/proxies',
      '/debug/routing',
      '/debug/sources',
      '/healthz',
      '/metrics',
      '/oauth/jwks',
      '/oauth/token',
      '/readyz',
    ]);
    assert.deepEqual(
      Object.entries(ADMIN_ROUTES)
        .filter(([, a]) => a === 'open')
        .map(([p]) => p)
        .sort(),
      [
        '/.well-known/oauth-authorization-server',
        '/.well-known/oauth-authorization-server/oauth',
        '/healthz',
        '/metrics',
        '/oauth/jwks',
        '/readyz',
      ],
    );
  });

  it('the keyed snapshot really carries the keys, and only the golden rendering shows them', () => {
    const full = JSON.stringify(snapshotToJson(keyed));
    assert.ok(keys.found(full).includes('workload key (base64 line)'), 'snapshotToJson keeps showing what is pushed (goldens)');
    assert.ok(full.includes('PRIVATE KEY'));
    assert.deepEqual(keys.found(JSON.stringify(snapshotToDebugJson(keyed))), []);
  });

  for (const [label, target] of [
    ['the secured control plane', (): Target => cpAdmin],
    ['an admin server over a snapshot with private keys', (): Target => keyedTarget],
  ] as const) {
    it(`no response of ${label} contains key material, whatever is asked`, async () => {
      const statuses = new Map<string, number>();
      for (const r of everyRequest()) {
        const reply = await send(target(), r);
        statuses.set(`${r.method} ${r.path}${r.body ? ` ${r.body}` : ''}`, reply.status);
        assert.deepEqual(keys.found(reply.body), [], `${r.method} ${r.path}: ${reply.status}`);
        const headers = JSON.stringify(reply.headers);
        assert.deepEqual(keys.found(headers), [], `${r.method} ${r.path}: headers`);
        assert.ok(reply.status < 500, `${r.method} ${r.path}: ${reply.status} ${reply.body.slice(0, 300)}`);
      }
      // The requests did reach the handlers: the dumps, the token endpoint and the 404s answered as such.
      for (const p of [
        '/debug/config_dump?role=gateway',
        '/debug/config_dump?role=sidecar&service=weather',
        '/debug/proxies',
        '/debug/sources',
        '/debug/mesh',
        '/oauth/jwks',
      ]) {
        if (p === '/debug/mesh' && label !== 'the secured control plane') continue; // a bare AdminServer has no mesh
        assert.equal(statuses.get(`GET ${p}`), 200, p);
      }
      assert.equal(
        statuses.get(`POST /oauth/token ${form({ grant_type: 'client_credentials', client_id: 'dev', client_secret: DEV_SECRET })}`),
        200,
      );
      assert.equal(statuses.get('GET /nope'), 404);
      if (label === 'the secured control plane')
        assert.equal(
          statuses.get('GET /debug/config_dump?role=sidecar&service=not-a-service'),
          404,
          'no certificate for a service that does not exist',
        );
      assert.equal(statuses.get('GET /debug/config_dump?role=gateway&port=abc'), 400);
    });
  }

  it('the JWKS is public: no private JWK member', async () => {
    const jwks = JSON.parse((await get(cpAdmin, '/oauth/jwks')).body) as { keys: Array<Record<string, unknown>> };
    assert.equal(jwks.keys.length, 1);
    for (const k of jwks.keys) for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert.equal(k[m], undefined, `JWK member ${m}`);
    assert.equal(jwks.keys[0]?.['kty'], 'RSA');
  });

  it('the debug dump says what each secret is: certificate facts, SAN matchers, and that a key exists', async () => {
    const dump = JSON.parse((await get(keyedTarget, '/debug/config_dump?role=gateway')).body) as DebugSnapshot;
    const cert = new X509Certificate(leaf.certPem);
    const id = secretOf(dump, workloadSecretName());
    assert.equal(id.tls_certificate?.private_key, NEVER_SHOWN);
    const first = id.tls_certificate?.certificate_chain[0];
    assert.ok(isFacts(first), JSON.stringify(id));
    assert.equal(first.sha256_fingerprint, cert.fingerprint256);
    assert.equal(first.serial_number, cert.serialNumber);
    assert.deepEqual(first.subject_alt_names, [`URI:spiffe://${TD}/gateway/default`]);
    assert.equal(first.not_after, new Date(cert.validTo).toISOString());
    const trust = secretOf(dump, trustSecretName()).validation_context;
    const ca = trust?.trusted_ca?.[0];
    assert.ok(isFacts(ca), JSON.stringify(trust));
    assert.equal(ca.sha256_fingerprint, new X509Certificate(caPem).fingerprint256);
    assert.match(ca.subject, /window test CA/);
    assert.deepEqual(trust?.match_typed_subject_alt_names, [{ san_type: 'URI', prefix: `spiffe://${TD}/gateway/` }]);
    const mistake = secretOf(dump, 'mcpmesh.mistake').tls_certificate;
    assert.equal(mistake?.certificate_chain.length, 1, 'the key block in the chain is not a certificate');
    assert.equal(isFacts(mistake?.certificate_chain[0]) ? mistake.certificate_chain[0].sha256_fingerprint : undefined, cert.fingerprint256);
    const cluster = JSON.stringify(dump.cluster.find((c) => c.name === 'inline-tls')?.resource);
    assert.ok(cluster.includes(cert.fingerprint256), 'an inline TLS certificate in a cluster is summarized too');
    assert.ok(cluster.includes(NEVER_SHOWN), cluster);
    // The connected proxy by node id: the same rendering.
    const byNode = JSON.parse((await get(keyedTarget, '/debug/config_dump?node=keyed-gw')).body) as DebugSnapshot;
    assert.equal(secretOf(byNode, workloadSecretName()).tls_certificate?.private_key, NEVER_SHOWN);
  });

  it('the secured control plane dumps its trust bundle by fingerprint, for the gateway and the sidecar', async () => {
    const caFp = new X509Certificate(caPem).fingerprint256;
    for (const q of ['?role=gateway', `?node=${GW_ID}`, `?node=${SC_ID}`, '?role=sidecar&service=weather']) {
      const reply = await get(cpAdmin, `/debug/config_dump${q}`);
      assert.equal(reply.status, 200, `${q}: ${reply.body}`);
      const trust = secretOf(JSON.parse(reply.body) as DebugSnapshot, trustSecretName()).validation_context?.trusted_ca ?? [];
      assert.ok(
        trust.some((c) => isFacts(c) && c.sha256_fingerprint === caFp),
        `${q}: ${JSON.stringify(trust)}`,
      );
    }
    const proxies = JSON.parse((await get(cpAdmin, '/debug/proxies')).body) as Array<{ id: string }>;
    assert.deepEqual(proxies.map((p) => p.id).sort(), [GW_ID, SC_ID]);
  });

  it('a placeholder certificate is reported unparsable, and its key still only as present', () => {
    const snap = buildSnapshot(
      'gateway|placeholder',
      [
        {
          kind: 'secret',
          name: workloadSecretName(),
          wildcard: true,
          body: identitySecret(workloadSecretName(), {
            certPem: '-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n',
            chainPem: '',
            keyPem: '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n',
          }),
        },
      ],
      new ResourceEncoder(),
    );
    const d = snapshotToDebugJson(snap);
    assert.deepEqual(secretOf(d, workloadSecretName()).tls_certificate, {
      certificate_chain: [{ error: 'unparsable certificate' }],
      private_key: NEVER_SHOWN,
    });
    assert.ok(!JSON.stringify(d).includes('PRIVATE KEY'));
    assert.ok(JSON.stringify(snapshotToJson(snap)).includes('PRIVATE KEY'), 'the golden rendering is unchanged');
  });

  it('on loopback no token is needed, but the Host must name loopback (DNS rebinding)', async () => {
    assert.equal(keyedAdmin.debugAccess, 'loopback');
    assert.equal((await get(cpAdmin, '/debug/config_dump?role=gateway')).status, 200);
    assert.equal((await get(cpAdmin, '/debug/sources', { host: `localhost:${cpAdmin.port}` })).status, 200);
    assert.equal((await get(cpAdmin, '/debug/sources', { host: `[::1]:${cpAdmin.port}` })).status, 200);
    const rebound = await get(cpAdmin, '/debug/config_dump?role=gateway', { host: `attacker.example:${cpAdmin.port}` });
    assert.equal(rebound.status, 403);
    assert.match(rebound.body, /not a loopback name/);
    assert.equal((await get(cpAdmin, '/debug/sources', { host: '127.0.0.1.attacker.example' })).status, 403);
    // Probes and metrics do not care about the Host.
    assert.equal((await get(cpAdmin, '/metrics', { host: 'prometheus.example' })).status, 200);
    // The default bind is loopback.
    const dflt = new AdminServer({ cache: cp.cache, tracker: cp.tracker, metrics: cp.metrics, sourceErrors: () => ({}) });
    try {
      const port = await dflt.listen();
      assert.equal(dflt.debugAccess, 'loopback');
      assert.equal((await get({ host: '127.0.0.1', port }, '/debug/sources')).status, 200);
    } finally {
      await dflt.close();
    }
  });

  it('refuses a weak or malformed admin token at construction', () => {
    const base = { cache: cp.cache, tracker: cp.tracker, metrics: cp.metrics, sourceErrors: () => ({}) };
    for (const t of ['', 'short', 'has spaces in it, quite long', 'x'.repeat(15)]) {
      assert.throws(() => new AdminServer({ ...base, debugToken: t }), /admin debug token: must be at least 16/, JSON.stringify(t));
    }
    assert.doesNotThrow(() => new AdminServer({ ...base, debugToken: TOKEN }));
  });

  const address = networkAddress();
  describe('beyond loopback', {
    skip: address ? false : 'this machine has no non-loopback address to bind (os.networkInterfaces())',
  }, () => {
    let withToken: AdminServer;
    let withoutToken: AdminServer;
    let secured: Target;
    let open: Target;
    before(async () => {
      const tracker = new ProxyTracker();
      tracker.open({ id: 'keyed-gw', role: 'gateway', listenerPort: 8080 }, 'sotw', 'ipv4:192.0.2.10:50000');
      const common = {
        cache: new FixedCache(keyed),
        tracker,
        metrics: new Metrics({ processMetrics: false }),
        sourceErrors: () => ({ registry: undefined }),
        oauth: devIssuer,
        host: address as string,
      };
      withToken = new AdminServer({ ...common, debugToken: TOKEN });
      withoutToken = new AdminServer(common);
      secured = { host: address as string, port: await withToken.listen() };
      open = { host: address as string, port: await withoutToken.listen() };
    });
    after(async () => {
      await withToken?.close();
      await withoutToken?.close();
    });

    it('requires the admin token for /debug, the token endpoint and unknown paths', async () => {
      assert.equal(withToken.debugAccess, 'token');
      const tokenRoutes = [
        ...Object.entries(ADMIN_ROUTES)
          .filter(([, a]) => a === 'token')
          .map(([p]) => p),
        '/debug/config_dump?role=gateway',
        '/nope',
        '/debug/',
        '/metrics/../debug/config_dump?role=gateway',
        '/debug/%2e%2e/debug/config_dump?role=gateway',
        '//debug/config_dump',
      ];
      for (const p of tokenRoutes) {
        for (const [what, headers] of [
          ['no token', {}],
          ['a wrong token', bearer('wrong-token-0123456789abcdef')],
          ['Basic', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }],
          ['the token with a suffix', bearer(`${TOKEN}x`)],
        ] as const) {
          const r = await get(secured, p, headers);
          assert.equal(r.status, 401, `${p} with ${what}: ${r.body}`);
          assert.match(String(r.headers['www-authenticate']), new RegExp(`^Bearer realm="${ADMIN_REALM}"`), `${p} with ${what}`);
          assert.deepEqual(keys.found(r.body), []);
        }
      }
      const post = await send(secured, {
        method: 'POST',
        path: '/oauth/token',
        headers: FORM,
        body: form({ grant_type: 'client_credentials', client_id: 'dev', client_secret: DEV_SECRET }),
      });
      assert.equal(post.status, 401, 'the dev issuer mints no token for a caller without the admin token');
      assert.equal(post.headers['www-authenticate'], `Bearer realm="${ADMIN_REALM}"`);
    });

    it('serves /debug with the right token, still without key material', async () => {
      const r = await get(secured, '/debug/config_dump?role=gateway', bearer(TOKEN));
      assert.equal(r.status, 200, r.body);
      const dump = JSON.parse(r.body) as DebugSnapshot;
      const first = secretOf(dump, workloadSecretName()).tls_certificate?.certificate_chain[0];
      assert.ok(isFacts(first));
      assert.equal(first.sha256_fingerprint, new X509Certificate(leaf.certPem).fingerprint256);
      assert.equal(
        (await get(secured, '/debug/config_dump?role=gateway', { authorization: `bearer  ${TOKEN}` })).status,
        200,
        'the scheme is case-insensitive',
      );
      for (const req of everyRequest(bearer(TOKEN))) {
        const reply = await send(secured, req);
        // Past the admin check (the dev issuer may still refuse a wrong client secret with its own 401).
        const challenged = String(reply.headers['www-authenticate'] ?? '').startsWith(`Bearer realm="${ADMIN_REALM}"`);
        if (req.headers?.['authorization'] === `Bearer ${TOKEN}`)
          assert.ok(!challenged, `${req.method} ${req.path}: ${reply.status} ${reply.body}`);
        else assert.ok(challenged, `${req.method} ${req.path}: Basic client authentication replaced the admin token`);
        assert.deepEqual(keys.found(reply.body), [], `${req.method} ${req.path}`);
      }
      // The token endpoint works with the admin token and client_secret_post (Basic cannot share the header).
      const tok = await send(secured, {
        method: 'POST',
        path: '/oauth/token',
        headers: { ...FORM, ...bearer(TOKEN) },
        body: form({ grant_type: 'client_credentials', client_id: 'dev', client_secret: DEV_SECRET }),
      });
      assert.equal(tok.status, 200, tok.body);
      assert.equal(typeof (JSON.parse(tok.body) as Record<string, unknown>)['access_token'], 'string');
      const meta = JSON.parse((await get(secured, '/.well-known/oauth-authorization-server/oauth')).body) as Record<string, unknown>;
      assert.deepEqual(meta['token_endpoint_auth_methods_supported'], ['client_secret_post']);
    });

    it('keeps probes, metrics and the public issuer documents open', async () => {
      for (const t of [secured, open]) {
        for (const p of [
          '/healthz',
          '/readyz',
          '/metrics',
          '/oauth/jwks',
          '/.well-known/oauth-authorization-server',
          '/.well-known/oauth-authorization-server/oauth',
        ]) {
          const r = await get(t, p);
          assert.equal(r.status, 200, `${p} on :${t.port}: ${r.body}`);
        }
        assert.match((await get(t, '/metrics')).body, /# (HELP|TYPE) /);
      }
    });

    it('without a configured token, refuses /debug with 403 saying what to set', async () => {
      assert.equal(withoutToken.debugAccess, 'disabled');
      for (const p of ['/debug/config_dump?role=gateway', '/debug/proxies', '/debug/sources', '/oauth/token', '/nope']) {
        for (const headers of [{}, bearer(TOKEN)]) {
          const r = await get(open, p, headers);
          assert.equal(r.status, 403, `${p}: ${r.body}`);
          assert.match(r.body, /MCPMESH_ADMIN_TOKEN/);
          assert.deepEqual(keys.found(r.body), []);
        }
      }
    });
  });
});
