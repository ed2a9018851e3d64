// The two gRPC services a gateway's Envoy asks about every secured request, served together on one address:
// the MCP authorizer (ext_authz, AuthzServer) and the per-identity tools/list processor (ext_proc,
// ExtProcServer), both deciding with one policy that can be swapped at runtime.
//
// Two places run them with this same code: the control plane (for gateways that have no policy of their own)
// and a gateway's agent beside its Envoy (`mcpmesh gateway --policy FILE`), so that requests keep being decided
// while every control-plane replica is down.
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { ExtProcServer } from '../extproc/server.ts';
import type { ToolFilterFactory } from '../extproc/processor.ts';
import { compilePolicy, decide, rolesFromClaims, scopesFromClaims } from '../policy/engine.ts';
import type { Policy } from '../policy/types.ts';
import { AuthzServer } from './server.ts';

/** tools/list filter: a caller sees the tools its roles may call (claims verified by jwt_authn, from its metadata). */
export function toolFilterFor(policy: Policy): ToolFilterFactory {
  const compiled = compilePolicy(policy);
  return ({ service, claims }) => {
    const roles = claims ? rolesFromClaims(claims, policy.roleClaim) : [];
    // The scopes too: a service's requiredScopes decide what its callers may call, so what they may see.
    const scopes = claims ? scopesFromClaims(claims) : [];
    return (tool) => decide(compiled, { service, roles, scopes, action: { kind: 'tool', name: tool } }).allow;
  };
}

export interface DecisionServicesOptions {
  readonly policy: Policy;
  /** Where mcpmesh_authz_* and mcpmesh_extproc_* metrics are registered. */
  readonly registry: Registry;
  /** Parent logger: the services log as its `authz` and `extproc` children. */
  readonly log: Logger;
  /** The gateway's public base URL, for insufficient_scope challenges on routes that name no document. */
  readonly publicUrl?: string;
}

export class DecisionServices {
  readonly authz: AuthzServer;
  readonly extProc: ExtProcServer;
  #toolFilter: ToolFilterFactory;

  constructor(opts: DecisionServicesOptions) {
    this.authz = new AuthzServer({
      policy: opts.policy,
      registry: opts.registry,
      log: opts.log.child('authz'),
      ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
    });
    this.#toolFilter = toolFilterFor(opts.policy);
    // Indirect, so a policy swap reaches streams opened before it.
    this.extProc = new ExtProcServer({
      toolFilter: (ctx) => this.#toolFilter(ctx),
      registry: opts.registry,
      log: opts.log.child('extproc'),
    });
    // One port for both: Envoy reaches them through two clusters (their circuit breakers must not be shared),
    // but there is one process and one policy behind them.
    this.authz.mount((server) => this.extProc.addTo(server));
  }

  get policy(): Policy {
    return this.authz.policy;
  }

  /** Every check and every tools/list filtered after this call uses `policy`. */
  setPolicy(policy: Policy): void {
    this.authz.setPolicy(policy);
    this.#toolFilter = toolFilterFor(policy);
  }

  /** Serves both on host:port (0 = any free port); returns the bound port. */
  listen(host: string, port: number): Promise<number> {
    return this.authz.listen(host, port);
  }

  /** Serves both on a Unix socket (replacing a stale one: a restarted agent finds its predecessor's). */
  listenUnix(socketPath: string): Promise<void> {
    return this.authz.listenUnix(socketPath);
  }

  async close(): Promise<void> {
    // ext_proc streams live as long as the HTTP streams they watch: end them, or the shutdown waits for them.
    await this.extProc.close();
    await this.authz.close();
  }
}
