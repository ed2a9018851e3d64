// Gateway security, compiled from the policy: JWT validation (jwt_authn), the MCP authorizer (ext_authz
// with the request body) for every service, RFC 9728 protected resource metadata, and MCP-style 401
// challenges. Pure functions of the mesh.
import { protoDuration } from '../model/duration.ts';
import type { MeshSecurity, MeshService } from '../model/types.ts';
import { isIP } from 'node:net';
import { DEFAULT_JWKS_CA_FILE, type JwtProvider } from '../policy/types.ts';
import {
  AUTHZ_CLUSTER,
  EXT_PROC_CLUSTER,
  gatewayPathPrefix,
  jwksCluster,
  JWT_PAYLOAD_HEADER,
  JWT_PAYLOAD_METADATA_KEY,
  PROTECTED_RESOURCE_PATH,
  RESOURCE_METADATA_CONTEXT_KEY,
} from './naming.ts';
import { CIRCUIT_BREAKERS, singleHostCluster } from './clusters.ts';
import { any, struct, type ProtoObject, type XdsResource } from './resource.ts';
import { EXT_PROC_FILTER_NAME, EXT_PROC_PER_ROUTE_TYPE } from '../extproc/config.ts';
import { RBAC_ALLOW_FILTER, RBAC_DENY_FILTER, rbacDisabled } from './rbac.ts';
import { headerValidated } from '../policy/mcp-http.ts';

const JWT_FILTER = 'envoy.filters.http.jwt_authn';
export const EXT_AUTHZ_FILTER = 'envoy.filters.http.ext_authz';
const JWT_TYPE = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const EXT_AUTHZ_TYPE = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_AUTHZ_PER_ROUTE = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

/**
 * Revisions whose routing headers (Mcp-Method, Mcp-Name) header RBAC can judge before the body is read (a
 * cheap first reject; the authorizer still checks the body, and that the headers mirror it).
 */
export function headerRoutable(svc: MeshService): boolean {
  return headerValidated(svc.protocol);
}

function jwksUrl(p: JwtProvider): URL | undefined {
  return p.jwksUri ? new URL(p.jwksUri) : undefined;
}

/**
 * Claims jwt_authn turns from a space-separated string into a list in its metadata, so that RBAC reads them as
 * the policy engine does: OAuth `scope` and the role claim.
 */
export function spaceDelimitedClaims(roleClaim: string): string[] {
  return [...new Set(['scope', roleClaim])].sort();
}

function provider(p: JwtProvider, roleClaim: string): ProtoObject {
  const url = jwksUrl(p);
  return {
    issuer: p.issuer,
    audiences: [...p.audiences],
    ...(url
      ? {
          remote_jwks: {
            http_uri: { uri: url.toString(), cluster: jwksCluster(p.name), timeout: protoDuration(5_000) },
            cache_duration: protoDuration(p.jwksCacheMs),
            async_fetch: {},
          },
        }
      : // The policy parser only lets through a JWKS whose every key Envoy can use (policy/jwks.ts).
        { local_jwks: { inline_string: p.jwks ?? '' } }),
    // The token stays on the request until the route decides: only services that opt in receive it.
    forward: true,
    // No forward_payload_header: jwt_authn appends it, so a client's own copy would survive beside it.
    // Everything that needs the claims (RBAC, the authorizer, the tools/list filter) reads this metadata.
    // Every provider writes the same key: only the one that verified the token writes at all.
    payload_in_metadata: JWT_PAYLOAD_METADATA_KEY,
    // RBAC reads roles from the payload: a space-separated role claim becomes a list, like `scope`.
    normalize_payload_in_metadata: { space_delimited_claims: spaceDelimitedClaims(roleClaim) },
    from_headers: [{ name: 'Authorization', value_prefix: 'Bearer ' }],
  };
}

/** The jwt_authn filter: well-known metadata is public, everything else needs a valid token from any provider. */
export function jwtAuthnFilter(sec: MeshSecurity): ProtoObject {
  const names = sec.policy.providers.map((p) => p.name);
  const requires =
    names.length === 1 ? { provider_name: names[0] } : { requires_any: { requirements: names.map((n) => ({ provider_name: n })) } };
  return {
    name: JWT_FILTER,
    typed_config: any(JWT_TYPE, {
      providers: Object.fromEntries(sec.policy.providers.map((p) => [p.name, provider(p, sec.policy.roleClaim)])),
      rules: [{ match: { prefix: '/.well-known/' } }, ...(names.length > 0 ? [{ match: { prefix: '/' }, requires }] : [])],
      bypass_cors_preflight: true,
    }),
  };
}

/** ext_authz: the MCP authorizer gets the request with its body (the JSON-RPC message decides). */
export function extAuthzFilter(): ProtoObject {
  return {
    name: EXT_AUTHZ_FILTER,
    typed_config: any(EXT_AUTHZ_TYPE, {
      grpc_service: { envoy_grpc: { cluster_name: AUTHZ_CLUSTER }, timeout: protoDuration(1_000) },
      transport_api_version: 'V3',
      with_request_body: { max_request_bytes: 1 << 20, allow_partial_message: true, pack_as_bytes: true },
      // Fail closed: if the authorizer is unreachable, nothing gets through.
      failure_mode_allow: false,
      status_on_error: { code: 'ServiceUnavailable' },
      include_peer_certificate: true,
      // Each copy of a repeated header as its own entry (and values unsanitized): the authorizer refuses a
      // repeated Mcp-Method / Mcp-Name / MCP-Protocol-Version instead of seeing copies joined with ",".
      encode_raw_headers: true,
      // The verified claims travel as dynamic metadata: nothing a client could set in a header.
      metadata_context_namespaces: [JWT_FILTER],
    }),
  };
}

/**
 * Per route: which service the authorizer decides for, the revision it speaks (from 2026-07-28 the authorizer
 * also checks that the Mcp-* headers header RBAC judged mirror the body) and the metadata document its
 * challenges name. Every revision: header RBAC alone would trust headers the server never reads.
 */
export function extAuthzPerRoute(svc: MeshService, resource: ProtectedResource): ProtoObject {
  return any(EXT_AUTHZ_PER_ROUTE, {
    check_settings: {
      context_extensions: { mcp_service: svc.name, mcp_protocol: svc.protocol, [RESOURCE_METADATA_CONTEXT_KEY]: resource.metadataUrl },
    },
  });
}

/** Headers a route removes before the MCP server: the client's token, unless the service opted in. */
export function tokenHeadersToRemove(sec: MeshSecurity, svc: MeshService): string[] {
  const opted = sec.policy.services.find((s) => s.service === svc.name)?.forwardToken ?? false;
  return opted ? [JWT_PAYLOAD_HEADER] : ['authorization', JWT_PAYLOAD_HEADER];
}

/**
 * One RFC 9728 protected resource as a client reaches it: `resource` is the URL the client used for the MCP
 * endpoint, `metadataPath` where its metadata document is served on that host, `metadataUrl` the document's
 * full URL (what a 401 challenge names).
 */
export interface ProtectedResource {
  readonly resource: string;
  readonly metadataPath: string;
  readonly metadataUrl: string;
  readonly svc?: MeshService;
}

/** Through the gateway's public URL: the gateway as a whole, or a service at `/mcp/<service>`. */
export function gatewayResource(sec: MeshSecurity, svc?: MeshService): ProtectedResource {
  const path = svc ? gatewayPathPrefix(svc.name) : '';
  return {
    resource: `${sec.publicUrl}${path}`,
    metadataPath: `${PROTECTED_RESOURCE_PATH}${path}`,
    metadataUrl: `${sec.publicUrl}${PROTECTED_RESOURCE_PATH}${path}`,
    ...(svc ? { svc } : {}),
  };
}

/**
 * A service routed by host: the client used `<scheme>://<host>[:port]<mcpPath>`. Listeners strip the port
 * from Host, so scheme and port are the public URL's (the port the gateway is published on).
 */
export function hostResource(sec: MeshSecurity, svc: MeshService, host: string): ProtectedResource {
  const pub = new URL(sec.publicUrl);
  const origin = `${pub.protocol}//${host}${pub.port ? `:${pub.port}` : ''}`;
  const metadataPath = `${PROTECTED_RESOURCE_PATH}${svc.routing.mcpPath}`;
  return { resource: `${origin}${svc.routing.mcpPath}`, metadataPath, metadataUrl: `${origin}${metadataPath}`, svc };
}

function metadataBody(sec: MeshSecurity, r: ProtectedResource): string {
  const scopes = r.svc ? (sec.policy.services.find((s) => s.service === r.svc?.name)?.requiredScopes ?? []) : [];
  return JSON.stringify({
    resource: r.resource,
    authorization_servers: [...new Set(sec.policy.providers.map((p) => p.issuer))],
    bearer_methods_supported: ['header'],
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    resource_name: r.svc ? `MCP service ${r.svc.name}` : 'MCP Mesh gateway',
  });
}

/** Every security filter stands aside on a route (public documents, the not-found route). */
function securityFiltersDisabled(): ProtoObject {
  return {
    [RBAC_DENY_FILTER]: rbacDisabled().deny,
    [RBAC_ALLOW_FILTER]: rbacDisabled().allow,
    [EXT_AUTHZ_FILTER]: any(EXT_AUTHZ_PER_ROUTE, { disabled: true }),
    [EXT_PROC_FILTER_NAME]: any(EXT_PROC_PER_ROUTE_TYPE, { disabled: true }),
  };
}

/** The RFC 9728 document of `r`, served where clients look for it (jwt_authn lets /.well-known/ through). */
export function protectedResourceRoute(sec: MeshSecurity, name: string, r: ProtectedResource, match: ProtoObject = {}): ProtoObject {
  return {
    name,
    match: { ...match, path: r.metadataPath },
    direct_response: { status: 200, body: { inline_string: metadataBody(sec, r) } },
    response_headers_to_add: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    typed_per_filter_config: securityFiltersDisabled(),
  };
}

const CHALLENGE_METADATA_KEY = 'resource_metadata';

/** Route metadata that names the metadata document a 401 on this route points at (see localReplyConfig). */
export function challengeMetadata(r: ProtectedResource): ProtoObject {
  return { filter_metadata: { mcpmesh: struct({ [CHALLENGE_METADATA_KEY]: r.metadataUrl }) } };
}

/**
 * Catch-all of a secured gateway: a request no service route takes gets 404 once authenticated, and a 401
 * that names the gateway's own metadata document when not (every route carries a challenge document).
 */
export function notFoundRoute(sec: MeshSecurity): ProtoObject {
  return {
    name: 'not-found',
    match: { prefix: '/' },
    direct_response: { status: 404 },
    metadata: challengeMetadata(gatewayResource(sec)),
    typed_per_filter_config: securityFiltersDisabled(),
  };
}

/**
 * Local replies: a 401 from jwt_authn carries the MCP authorization challenge naming the metadata document
 * of the route the request matched (route metadata, so the listener does not change when services do, and
 * the query string never leaks into the URL).
 */
export function localReplyConfig(): ProtoObject {
  const challenge = `Bearer resource_metadata="%METADATA(ROUTE:mcpmesh:${CHALLENGE_METADATA_KEY})%"`;
  return {
    mappers: [
      {
        filter: { status_code_filter: { comparison: { op: 'EQ', value: { default_value: 401, runtime_key: 'mcpmesh.local_reply.401' } } } },
        headers_to_add: [{ header: { key: 'WWW-Authenticate', value: challenge }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
      },
    ],
  };
}

/**
 * TLS to an identity provider's JWKS host, verified: its certificate must chain to `caFile` and name the host
 * (DNS SAN, or IP SAN for an address). Without this anyone on the path could serve keys and mint tokens.
 */
function jwksTlsTransportSocket(url: URL, caFile: string): ProtoObject {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
      sni: host,
      common_tls_context: {
        validation_context: {
          trusted_ca: { filename: caFile },
          match_typed_subject_alt_names: [{ san_type: isIP(host) ? 'IP_ADDRESS' : 'DNS', matcher: { exact: host } }],
        },
      },
    }),
  };
}

/**
 * Clusters the security filters call: the authorizer and the tools/list processor (gRPC), and each remote JWKS
 * host. With `localAuthz` (a gateway whose agent runs both beside it) the two gRPC clusters are left out: the
 * filters still name AUTHZ_CLUSTER and EXT_PROC_CLUSTER, and the gateway's bootstrap defines clusters of those
 * names that reach its agent (sidecar/src/bootstrap.ts). Envoy would not let CDS replace a static cluster.
 */
export function securityClusters(sec: MeshSecurity, opts: { localAuthz?: boolean } = {}): XdsResource[] {
  const grpcCluster = (name: string): XdsResource => ({
    kind: 'cluster',
    name,
    wildcard: true,
    body: {
      ...singleHostCluster(name, sec.authz.host, sec.authz.port, { connectTimeoutMs: 2_000, http2: {} }),
      circuit_breakers: CIRCUIT_BREAKERS,
    },
  });
  const jwks = sec.policy.providers.flatMap((p): XdsResource[] => {
    const url = jwksUrl(p);
    if (!url) return [];
    const name = jwksCluster(p.name);
    const tls = url.protocol === 'https:';
    return [
      {
        kind: 'cluster',
        name,
        wildcard: true,
        body: {
          ...singleHostCluster(name, url.hostname, Number(url.port || (tls ? 443 : 80)), { connectTimeoutMs: 5_000 }),
          // An identity provider's host may answer from many addresses: connect to one at a time.
          type: 'LOGICAL_DNS',
          dns_lookup_family: 'V4_PREFERRED',
          ...(tls ? { transport_socket: jwksTlsTransportSocket(url, p.jwksCaFile ?? DEFAULT_JWKS_CA_FILE) } : {}),
        },
      },
    ];
  });
  return [...(opts.localAuthz ? [] : [grpcCluster(AUTHZ_CLUSTER), grpcCluster(EXT_PROC_CLUSTER)]), ...jwks];
}
