// The identity side of an agent (sidecar or gateway): the SDS socket its Envoy reads the workload certificate
// from, and the certificate itself (identity.ts), obtained in the background and retried until the control
// plane answers: Envoy may start first and waits, its listeners and the xDS channel warming, until the
// secret arrives. Also the command-line flags both agents share for it.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readJoinToken } from '../../control-plane/src/identity/join-token.ts';
import { controlPlaneId } from '../../control-plane/src/identity/serving.ts';
import { gatewayId, parseSpiffeId, sidecarId, trustDomainProblem } from '../../control-plane/src/identity/spiffe.ts';
import type { Log } from './envoy.ts';
import { WorkloadIdentity, type Credential, type Held } from './identity.ts';
import { SdsServer } from './sds-server.ts';

export interface IdentityConfig {
  readonly credential: Credential;
  readonly spiffeId: string;
  readonly trustDomain: string;
  /** Roots the control plane must chain to; a join token pins them when absent. */
  readonly bundlePem?: string;
  readonly sdsSocket: string;
  /** cert.pem / key.pem / bundle.pem for proxyless gRPC clients beside this agent. */
  readonly dir?: string;
}

/** The identity flags of `mcpmesh sidecar` and `mcpmesh gateway` (parseArgs option specs). */
export const IDENTITY_OPTIONS = {
  'join-token': { type: 'string' },
  'join-token-file': { type: 'string' },
  'k8s-token-file': { type: 'string' },
  'trust-domain': { type: 'string' },
  'ca-bundle': { type: 'string' },
  'sds-socket': { type: 'string' },
  'identity-dir': { type: 'string' },
} as const;

export const IDENTITY_USAGE = `  --join-token T          join the secured mesh with this single-use token (mcpmesh join-token) [$MCPMESH_JOIN_TOKEN]
  --join-token-file F     ... read from a file                                     [$MCPMESH_JOIN_TOKEN_FILE]
  --k8s-token-file F      ... or with a projected Kubernetes ServiceAccount token (audience mcpmesh)
                                                                                   [$MCPMESH_K8S_TOKEN_FILE]
  --trust-domain TD       the mesh's trust domain (needed with --k8s-token-file)   [$MCPMESH_TRUST_DOMAIN]
  --ca-bundle F           roots the control plane must chain to (a join token pins them) [$MCPMESH_CA_BUNDLE]
  --sds-socket PATH       Unix socket Envoy reads the workload certificate from  [<tmp>/mcpmesh-sds-<id>.sock]
  --identity-dir DIR      also write cert.pem, key.pem (0600), bundle.pem for proxyless gRPC clients
  Without a credential the agent runs unsecured: plain xDS (a control plane in development mode).
`;

type IdentityValues = { [K in keyof typeof IDENTITY_OPTIONS]?: string | undefined };

/**
 * The identity the flags ask for, for `who` (a service's sidecar or a gateway), or undefined (no credential:
 * development mode). Problems (unreadable files, a token for another identity) go to `problems`.
 */
export function identityFromArgs(
  values: IdentityValues,
  env: NodeJS.ProcessEnv,
  who: { role: 'sidecar' | 'gateway'; name: string; nodeId: string },
  problems: string[],
): IdentityConfig | undefined {
  const read = (flag: string, file: string): string | undefined => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push(`--${flag}: cannot read ${file}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const tokenFile = values['join-token-file'] ?? env['MCPMESH_JOIN_TOKEN_FILE'];
  const joinToken = values['join-token'] ?? env['MCPMESH_JOIN_TOKEN'] ?? (tokenFile ? read('join-token-file', tokenFile) : undefined);
  const k8sFile = values['k8s-token-file'] ?? env['MCPMESH_K8S_TOKEN_FILE'];
  if (joinToken && k8sFile) problems.push('--join-token and --k8s-token-file: give one way to prove the identity, not both');
  if (!joinToken && !k8sFile) return undefined;
  const bundleFile = values['ca-bundle'] ?? env['MCPMESH_CA_BUNDLE'];
  const bundlePem = bundleFile ? read('ca-bundle', bundleFile) : undefined;
  let trustDomain = values['trust-domain'] ?? env['MCPMESH_TRUST_DOMAIN'];
  let credential: Credential;
  if (joinToken) {
    let claimed: string;
    try {
      claimed = readJoinToken(joinToken).spiffeId;
      const td = parseSpiffeId(claimed).trustDomain;
      if (trustDomain && trustDomain !== td) problems.push(`--trust-domain ${trustDomain}: the join token is for trust domain ${td}`);
      trustDomain = td;
    } catch (err) {
      problems.push(`--join-token: ${(err as Error).message}`);
      return undefined;
    }
    credential = { type: 'join-token', token: joinToken };
    const expected = who.role === 'sidecar' ? sidecarId(trustDomain, who.name) : gatewayId(trustDomain, who.name);
    if (claimed !== expected) problems.push(`--join-token: the token is for ${claimed}, but this agent is ${expected}`);
  } else {
    if (!trustDomain) {
      problems.push('--k8s-token-file needs --trust-domain (or $MCPMESH_TRUST_DOMAIN): the identity is spiffe://<trust domain>/...');
      return undefined;
    }
    const file = k8sFile as string;
    // Re-read on every use: the kubelet rotates projected tokens.
    credential = { type: 'k8s-sat', token: () => readFileSync(file, 'utf8').trim() };
    read('k8s-token-file', file);
  }
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) {
    problems.push(`--trust-domain: ${tdProblem}`);
    return undefined;
  }
  const spiffeId = who.role === 'sidecar' ? sidecarId(trustDomain, who.name) : gatewayId(trustDomain, who.name);
  const sdsSocket = values['sds-socket'] ?? path.join(os.tmpdir(), `mcpmesh-sds-${who.nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.sock`);
  return {
    credential,
    spiffeId,
    trustDomain,
    ...(bundlePem ? { bundlePem } : {}),
    sdsSocket,
    ...(values['identity-dir'] ? { dir: values['identity-dir'] } : {}),
  };
}

/** The agent's identity at run time: the SDS server for its Envoy, and the certificate it serves. */
export class AgentIdentity {
  readonly config: IdentityConfig;
  readonly #sds: SdsServer;
  readonly #wid: WorkloadIdentity;
  readonly #log: Log;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #attempts = 0;

  constructor(config: IdentityConfig, controlPlane: { host: string; port: number }, log: Log) {
    this.config = config;
    this.#log = log;
    this.#sds = new SdsServer(config.sdsSocket, log);
    this.#wid = new WorkloadIdentity({
      spiffeId: config.spiffeId,
      controlPlane,
      credential: config.credential,
      log,
      ...(config.bundlePem ? { bundlePem: config.bundlePem } : {}),
      ...(config.dir ? { dir: config.dir } : {}),
    });
    this.#wid.onChange((held) => this.#sds.update(held));
  }

  /** What the Envoy bootstrap needs to reach the SDS socket and check the control plane. */
  get bootstrap(): { sdsSocket: string; controlPlaneId: string } {
    return { sdsSocket: this.config.sdsSocket, controlPlaneId: controlPlaneId(this.config.trustDomain) };
  }

  get held(): Held | undefined {
    return this.#wid.current;
  }

  /** Opens the SDS socket, then gets the first certificate in the background (retried with backoff). */
  async start(): Promise<void> {
    await this.#sds.listen();
    this.#acquire();
  }

  #acquire(): void {
    if (this.#stopped) return;
    this.#wid.start().catch((err: unknown) => {
      this.#attempts += 1;
      const delay = Math.min(1000 * 2 ** Math.min(this.#attempts - 1, 5), 30_000);
      this.#log('error', 'could not get a workload certificate; retrying', {
        spiffe_id: this.config.spiffeId,
        error: (err as Error).message,
        retry_in_ms: delay,
      });
      this.#timer = setTimeout(() => this.#acquire(), delay);
      this.#timer.unref();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wid.stop();
    await this.#sds.close();
  }
}
