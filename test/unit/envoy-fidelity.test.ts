// Issue 9's findings that the semantics gate cannot see by itself (runtime behaviour, not load-time rules),
// asserted on what the translators generate. Each test names its finding.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { Mesh, MeshSecurity, ProxyInfo, TrustBundle } from '../../control-plane/src/model/types.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { accessLogFormat } from '../../control-plane/src/translate/listeners.ts';
import { RBAC_STAT_PREFIX } from '../../control-plane/src/translate/naming.ts';
import { proxyResources } from '../../control-plane/src/translate/proxy.ts';
import type { XdsResource } from '../../control-plane/src/translate/resource.ts';
import { SERVER_SESSION_HEADER } from '../../control-plane/src/translate/sessions.ts';
import { EC_P256_JWK, jwksText } from '../policy/jwks-fixtures.ts';

type Obj = Record<string, unknown>;

const IDENTITY: TrustBundle = { bundlePem: 'B' };
const GATEWAY: ProxyInfo = { id: 'gw', role: 'gateway', listenerPort: 8080 };
const SIDECAR: ProxyInfo = { id: 'sc', role: 'sidecar', service: 'weather', listenerPort: 15006, appPort: 7001 };

function policyText(callers: string): string {
  return `
trustDomain: mcpmesh.test
providers:
  - { name: corp, issuer: "https://login.example.com/", audiences: [mesh], jwksUri: "https://login.example.com/jwks.json" }
  - { name: dev, issuer: dev, audiences: [mesh], jwks: '${jwksText(EC_P256_JWK)}' }
services:
  weather: { allowedCallers: [${callers}] }
roles:
  analyst: { allow: [ { service: "*", tools: ["get_*"] } ] }
`;
}

function security(callers = '"spiffe://mcpmesh.test/gateway/*"'): MeshSecurity {
  return {
    policy: parsePolicy(policyText(callers), 'p.yaml'),
    publicUrl: 'https://mcp.example.com:8443',
    authz: { host: '127.0.0.1', port: 18002 },
  };
}

function registry(idle = '1h', extra = ''): string {
  return `services:
  - { name: weather, protocol: "2025-11-25", sidecar: true, routing: { streamIdleTimeout: ${idle}, hosts: [weather.example.com] }, endpoints: [{ address: 10.0.0.1, port: 7001 }] }
  - { name: files, protocol: "2026-07-28", endpoints: [{ address: 10.0.0.2, port: 7002 }] }
  - { name: legacy, protocol: "2024-11-05", transport: sse, routing: { mcpPath: /sse }, endpoints: [{ address: 10.0.0.3, port: 7003 }, { address: 10.0.0.4, port: 7003 }] }
${extra}`;
}

function build(sec: MeshSecurity | undefined, reg = registry()): Mesh {
  return new MeshBuilder().build(parseRegistry(reg, 'r.yaml'), sec).mesh;
}

function find(resources: XdsResource[], kind: XdsResource['kind'], name: string): Obj {
  const r = resources.find((x) => x.kind === kind && x.name === name);
  assert.ok(r, `${kind} ${name}`);
  return r.body as Obj;
}

/** Every object under `v` (depth first). */
function* walk(v: unknown): Generator<Obj> {
  if (Array.isArray(v)) for (const x of v) yield* walk(x);
  else if (typeof v === 'object' && v !== null) {
    yield v as Obj;
    for (const x of Object.values(v)) yield* walk(x);
  }
}

describe('issue 9 findings, in the generated config', () => {
  const sec = security();
  const gw = proxyResources(build(sec), GATEWAY, IDENTITY);
  const routes = find(gw, 'route', 'gateway.routes') as { virtual_hosts: Array<{ name: string; domains: string[]; routes: Obj[] }> };

  it('3: the remote JWKS host is verified (CA bundle and DNS SAN), not merely spoken TLS to', () => {
    const cluster = find(gw, 'cluster', 'jwks.corp') as {
      transport_socket: { typed_config: { sni: string; common_tls_context: { validation_context: Obj } } };
    };
    const vc = cluster.transport_socket.typed_config.common_tls_context.validation_context;
    assert.deepEqual(vc['trusted_ca'], { filename: '/etc/ssl/certs/ca-certificates.crt' });
    assert.deepEqual(vc['match_typed_subject_alt_names'], [{ san_type: 'DNS', matcher: { exact: 'login.example.com' } }]);
    assert.equal(cluster.transport_socket.typed_config.sni, 'login.example.com');
  });

  it("7: every route's 401 names a metadata document its own virtual host serves, for the URL the client used (no query)", () => {
    const reply = JSON.stringify(find(gw, 'listener', 'gateway.http'));
    assert.ok(!reply.includes('%REQ(:path)%'), 'no request path (and query) in the challenge');
    assert.ok(reply.includes('%METADATA(ROUTE:mcpmesh:resource_metadata)%'));
    let checked = 0;
    for (const vh of routes.virtual_hosts) {
      const served = new Map<string, Obj>();
      for (const r of vh.routes) {
        const m = r['match'] as { path?: string; headers?: Array<{ string_match: { exact: string } }> };
        const body = (r['direct_response'] as { body?: { inline_string?: string } } | undefined)?.body?.inline_string;
        if (m.path && body) served.set(`${m.headers?.[0]?.string_match.exact ?? '*'} ${m.path}`, JSON.parse(body) as Obj);
      }
      for (const r of vh.routes) {
        const url = (
          r['metadata'] as { filter_metadata?: { mcpmesh?: { fields?: { resource_metadata?: { stringValue: string } } } } } | undefined
        )?.filter_metadata?.mcpmesh?.fields?.resource_metadata?.stringValue;
        if (!url || r['direct_response']) continue;
        const u = new URL(url);
        const authority = (r['match'] as { headers?: Array<{ string_match: { exact: string } }> }).headers?.[0]?.string_match.exact;
        const doc = served.get(`${authority ?? '*'} ${u.pathname}`) ?? served.get(`* ${u.pathname}`);
        assert.ok(doc, `${vh.name} route ${String(r['name'])}: ${url} is served on this virtual host`);
        if (vh.name !== 'gateway_paths') {
          assert.ok(vh.domains.includes(u.hostname), `${url} names one of the host's own domains`);
          assert.equal(u.port, '8443', 'the public port');
        }
        assert.equal(String(doc['resource']).split('/')[2], u.host, 'the resource is on the host the client used');
        checked++;
      }
    }
    assert.ok(checked >= 6, `checked ${checked} routes`);
    const weatherHost = routes.virtual_hosts.find((v) => v.name === 'mcp_weather');
    assert.deepEqual(weatherHost?.domains, ['weather', 'weather.example.com']);
    const docs = JSON.stringify(
      weatherHost?.routes
        .filter((r) => r['direct_response'])
        .map((r) => JSON.parse((r['direct_response'] as { body: { inline_string: string } }).body.inline_string).resource),
    );
    assert.equal(
      docs,
      JSON.stringify([
        'https://weather:8443/mcp',
        'https://weather:8443/mcp',
        'https://weather.example.com:8443/mcp',
        'https://weather.example.com:8443/mcp',
      ]),
    );
  });

  it("8: the two RBAC filters count and log under their own prefixes; per-route prefixes keep the filter's", () => {
    const filters = find(gw, 'listener', 'gateway.http') as Obj;
    const rbac = [...walk(filters)].filter((o) => o['@type'] === 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC');
    assert.deepEqual(
      rbac.map((r) => r['rules_stat_prefix']),
      [RBAC_STAT_PREFIX.deny, RBAC_STAT_PREFIX.allow],
    );
    assert.deepEqual(
      rbac.map((r) => r['shadow_rules_stat_prefix']),
      [RBAC_STAT_PREFIX.deny, RBAC_STAT_PREFIX.allow],
    );
    const perRoute = [...walk(routes)].filter(
      (o) => o['@type'] === 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute' && o['rbac'],
    );
    assert.ok(perRoute.length > 0);
    for (const p of perRoute) {
      const cfg = p['rbac'] as Obj;
      const action = ((cfg['rules'] ?? cfg['shadow_rules']) as { action: string }).action;
      assert.equal(
        cfg['rules_stat_prefix'] ?? cfg['shadow_rules_stat_prefix'],
        action === 'DENY' ? RBAC_STAT_PREFIX.deny : RBAC_STAT_PREFIX.allow,
      );
      assert.equal(cfg['track_per_rule_stats'], true);
      for (const name of Object.keys(((cfg['rules'] ?? cfg['shadow_rules']) as { policies: Obj }).policies))
        assert.match(name, /^files\/[^.]+$/, 'per-rule stats name the service, dot-free');
    }
    assert.ok(
      JSON.stringify(accessLogFormat('gateway')).includes('%DYNAMIC_METADATA(envoy.filters.http.rbac)%'),
      'RBAC decisions are logged',
    );
  });

  it("9: the log's assigned session is the server's plain id, copied on every route before the session filter wraps it", () => {
    const fields = (accessLogFormat('gateway') as { fields: Record<string, { stringValue: string }> }).fields;
    assert.equal(fields['mcp_session_assigned']?.stringValue, `%RESP(${SERVER_SESSION_HEADER.toUpperCase()})%`);
    for (const vh of routes.virtual_hosts) {
      for (const r of vh.routes.filter((x) => x['route'])) {
        assert.deepEqual(
          r['response_headers_to_add'],
          [{ header: { key: SERVER_SESSION_HEADER, value: '%RESP(mcp-session-id)%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
          `${vh.name} ${String(r['name'])}`,
        );
      }
    }
  });

  it("11: health checks ask with HEAD (an SSE answer cannot hang them) in the cluster's own protocol", () => {
    const hc = (name: string): Obj => (find(gw, 'cluster', name)['health_checks'] as Obj[])[0] as Obj;
    const weather = hc('mcp.weather'); // mTLS to its sidecar: ALPN, so h2 pinned
    assert.equal((weather['http_health_check'] as Obj)['method'], 'HEAD');
    assert.equal((weather['http_health_check'] as Obj)['codec_client_type'], 'HTTP2');
    assert.deepEqual(weather['tls_options'], { alpn_protocols: ['h2'] });
    const files = hc('mcp.files'); // plaintext: HTTP/1.1
    assert.equal((files['http_health_check'] as Obj)['codec_client_type'], 'HTTP1');
    assert.equal(files['tls_options'], undefined);
  });

  it('12: retries only where the request never reached the server', () => {
    for (const o of walk(routes))
      if (o['retry_on'] !== undefined) assert.equal(o['retry_on'], 'connect-failure,refused-stream,reset-before-request');
  });

  it("14: editing a service's timeouts or its allowed callers changes route tables, never a listener (which Envoy would drain)", () => {
    const before = [...proxyResources(build(sec, registry('1h')), GATEWAY, IDENTITY), ...proxyResources(build(sec), SIDECAR, IDENTITY)];
    const edited = security('"spiffe://mcpmesh.test/gateway/edge", "spiffe://mcpmesh.test/mcp/agent"');
    const after = [
      ...proxyResources(build(edited, registry('3h')), GATEWAY, IDENTITY),
      ...proxyResources(build(edited, registry('3h')), SIDECAR, IDENTITY),
    ];
    const byKind = (rs: XdsResource[], kind: string): string => JSON.stringify(rs.filter((r) => r.kind === kind).map((r) => r.body));
    assert.equal(byKind(after, 'listener'), byKind(before, 'listener'), 'listeners unchanged');
    assert.notEqual(byKind(after, 'route'), byKind(before, 'route'), 'the edit is in the route tables');
    const sidecarRoutes = JSON.stringify(find(after, 'route', 'sidecar.inbound.routes'));
    assert.ok(
      sidecarRoutes.includes('spiffe://mcpmesh.test/mcp/agent'),
      'allowed callers are checked per route (RBAC on the peer certificate)',
    );
  });

  it('15: a 2024-11-05 SSE service hashes each client to one replica (its stream and its POSTs)', () => {
    const cluster = find(gw, 'cluster', 'mcp.legacy') as {
      load_balancing_policy: { policies: Array<{ typed_extension_config: { name: string } }> };
    };
    assert.equal(cluster.load_balancing_policy.policies[0]?.typed_extension_config.name, 'envoy.load_balancing_policies.ring_hash');
    const legacyRoutes = [...walk(routes)].filter((o) => (o['cluster'] as string | undefined) === 'mcp.legacy');
    assert.ok(legacyRoutes.length >= 3);
    for (const r of legacyRoutes) assert.deepEqual(r['hash_policy'], [{ connection_properties: { source_ip: true } }]);
    const weatherRoutes = [...walk(routes)].filter((o) => (o['cluster'] as string | undefined) === 'mcp.weather');
    for (const r of weatherRoutes) assert.equal(r['hash_policy'], undefined, 'Streamable HTTP uses the session envelope instead');
  });

  it("17: the sidecar's TLS offers ALPN (h2, http/1.1) so gateways can speak HTTP/2 to it", () => {
    const listener = JSON.stringify(find(proxyResources(build(sec), SIDECAR, IDENTITY), 'listener', 'sidecar.inbound'));
    assert.ok(listener.includes('"alpn_protocols":["h2","http/1.1"]'));
  });
});
