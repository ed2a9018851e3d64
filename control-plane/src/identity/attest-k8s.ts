// Kubernetes attestation (`k8s-sat`): a pod proves which mesh identity it may hold with its projected
// ServiceAccount token (audience `mcpmesh`), which the control plane hands to the Kubernetes TokenReview API
// (POST /apis/authentication.k8s.io/v1/tokenreviews). The API server says whether the token is genuine,
// unexpired, bound to a live pod and meant for our audience, and which ServiceAccount it belongs to; this
// attestor then accepts the identity only if that ServiceAccount is listed for it in the mapping file:
//
//   services:
//     weather: [mcp/weather]        # spiffe://<td>/mcp/weather   <- namespace "mcp", ServiceAccount "weather"
//   gateways:
//     default: [mcp-mesh/gateway]   # spiffe://<td>/gateway/default
//
// Why TokenReview rather than verifying the JWT locally: the API server also checks that the ServiceAccount,
// and the pod the token is bound to, still exist (a deleted pod's token stops working at once), and it knows
// the cluster's current signing keys and issuer without us configuring them.
//
// The control plane authenticates its own TokenReview call with its own credential (`token()`, re-read on each
// call so a rotated projected token is picked up); its ServiceAccount needs RBAC permission to create
// tokenreviews (the built-in ClusterRole `system:auth-delegator` grants it).
//
// Neither token is ever logged or put into a refusal reason: reasons only quote what the API server said.
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { parseDocument } from 'yaml';
import { ConfigError, isNode, join, Reader } from '../model/reader.ts';
import type { AttestationResult, Attestor, IdentityRequest } from './attest.ts';

export const K8S_SAT_METHOD = 'k8s-sat';
export const DEFAULT_K8S_AUDIENCE = 'mcpmesh';
export const DEFAULT_K8S_TIMEOUT_MS = 5000;
/** Where Kubernetes mounts a pod's ServiceAccount token and the cluster CA (the control plane's own pod). */
export const IN_CLUSTER_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';
export const IN_CLUSTER_CA_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';
export const TOKENREVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
/** user.extra key the API server fills with the pod a bound token belongs to (apiserver serviceaccount/util.go). */
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const SA_USERNAME_PREFIX = 'system:serviceaccount:';
/** A TokenReview answer is a few KiB; anything much larger is not one. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Which ServiceAccounts (`namespace/name`) may hold each service's and each gateway's identity. */
export interface K8sAttestationMap {
  readonly services: Readonly<Record<string, readonly string[]>>;
  readonly gateways: Readonly<Record<string, readonly string[]>>;
}

export interface KubernetesAttestorOptions {
  /** https URL of the API server. Default: in-cluster, from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT. */
  readonly apiServer?: string;
  /**
   * PEM CA bundle the API server's certificate must chain to. Default: when apiServer is also defaulted (in
   * cluster), IN_CLUSTER_CA_FILE if it exists; otherwise Node's built-in public roots.
   */
  readonly caPem?: string;
  /** The control plane's own bearer token for the TokenReview call; called on every attestation. */
  readonly token: () => string;
  /** Audience the workload tokens must be issued for. Default `mcpmesh`. */
  readonly audience?: string;
  readonly mapping: K8sAttestationMap;
  /** Whole TokenReview call (connect, TLS, answer). Default 5 s. */
  readonly timeoutMs?: number;
}

// --- the mapping file -------------------------------------------------------------------------------------

/** A service name: a DNS label, as in the registry and the policy. */
const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A gateway name, as a gateway's node metadata may carry it (xds/node.ts); "." and ".." are no SPIFFE segment. */
const GATEWAY_NAME = /^[A-Za-z0-9._-]{1,63}$/;
/** Kubernetes DNS-1123 label (namespaces): apimachinery validation.IsDNS1123Label. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Kubernetes DNS-1123 subdomain (ServiceAccount names): validation.IsDNS1123Subdomain. */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `name` is not a Kubernetes namespace name, or undefined. */
export function namespaceProblem(name: string): string | undefined {
  if (name === '') return 'the namespace is empty';
  if (name.length > 63 || !DNS1123_LABEL.test(name)) {
    return `namespace ${JSON.stringify(name)} is not a DNS-1123 label (lower-case letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)`;
  }
  return undefined;
}

/** Why `name` is not a Kubernetes ServiceAccount name, or undefined. */
export function serviceAccountProblem(name: string): string | undefined {
  if (name === '') return 'the ServiceAccount name is empty';
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    return `ServiceAccount name ${JSON.stringify(name)} is not a DNS-1123 subdomain (lower-case letters, digits, "-" and ".", each dot-separated part starting and ending with a letter or digit, at most 253 characters)`;
  }
  return undefined;
}

function readAccounts(r: Reader, raw: unknown, path: string): string[] | undefined {
  const example = 'e.g. [mcp/weather]';
  if (!Array.isArray(raw)) {
    r.fail(path, `must be a list of "namespace/serviceaccount" strings, ${example} (got ${JSON.stringify(raw ?? null)})`);
    return undefined;
  }
  if (raw.length === 0) {
    r.fail(path, `must list at least one "namespace/serviceaccount", ${example}`);
    return undefined;
  }
  const out: string[] = [];
  const seen = new Map<string, string>();
  let ok = true;
  raw.forEach((entry, i) => {
    const p = join(path, i);
    if (typeof entry !== 'string') {
      r.fail(p, `must be a "namespace/serviceaccount" string (got ${JSON.stringify(entry)})`);
      ok = false;
      return;
    }
    const parts = entry.split('/');
    if (parts.length !== 2) {
      r.fail(p, `${JSON.stringify(entry)} is not "namespace/serviceaccount" (exactly one "/")`);
      ok = false;
      return;
    }
    const problem = namespaceProblem(parts[0] as string) ?? serviceAccountProblem(parts[1] as string);
    if (problem) {
      r.fail(p, `${JSON.stringify(entry)}: ${problem}`);
      ok = false;
      return;
    }
    const prev = seen.get(entry);
    if (prev !== undefined) {
      r.fail(p, `${JSON.stringify(entry)} is listed twice (also at ${prev})`);
      ok = false;
      return;
    }
    seen.set(entry, p);
    out.push(entry);
  });
  return ok ? out : undefined;
}

function readSection(r: Reader, root: Record<string, unknown>, key: 'services' | 'gateways'): Record<string, readonly string[]> {
  const entries: Array<[string, readonly string[]]> = [];
  const node = r.object(root, key, '');
  for (const [name, raw] of Object.entries(node ?? {})) {
    const path = join(key, name);
    if (key === 'services' && !SERVICE_NAME.test(name)) {
      r.fail(path, `${JSON.stringify(name)} is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)`);
    } else if (key === 'gateways' && (!GATEWAY_NAME.test(name) || name === '.' || name === '..')) {
      r.fail(path, `${JSON.stringify(name)} is not a gateway name (1-63 letters, digits, ".", "_" or "-"; not "." or "..")`);
    }
    const accounts = readAccounts(r, raw, path);
    if (accounts) entries.push([name, Object.freeze(accounts)]);
  }
  // fromEntries defines own properties, so even a name such as "constructor" is looked up as data, not inherited.
  return Object.freeze(Object.fromEntries(entries));
}

function readMap(r: Reader, root: unknown): K8sAttestationMap | undefined {
  if (!isNode(root)) {
    r.fail(
      '',
      'must be a mapping with "services" and/or "gateways", each naming who may hold it, e.g. services: { weather: [mcp/weather] }',
    );
    return undefined;
  }
  r.onlyKeys(root, '', ['services', 'gateways']);
  const services = readSection(r, root, 'services');
  const gateways = readSection(r, root, 'gateways');
  const empty = (k: string): boolean => !isNode(root[k]) || Object.keys(root[k]).length === 0;
  if (empty('services') && empty('gateways')) r.fail('', 'maps no service and no gateway: every k8s-sat attestation would be refused');
  return { services, gateways };
}

/** Parses and checks an attestation mapping file. Throws ConfigError naming the file, each bad path and why. */
export function parseK8sAttestationMap(yamlText: string, sourceName: string): K8sAttestationMap {
  const doc = parseDocument(yamlText, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      sourceName,
      doc.errors.map((e) => ({
        path: `line ${e.linePos?.[0]?.line ?? '?'}, column ${e.linePos?.[0]?.col ?? '?'}`,
        reason: e.message.split('\n')[0] ?? e.code,
      })),
    );
  }
  const r = new Reader();
  const map = readMap(r, doc.toJS());
  if (r.problems.length > 0 || !map) throw new ConfigError(sourceName, r.problems);
  return map;
}

// --- the attestor -----------------------------------------------------------------------------------------

/** The fields of a TokenReview answer this attestor reads (authentication.k8s.io/v1 TokenReviewStatus). */
interface ReviewStatus {
  readonly authenticated: boolean;
  readonly error: string | undefined;
  readonly audiences: readonly string[] | undefined;
  readonly username: string | undefined;
  readonly podName: string | undefined;
}

type CallResult = { ok: true; status: ReviewStatus } | { ok: false; reason: string };

function stringList(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
}

/** `["a", "b"]` for reasons; JSON quoting keeps odd characters from an answer visible and harmless. */
function quoteList(list: readonly string[]): string {
  return `[${list.map((s) => JSON.stringify(s)).join(', ')}]`;
}

/** Names TLS verification failures as such: the operator's fix (caPem) differs from a network problem's. */
const TLS_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

function defaultApiServer(): string {
  const host = process.env['KUBERNETES_SERVICE_HOST'];
  const port = process.env['KUBERNETES_SERVICE_PORT'];
  if (!host || !port) {
    throw new Error(
      'KubernetesAttestor: no apiServer given and KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set (not running in a pod?)',
    );
  }
  // An IPv6 service address (single-stack IPv6 clusters) needs brackets in a URL.
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export class KubernetesAttestor implements Attestor {
  readonly method = K8S_SAT_METHOD;
  readonly apiServer: string;
  readonly audience: string;
  readonly timeoutMs: number;
  readonly #url: URL;
  readonly #caPem: string | undefined;
  readonly #token: () => string;
  readonly #mapping: K8sAttestationMap;

  constructor(opts: KubernetesAttestorOptions) {
    const inCluster = opts.apiServer === undefined;
    const apiServer = opts.apiServer ?? defaultApiServer();
    let url: URL;
    try {
      url = new URL(apiServer);
    } catch {
      throw new Error(`KubernetesAttestor: apiServer ${JSON.stringify(apiServer)} is not a URL`);
    }
    // Plain http would send both tokens in clear text and trust any answer.
    if (url.protocol !== 'https:') throw new Error(`KubernetesAttestor: apiServer ${JSON.stringify(apiServer)} must be an https:// URL`);
    this.#url = new URL(TOKENREVIEW_PATH, url);
    this.apiServer = url.origin;
    this.audience = opts.audience ?? DEFAULT_K8S_AUDIENCE;
    if (this.audience === '') throw new Error('KubernetesAttestor: audience must not be empty');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_K8S_TIMEOUT_MS;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs <= 0)
      throw new Error(`KubernetesAttestor: timeoutMs must be a positive integer (got ${opts.timeoutMs})`);
    this.#caPem = opts.caPem ?? (inCluster && existsSync(IN_CLUSTER_CA_FILE) ? readFileSync(IN_CLUSTER_CA_FILE, 'utf8') : undefined);
    this.#token = opts.token;
    // A mapping built in code gets the same checks as one read from a file.
    const r = new Reader();
    const mapping = readMap(r, opts.mapping);
    if (r.problems.length > 0 || !mapping) throw new ConfigError('KubernetesAttestor mapping', r.problems);
    this.#mapping = mapping;
  }

  describe(): string {
    const n = (m: Readonly<Record<string, readonly string[]>>): number => Object.keys(m).length;
    return (
      `${this.method}: TokenReview at ${this.apiServer} (${this.#caPem !== undefined ? 'CA from caPem' : "Node's default CAs"}), ` +
      `audience ${JSON.stringify(this.audience)}, ${n(this.#mapping.services)} service(s) and ${n(this.#mapping.gateways)} gateway(s) mapped, timeout ${this.timeoutMs} ms`
    );
  }

  async attest(credential: string, request: IdentityRequest): Promise<AttestationResult> {
    const refuse = (reason: string): AttestationResult => ({ ok: false, method: this.method, reason });
    const what = request.role === 'sidecar' ? 'service' : 'gateway';
    const table = request.role === 'sidecar' ? this.#mapping.services : this.#mapping.gateways;
    // Checked before the TokenReview: no API call (and no token sent anywhere) for an identity nobody may hold.
    if (!Object.hasOwn(table, request.name)) {
      return refuse(
        `${what} ${JSON.stringify(request.name)} is not mapped to any ServiceAccount (add it under "${what === 'service' ? 'services' : 'gateways'}" in the Kubernetes attestation mapping)`,
      );
    }
    const allowed = table[request.name] ?? [];
    const token = typeof credential === 'string' ? credential.trim() : '';
    if (token === '') return refuse('no ServiceAccount token was presented');

    const call = await this.#review(token);
    if (!call.ok) return refuse(call.reason);
    const st = call.status;
    if (!st.authenticated) {
      const err = st.error ?? '';
      // kube-apiserver reports an audience mismatch as an unauthenticated token (pkg/serviceaccount/jwt.go).
      if (err.includes('is invalid for the target audiences')) {
        return refuse(
          `wrong audience: the token was not issued for ${JSON.stringify(this.audience)} (the pod must mount a projected ServiceAccount token with audience ${JSON.stringify(this.audience)}); API server: ${err}`,
        );
      }
      return refuse(`the API server did not authenticate the token: ${err === '' ? '(no error given)' : err}`);
    }
    // An audience-aware server echoes the audience it matched; without it the token may be one for the API
    // server itself (a TokenReview client that sets spec.audiences must check this, per the API reference).
    if (!(st.audiences ?? []).includes(this.audience)) {
      return refuse(
        `wrong audience: the API server authenticated the token for audiences ${quoteList(st.audiences ?? [])}, not ${JSON.stringify(this.audience)}`,
      );
    }
    const username = st.username ?? '';
    const account = serviceAccountOf(username);
    if (!account)
      return refuse(
        `not a service account: the token belongs to ${JSON.stringify(username)}, not to a "${SA_USERNAME_PREFIX}<namespace>:<name>" user`,
      );
    if (!allowed.includes(account)) {
      return refuse(`ServiceAccount ${account} may not be ${what} ${request.name} (allowed: ${allowed.join(', ')})`);
    }
    return { ok: true, method: this.method, subject: st.podName ? `${account} pod=${st.podName}` : account };
  }

  /** One TokenReview call; says what went wrong instead of throwing. */
  async #review(workloadToken: string): Promise<CallResult> {
    let own: string;
    try {
      own = this.#token().trim();
    } catch (err) {
      return { ok: false, reason: `could not read the control plane's own token for the TokenReview call: ${(err as Error).message}` };
    }
    if (own === '') return { ok: false, reason: "the control plane's own token for the TokenReview call is empty" };
    const body = JSON.stringify({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token: workloadToken, audiences: [this.audience] },
    });
    const where = `API server ${this.apiServer}`;
    let res: { status: number; text: string };
    try {
      res = await this.#post(body, own);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ETIMEDOUT_TOKENREVIEW')
        return { ok: false, reason: `${where} timed out: no TokenReview answer within ${this.timeoutMs} ms` };
      if (e.code !== undefined && TLS_ERRORS.has(e.code)) {
        return { ok: false, reason: `${where} presented a certificate that is not trusted (${e.code}: ${e.message}); check caPem` };
      }
      // Node names the header, never its value, in this error; say what it means instead of "unreachable".
      if (e.code === 'ERR_INVALID_CHAR')
        return { ok: false, reason: "the control plane's own token contains characters an HTTP header cannot carry" };
      if (e.code === 'ECONNREFUSED') return { ok: false, reason: `${where} unreachable: connection refused` };
      return { ok: false, reason: `${where} unreachable: ${e.code ? `${e.code}: ` : ''}${e.message}` };
    }
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch {
      json = undefined;
    }
    if (res.status < 200 || res.status > 299) {
      // Errors come as a meta/v1 Status object whose `message` says why.
      const message = isNode(json) && typeof json['message'] === 'string' ? json['message'] : res.text.slice(0, 200);
      const hint =
        res.status === 401
          ? " (the API server refused the control plane's own credential)"
          : res.status === 403
            ? " (the control plane's ServiceAccount needs permission to create tokenreviews, e.g. ClusterRole system:auth-delegator)"
            : '';
      return { ok: false, reason: `${where} answered the TokenReview with HTTP ${res.status}: ${JSON.stringify(message)}${hint}` };
    }
    if (!isNode(json) || json['kind'] !== 'TokenReview')
      return { ok: false, reason: `${where} answered with something that is not a TokenReview (HTTP ${res.status})` };
    const status = isNode(json['status']) ? json['status'] : {};
    const user = isNode(status['user']) ? status['user'] : {};
    const extra = isNode(user['extra']) ? user['extra'] : {};
    const pod = stringList(extra[POD_NAME_EXTRA]);
    return {
      ok: true,
      status: {
        authenticated: status['authenticated'] === true,
        error: typeof status['error'] === 'string' ? status['error'] : undefined,
        audiences: stringList(status['audiences']),
        username: typeof user['username'] === 'string' ? user['username'] : undefined,
        podName: pod?.[0],
      },
    };
  }

  #post(body: string, bearer: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: Error | undefined, value?: { status: number; text: string }): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value as { status: number; text: string });
      };
      let req: ReturnType<typeof https.request>;
      try {
        req = https.request(
          this.#url,
          {
            method: 'POST',
            // No shared agent: attestations are rare, and idle keep-alive sockets would outlive their use.
            agent: false,
            ...(this.#caPem !== undefined ? { ca: this.#caPem } : {}),
            headers: {
              'content-type': 'application/json',
              accept: 'application/json',
              'content-length': Buffer.byteLength(body),
              authorization: `Bearer ${bearer}`,
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size > MAX_RESPONSE_BYTES) {
                req.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`));
                return;
              }
              chunks.push(c);
            });
            res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', (e) => finish(e));
          },
        );
      } catch (err) {
        // e.g. a token with characters a header cannot carry; Node's message names the header, not its value.
        reject(err as Error);
        return;
      }
      // One deadline for the whole exchange: a server that accepts the connection and then says nothing (or
      // stalls the TLS handshake) must not hold a CSR forever, whatever phase it stalls in.
      const timer = setTimeout(() => {
        const e: NodeJS.ErrnoException = new Error('timed out');
        e.code = 'ETIMEDOUT_TOKENREVIEW';
        finish(e);
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (e) => finish(e));
      req.end(body);
    });
  }
}

/** `namespace/name` of a ServiceAccount username (`system:serviceaccount:<ns>:<name>`), or undefined. */
export function serviceAccountOf(username: string): string | undefined {
  if (!username.startsWith(SA_USERNAME_PREFIX)) return undefined;
  // The same split as apiserver serviceaccount.SplitUsername: exactly two parts, each a valid name.
  const parts = username.slice(SA_USERNAME_PREFIX.length).split(':');
  if (parts.length !== 2) return undefined;
  const [ns, name] = parts as [string, string];
  if (namespaceProblem(ns) || serviceAccountProblem(name)) return undefined;
  return `${ns}/${name}`;
}
