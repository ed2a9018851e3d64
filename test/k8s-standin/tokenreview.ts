// KUBERNETES TOKENREVIEW API STAND-IN FOR TESTS. Not a Kubernetes API server, and not for production.
//
// No Kubernetes cluster runs where these tests run, so this is a small in-process HTTPS server answering the
// one call the control plane's `k8s-sat` attestor (control-plane/src/identity/attest-k8s.ts) makes:
//
//   POST /apis/authentication.k8s.io/v1/tokenreviews
//
// Sources read to make it faithful:
// - API reference, https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-review-v1/
//   (TokenReviewSpec {token, audiences}; TokenReviewStatus {authenticated, user, audiences, error}; "a client
//   that sets spec.audiences should validate that a compatible audience identifier is returned in
//   status.audiences"; status.audiences is "the intersection of the TokenReviewSpec audiences and the token's
//   audiences"; with no spec.audiences the API server's own audiences apply).
// - kube-apiserver pkg/registry/authentication/tokenreview/storage.go: an empty spec.token is a 400 BadRequest
//   "token is required for TokenReview in authentication"; with spec.audiences empty the API server's audiences
//   are used; status.authenticated = ok; status.error = the authenticator's error; status.user and
//   status.audiences are set only for an authenticated token; the object is returned as posted, so spec
//   (spec.token included) is echoed back. Created objects are answered 201.
// - pkg/serviceaccount/jwt.go: a token whose audiences do not intersect the requested ones is not
//   authenticated, with error `token audiences ["x"] is invalid for the target audiences ["y"]` (Go %q of a
//   []string: quoted, space-separated); a token without audiences (legacy) counts as one for the API server.
//   The audience check comes before the expiry check (claims.go: "service account token has expired").
// - staging/src/k8s.io/apiserver/pkg/authentication/serviceaccount/util.go: username
//   `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts` and `system:serviceaccounts:<ns>`,
//   user.extra `authentication.kubernetes.io/pod-name` / `pod-uid` for pod-bound tokens, `credential-id`
//   `JTI=<jti>`. The authenticated group `system:authenticated` is added by the API server's authenticator chain.
// - request/bearertoken/bearertoken.go: a token no authenticator recognises fails with "invalid bearer token".
//   Real servers join the errors of all their token authenticators, e.g. the logged
//   `[invalid bearer token, service account token has expired]` and
//   `[invalid bearer token, token audiences ["..."] is invalid for the target audiences ["..."]]`; this
//   stand-in uses those two shapes, and plain "invalid bearer token" for a token it does not know.
// - The caller's own credential: no or an unknown bearer token is answered 401 with a meta/v1 Status
//   {status: Failure, message: Unauthorized, reason: Unauthorized, code: 401}; a known caller without RBAC
//   permission gets 403 Forbidden `tokenreviews.authentication.k8s.io is forbidden: User "..." cannot create
//   resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope`.
//
// What it does NOT do: no JWTs (tokens are opaque strings looked up in a table, so signature, issuer, not-before
// and bound-object checks are reduced to the table's `expired` flag and presence), no other API paths (404
// Status), no other verbs (405), no webhook or OIDC authenticators, no caching, no audit, no
// managedFields/dry-run/fieldManager handling, no protobuf or YAML bodies, no apiVersion conversion (v1 only).
// `stall` makes it accept requests and never answer, to test client timeouts.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { makeTestPki } from '../helpers/tls.ts';

export const TOKENREVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
/** kube-apiserver's default --api-audiences (the service account issuer) on most distributions. */
export const DEFAULT_API_AUDIENCES = ['https://kubernetes.default.svc.cluster.local'];

/** What the "cluster" knows about one workload token. */
export interface StandInToken {
  /** `system:serviceaccount:<ns>:<name>` for a ServiceAccount token; anything else for other users. */
  readonly username: string;
  /** The token's `aud` claim; empty for a legacy token (valid for the API server's audiences only). */
  readonly audiences: readonly string[];
  readonly podName?: string;
  readonly expired?: boolean;
  readonly uid?: string;
}

/** A bearer credential the stand-in accepts for the TokenReview call itself. */
export interface StandInReviewer {
  readonly username: string;
  /** RBAC: may create tokenreviews (e.g. bound to system:auth-delegator). Default true. */
  readonly mayReview?: boolean;
}

export interface TokenReviewStandInOptions {
  readonly tokens?: Record<string, StandInToken>;
  readonly reviewers?: Record<string, StandInReviewer>;
  readonly apiAudiences?: readonly string[];
  /** TLS material; default a throwaway CA and a server certificate for 127.0.0.1 / localhost. */
  readonly tls?: { readonly certPem: string; readonly keyPem: string; readonly caPem: string };
}

/** One request as the stand-in received it (for tests to check what a client sent). */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

/** Go's %q of a []string: `["a" "b"]`. JSON quoting matches Go's for the ASCII names used here. */
function goQuoteList(list: readonly string[]): string {
  return `[${list.map((s) => JSON.stringify(s)).join(' ')}]`;
}

function status(code: number, reason: string, message: string, details?: { [k: string]: Json }): { [k: string]: Json } {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

export class TokenReviewStandIn {
  readonly tokens = new Map<string, StandInToken>();
  readonly reviewers = new Map<string, StandInReviewer>();
  readonly apiAudiences: readonly string[];
  readonly requests: RecordedRequest[] = [];
  /** When true, requests are read and never answered. */
  stall = false;
  readonly caPem: string;
  readonly #server: https.Server;
  #url = '';

  constructor(opts: TokenReviewStandInOptions = {}) {
    for (const [t, v] of Object.entries(opts.tokens ?? {})) this.tokens.set(t, v);
    for (const [t, v] of Object.entries(opts.reviewers ?? {})) this.reviewers.set(t, v);
    this.apiAudiences = opts.apiAudiences ?? DEFAULT_API_AUDIENCES;
    let tls = opts.tls;
    if (!tls) {
      const pki = makeTestPki();
      tls = {
        certPem: readFileSync(pki.serverCert, 'utf8'),
        keyPem: readFileSync(pki.serverKey, 'utf8'),
        caPem: readFileSync(pki.caFile, 'utf8'),
      };
    }
    this.caPem = tls.caPem;
    this.#server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        this.requests.push({
          method: req.method ?? '',
          path,
          authorization: req.headers.authorization,
          contentType: req.headers['content-type'],
          body,
        });
        if (this.stall) return;
        const [code, answer] = this.#handle(req.method ?? '', path, req.headers.authorization, body);
        const text = JSON.stringify(answer);
        res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'audit-id': randomUUID() });
        res.end(text);
      });
    });
  }

  /** https://127.0.0.1:<port> once started. */
  get url(): string {
    return this.#url;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#url = `https://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.#url;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(method: string, path: string, authorization: string | undefined, body: string): [number, { [k: string]: Json }] {
    // Authentication of the caller comes first on a real API server, before routing.
    const m = /^bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    const reviewer = m ? this.reviewers.get(m[1] as string) : undefined;
    if (!reviewer) return [401, status(401, 'Unauthorized', 'Unauthorized')];
    if (path !== TOKENREVIEW_PATH) return [404, status(404, 'NotFound', 'the server could not find the requested resource')];
    if (method !== 'POST') return [405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`)];
    if (reviewer.mayReview === false) {
      return [
        403,
        status(
          403,
          'Forbidden',
          `tokenreviews.authentication.k8s.io is forbidden: User "${reviewer.username}" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope`,
          { group: 'authentication.k8s.io', kind: 'tokenreviews' },
        ),
      ];
    }
    let posted: unknown;
    try {
      posted = JSON.parse(body);
    } catch (err) {
      return [400, status(400, 'BadRequest', `the body of the request was in an unknown format: ${(err as Error).message}`)];
    }
    if (typeof posted !== 'object' || posted === null || Array.isArray(posted))
      return [400, status(400, 'BadRequest', 'the body of the request is not an object')];
    const obj = posted as Record<string, unknown>;
    if (obj['kind'] !== undefined && obj['kind'] !== 'TokenReview')
      return [400, status(400, 'BadRequest', `kind ${JSON.stringify(obj['kind'])} is not TokenReview`)];
    if (obj['apiVersion'] !== undefined && obj['apiVersion'] !== 'authentication.k8s.io/v1') {
      return [
        400,
        status(
          400,
          'BadRequest',
          `the API version in the data (${String(obj['apiVersion'])}) does not match the expected API version (authentication.k8s.io/v1)`,
        ),
      ];
    }
    const spec = typeof obj['spec'] === 'object' && obj['spec'] !== null ? (obj['spec'] as Record<string, unknown>) : {};
    const token = typeof spec['token'] === 'string' ? spec['token'] : '';
    const specAudiences = Array.isArray(spec['audiences']) ? spec['audiences'].filter((a): a is string => typeof a === 'string') : [];
    if (token === '') return [400, status(400, 'BadRequest', 'token is required for TokenReview in authentication')];

    const echoSpec: { [k: string]: Json } = { token, ...(specAudiences.length > 0 ? { audiences: specAudiences } : {}) };
    const review = (st: { [k: string]: Json }): [number, { [k: string]: Json }] => [
      201,
      { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: echoSpec, status: st },
    ];
    // Go omits `authenticated: false` (omitempty) but not the empty user struct.
    const refused = (error: string): [number, { [k: string]: Json }] => review({ user: {}, error });

    const known = this.tokens.get(token);
    if (!known) return refused('invalid bearer token');
    const requested = specAudiences.length > 0 ? specAudiences : [...this.apiAudiences];
    const tokenAudiences = known.audiences.length > 0 ? known.audiences : this.apiAudiences;
    const audiences = tokenAudiences.filter((a) => requested.includes(a));
    if (audiences.length === 0) {
      return refused(
        `[invalid bearer token, token audiences ${goQuoteList(tokenAudiences)} is invalid for the target audiences ${goQuoteList(requested)}]`,
      );
    }
    if (known.expired) return refused('[invalid bearer token, service account token has expired]');

    const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(known.username);
    const groups: Json[] = sa
      ? ['system:serviceaccounts', `system:serviceaccounts:${sa[1]}`, 'system:authenticated']
      : ['system:authenticated'];
    const extra: { [k: string]: Json } = {};
    if (sa && known.podName) {
      extra['authentication.kubernetes.io/pod-name'] = [known.podName];
      extra['authentication.kubernetes.io/pod-uid'] = [randomUUID()];
    }
    if (sa) extra['authentication.kubernetes.io/credential-id'] = [`JTI=${randomUUID()}`];
    return review({
      authenticated: true,
      user: { username: known.username, uid: known.uid ?? randomUUID(), groups, ...(Object.keys(extra).length > 0 ? { extra } : {}) },
      audiences,
    });
  }
}
