// The validation gate: Envoy's schema and its protoc-gen-validate rules, read from the protos.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { validateMessage } from '../../control-plane/src/xds/validate.ts';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = {
  name: 'envoy.filters.http.router',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
};

function rules(typeUrl: string, value: unknown): string[] {
  return validateMessage(typeUrl, value).map((v) => `${v.path}: ${v.rule}`);
}

describe('resource validation (schema + PGV rules)', () => {
  it('accepts a minimal valid cluster', () => {
    assert.deepEqual(rules(TYPE_URLS.cluster, { name: 'c', type: 'STATIC', connect_timeout: { seconds: 1 } }), []);
  });

  it('string.min_len on a required name', () => {
    assert.deepEqual(rules(TYPE_URLS.endpoint, { cluster_name: '' }), ['cluster_name: string.min_len']);
  });

  it('the envelope session state from protos/ is loaded with its rules (empty header name, no mode)', () => {
    const ENVELOPE = 'envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState';
    assert.deepEqual(rules(ENVELOPE, { header: { name: 'mcp-session-id' } }), []);
    assert.deepEqual(rules(ENVELOPE, { header: { name: '' } }), ['header.name: string.min_len']);
    assert.equal(rules(ENVELOPE, {}).length, 1, 'a session mode is required');
  });

  it('unknown fields are errors, not silently dropped', () => {
    assert.deepEqual(rules(TYPE_URLS.cluster, { name: 'c', conect_timeout: { seconds: 1 } }), ['conect_timeout: schema.unknown_field']);
  });

  it('uint32 ranges (port_value <= 65535)', () => {
    const cla = {
      cluster_name: 'c',
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '1.2.3.4', port_value: 70000 } } } }] }],
    };
    assert.deepEqual(rules(TYPE_URLS.endpoint, cla), [
      'endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: uint32.lte',
    ]);
  });

  it('duration bounds and required durations (health check interval > 0, timeout required)', () => {
    const cluster = {
      name: 'c',
      health_checks: [
        { interval: { seconds: 0 }, unhealthy_threshold: { value: 1 }, healthy_threshold: { value: 1 }, http_health_check: { path: '/' } },
      ],
    };
    assert.deepEqual(rules(TYPE_URLS.cluster, cluster).sort(), [
      'health_checks[0].interval: duration.gt',
      'health_checks[0].timeout: duration.required',
    ]);
  });

  it('enum names must be defined', () => {
    assert.deepEqual(rules(TYPE_URLS.cluster, { name: 'c', type: 'MAGIC' }), ['type: schema.enum']);
  });

  it('required oneofs inside an Any (HCM needs a route specifier), with the Any type in the path', () => {
    const listener = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 80 } },
      filter_chains: [{ filters: [{ name: 'hcm', typed_config: { '@type': HCM, stat_prefix: 'x', http_filters: [ROUTER] } }] }],
    };
    assert.deepEqual(rules(TYPE_URLS.listener, listener), [
      'filter_chains[0].filters[0].typed_config<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>.route_specifier: oneof.required',
    ]);
  });

  it('repeated.min_items and HTTP header name rules in route configs', () => {
    const rc = {
      name: 'r',
      virtual_hosts: [{ name: 'v', domains: [], routes: [], request_headers_to_add: [{ header: { key: 'x-bad\r\nheader', value: 'x' } }] }],
    };
    assert.deepEqual(rules(TYPE_URLS.route, rc).sort(), [
      'virtual_hosts[0].domains: repeated.min_items',
      'virtual_hosts[0].request_headers_to_add[0].header.key: string.well_known_regex',
    ]);
  });

  it('an Any of an unknown type is refused', () => {
    const listener = {
      name: 'l',
      filter_chains: [{ filters: [{ name: 'x', typed_config: { '@type': 'type.googleapis.com/not.a.Type' } }] }],
    };
    assert.deepEqual(rules(TYPE_URLS.listener, listener), ['filter_chains[0].filters[0].typed_config: any.type_url']);
  });

  it('wrong JSON shapes are named', () => {
    assert.deepEqual(rules(TYPE_URLS.route, { name: 'r', validate_clusters: false }), ['validate_clusters: schema.type']);
    assert.deepEqual(rules(TYPE_URLS.cluster, { name: 7 }), ['name: schema.type']);
  });
});

describe('policy globs compiled for Envoy RBAC', () => {
  it('anchors, escapes and lets * cross any character', async () => {
    const { globRegex } = await import('../../control-plane/src/model/glob.ts');
    const m = (p: string, v: string): boolean => new RegExp(globRegex(p)).test(v);
    assert.equal(globRegex('get_*'), '^get_.*$');
    assert.ok(m('get_*', 'get_forecast'));
    assert.ok(!m('get_*', 'xget_forecast'));
    assert.ok(m('file:///data/*', 'file:///data/a/b.txt'));
    assert.ok(!m('a.b', 'axb'), 'dots are literal');
    assert.ok(m('read_(x)', 'read_(x)'), 'regex metacharacters are literal');
  });
});

describe('single-value PGV lists', () => {
  it('enum.not_in with one value (protobufjs flattens it) is still enforced', () => {
    const cluster = {
      name: 'c',
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
          common_tls_context: {
            combined_validation_context: {
              default_validation_context: { match_typed_subject_alt_names: [{ matcher: { exact: 'spiffe://x/y' } }] },
              validation_context_sds_secret_config: { name: 't' },
            },
          },
        },
      },
    };
    assert.ok(
      rules(TYPE_URLS.cluster, cluster).some((r) => r.endsWith('match_typed_subject_alt_names[0].san_type: enum.not_in')),
      JSON.stringify(rules(TYPE_URLS.cluster, cluster)),
    );
  });
});
