// Pure builders for what Envoy needs to do mTLS with mesh identities, as plain protobufjs-form objects
// (snake_case fields, Any as {'@type', ...}), the same shape the translators emit:
//
// - SDS `Secret` resources: the proxy's own certificate + key (`identitySecret`, built and served by the
//   proxy's agent on a local socket: the key never leaves the workload) and the trust bundle
//   (`trustBundleSecret`, pushed by the control plane over ADS), rotated by a new version of the same name;
// - `transport_socket`s with Downstream/UpstreamTlsContext that fetch the identity from the agent
//   (LOCAL_SDS_CLUSTER) and the trust bundle over ADS.
//
// Peer checks: the shared trust secret carries only the CA bundle; each TLS context adds the SPIFFE IDs it
// accepts through combined_validation_context (Envoy merges its default_validation_context into the SDS
// one). Do not put matchers on the shared trust secret as well when using them per context: Envoy
// concatenates the two lists, and any one matcher then suffices.
import { globRegex } from '../model/glob.ts';
import { ADS_CONFIG_SOURCE, any, type ProtoObject } from '../translate/resource.ts';
import type { IssuedCert } from './ca.ts';
import { SPIFFE_SCHEME, SpiffeIdError, trustDomainProblem, validateSpiffeId } from './spiffe.ts';

export const SECRET_TYPE = 'envoy.extensions.transport_sockets.tls.v3.Secret';
export const SECRET_TYPE_URL = `type.googleapis.com/${SECRET_TYPE}`;
export const DOWNSTREAM_TLS_CONTEXT_TYPE = 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
export const UPSTREAM_TLS_CONTEXT_TYPE = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
export const TLS_TRANSPORT_SOCKET = 'envoy.transport_sockets.tls';

/**
 * SDS name of the proxy's own certificate. It must stay stable: Envoy subscribes by name, so the control
 * plane rotates a certificate by sending a new version of this same secret; renaming it would make every
 * listener and cluster that refers to it wait for a secret it never asked for (and drain on the change).
 */
export function workloadSecretName(): string {
  return 'mcpmesh.identity';
}

/** SDS name of the trust bundle (CA certificates). Must stay stable, for the same reason. */
export function trustSecretName(): string {
  return 'mcpmesh.trust';
}

/** SdsSecretConfig: fetch secret `name` over the ADS stream. */
export function sdsSecretConfig(name: string): ProtoObject {
  return { name, sds_config: ADS_CONFIG_SOURCE };
}

/**
 * The static cluster, in every proxy's bootstrap, that reaches the SDS server of the proxy's own agent over a
 * Unix socket: the agent holds the workload's key and certificate, and only it serves them.
 */
export const LOCAL_SDS_CLUSTER = 'mcpmesh.sds';

/** SdsSecretConfig: fetch secret `name` from the proxy's agent (LOCAL_SDS_CLUSTER), not from the control plane. */
export function localSdsSecretConfig(name: string): ProtoObject {
  return {
    name,
    sds_config: {
      api_config_source: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: LOCAL_SDS_CLUSTER } }],
      },
      resource_api_version: 'V3',
    },
  };
}

/** gRPC certificate provider instance (proxyless clients' bootstrap `certificate_providers`) with the workload's files. */
export const CERTIFICATE_PROVIDER_INSTANCE = 'mcpmesh';

/** Secret with the proxy's certificate chain (leaf, then intermediates) and private key, inline. */
export function identitySecret(name: string, cert: Pick<IssuedCert, 'certPem' | 'keyPem' | 'chainPem'>): ProtoObject {
  return {
    name,
    tls_certificate: {
      certificate_chain: { inline_string: joinPem(cert.certPem, cert.chainPem) },
      private_key: { inline_string: cert.keyPem },
    },
  };
}

export interface TrustBundleOptions {
  /** SPIFFE IDs (or `*` patterns, see spiffeSanMatchers) a peer certificate must carry. Default: any from the bundle. */
  readonly matchSpiffeIds?: readonly string[];
}

/** Secret with the trust bundle as a validation context (and, optionally, the SPIFFE IDs to accept). */
export function trustBundleSecret(name: string, bundlePem: string, opts: TrustBundleOptions = {}): ProtoObject {
  return { name, validation_context: validationContext(bundlePem, opts.matchSpiffeIds) };
}

/**
 * SubjectAltNameMatchers (URI SANs) for SPIFFE ID patterns:
 * - `spiffe://td/mcp/weather` matches exactly;
 * - `spiffe://td/mcp/*` (one trailing `*`) matches by prefix: any ID under `spiffe://td/mcp/`;
 * - a `*` elsewhere matches any run of characters (safe_regex, RE2), e.g. `spiffe://td/mcp/team-*-tools`;
 * - `*` alone matches any SPIFFE ID (any URI SAN starting `spiffe://`) the trust bundle vouches for.
 * Throws SpiffeIdError for an exact ID that is not a valid SPIFFE ID, or a pattern outside `spiffe://`.
 */
export function spiffeSanMatchers(patterns: readonly string[]): ProtoObject[] {
  const out: ProtoObject[] = [];
  const seen = new Set<string>();
  for (const p of patterns) {
    const matcher = spiffeIdMatcher(p);
    const key = JSON.stringify(matcher);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ san_type: 'URI', matcher });
  }
  return out;
}

/** A StringMatcher for one SPIFFE ID pattern (the rules of spiffeSanMatchers), for SANs and RBAC principals alike. */
export function spiffeIdMatcher(pattern: string): ProtoObject {
  if (pattern === '*') return { prefix: SPIFFE_SCHEME };
  if (!pattern.includes('*')) return { exact: validateSpiffeId(pattern) };
  if (!pattern.startsWith(SPIFFE_SCHEME))
    throw new SpiffeIdError(`SPIFFE ID pattern ${JSON.stringify(pattern)} must start with "spiffe://"`);
  const literal = pattern.slice(0, pattern.indexOf('*'));
  const tdEnd = literal.indexOf('/', SPIFFE_SCHEME.length);
  if (tdEnd !== -1) {
    const problem = trustDomainProblem(literal.slice(SPIFFE_SCHEME.length, tdEnd));
    if (problem) throw new SpiffeIdError(`SPIFFE ID pattern ${JSON.stringify(pattern)}: ${problem}`);
  }
  if (pattern.indexOf('*') === pattern.length - 1) return { prefix: literal };
  return { safe_regex: { regex: globRegex(pattern) } };
}

function validationContext(bundlePem: string, matchSpiffeIds: readonly string[] | undefined): ProtoObject {
  const matchers = spiffeSanMatchers(matchSpiffeIds ?? []);
  return {
    trusted_ca: { inline_string: bundlePem },
    ...(matchers.length > 0 ? { match_typed_subject_alt_names: matchers } : {}),
  };
}

export type TlsVersion = 'TLSv1_2' | 'TLSv1_3';

interface CommonOptions {
  /** Default workloadSecretName(). */
  readonly identitySecretName?: string;
  /** Default trustSecretName(). */
  readonly trustSecretName?: string;
  readonly alpnProtocols?: readonly string[];
  /** Default TLSv1_2. */
  readonly minTlsVersion?: TlsVersion;
}

export interface DownstreamTlsOptions extends CommonOptions {
  /** SPIFFE IDs (patterns) allowed to connect. Default: any client certificate the trust bundle accepts. */
  readonly matchSpiffeIds?: readonly string[];
}

export interface UpstreamTlsOptions extends CommonOptions {
  /** SPIFFE IDs (patterns) the upstream must present, e.g. [sidecarId(td, service)]. At least one. */
  readonly peerSpiffeIds: readonly string[];
  /** SNI to send, e.g. the cluster name. Optional. */
  readonly sni?: string;
}

function commonTlsContext(opts: CommonOptions, matchSpiffeIds: readonly string[]): ProtoObject {
  const trust = sdsSecretConfig(opts.trustSecretName ?? trustSecretName());
  const matchers = spiffeSanMatchers(matchSpiffeIds);
  return {
    tls_params: { tls_minimum_protocol_version: opts.minTlsVersion ?? 'TLSv1_2' },
    tls_certificate_sds_secret_configs: [localSdsSecretConfig(opts.identitySecretName ?? workloadSecretName())],
    ...(matchers.length > 0
      ? {
          combined_validation_context: {
            default_validation_context: { match_typed_subject_alt_names: matchers },
            validation_context_sds_secret_config: trust,
          },
        }
      : { validation_context_sds_secret_config: trust }),
    ...(opts.alpnProtocols && opts.alpnProtocols.length > 0 ? { alpn_protocols: [...opts.alpnProtocols] } : {}),
  };
}

/** DownstreamTlsContext for a listener: serve our identity, require and verify a client certificate. */
export function downstreamTlsContext(opts: DownstreamTlsOptions = {}): ProtoObject {
  return {
    common_tls_context: commonTlsContext(opts, opts.matchSpiffeIds ?? []),
    require_client_certificate: { value: true },
  };
}

/** UpstreamTlsContext for a cluster: present our identity, verify the server's SPIFFE ID. */
export function upstreamTlsContext(opts: UpstreamTlsOptions): ProtoObject {
  if (opts.peerSpiffeIds.length === 0) throw new SpiffeIdError('an upstream TLS context needs at least one peer SPIFFE ID to verify');
  return {
    common_tls_context: commonTlsContext(opts, opts.peerSpiffeIds),
    ...(opts.sni !== undefined && opts.sni !== '' ? { sni: opts.sni } : {}),
  };
}

/**
 * A proxyless gRPC client's `transport_socket` to a sidecar: identity and CA from its bootstrap's certificate
 * provider (file_watcher on the files its agent writes), the peer's SPIFFE ID checked. grpc-js-xds reads
 * `match_subject_alt_names` and refuses tls_params and SDS here (cluster-resource-type.ts,
 * validateTransportSocket); Envoy never gets this form.
 */
export function proxylessUpstreamTlsTransportSocket(opts: Pick<UpstreamTlsOptions, 'peerSpiffeIds' | 'sni'>): ProtoObject {
  if (opts.peerSpiffeIds.length === 0) throw new SpiffeIdError('an upstream TLS context needs at least one peer SPIFFE ID to verify');
  const instance = { instance_name: CERTIFICATE_PROVIDER_INSTANCE };
  return {
    name: TLS_TRANSPORT_SOCKET,
    typed_config: any(UPSTREAM_TLS_CONTEXT_TYPE, {
      common_tls_context: {
        tls_certificate_provider_instance: instance,
        validation_context: {
          ca_certificate_provider_instance: instance,
          match_subject_alt_names: opts.peerSpiffeIds.map(spiffeIdMatcher),
        },
      },
      ...(opts.sni !== undefined && opts.sni !== '' ? { sni: opts.sni } : {}),
    }),
  };
}

/** A listener filter chain's `transport_socket` with downstreamTlsContext(opts). */
export function downstreamTlsTransportSocket(opts: DownstreamTlsOptions = {}): ProtoObject {
  return { name: TLS_TRANSPORT_SOCKET, typed_config: any(DOWNSTREAM_TLS_CONTEXT_TYPE, downstreamTlsContext(opts)) };
}

/** A cluster's `transport_socket` with upstreamTlsContext(opts). */
export function upstreamTlsTransportSocket(opts: UpstreamTlsOptions): ProtoObject {
  return { name: TLS_TRANSPORT_SOCKET, typed_config: any(UPSTREAM_TLS_CONTEXT_TYPE, upstreamTlsContext(opts)) };
}

function joinPem(...parts: string[]): string {
  return parts
    .filter((p) => p.trim() !== '')
    .map((p) => (p.endsWith('\n') ? p : `${p}\n`))
    .join('');
}
