// Gateway security, compiled from the policy: JWT validation (jwt_authn), the MCP authorizer (ext_authz
// with the request body) for services whose revision needs the JSON-RPC body, RFC 9728 protected resource
// metadata, and MCP-style 401 challenges. Pure functions of the mesh.
import { protoDuration } from '../model/duration.ts';
import type { MeshSecurity, MeshService } from '../model/types.ts';
import type { JwtProvider } from '../policy/types.ts';
import { AUTHZ_CLUSTER, gatewayPathPrefix, jwksCluster, JWT_PAYLOAD_HEADER, JWT_PAYLOAD_METADATA_KEY, PROTECTED_RESOURCE_PATH } from './naming.ts';
import { singleHostCluster } from './clusters.ts';
import { any, type ProtoObject, type XdsResource } from './resource.ts';
import { EXT_PROC_FILTER_NAME, EXT_PROC_PER_ROUTE_TYPE } from '../extproc/config.ts';
import { RBAC_ALLOW_FILTER, RBAC_DENY_FILTER, rbacDisabled } from './rbac.ts';

const JWT_FILTER = 'envoy.filters.http.jwt_authn';
export const EXT_AUTHZ_FILTER = 'envoy.filters.http.ext_authz';
const JWT_TYPE = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const EXT_AUTHZ_TYPE = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_AUTHZ_PER_ROUTE = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

/** Revisions whose routing headers (Mcp-Method, Mcp-Name) let header-based RBAC decide without the body. */
export function headerRoutable(svc: MeshService): boolean {
  return svc.protocol >= '2026-07-28';
}

function jwksUrl(p: JwtProvider): URL | undefined {
  return p.jwksUri ? new URL(p.jwksUri) : undefined;
}

function provider(p: JwtProvider): ProtoObject {
  const url = jwksUrl(p);
  return {
    issuer: p.issuer,
    audiences: [...p.audiences],
    ...(url
      ? { remote_jwks: { http_uri: { uri: url.toString(), cluster: jwksCluster(p.name), timeout: protoDuration(5_000) }, cache_duration: protoDuration(p.jwksCacheMs), async_fetch: {} } }
      : { local_jwks: { inline_string: p.jwks ?? '{"keys":[]}' } }),
    // The token stays on the request until the route decides: only services that opt in receive it.
    forward: true,
    forward_payload_header: JWT_PAYLOAD_HEADER,
    // Every provider writes the same key: only the one that verified the token writes at all.
    payload_in_metadata: JWT_PAYLOAD_METADATA_KEY,
    normalize_payload_in_metadata: { space_delimited_claims: ['scope'] },
    from_headers: [{ name: 'Authorization', value_prefix: 'Bearer ' }],
  };
}

/** The jwt_authn filter: well-known metadata is public, everything else needs a valid token from any provider. */
export function jwtAuthnFilter(sec: MeshSecurity): ProtoObject {
  const names = sec.policy.providers.map((p) => p.name);
  const requires = names.length === 1
    ? { provider_name: names[0] }
    : { requires_any: { requirements: names.map((n) => ({ provider_name: n })) } };
  return {
    name: JWT_FILTER,
    typed_config: any(JWT_TYPE, {
      providers: Object.fromEntries(sec.policy.providers.map((p) => [p.name, provider(p)])),
      rules: [
        { match: { prefix: '/.well-known/' } },
        ...(names.length > 0 ? [{ match: { prefix: '/' }, requires }] : []),
      ],
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
      // The verified claims travel as dynamic metadata: nothing a client could set in a header.
      metadata_context_namespaces: [JWT_FILTER],
    }),
  };
}

/** Per route: which service the authorizer decides for, or no ext_authz at all (header-routable revisions). */
export function extAuthzPerRoute(svc: MeshService): ProtoObject {
  return headerRoutable(svc)
    ? any(EXT_AUTHZ_PER_ROUTE, { disabled: true })
    : any(EXT_AUTHZ_PER_ROUTE, { check_settings: { context_extensions: { mcp_service: svc.name } } });
}

/** Headers a route removes before the MCP server: the client's token, unless the service opted in. */
export function tokenHeadersToRemove(sec: MeshSecurity, svc: MeshService): string[] {
  const opted = sec.policy.services.find((s) => s.service === svc.name)?.forwardToken ?? false;
  return opted ? [JWT_PAYLOAD_HEADER] : ['authorization', JWT_PAYLOAD_HEADER];
}

function metadataBody(sec: MeshSecurity, resourcePath: string, svc?: MeshService): string {
  const scopes = svc ? (sec.policy.services.find((s) => s.service === svc.name)?.requiredScopes ?? []) : [];
  return JSON.stringify({
    resource: `${sec.publicUrl}${resourcePath}`,
    authorization_servers: [...new Set(sec.policy.providers.map((p) => p.issuer))],
    bearer_methods_supported: ['header'],
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    resource_name: svc ? `MCP service ${svc.name}` : 'MCP Mesh gateway',
  });
}

/** RFC 9728 protected resource metadata: one document per MCP path, and one for the gateway as a whole. */
export function protectedResourceRoutes(sec: MeshSecurity, services: readonly MeshService[]): ProtoObject[] {
  const route = (name: string, path: string, body: string): ProtoObject => ({
    name,
    match: { path },
    direct_response: { status: 200, body: { inline_string: body } },
    response_headers_to_add: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    // Public documents: no authorizer (jwt_authn already lets /.well-known/ through).
    typed_per_filter_config: {
      [RBAC_DENY_FILTER]: rbacDisabled().deny,
      [RBAC_ALLOW_FILTER]: rbacDisabled().allow,
      [EXT_AUTHZ_FILTER]: any(EXT_AUTHZ_PER_ROUTE, { disabled: true }),
      [EXT_PROC_FILTER_NAME]: any(EXT_PROC_PER_ROUTE_TYPE, { disabled: true }),
    },
  });
  return [
    route('oauth-protected-resource', PROTECTED_RESOURCE_PATH, metadataBody(sec, '')),
    ...services.map((svc) => route(`${svc.name}.oauth-protected-resource`, `${PROTECTED_RESOURCE_PATH}${gatewayPathPrefix(svc.name)}`, metadataBody(sec, gatewayPathPrefix(svc.name), svc))),
  ];
}

/**
 * Local replies: a 401 from jwt_authn carries the MCP authorization challenge pointing at the metadata of
 * the path the client asked for (clients try /.well-known/oauth-protected-resource/<path> first).
 */
export function localReplyConfig(sec: MeshSecurity): ProtoObject {
  const challenge = `Bearer resource_metadata="${sec.publicUrl}${PROTECTED_RESOURCE_PATH}%REQ(:path)%"`;
  return {
    mappers: [{
      filter: { status_code_filter: { comparison: { op: 'EQ', value: { default_value: 401, runtime_key: 'mcpmesh.local_reply.401' } } } },
      headers_to_add: [{ header: { key: 'WWW-Authenticate', value: challenge }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    }],
  };
}

/** Clusters the security filters call: the authorizer (gRPC) and each remote JWKS host. */
export function securityClusters(sec: MeshSecurity): XdsResource[] {
  const authz: XdsResource = {
    kind: 'cluster',
    name: AUTHZ_CLUSTER,
    wildcard: true,
    body: singleHostCluster(AUTHZ_CLUSTER, sec.authz.host, sec.authz.port, { connectTimeoutMs: 2_000, http2: {} }),
  };
  const jwks = sec.policy.providers.flatMap((p): XdsResource[] => {
    const url = jwksUrl(p);
    if (!url) return [];
    const name = jwksCluster(p.name);
    const tls = url.protocol === 'https:';
    return [{
      kind: 'cluster',
      name,
      wildcard: true,
      body: {
        ...singleHostCluster(name, url.hostname, Number(url.port || (tls ? 443 : 80)), { connectTimeoutMs: 5_000 }),
        // An identity provider's host may answer from many addresses: connect to one at a time.
        type: 'LOGICAL_DNS',
        dns_lookup_family: 'V4_PREFERRED',
        ...(tls ? {
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: any('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', { sni: url.hostname }),
          },
        } : {}),
      },
    }];
  });
  return [authz, ...jwks];
}
