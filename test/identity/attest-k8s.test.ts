// Kubernetes ServiceAccount-token attestation (`k8s-sat`) against the TokenReview stand-in
// (test/k8s-standin/tokenreview.ts) over real HTTPS, and the mapping file parser.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import {
  KubernetesAttestor,
  parseK8sAttestationMap,
  serviceAccountOf,
  type K8sAttestationMap,
  type KubernetesAttestorOptions,
} from '../../control-plane/src/identity/attest-k8s.ts';
import type { AttestationResult, IdentityRequest } from '../../control-plane/src/identity/attest.ts';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { ConfigError } from '../../control-plane/src/model/reader.ts';
import { makeTestPki } from '../helpers/tls.ts';
import { TokenReviewStandIn, TOKENREVIEW_PATH } from '../k8s-standin/tokenreview.ts';
import { INSTALL, skipUnless, toolGate } from '../helpers/tools.ts';

const TD = 'mesh.test';
const REVIEWER = 'reviewer-token-cp';
const KEY_HASH = 'ab'.repeat(32);

const MAPPING: K8sAttestationMap = {
  services: { weather: ['mcp/weather'], files: ['mcp/files', 'mcp/files-canary'] },
  gateways: { default: ['mcp-mesh/gateway'] },
};

const sidecar = (name: string): IdentityRequest => ({ spiffeId: sidecarId(TD, name), role: 'sidecar', name, keyHash: KEY_HASH });
const gateway = (name: string): IdentityRequest => ({ spiffeId: gatewayId(TD, name), role: 'gateway', name, keyHash: KEY_HASH });

/** The refusal's reason; fails unless refused, and if the reason repeats the credential. */
function refusal(result: AttestationResult, credential: string): string {
  assert.equal(result.ok, false, `expected a refusal, got ${JSON.stringify(result)}`);
  assert.equal(result.method, 'k8s-sat');
  const reason = (result as { reason: string }).reason;
  if (credential !== '') assert.ok(!reason.includes(credential), `the reason echoes the token: ${reason}`);
  assert.ok(!reason.includes(REVIEWER), `the reason echoes the control plane's token: ${reason}`);
  return reason;
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// The TokenReview stand-in's and these servers' certificates are made with the openssl CLI.
// Without it every test of the suites below is reported as skipped with the install command.
const openssl = toolGate(skipUnless('openssl', INSTALL.openssl));

describe('KubernetesAttestor against the TokenReview stand-in', () => {
  const api = openssl.setup(
    () =>
      new TokenReviewStandIn({
        reviewers: {
          [REVIEWER]: { username: 'system:serviceaccount:mcp-mesh:control-plane' },
          'reviewer-without-rbac': { username: 'system:serviceaccount:mcp-mesh:other', mayReview: false },
        },
        tokens: {
          'sat-weather': { username: 'system:serviceaccount:mcp:weather', audiences: ['mcpmesh'], podName: 'weather-7d9f-x2' },
          'sat-weather-nopod': { username: 'system:serviceaccount:mcp:weather', audiences: ['mcpmesh'] },
          'sat-files': { username: 'system:serviceaccount:mcp:files', audiences: ['mcpmesh'], podName: 'files-1' },
          'sat-gateway': { username: 'system:serviceaccount:mcp-mesh:gateway', audiences: ['mcpmesh'], podName: 'gw-0' },
          'sat-multi': { username: 'system:serviceaccount:mcp:files-canary', audiences: ['vault', 'mcpmesh'], podName: 'files-canary-0' },
          'sat-weather-api-aud': {
            username: 'system:serviceaccount:mcp:weather',
            audiences: ['https://kubernetes.default.svc.cluster.local'],
          },
          'sat-weather-legacy': { username: 'system:serviceaccount:mcp:weather', audiences: [] },
          'sat-weather-expired': { username: 'system:serviceaccount:mcp:weather', audiences: ['mcpmesh'], expired: true },
          'oidc-alice': { username: 'oidc:alice@example.com', audiences: ['mcpmesh'] },
          'node-token': { username: 'system:node:worker-1', audiences: ['mcpmesh'] },
        },
      }),
  );
  const attestor = (over: Partial<KubernetesAttestorOptions> = {}): KubernetesAttestor =>
    new KubernetesAttestor({ apiServer: api.url, caPem: api.caPem, token: () => REVIEWER, mapping: MAPPING, ...over });

  openssl.before(async () => {
    await api.start();
  });
  openssl.after(async () => {
    await api.stop();
  });

  openssl.it('accepts a mapped ServiceAccount, names it and its pod, and sends a well-formed TokenReview', async () => {
    const before = api.requests.length;
    const r = await attestor().attest('sat-weather', sidecar('weather'));
    assert.deepEqual(r, { ok: true, method: 'k8s-sat', subject: 'mcp/weather pod=weather-7d9f-x2' });
    assert.equal(api.requests.length, before + 1);
    const sent = api.requests.at(-1);
    assert.ok(sent);
    assert.equal(sent.method, 'POST');
    assert.equal(sent.path, TOKENREVIEW_PATH);
    assert.equal(sent.authorization, `Bearer ${REVIEWER}`);
    assert.equal(sent.contentType, 'application/json');
    assert.deepEqual(JSON.parse(sent.body), {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token: 'sat-weather', audiences: ['mcpmesh'] },
    });
  });

  openssl.it('accepts without a pod name when the token is not pod-bound, any of several mapped accounts, and gateways', async () => {
    const a = attestor();
    assert.deepEqual(await a.attest('sat-weather-nopod', sidecar('weather')), { ok: true, method: 'k8s-sat', subject: 'mcp/weather' });
    assert.deepEqual(await a.attest('sat-multi', sidecar('files')), {
      ok: true,
      method: 'k8s-sat',
      subject: 'mcp/files-canary pod=files-canary-0',
    });
    assert.deepEqual(await a.attest('sat-gateway', gateway('default')), {
      ok: true,
      method: 'k8s-sat',
      subject: 'mcp-mesh/gateway pod=gw-0',
    });
    // A projected token file ends without a newline, but one read with a trailing newline still works.
    assert.equal((await a.attest('sat-files\n', sidecar('files'))).ok, true);
  });

  openssl.it("refuses another service's identity, naming the account and who is allowed", async () => {
    const a = attestor();
    assert.equal(
      refusal(await a.attest('sat-files', sidecar('weather')), 'sat-files'),
      'ServiceAccount mcp/files may not be service weather (allowed: mcp/weather)',
    );
    assert.equal(
      refusal(await a.attest('sat-weather', sidecar('files')), 'sat-weather'),
      'ServiceAccount mcp/weather may not be service files (allowed: mcp/files, mcp/files-canary)',
    );
  });

  openssl.it('refuses a gateway identity for a service account, and a service identity for the gateway account', async () => {
    const a = attestor();
    assert.equal(
      refusal(await a.attest('sat-weather', gateway('default')), 'sat-weather'),
      'ServiceAccount mcp/weather may not be gateway default (allowed: mcp-mesh/gateway)',
    );
    assert.equal(
      refusal(await a.attest('sat-gateway', sidecar('weather')), 'sat-gateway'),
      'ServiceAccount mcp-mesh/gateway may not be service weather (allowed: mcp/weather)',
    );
  });

  openssl.it("refuses a token for another audience (the API server's own, and a legacy token without one)", async () => {
    const a = attestor();
    const reason = refusal(await a.attest('sat-weather-api-aud', sidecar('weather')), 'sat-weather-api-aud');
    assert.match(
      reason,
      /^wrong audience: the token was not issued for "mcpmesh" \(the pod must mount a projected ServiceAccount token with audience "mcpmesh"\); API server: /,
    );
    assert.match(
      reason,
      /token audiences \["https:\/\/kubernetes\.default\.svc\.cluster\.local"\] is invalid for the target audiences \["mcpmesh"\]/,
    );
    assert.match(refusal(await a.attest('sat-weather-legacy', sidecar('weather')), 'sat-weather-legacy'), /^wrong audience: /);
  });

  openssl.it('checks the audience option: a token for "mcpmesh" is refused by an attestor configured for another audience', async () => {
    const a = attestor({ audience: 'vault' });
    assert.match(
      refusal(await a.attest('sat-weather', sidecar('weather')), 'sat-weather'),
      /^wrong audience: the token was not issued for "vault"/,
    );
    assert.deepEqual(JSON.parse(api.requests.at(-1)?.body ?? '{}').spec.audiences, ['vault']);
    // sat-multi carries both audiences: fine for "vault" too.
    assert.equal((await a.attest('sat-multi', sidecar('files'))).ok, true);
  });

  openssl.it("refuses an expired token and an unknown token with the API server's error", async () => {
    const a = attestor();
    assert.equal(
      refusal(await a.attest('sat-weather-expired', sidecar('weather')), 'sat-weather-expired'),
      'the API server did not authenticate the token: [invalid bearer token, service account token has expired]',
    );
    assert.equal(
      refusal(await a.attest('made-up-token', sidecar('weather')), 'made-up-token'),
      'the API server did not authenticate the token: invalid bearer token',
    );
  });

  openssl.it('refuses tokens of users that are not ServiceAccounts', async () => {
    const a = attestor();
    assert.equal(
      refusal(await a.attest('oidc-alice', sidecar('weather')), 'oidc-alice'),
      'not a service account: the token belongs to "oidc:alice@example.com", not to a "system:serviceaccount:<namespace>:<name>" user',
    );
    assert.match(
      refusal(await a.attest('node-token', sidecar('weather')), 'node-token'),
      /^not a service account: the token belongs to "system:node:worker-1"/,
    );
  });

  openssl.it('refuses an identity that is not mapped at all without calling the API server', async () => {
    const a = attestor();
    const before = api.requests.length;
    assert.equal(
      refusal(await a.attest('sat-weather', sidecar('billing')), 'sat-weather'),
      'service "billing" is not mapped to any ServiceAccount (add it under "services" in the Kubernetes attestation mapping)',
    );
    assert.equal(
      refusal(await a.attest('sat-gateway', gateway('edge')), 'sat-gateway'),
      'gateway "edge" is not mapped to any ServiceAccount (add it under "gateways" in the Kubernetes attestation mapping)',
    );
    // Names of Object.prototype members are not "mapped" either.
    assert.match(refusal(await a.attest('sat-weather', sidecar('constructor')), 'sat-weather'), /^service "constructor" is not mapped/);
    assert.equal(api.requests.length, before);
  });

  openssl.it('refuses an empty credential without calling the API server', async () => {
    const before = api.requests.length;
    assert.equal(refusal(await attestor().attest('  ', sidecar('weather')), ''), 'no ServiceAccount token was presented');
    assert.equal(api.requests.length, before);
  });

  openssl.it("says so when the API server refuses the control plane's own credential (401) or its RBAC (403)", async () => {
    const r401 = refusal(await attestor({ token: () => 'stale-reviewer-token' }).attest('sat-weather', sidecar('weather')), 'sat-weather');
    assert.equal(
      r401,
      `API server ${api.url} answered the TokenReview with HTTP 401: "Unauthorized" (the API server refused the control plane's own credential)`,
    );
    assert.ok(!r401.includes('stale-reviewer-token'));
    const r403 = refusal(await attestor({ token: () => 'reviewer-without-rbac' }).attest('sat-weather', sidecar('weather')), 'sat-weather');
    assert.match(
      r403,
      /HTTP 403: "tokenreviews\.authentication\.k8s\.io is forbidden: User \\"system:serviceaccount:mcp-mesh:other\\" cannot create resource \\"tokenreviews\\"/,
    );
    assert.match(r403, /system:auth-delegator/);
  });

  openssl.it("re-reads the control plane's own token on every call (a rotated projected token is used at once)", async () => {
    let current = 'stale-reviewer-token';
    let reads = 0;
    const a = attestor({
      token: () => {
        reads++;
        return `${current}\n`;
      },
    });
    assert.match(refusal(await a.attest('sat-weather', sidecar('weather')), 'sat-weather'), /HTTP 401/);
    current = REVIEWER;
    assert.equal((await a.attest('sat-weather', sidecar('weather'))).ok, true);
    assert.equal(reads, 2);
    assert.equal(api.requests.at(-1)?.authorization, `Bearer ${REVIEWER}`);
  });

  openssl.it("refuses (does not throw) when the control plane's own token cannot be read or is empty", async () => {
    const unreadable = attestor({
      token: () => {
        throw new Error('ENOENT: no such file /var/run/secrets/kubernetes.io/serviceaccount/token');
      },
    });
    assert.match(
      refusal(await unreadable.attest('sat-weather', sidecar('weather')), 'sat-weather'),
      /^could not read the control plane's own token for the TokenReview call: ENOENT/,
    );
    assert.equal(
      refusal(await attestor({ token: () => '' }).attest('sat-weather', sidecar('weather')), 'sat-weather'),
      "the control plane's own token for the TokenReview call is empty",
    );
    assert.equal(
      refusal(await attestor({ token: () => 'bad\u0000token' }).attest('sat-weather', sidecar('weather')), 'sat-weather'),
      "the control plane's own token contains characters an HTTP header cannot carry",
    );
  });

  openssl.it('refuses when the API server is down (connection refused)', async () => {
    const port = await closedPort();
    const a = attestor({ apiServer: `https://127.0.0.1:${port}` });
    assert.equal(
      refusal(await a.attest('sat-weather', sidecar('weather')), 'sat-weather'),
      `API server https://127.0.0.1:${port} unreachable: connection refused`,
    );
  });

  openssl.it('times out on an API server that accepts the request and never answers', async () => {
    api.stall = true;
    try {
      const t0 = performance.now();
      const reason = refusal(await attestor({ timeoutMs: 300 }).attest('sat-weather', sidecar('weather')), 'sat-weather');
      const ms = performance.now() - t0;
      assert.equal(reason, `API server ${api.url} timed out: no TokenReview answer within 300 ms`);
      assert.ok(ms >= 250 && ms < 3000, `took ${ms} ms`);
    } finally {
      api.stall = false;
    }
  });

  openssl.it('times out on a server that accepts the connection and never starts TLS', async () => {
    const silent = net.createServer(() => {
      /* hold the socket, say nothing */
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const url = `https://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const t0 = performance.now();
      const reason = refusal(await attestor({ apiServer: url, timeoutMs: 300 }).attest('sat-weather', sidecar('weather')), 'sat-weather');
      const ms = performance.now() - t0;
      assert.equal(reason, `API server ${url} timed out: no TokenReview answer within 300 ms`);
      assert.ok(ms >= 250 && ms < 3000, `took ${ms} ms`);
    } finally {
      // close() stops listening; the attestor already destroyed its socket, so nothing is held open.
      silent.close();
    }
  });

  openssl.it('refuses an API server whose certificate is not trusted (another CA, or the default public roots)', async () => {
    const other = await CertificateAuthority.selfSigned({ trustDomain: 'other.test' });
    const before = api.requests.length;
    const wrongCa = refusal(await attestor({ caPem: other.bundlePem }).attest('sat-weather', sidecar('weather')), 'sat-weather');
    assert.match(
      wrongCa,
      new RegExp(
        `^API server ${api.url.replaceAll('.', '\\.')} presented a certificate that is not trusted \\([A-Z_]+: .+\\); check caPem$`,
      ),
    );
    const noCa = refusal(await attestor({ caPem: undefined }).attest('sat-weather', sidecar('weather')), 'sat-weather');
    assert.match(noCa, /presented a certificate that is not trusted/);
    // The token never reached the untrusted server's request handler.
    assert.equal(api.requests.length, before);
  });

  openssl.it('describes its configuration without secrets', () => {
    const d = attestor().describe();
    assert.equal(
      d,
      `k8s-sat: TokenReview at ${api.url} (CA from caPem), audience "mcpmesh", 2 service(s) and 1 gateway(s) mapped, timeout 5000 ms`,
    );
    assert.ok(!d.includes(REVIEWER));
  });
});

describe('KubernetesAttestor against servers that are not a proper TokenReview API', () => {
  const pki = openssl.setup(() => makeTestPki());
  const caPem = openssl.setup(() => readFileSync(pki.caFile, 'utf8'));
  let answer: { code: number; body: string } = { code: 201, body: '{}' };
  const server = openssl.setup(() =>
    https.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(answer.code, { 'content-type': 'application/json' });
        res.end(answer.body);
      });
    }),
  );
  let url = '';
  const attest = async (): Promise<string> =>
    refusal(
      await new KubernetesAttestor({ apiServer: url, caPem, token: () => REVIEWER, mapping: MAPPING }).attest(
        'wl-cred-7f3a',
        sidecar('weather'),
      ),
      'wl-cred-7f3a',
    );

  openssl.before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  openssl.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  openssl.it('refuses an authenticated answer that does not name our audience (an audience-unaware reviewer)', async () => {
    answer = {
      code: 201,
      body: JSON.stringify({
        kind: 'TokenReview',
        apiVersion: 'authentication.k8s.io/v1',
        status: { authenticated: true, user: { username: 'system:serviceaccount:mcp:weather' } },
      }),
    };
    assert.equal(await attest(), 'wrong audience: the API server authenticated the token for audiences [], not "mcpmesh"');
    answer = {
      code: 201,
      body: JSON.stringify({
        kind: 'TokenReview',
        status: { authenticated: true, audiences: ['other'], user: { username: 'system:serviceaccount:mcp:weather' } },
      }),
    };
    assert.equal(await attest(), 'wrong audience: the API server authenticated the token for audiences ["other"], not "mcpmesh"');
  });

  openssl.it('refuses a malformed ServiceAccount username', async () => {
    answer = {
      code: 201,
      body: JSON.stringify({
        kind: 'TokenReview',
        status: { authenticated: true, audiences: ['mcpmesh'], user: { username: 'system:serviceaccount:mcp:weather:extra' } },
      }),
    };
    assert.match(await attest(), /^not a service account: the token belongs to "system:serviceaccount:mcp:weather:extra"/);
  });

  openssl.it('refuses an answer that is not a TokenReview, and names HTTP errors with their body', async () => {
    answer = { code: 200, body: '{"kind":"Status"}' };
    assert.equal(await attest(), `API server ${url} answered with something that is not a TokenReview (HTTP 200)`);
    answer = {
      code: 500,
      body: JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        message: 'Internal error occurred: error validating audiences',
        reason: 'InternalError',
        code: 500,
      }),
    };
    assert.equal(
      await attest(),
      `API server ${url} answered the TokenReview with HTTP 500: "Internal error occurred: error validating audiences"`,
    );
    answer = { code: 502, body: 'bad gateway' };
    assert.equal(await attest(), `API server ${url} answered the TokenReview with HTTP 502: "bad gateway"`);
  });
});

describe('the TokenReview stand-in answers like the API server', () => {
  const api = openssl.setup(
    () =>
      new TokenReviewStandIn({
        reviewers: { [REVIEWER]: { username: 'system:serviceaccount:mcp-mesh:control-plane' } },
        tokens: {
          'sat-weather': {
            username: 'system:serviceaccount:mcp:weather',
            audiences: ['vault', 'mcpmesh'],
            podName: 'weather-0',
            uid: 'uid-1',
          },
          'sat-legacy': { username: 'system:serviceaccount:mcp:weather', audiences: [] },
        },
      }),
  );
  const post = (
    body: unknown,
    auth = `Bearer ${REVIEWER}`,
    path = TOKENREVIEW_PATH,
  ): Promise<{ code: number; json: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const req = https.request(
        `${api.url}${path}`,
        { method: 'POST', ca: api.caPem, agent: false, headers: { 'content-type': 'application/json', authorization: auth } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ code: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }),
          );
        },
      );
      req.on('error', reject);
      req.end(text);
    });
  const review = (token: string, audiences?: string[]): unknown => ({
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, ...(audiences ? { audiences } : {}) },
  });

  openssl.before(async () => {
    await api.start();
  });
  openssl.after(async () => {
    await api.stop();
  });

  openssl.it('authenticates: 201, spec echoed (token included), user with groups and pod extra, audiences = the intersection', async () => {
    const { code, json } = await post(review('sat-weather', ['mcpmesh', 'other']));
    assert.equal(code, 201);
    assert.equal(json['kind'], 'TokenReview');
    assert.equal(json['apiVersion'], 'authentication.k8s.io/v1');
    assert.deepEqual(json['spec'], { token: 'sat-weather', audiences: ['mcpmesh', 'other'] });
    const st = json['status'] as {
      authenticated: boolean;
      audiences: string[];
      user: { username: string; uid: string; groups: string[]; extra: Record<string, string[]> };
    };
    assert.equal(st.authenticated, true);
    assert.deepEqual(st.audiences, ['mcpmesh']);
    assert.equal(st.user.username, 'system:serviceaccount:mcp:weather');
    assert.equal(st.user.uid, 'uid-1');
    assert.deepEqual(st.user.groups, ['system:serviceaccounts', 'system:serviceaccounts:mcp', 'system:authenticated']);
    assert.deepEqual(st.user.extra['authentication.kubernetes.io/pod-name'], ['weather-0']);
    assert.equal(st.user.extra['authentication.kubernetes.io/pod-uid']?.length, 1);
    assert.match(st.user.extra['authentication.kubernetes.io/credential-id']?.[0] ?? '', /^JTI=/);
  });

  openssl.it(
    "without spec.audiences uses the API server's own audiences (a legacy token passes, an mcpmesh-only one does not)",
    async () => {
      const legacy = await post(review('sat-legacy'));
      assert.deepEqual((legacy.json['status'] as { audiences: string[] }).audiences, ['https://kubernetes.default.svc.cluster.local']);
      const scoped = await post(review('sat-weather'));
      assert.deepEqual(scoped.json['status'], {
        user: {},
        error:
          '[invalid bearer token, token audiences ["vault" "mcpmesh"] is invalid for the target audiences ["https://kubernetes.default.svc.cluster.local"]]',
      });
    },
  );

  openssl.it('answers unknown tokens unauthenticated (no "authenticated" field, empty user), and errors as meta/v1 Status', async () => {
    const unknown = await post(review('nope', ['mcpmesh']));
    assert.equal(unknown.code, 201);
    assert.deepEqual(unknown.json['status'], { user: {}, error: 'invalid bearer token' });
    const empty = await post(review('', ['mcpmesh']));
    assert.deepEqual(
      [empty.code, empty.json['reason'], empty.json['message']],
      [400, 'BadRequest', 'token is required for TokenReview in authentication'],
    );
    const noAuth = await post(review('sat-weather'), '');
    assert.deepEqual(noAuth.json, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'Unauthorized',
      reason: 'Unauthorized',
      code: 401,
    });
    assert.equal(noAuth.code, 401);
    const elsewhere = await post(review('sat-weather'), `Bearer ${REVIEWER}`, '/apis/authentication.k8s.io/v1/selfsubjectreviews');
    assert.deepEqual([elsewhere.code, elsewhere.json['reason']], [404, 'NotFound']);
  });
});

describe('KubernetesAttestor configuration', () => {
  const base = { token: () => 'x', mapping: MAPPING };

  it('defaults the API server from the in-cluster environment (IPv4 and IPv6)', () => {
    const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
    try {
      process.env['KUBERNETES_SERVICE_HOST'] = '10.96.0.1';
      process.env['KUBERNETES_SERVICE_PORT'] = '443';
      assert.equal(new KubernetesAttestor(base).apiServer, 'https://10.96.0.1');
      process.env['KUBERNETES_SERVICE_HOST'] = 'fd00:10:96::1';
      process.env['KUBERNETES_SERVICE_PORT'] = '6443';
      assert.equal(new KubernetesAttestor(base).apiServer, 'https://[fd00:10:96::1]:6443');
      delete process.env['KUBERNETES_SERVICE_HOST'];
      assert.throws(
        () => new KubernetesAttestor(base),
        /no apiServer given and KUBERNETES_SERVICE_HOST \/ KUBERNETES_SERVICE_PORT are not set/,
      );
    } finally {
      for (const [k, v] of [
        ['KUBERNETES_SERVICE_HOST', saved.host],
        ['KUBERNETES_SERVICE_PORT', saved.port],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('refuses a plain-http or malformed API server URL, a bad timeout and an empty audience', () => {
    assert.throws(() => new KubernetesAttestor({ ...base, apiServer: 'http://10.0.0.1:6443' }), /must be an https:\/\/ URL/);
    assert.throws(() => new KubernetesAttestor({ ...base, apiServer: 'kubernetes:443' }), /must be an https:\/\/ URL|is not a URL/);
    assert.throws(() => new KubernetesAttestor({ ...base, apiServer: '::nope' }), /is not a URL/);
    assert.throws(() => new KubernetesAttestor({ ...base, apiServer: 'https://k', timeoutMs: 0 }), /timeoutMs must be a positive integer/);
    assert.throws(() => new KubernetesAttestor({ ...base, apiServer: 'https://k', audience: '' }), /audience must not be empty/);
  });

  it('checks a mapping given in code like one read from a file', () => {
    assert.throws(
      () => new KubernetesAttestor({ ...base, apiServer: 'https://k', mapping: { services: { weather: ['mcp:weather'] }, gateways: {} } }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems[0]?.path === 'services.weather[0]' && /exactly one "\/"/.test(err.problems[0].reason),
    );
  });

  it('splits ServiceAccount usernames as the API server does', () => {
    assert.equal(serviceAccountOf('system:serviceaccount:mcp:weather'), 'mcp/weather');
    assert.equal(serviceAccountOf('system:serviceaccount:mcp:weather.v2'), 'mcp/weather.v2');
    for (const u of [
      'system:serviceaccount:mcp',
      'system:serviceaccount:mcp:a:b',
      'system:serviceaccount::weather',
      'system:serviceaccount:MCP:weather',
      'system:serviceaccounts:mcp',
      'alice',
    ]) {
      assert.equal(serviceAccountOf(u), undefined, u);
    }
  });
});

/** The problems of a bad mapping file, as "path: reason" lines. */
function problems(yaml: string): string[] {
  try {
    parseK8sAttestationMap(yaml, '/etc/mcpmesh/k8s-attestation.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.source, '/etc/mcpmesh/k8s-attestation.yaml');
    assert.match(err.message, /^\/etc\/mcpmesh\/k8s-attestation\.yaml: \d+ problem\(s\):\n/);
    return err.problems.map((p) => `${p.path}: ${p.reason}`);
  }
  assert.fail('expected the mapping to be refused');
}

describe('parseK8sAttestationMap', () => {
  it('reads services and gateways, each with one or more namespace/serviceaccount', () => {
    const m = parseK8sAttestationMap(
      `
services:
  weather: [mcp/weather]          # namespace/serviceaccount, one or more
  files:
    - mcp/files
    - mcp-canary/files.v2
gateways:
  default: [mcp-mesh/gateway]
  Edge_1.eu: [edge/gateway]
`,
      'k8s.yaml',
    );
    assert.deepEqual(m, {
      services: { weather: ['mcp/weather'], files: ['mcp/files', 'mcp-canary/files.v2'] },
      gateways: { default: ['mcp-mesh/gateway'], 'Edge_1.eu': ['edge/gateway'] },
    });
    assert.deepEqual(parseK8sAttestationMap('gateways: { default: [mcp-mesh/gateway] }', 'k8s.yaml'), {
      services: {},
      gateways: { default: ['mcp-mesh/gateway'] },
    });
    const longNs = 'n'.repeat(63);
    const longSa = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(longSa.length, 253);
    assert.deepEqual(parseK8sAttestationMap(`services: { weather: ["${longNs}/${longSa}"] }`, 'k8s.yaml').services['weather'], [
      `${longNs}/${longSa}`,
    ]);
  });

  it('refuses namespace/serviceaccount entries that break the Kubernetes name rules', () => {
    const label =
      'is not a DNS-1123 label (lower-case letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)';
    const subdomain =
      'is not a DNS-1123 subdomain (lower-case letters, digits, "-" and ".", each dot-separated part starting and ending with a letter or digit, at most 253 characters)';
    assert.deepEqual(
      problems(`
services:
  weather: [MCP/weather, mcp/we_ather, weather, mcp/a/b, /weather, "mcp/", -mcp/weather, mcp/weather-, mcp/a..b, "${'n'.repeat(64)}/x", "mcp/${'s'.repeat(254)}"]
`),
      [
        `services.weather[0]: "MCP/weather": namespace "MCP" ${label}`,
        `services.weather[1]: "mcp/we_ather": ServiceAccount name "we_ather" ${subdomain}`,
        'services.weather[2]: "weather" is not "namespace/serviceaccount" (exactly one "/")',
        'services.weather[3]: "mcp/a/b" is not "namespace/serviceaccount" (exactly one "/")',
        'services.weather[4]: "/weather": the namespace is empty',
        'services.weather[5]: "mcp/": the ServiceAccount name is empty',
        `services.weather[6]: "-mcp/weather": namespace "-mcp" ${label}`,
        `services.weather[7]: "mcp/weather-": ServiceAccount name "weather-" ${subdomain}`,
        `services.weather[8]: "mcp/a..b": ServiceAccount name "a..b" ${subdomain}`,
        `services.weather[9]: "${'n'.repeat(64)}/x": namespace "${'n'.repeat(64)}" ${label}`,
        `services.weather[10]: "mcp/${'s'.repeat(254)}": ServiceAccount name "${'s'.repeat(254)}" ${subdomain}`,
      ],
    );
  });

  it('refuses entries that are not strings, scalars instead of lists, empty lists and duplicates', () => {
    assert.deepEqual(
      problems(`
services:
  weather: mcp/weather
  files: []
  notes: [5, mcp/notes, mcp/notes]
  empty:
`),
      [
        'services.weather: must be a list of "namespace/serviceaccount" strings, e.g. [mcp/weather] (got "mcp/weather")',
        'services.files: must list at least one "namespace/serviceaccount", e.g. [mcp/weather]',
        'services.notes[0]: must be a "namespace/serviceaccount" string (got 5)',
        'services.notes[2]: "mcp/notes" is listed twice (also at services.notes[1])',
        'services.empty: must be a list of "namespace/serviceaccount" strings, e.g. [mcp/weather] (got null)',
      ],
    );
  });

  it('refuses service names that are not DNS labels and bad gateway names', () => {
    assert.deepEqual(
      problems(`
services:
  Weather: [mcp/weather]
  weather_api: [mcp/weather]
  -weather: [mcp/weather]
  ${'w'.repeat(64)}: [mcp/weather]
gateways:
  "..": [mcp-mesh/gateway]
  "edge 1": [mcp-mesh/gateway]
`),
      [
        'services.Weather: "Weather" is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)',
        'services.weather_api: "weather_api" is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)',
        'services.-weather: "-weather" is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)',
        `services.${'w'.repeat(64)}: "${'w'.repeat(64)}" is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)`,
        'gateways...: ".." is not a gateway name (1-63 letters, digits, ".", "_" or "-"; not "." or "..")',
        'gateways.edge 1: "edge 1" is not a gateway name (1-63 letters, digits, ".", "_" or "-"; not "." or "..")',
      ],
    );
  });

  it('refuses unknown keys, wrong shapes and a mapping that maps nothing', () => {
    assert.deepEqual(problems('service:\n  weather: [mcp/weather]\n'), [
      'service: unknown field (expected one of: services, gateways)',
      ': maps no service and no gateway: every k8s-sat attestation would be refused',
    ]);
    assert.deepEqual(problems('services: [mcp/weather]\ngateways: { default: [mcp-mesh/gateway] }\n'), ['services: must be a mapping']);
    assert.deepEqual(problems('services: {}\n'), [': maps no service and no gateway: every k8s-sat attestation would be refused']);
    assert.deepEqual(problems(''), [
      ': must be a mapping with "services" and/or "gateways", each naming who may hold it, e.g. services: { weather: [mcp/weather] }',
    ]);
    assert.deepEqual(problems('- mcp/weather\n'), [
      ': must be a mapping with "services" and/or "gateways", each naming who may hold it, e.g. services: { weather: [mcp/weather] }',
    ]);
  });

  it('reports YAML errors (syntax, duplicate keys) with line and column', () => {
    const dup = problems('services:\n  weather: [mcp/weather]\n  weather: [mcp/other]\n');
    assert.equal(dup.length, 1);
    assert.match(dup[0] ?? '', /^line 3, column 3: Map keys must be unique/);
    const syntax = problems('services:\n  weather: [mcp/weather\n');
    assert.ok(syntax.length >= 1);
    assert.match(syntax[0] ?? '', /^line \d+, column \d+: /);
  });

  it('collects every problem of a file in one error that names the file', () => {
    try {
      parseK8sAttestationMap('services:\n  Weather: [mcp/weather]\n  files: [bad]\nextra: 1\n', '/etc/k8s.yaml');
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 3);
      assert.match(err.message, /^\/etc\/k8s\.yaml: 3 problem\(s\):\n {2}extra: unknown field/);
    }
  });
});
