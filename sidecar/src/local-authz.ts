// The gateway agent's own MCP authorizer and tools/list processor (`mcpmesh gateway --policy FILE`): the same
// services the control plane serves (control-plane/src/authz/services.ts), on a Unix socket that only this
// gateway's Envoy reaches (static clusters in its bootstrap), deciding with the policy file the control plane
// reads too (mounted into both). A secured request then needs neither the control plane nor the network to it:
// when every replica is down, the gateway keeps deciding with the last good policy, and a policy edit still
// reaches it.
//
// Why the file and not xDS: the point is to decide without the control plane, so the policy must not travel
// through it. Reading the same file also means both see one policy; ConfigMap volumes and editors' renames are
// handled by FileWatch as for the control plane.
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { DecisionServices } from '../../control-plane/src/authz/services.ts';
import type { Logger } from '../../control-plane/src/log.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import type { Policy } from '../../control-plane/src/policy/types.ts';
import { FileWatch } from '../../control-plane/src/sources/file-watch.ts';

export interface LocalAuthzConfig {
  /** The policy file, watched. */
  readonly policyFile: string;
  /** Its text when it was parsed (an edit made after this was read counts as one). */
  readonly policyText: string;
  readonly policy: Policy;
  /** Unix socket the authorizer and the processor are served on (the bootstrap's static clusters point here). */
  readonly socket: string;
}

/** Reads and parses a policy file; throws an Error naming the file, and each path and reason. */
export function readPolicyFile(file: string): { text: string; policy: Policy } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`);
  }
  return { text, policy: parsePolicy(text, file) };
}

export interface LocalAuthzOptions {
  /** Logs as `<log>.authz`, `<log>.extproc` (the services) and `log` itself (policy reloads). */
  readonly log: Logger;
  /** Where the services' metrics are registered. Default: a registry of their own. */
  readonly registry?: Registry;
  /** Quiet time before a burst of file events is read (default 100 ms). */
  readonly debounceMs?: number;
}

export class LocalAuthz {
  readonly config: LocalAuthzConfig;
  readonly #services: DecisionServices;
  readonly #log: Logger;
  readonly #watch: FileWatch;
  #lastError: string | undefined;

  constructor(config: LocalAuthzConfig, opts: LocalAuthzOptions) {
    this.config = config;
    this.#log = opts.log;
    // No publicUrl: every route the control plane sends names its own RFC 9728 document (a context extension).
    this.#services = new DecisionServices({ policy: config.policy, registry: opts.registry ?? new Registry(), log: opts.log });
    this.#watch = new FileWatch(
      config.policyFile,
      {
        change: (text) => this.#reload(text),
        error: (err) => this.#refused(`${config.policyFile}: ${err.message}`),
      },
      opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {},
    );
  }

  /** The policy deciding now (the last good one). */
  get policy(): Policy {
    return this.#services.policy;
  }

  /** Why the last edit was refused, until a good one is applied. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Serves both services on the socket, then watches the file. */
  async start(): Promise<void> {
    await this.#services.listenUnix(this.config.socket);
    this.#watch.seen(this.config.policyText);
    this.#watch.start();
    const p = this.config.policy;
    this.#log.info('local authorizer and tools/list processor listening', {
      socket: this.config.socket,
      policy: this.config.policyFile,
      trust_domain: p.trustDomain,
      roles: p.roles.length,
      services: p.services.length,
    });
  }

  #reload(text: string): void {
    const file = this.config.policyFile;
    let policy: Policy;
    try {
      policy = parsePolicy(text, file);
    } catch (err) {
      // ConfigError's message is the file, then every path and reason.
      this.#refused((err as Error).message);
      return;
    }
    const current = this.#services.policy;
    if (policy.trustDomain !== current.trustDomain) {
      // The control plane refuses it too: every certificate (and the gateway's own identity) would change.
      this.#refused(
        `${file}: trustDomain: changed from "${current.trustDomain}" to "${policy.trustDomain}"; restart the mesh to change it`,
      );
      return;
    }
    this.#services.setPolicy(policy);
    this.#lastError = undefined;
    this.#log.info('policy applied', {
      file,
      roles: policy.roles.length,
      services: policy.services.length,
      providers: policy.providers.length,
    });
  }

  #refused(reason: string): void {
    this.#lastError = reason;
    this.#log.error('policy update rejected; the last good policy stays in force', { file: this.config.policyFile, error: reason });
  }

  async stop(): Promise<void> {
    this.#watch.stop();
    await this.#services.close();
  }
}
