// The security policy model: who may call which MCP service, tool, resource, prompt and completion.
// One YAML file (see deploy/policy.example.yaml) is parsed into this shape; everything that enforces
// policy (the MCP authorizer for every service, Envoy header RBAC in front of it for 2026-07-28 services,
// the tools/list filter) is compiled from it, so they cannot disagree.

/** A JWT issuer the gateway trusts. */
export interface JwtProvider {
  readonly name: string;
  readonly issuer: string;
  readonly audiences: readonly string[];
  /** Remote JWKS, cached by Envoy for `jwksCacheMs`. Exactly one of jwksUri / jwks. */
  readonly jwksUri?: string;
  readonly jwksCacheMs: number;
  /** Inline JWKS (JSON text). */
  readonly jwks?: string;
  /**
   * PEM bundle, as a path on the gateway's file system, that the https JWKS host's certificate must chain
   * to (its DNS name is checked too). Default: the system bundle, DEFAULT_JWKS_CA_FILE.
   */
  readonly jwksCaFile?: string;
}

/** The system CA bundle on Debian/Ubuntu, and in Envoy's official image. */
export const DEFAULT_JWKS_CA_FILE = '/etc/ssl/certs/ca-certificates.crt';

/** Glob patterns: `*` matches any run of characters (including `/` in resource URIs), everything else is literal. */
export type Pattern = string;

/** What a rule covers inside a service. An absent list covers nothing of that kind; ["*"] covers all. */
export interface RuleTarget {
  /** Service name pattern. */
  readonly service: Pattern;
  readonly tools?: readonly Pattern[];
  readonly resources?: readonly Pattern[];
  readonly prompts?: readonly Pattern[];
  /** completion/complete refs: prompt names or resource URIs (ref/prompt name, ref/resource uri). */
  readonly completions?: readonly Pattern[];
}

export interface Role {
  readonly name: string;
  readonly allow: readonly RuleTarget[];
  /** Explicit deny wins over any allow, from any role. */
  readonly deny: readonly RuleTarget[];
}

export type EnforcementMode = 'enforce' | 'shadow';

export interface ServicePolicy {
  readonly service: string;
  /** shadow: decisions are computed and logged/counted, but nothing is denied. */
  readonly mode: EnforcementMode;
  /** Scopes every token must carry to reach this service at all (403 insufficient_scope otherwise). */
  readonly requiredScopes: readonly string[];
  /** Pass the caller's bearer token to the MCP server. Off by default: MCP servers must not see client tokens. */
  readonly forwardToken: boolean;
  /** Service-to-service: SPIFFE IDs (patterns) whose mTLS identity may call this service's sidecar directly. */
  readonly allowedCallers: readonly Pattern[];
}

export interface Policy {
  /** SPIFFE trust domain of workload identities, e.g. `mcpmesh.local`. */
  readonly trustDomain: string;
  /** JWT claim that carries roles: an array of strings, or a space-separated string (OAuth `scope`). */
  readonly roleClaim: string;
  readonly providers: readonly JwtProvider[];
  readonly roles: readonly Role[];
  /** Per-service options; a service without an entry gets DEFAULT_SERVICE_POLICY. */
  readonly services: readonly ServicePolicy[];
}

/** What an MCP request asks for, as far as policy is concerned. */
export type McpAction =
  | { readonly kind: 'tool'; readonly name: string }
  | { readonly kind: 'resource'; readonly uri: string }
  | { readonly kind: 'prompt'; readonly name: string }
  | { readonly kind: 'completion'; readonly ref: string }
  /** Methods that name nothing (initialize, ping, tools/list, notifications, responses): allowed once the service is. */
  | { readonly kind: 'service' };

export interface Decision {
  readonly allow: boolean;
  /** The rule that decided, e.g. `roles.analyst.allow[0]`, `roles.intern.deny[1]` or `default-deny`. */
  readonly rule: string;
  /** Human-readable: why. */
  readonly reason: string;
}
