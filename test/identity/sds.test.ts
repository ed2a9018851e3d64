// SDS Secret resources and TLS transport sockets: their shape, and that each passes Envoy's schema and
// PGV rules (validateMessage) and encodes with Envoy's protos.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { CertificateAuthority, type IssuedCert } from '../../control-plane/src/identity/ca.ts';
import {
  DOWNSTREAM_TLS_CONTEXT_TYPE,
  downstreamTlsContext,
  downstreamTlsTransportSocket,
  identitySecret,
  SECRET_TYPE,
  SECRET_TYPE_URL,
  localSdsSecretConfig,
  sdsSecretConfig,
  spiffeSanMatchers,
  trustBundleSecret,
  trustSecretName,
  UPSTREAM_TLS_CONTEXT_TYPE,
  upstreamTlsContext,
  upstreamTlsTransportSocket,
  workloadSecretName,
} from '../../control-plane/src/identity/sds.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { ADS_CONFIG_SOURCE } from '../../control-plane/src/translate/resource.ts';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { formatViolations, validateMessage } from '../../control-plane/src/xds/validate.ts';

const TD = 'mcpmesh.test';
const WEATHER = sidecarId(TD, 'weather');
const GATEWAY = gatewayId(TD, 'edge');

function assertValid(type: string, value: unknown): void {
  const v = validateMessage(type, value);
  assert.deepEqual(v, [], formatViolations(type, v));
}

/** Encodes with Envoy's protos and decodes back (Any typed_configs included). */
function roundTrip(type: string, value: Record<string, unknown>): Record<string, unknown> {
  const t = lookupType(type);
  return t.toObject(t.decode(t.encode(t.fromObject(value)).finish()), { json: true }) as Record<string, unknown>;
}

describe('SDS secrets and TLS contexts', () => {
  let ca: CertificateAuthority;
  let cert: IssuedCert;
  before(async () => {
    ca = await CertificateAuthority.selfSigned({ trustDomain: TD });
    cert = await ca.issue({ spiffeId: WEATHER });
  });

  it('has stable secret names', () => {
    assert.equal(workloadSecretName(), 'mcpmesh.identity');
    assert.equal(trustSecretName(), 'mcpmesh.trust');
    assert.equal(SECRET_TYPE_URL, `type.googleapis.com/${SECRET_TYPE}`);
  });

  it('identity secret: certificate chain + private key, inline', () => {
    const s = identitySecret(workloadSecretName(), cert);
    assert.deepEqual(s, {
      name: 'mcpmesh.identity',
      tls_certificate: { certificate_chain: { inline_string: cert.certPem }, private_key: { inline_string: cert.keyPem } },
    });
    assertValid(SECRET_TYPE, s);
    assertValid(SECRET_TYPE_URL, s);
    const decoded = roundTrip(SECRET_TYPE, s);
    assert.equal(
      (decoded['tls_certificate'] as { certificate_chain: { inline_string: string } }).certificate_chain.inline_string,
      cert.certPem,
    );
  });

  it('identity secret puts intermediates after the leaf', () => {
    const s = identitySecret('x', { certPem: 'LEAF\n', chainPem: 'INTER1\nINTER2\n', keyPem: 'KEY\n' }) as {
      tls_certificate: { certificate_chain: { inline_string: string } };
    };
    assert.equal(s.tls_certificate.certificate_chain.inline_string, 'LEAF\nINTER1\nINTER2\n');
  });

  it('trust bundle secret: trusted CA, optionally with SPIFFE ID matchers', () => {
    const plain = trustBundleSecret(trustSecretName(), ca.bundlePem);
    assert.deepEqual(plain, { name: 'mcpmesh.trust', validation_context: { trusted_ca: { inline_string: ca.bundlePem } } });
    assertValid(SECRET_TYPE, plain);

    const matched = trustBundleSecret(trustSecretName(), ca.bundlePem, { matchSpiffeIds: [GATEWAY, `spiffe://${TD}/mcp/*`] });
    assert.deepEqual(matched, {
      name: 'mcpmesh.trust',
      validation_context: {
        trusted_ca: { inline_string: ca.bundlePem },
        match_typed_subject_alt_names: [
          { san_type: 'URI', matcher: { exact: GATEWAY } },
          { san_type: 'URI', matcher: { prefix: `spiffe://${TD}/mcp/` } },
        ],
      },
    });
    assertValid(SECRET_TYPE, matched);
    roundTrip(SECRET_TYPE, matched);
  });

  it('SPIFFE ID patterns become exact, prefix or RE2 matchers; bad ones are refused', () => {
    assert.deepEqual(spiffeSanMatchers([WEATHER, WEATHER, '*', `spiffe://${TD}/mcp/team-*-tools`]), [
      { san_type: 'URI', matcher: { exact: WEATHER } },
      { san_type: 'URI', matcher: { prefix: 'spiffe://' } },
      { san_type: 'URI', matcher: { safe_regex: { regex: '^spiffe://mcpmesh\\.test/mcp/team-.*-tools$' } } },
    ]);
    const re = /^spiffe:\/\/mcpmesh\.test\/mcp\/team-.*-tools$/;
    assert.ok(
      re.test(`spiffe://${TD}/mcp/team-a-tools`) &&
        !re.test(`spiffe://${TD}/mcp/team-a-toolsX`) &&
        !re.test('spiffe://mcpmeshXtest/mcp/team-a-tools'),
    );
    assert.throws(() => spiffeSanMatchers(['spiffe://Bad/x']), /invalid SPIFFE ID/);
    assert.throws(() => spiffeSanMatchers(['https://x/*']), /must start with "spiffe:\/\/"/);
    assert.throws(() => spiffeSanMatchers(['spiffe://BAD/*']), /must be lower case/);
    assertValid(SECRET_TYPE, trustBundleSecret('t', ca.bundlePem, { matchSpiffeIds: ['*', `spiffe://${TD}/mcp/team-*-tools`] }));
  });

  it('downstream TLS: requires a client certificate; its identity from the agent, the trust bundle over ADS', () => {
    const ctx = downstreamTlsContext();
    assert.deepEqual(ctx, {
      common_tls_context: {
        tls_params: { tls_minimum_protocol_version: 'TLSv1_2' },
        tls_certificate_sds_secret_configs: [localSdsSecretConfig('mcpmesh.identity')],
        validation_context_sds_secret_config: { name: 'mcpmesh.trust', sds_config: { ads: {}, resource_api_version: 'V3' } },
      },
      require_client_certificate: { value: true },
    });
    assertValid(DOWNSTREAM_TLS_CONTEXT_TYPE, ctx);
    const ts = downstreamTlsTransportSocket({ matchSpiffeIds: [GATEWAY], alpnProtocols: ['h2', 'http/1.1'] });
    assert.equal(ts['name'], 'envoy.transport_sockets.tls');
    const typed = ts['typed_config'] as Record<string, unknown>;
    assert.equal(typed['@type'], `type.googleapis.com/${DOWNSTREAM_TLS_CONTEXT_TYPE}`);
    assert.deepEqual((typed['common_tls_context'] as Record<string, unknown>)['combined_validation_context'], {
      default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: GATEWAY } }] },
      validation_context_sds_secret_config: sdsSecretConfig('mcpmesh.trust'),
    });
    assertValid('envoy.config.core.v3.TransportSocket', ts);
    assertValid('google.protobuf.Any', typed);
  });

  it('upstream TLS: our identity, the peer SPIFFE ID checked, SNI', () => {
    const ctx = upstreamTlsContext({ peerSpiffeIds: [WEATHER], sni: 'mcp.weather' });
    assert.equal(ctx['sni'], 'mcp.weather');
    const common = ctx['common_tls_context'] as Record<string, unknown>;
    // The identity from the proxy's agent (the key never leaves the workload), the trust bundle over ADS.
    assert.deepEqual(common['tls_certificate_sds_secret_configs'], [
      {
        name: 'mcpmesh.identity',
        sds_config: {
          api_config_source: {
            api_type: 'GRPC',
            transport_api_version: 'V3',
            grpc_services: [{ envoy_grpc: { cluster_name: 'mcpmesh.sds' } }],
          },
          resource_api_version: 'V3',
        },
      },
    ]);
    assert.deepEqual(common['combined_validation_context'], {
      default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: WEATHER } }] },
      validation_context_sds_secret_config: { name: 'mcpmesh.trust', sds_config: ADS_CONFIG_SOURCE },
    });
    assertValid(UPSTREAM_TLS_CONTEXT_TYPE, ctx);
    assert.throws(() => upstreamTlsContext({ peerSpiffeIds: [] }), /at least one peer SPIFFE ID/);
    assert.throws(() => upstreamTlsContext({ peerSpiffeIds: ['weather'] }), /invalid SPIFFE ID/);
    const ts = upstreamTlsTransportSocket({
      peerSpiffeIds: [WEATHER],
      sni: 'mcp.weather',
      minTlsVersion: 'TLSv1_3',
      identitySecretName: 'custom.id',
      trustSecretName: 'custom.trust',
    });
    assertValid('envoy.config.core.v3.TransportSocket', ts);
  });

  it('the transport sockets validate and encode inside a Cluster and a Listener', () => {
    const cluster = {
      name: 'mcp.weather',
      type: 'EDS',
      connect_timeout: { seconds: 1 },
      eds_cluster_config: { eds_config: ADS_CONFIG_SOURCE, service_name: 'mcp.weather' },
      transport_socket: upstreamTlsTransportSocket({ peerSpiffeIds: [WEATHER], sni: 'mcp.weather' }),
    };
    assertValid(TYPE_URLS.cluster, cluster);
    const decoded = roundTrip('envoy.config.cluster.v3.Cluster', cluster) as {
      transport_socket: { typed_config: Record<string, unknown> };
    };
    assert.equal(decoded.transport_socket.typed_config['@type'], `type.googleapis.com/${UPSTREAM_TLS_CONTEXT_TYPE}`);
    assert.equal(decoded.transport_socket.typed_config['sni'], 'mcp.weather');

    const listener = {
      name: 'inbound',
      address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'tcp',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'in',
                rds: { config_source: ADS_CONFIG_SOURCE, route_config_name: 'r' },
                http_filters: [
                  {
                    name: 'envoy.filters.http.router',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                  },
                ],
              },
            },
          ],
          transport_socket: downstreamTlsTransportSocket({ matchSpiffeIds: [GATEWAY] }),
        },
      ],
    };
    assertValid(TYPE_URLS.listener, listener);
    roundTrip('envoy.config.listener.v3.Listener', listener);
  });

  it('validation is live: a broken secret or context is caught', () => {
    const rules = (t: string, v: unknown): string[] => validateMessage(t, v).map((x) => `${x.path}: ${x.rule}`);
    assert.deepEqual(rules(DOWNSTREAM_TLS_CONTEXT_TYPE, downstreamTlsContext({ identitySecretName: '' })), [
      'common_tls_context.tls_certificate_sds_secret_configs[0].name: string.min_len',
    ]);
    assert.deepEqual(rules(SECRET_TYPE, { name: 'x', validation_context: { match_typed_subject_alt_names: [{ san_type: 'SPIFFE' }] } }), [
      'validation_context.match_typed_subject_alt_names[0].san_type: schema.enum',
      'validation_context.match_typed_subject_alt_names[0].matcher: message.required',
    ]);
    assert.deepEqual(rules(UPSTREAM_TLS_CONTEXT_TYPE, upstreamTlsContext({ peerSpiffeIds: [WEATHER], sni: 'x'.repeat(256) })), [
      'sni: string.max_bytes',
    ]);
  });
});
