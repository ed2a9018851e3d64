// The Envoy semantics gate, rule by rule: each rule has a resource Envoy accepts and one it refuses (or
// mis-runs), and the gate names the rule. Then the gate at work: a snapshot that breaks a rule is refused
// with the rule's name and every proxy keeps its last good config. Every rule is documented in
// docs/envoy-compat.md with its Envoy source.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SnapshotCache } from '../../control-plane/src/cache/cache.ts';
import { SnapshotError } from '../../control-plane/src/cache/snapshot.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { MeshSecurity, ProxyInfo } from '../../control-plane/src/model/types.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { any, type ProtoObject } from '../../control-plane/src/translate/resource.ts';
import {
  checkEnvoyRules,
  checkSnapshotRules,
  RESOURCE_RULES,
  SNAPSHOT_RULES,
  type SnapshotBodies,
} from '../../control-plane/src/xds/envoy-rules.ts';
import type { ResourceKind } from '../../control-plane/src/xds/proto.ts';
import { EC_P256_JWK, jwksText } from '../policy/jwks-fixtures.ts';

const HPO = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const TLS = { name: 'envoy.transport_sockets.tls', typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {}) };
const ROUTER = { name: 'envoy.filters.http.router', typed_config: any('envoy.extensions.filters.http.router.v3.Router', {}) };

function cluster(extra: ProtoObject = {}): ProtoObject {
  return { name: 'mcp.weather', alt_stat_name: 'mcp_weather', type: 'STATIC', connect_timeout: { seconds: 5 }, ...extra };
}
function listener(filters: ProtoObject[], hcmExtra: ProtoObject = {}): ProtoObject {
  const hcm = any(HCM, {
    stat_prefix: 'gateway',
    rds: { route_config_name: 'r', config_source: { ads: {} } },
    http_filters: [...filters, ROUTER],
    ...hcmExtra,
  });
  return {
    name: 'l',
    address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
    filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
  };
}
function routes(vhosts: ProtoObject[], extra: ProtoObject = {}): ProtoObject {
  return { name: 'r', virtual_hosts: vhosts, ...extra };
}
function vhost(extra: ProtoObject = {}): ProtoObject {
  return { name: 'v', domains: ['weather'], routes: [{ match: { prefix: '/' }, route: { cluster: 'mcp.weather' } }], ...extra };
}
function jwt(providers: ProtoObject, rules: ProtoObject[] = []): ProtoObject {
  return {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: any('envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', { providers, rules }),
  };
}
function rbac(cfg: ProtoObject): ProtoObject {
  return { name: 'mcpmesh.rbac.allow', typed_config: any('envoy.extensions.filters.http.rbac.v3.RBAC', cfg) };
}
const sanVc = { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: 'spiffe://td/mcp/weather' } }] };

/** Per rule id: [kind, a resource that passes, a resource that breaks the rule]. */
const CASES: Record<string, Array<[ResourceKind, ProtoObject, ProtoObject]>> = {
  'cluster.alpn-needs-tls': [
    [
      'cluster',
      cluster({ transport_socket: TLS, typed_extension_protocol_options: { [HPO]: any(HPO, { auto_config: {} }) } }),
      cluster({ typed_extension_protocol_options: { [HPO]: any(HPO, { auto_config: {} }) } }),
    ],
  ],
  'cluster.logical-dns-single-host': [
    [
      'cluster',
      cluster({ type: 'LOGICAL_DNS', load_assignment: { cluster_name: 'x', endpoints: [{ lb_endpoints: [{ endpoint: {} }] }] } }),
      cluster({
        type: 'LOGICAL_DNS',
        load_assignment: { cluster_name: 'x', endpoints: [{ lb_endpoints: [{ endpoint: {} }, { endpoint: {} }] }] },
      }),
    ],
  ],
  'cluster.eds-config-needs-eds': [['cluster', cluster({ type: 'EDS', eds_cluster_config: {} }), cluster({ eds_cluster_config: {} })]],
  'health_check.status-range': [
    [
      'cluster',
      cluster({ health_checks: [{ http_health_check: { path: '/mcp', expected_statuses: [{ start: 200, end: 500 }] } }] }),
      cluster({ health_checks: [{ http_health_check: { path: '/mcp', expected_statuses: [{ start: 500, end: 200 }] } }] }),
    ],
  ],
  're2.program-size': [
    [
      'route',
      routes([
        vhost({
          virtual_clusters: [
            { name: 'x', headers: [{ name: 'mcp-name', string_match: { safe_regex: { regex: `^get_${'a'.repeat(80)}.*$` } } }] },
          ],
        }),
      ]),
      routes([
        vhost({
          virtual_clusters: [
            { name: 'x', headers: [{ name: 'mcp-name', string_match: { safe_regex: { regex: `^get_.*${'a'.repeat(90)}$` } } }] },
          ],
        }),
      ]),
    ],
    [
      'listener',
      listener([]),
      listener([
        rbac({
          rules: {
            policies: { p: { permissions: [{ header: { name: 'x', safe_regex_match: { regex: '(' } } }], principals: [{ any: true }] } },
          },
        }),
      ]),
    ],
  ],
  'string_match.ignore-case-regex': [
    [
      'route',
      routes([vhost({ virtual_clusters: [{ name: 'x', headers: [{ name: 'h', string_match: { exact: 'a', ignore_case: true } }] }] })]),
      routes([
        vhost({
          virtual_clusters: [{ name: 'x', headers: [{ name: 'h', string_match: { safe_regex: { regex: 'a' }, ignore_case: true } }] }],
        }),
      ]),
    ],
  ],
  'stats.tag-safe-names': [
    ['cluster', cluster(), cluster({ alt_stat_name: 'mcp.weather' })],
    ['route', routes([vhost({ name: 'mcp_weather' })]), routes([vhost({ name: 'mcp.weather' })])],
    [
      'route',
      routes([
        vhost({
          virtual_clusters: [{ name: 'weather__tools_call', headers: [{ name: 'mcp-method', string_match: { exact: 'tools/call' } }] }],
        }),
      ]),
      routes([
        vhost({
          virtual_clusters: [{ name: 'weather.tools_call', headers: [{ name: 'mcp-method', string_match: { exact: 'tools/call' } }] }],
        }),
      ]),
    ],
    [
      'listener',
      listener([
        rbac({ rules_stat_prefix: 'mcpmesh_allow_', track_per_rule_stats: true, rules: { policies: { 'weather/roles/a/allow[0]': {} } } }),
      ]),
      listener([
        rbac({ rules_stat_prefix: 'mcpmesh_allow_', track_per_rule_stats: true, rules: { policies: { 'roles.a.allow[0]': {} } } }),
      ]),
    ],
    ['listener', listener([]), listener([], { stat_prefix: 'gateway.http' })],
  ],
  'tls.san-needs-trusted-ca': [
    [
      'secret',
      { name: 't', validation_context: { trusted_ca: { inline_string: 'PEM' }, ...sanVc } },
      { name: 't', validation_context: sanVc },
    ],
    [
      'secret',
      { name: 't', validation_context: { ca_certificate_provider_instance: { instance_name: 'mcpmesh' }, ...sanVc } },
      { name: 't', validation_context: sanVc },
    ],
    [
      'cluster',
      cluster({
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
            common_tls_context: { validation_context: { trusted_ca: { filename: '/ca.pem' }, ...sanVc } },
          }),
        },
      }),
      cluster({
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
            common_tls_context: { validation_context: sanVc },
          }),
        },
      }),
    ],
  ],
  'jwt_authn.local-jwks': [
    [
      'listener',
      listener([jwt({ dev: { issuer: 'i', local_jwks: { inline_string: jwksText(EC_P256_JWK) } } })]),
      listener([jwt({ dev: { issuer: 'i', local_jwks: { inline_string: '{"keys":[]}' } } })]),
    ],
  ],
  'jwt_authn.provider-exists': [
    [
      'listener',
      listener([jwt({ dev: { issuer: 'i' } }, [{ match: { prefix: '/' }, requires: { provider_name: 'dev' } }])]),
      listener([
        jwt({ dev: { issuer: 'i' } }, [
          { match: { prefix: '/' }, requires: { requires_any: { requirements: [{ provider_name: 'dev' }, { provider_name: 'corp' }] } } },
        ]),
      ]),
    ],
  ],
  'hcm.router-last': [
    [
      'listener',
      listener([rbac({})]),
      {
        ...listener([]),
        filter_chains: [{ filters: [{ name: 'hcm', typed_config: any(HCM, { stat_prefix: 'g', http_filters: [ROUTER, rbac({})] }) }] }],
      },
    ],
  ],
  'hcm.strip-port-exclusive': [
    ['listener', listener([], { strip_any_host_port: true }), listener([], { strip_any_host_port: true, strip_matching_host_port: true })],
  ],
  'ext_authz.transport-v3': [
    [
      'listener',
      listener([{ name: 'a', typed_config: any('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', { transport_api_version: 'V3' }) }]),
      listener([{ name: 'a', typed_config: any('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', {}) }]),
    ],
  ],
  'ext_proc.config': [
    [
      'listener',
      listener([
        {
          name: 'p',
          typed_config: any('envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', {
            grpc_service: {},
            processing_mode: { request_body_mode: 'BUFFERED' },
          }),
        },
      ]),
      listener([
        {
          name: 'p',
          typed_config: any('envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', {
            grpc_service: {},
            processing_mode: { request_body_mode: 'FULL_DUPLEX_STREAMED' },
          }),
        },
      ]),
    ],
  ],
  'route.unique-domains': [
    [
      'route',
      routes([vhost(), vhost({ name: 'w', domains: ['files', '*'] })]),
      routes([vhost(), vhost({ name: 'w', domains: ['Weather'] })]),
    ],
  ],
  'route.direct-response-size': [
    [
      'route',
      routes([
        vhost({ routes: [{ match: { path: '/doc' }, direct_response: { status: 200, body: { inline_string: 'x'.repeat(4096) } } }] }),
      ]),
      routes([
        vhost({ routes: [{ match: { path: '/doc' }, direct_response: { status: 200, body: { inline_string: 'x'.repeat(4097) } } }] }),
      ]),
    ],
  ],
  'route.rewrite-exclusive': [
    [
      'route',
      routes([vhost({ routes: [{ match: { prefix: '/' }, route: { cluster: 'c', prefix_rewrite: '/mcp' } }] })]),
      routes([
        vhost({
          routes: [
            {
              match: { prefix: '/' },
              route: { cluster: 'c', prefix_rewrite: '/mcp', regex_rewrite: { pattern: { regex: 'a' }, substitution: 'b' } },
            },
          ],
        }),
      ]),
    ],
  ],
  'route.virtual-cluster-headers': [
    [
      'route',
      routes([vhost({ virtual_clusters: [{ name: 'x', headers: [{ name: 'h', present_match: true }] }] })]),
      routes([vhost({ virtual_clusters: [{ name: 'x' }] })]),
    ],
  ],
};

function rulesOf(kind: ResourceKind, body: ProtoObject): string[] {
  return [...new Set(checkEnvoyRules(kind, body).map((v) => v.rule))];
}

describe('Envoy semantics gate: resource rules', () => {
  for (const rule of RESOURCE_RULES) {
    it(`${rule.id}: passes what Envoy accepts, refuses what it would not (${rule.source.split(',')[0]})`, () => {
      const cases = CASES[rule.id];
      assert.ok(cases && cases.length > 0, `rule ${rule.id} needs a test case`);
      for (const [kind, good, bad] of cases) {
        assert.ok(
          !rulesOf(kind, good).includes(`envoy.${rule.id}`),
          `${rule.id} must pass ${JSON.stringify(good).slice(0, 200)}: ${JSON.stringify(checkEnvoyRules(kind, good))}`,
        );
        assert.ok(rulesOf(kind, bad).includes(`envoy.${rule.id}`), `${rule.id} must refuse ${JSON.stringify(bad).slice(0, 200)}`);
      }
    });
  }

  it('names the field and says what Envoy would say', () => {
    const [v] = checkEnvoyRules('cluster', cluster({ typed_extension_protocol_options: { [HPO]: any(HPO, { auto_config: {} }) } }));
    assert.equal(v?.rule, 'envoy.cluster.alpn-needs-tls');
    assert.equal(v?.path, `typed_extension_protocol_options.${HPO}<${HPO}>.auto_config`);
    assert.match(v?.message ?? '', /ALPN configured for cluster mcp\.weather which has a non-ALPN transport socket/);
  });
});

function bodies(partial: Partial<Record<ResourceKind, Record<string, ProtoObject>>>): SnapshotBodies {
  const kinds: ResourceKind[] = ['secret', 'cluster', 'endpoint', 'listener', 'route'];
  return Object.fromEntries(kinds.map((k) => [k, new Map(Object.entries(partial[k] ?? {}))])) as unknown as SnapshotBodies;
}

const extProcListener = (cluster: string): ProtoObject =>
  listener([
    {
      name: 'envoy.filters.http.ext_proc',
      typed_config: any('envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', {
        grpc_service: { envoy_grpc: { cluster_name: cluster } },
      }),
    },
  ]);
const combinedTls = (secret: string): ProtoObject =>
  cluster({
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
        common_tls_context: {
          combined_validation_context: { default_validation_context: sanVc, validation_context_sds_secret_config: { name: secret } },
        },
      }),
    },
  });

const SNAPSHOT_CASES: Record<string, [SnapshotBodies, SnapshotBodies]> = {
  'route.per-filter-config-known': [
    bodies({
      listener: { l: listener([rbac({})]) },
      route: { r: routes([vhost({ typed_per_filter_config: { 'mcpmesh.rbac.allow': {} } })]) },
    }),
    bodies({
      listener: { l: listener([rbac({})]) },
      route: { r: routes([vhost({ typed_per_filter_config: { 'mcpmesh.rbac.alow': {} } })]) },
    }),
  ],
  'cluster.side-stream-circuit-breakers': [
    bodies({
      listener: { l: extProcListener('x') },
      cluster: { x: cluster({ name: 'x', circuit_breakers: { thresholds: [{ max_requests: { value: 100_000 } }] } }) },
    }),
    bodies({ listener: { l: extProcListener('x') }, cluster: { x: cluster({ name: 'x' }) } }),
  ],
  'tls.san-needs-trusted-ca': [
    bodies({
      cluster: { c: combinedTls('trust') },
      secret: { trust: { name: 'trust', validation_context: { trusted_ca: { inline_string: 'PEM' } } } },
    }),
    bodies({ cluster: { c: combinedTls('trust') }, secret: { trust: { name: 'trust', validation_context: {} } } }),
  ],
  'listener.unique-address': [
    bodies({
      listener: {
        a: listener([]),
        b: { ...listener([]), name: 'b', address: { socket_address: { address: '0.0.0.0', port_value: 15090 } } },
      },
    }),
    bodies({ listener: { a: listener([]), b: { ...listener([]), name: 'b' } } }),
  ],
};

describe('Envoy semantics gate: snapshot rules', () => {
  for (const rule of SNAPSHOT_RULES) {
    it(`${rule.id}: passes what Envoy accepts, refuses what it would not`, () => {
      const c = SNAPSHOT_CASES[rule.id];
      assert.ok(c, `rule ${rule.id} needs a test case`);
      const tag = `envoy.${rule.id}`;
      assert.ok(!checkSnapshotRules(c[0]).some((l) => l.includes(tag)), checkSnapshotRules(c[0]).join('\n'));
      assert.ok(
        checkSnapshotRules(c[1]).some((l) => l.includes(tag)),
        `${rule.id} must refuse its bad case`,
      );
    });
  }
});

describe('Envoy semantics gate: side streams to clusters outside the snapshot', () => {
  it("cluster.side-stream-circuit-breakers judges only the clusters a snapshot holds (a local-authz gateway's are static, in its bootstrap)", () => {
    const lines = checkSnapshotRules(bodies({ listener: { l: extProcListener('mcpmesh.extproc') } }));
    assert.ok(!lines.some((l) => l.includes('envoy.cluster.side-stream-circuit-breakers')), lines.join('\n'));
  });
});

describe('docs/envoy-compat.md', () => {
  it('lists every rule with its Envoy source', () => {
    const doc = readFileSync(new URL('../../docs/envoy-compat.md', import.meta.url), 'utf8');
    for (const rule of [...RESOURCE_RULES, ...SNAPSHOT_RULES]) {
      assert.ok(doc.includes(`\`${rule.id}\``), `docs/envoy-compat.md must list ${rule.id}`);
      const file = rule.source.split(/[,;( ]/)[0] as string;
      assert.ok(doc.includes(file), `docs/envoy-compat.md must cite ${file} for ${rule.id}`);
    }
  });
});

describe('the gate on every publish', () => {
  const REGISTRY = 'services:\n  - { name: inventory, protocol: "2026-07-28", endpoints: [{ address: 10.0.0.1, port: 8080 }] }\n';
  const GATEWAY: ProxyInfo = { id: 'gw', role: 'gateway', listenerPort: 8080 };
  const base = parsePolicy(
    `
trustDomain: mcpmesh.test
providers: [ { name: idp, issuer: idp, audiences: [mesh], jwks: '${jwksText(EC_P256_JWK)}' } ]
roles: { analyst: { allow: [ { service: inventory, tools: ["get_*"] } ] } }
`,
    'gate.yaml',
  );
  /** The policy with one tool pattern put straight into the model, as a translator-side bug would (the parser refuses it). */
  const security = (tool: string): MeshSecurity => ({
    policy: { ...base, roles: [{ name: 'analyst', allow: [{ service: 'inventory', tools: [tool] }], deny: [] }] },
    publicUrl: 'https://mcp.example.com',
    authz: { host: '127.0.0.1', port: 18002 },
  });

  it('a mesh whose config breaks an Envoy rule is refused with the rule named; proxies keep the last good snapshot', () => {
    const cache = new SnapshotCache();
    const specs = parseRegistry(REGISTRY, 'gate.yaml');
    cache.setMesh(new MeshBuilder().build(specs, security('get_*')).mesh);
    const { snapshot: good, cancel } = cache.watch(GATEWAY, () => {});
    assert.ok(good);
    const tooLong = `*${'x'.repeat(120)}`;
    assert.throws(
      () => cache.setMesh(new MeshBuilder().build(specs, security(tooLong)).mesh),
      (err: unknown) => {
        assert.ok(err instanceof SnapshotError);
        assert.match(err.message, /envoy\.re2\.program-size: regex .* RE2 program size of 1\d\d > max program size of 100/);
        assert.match(err.message, /route "gateway\.routes": virtual_hosts\[\d\]\.routes\[\d\]\.typed_per_filter_config/);
        return true;
      },
    );
    assert.equal(cache.peek(GATEWAY), good, 'the last good snapshot is still the one served');
    cancel();
  });
});
