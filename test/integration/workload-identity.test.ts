// Workload identity, tried as an attacker would, against a real secured control plane over real TLS:
// - the xDS port speaks TLS and requires a workload certificate: an unauthenticated client claiming any
//   sidecar or gateway gets no config and no secret;
// - a proxy holding weather's certificate that claims billing is refused, naming the mismatch;
// - the CA signs a CSR only with a credential for exactly that identity (join tokens: wrong identity, expired,
//   replayed with another key, forged, mistyped all refused) or with the current certificate (renewal);
// - the agent makes its key itself, serves it to Envoy over SDS on a Unix socket, renews at half-life with
//   the old certificate still valid, and an mTLS connection opened before the renewal keeps working;
// - nothing the control plane sends contains a private key.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { JoinTokens } from '../../control-plane/src/identity/join-token.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import type { MeshSecurity } from '../../control-plane/src/model/types.ts';
import { lookupType, TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { newKeyAndCsr, WorkloadIdentity, type Held } from '../../sidecar/src/identity.ts';
import { SdsServer } from '../../sidecar/src/sds-server.ts';
import { decodeResources, node, RawAdsClient, type AdsStream, type Msg } from '../helpers/ads-client.ts';

const TD = 'mesh.test';
const WEATHER = `spiffe://${TD}/mcp/weather`;
const BILLING = `spiffe://${TD}/mcp/billing`;
const SECURITY: MeshSecurity = {
  publicUrl: 'https://mcp.example.com',
  authz: { host: '127.0.0.1', port: 18002 },
  policy: { trustDomain: TD, roleClaim: 'roles', providers: [], roles: [], services: [] },
};
const quiet = (): void => {};

/** A TLS channel to the control plane that trusts its bundle; with a client certificate when given. */
function tls(bundlePem: string, held?: Held): grpc.ChannelCredentials {
  return held
    ? grpc.credentials.createSsl(Buffer.from(bundlePem), Buffer.from(held.keyPem), Buffer.from(held.certChainPem), {
        checkServerIdentity: () => undefined,
      })
    : grpc.credentials.createSsl(Buffer.from(bundlePem), null, null, { checkServerIdentity: () => undefined });
}

/** The first response of `kind`, or the stream's error. */
async function firstOrError(s: AdsStream, kind: 'listener' | 'secret'): Promise<{ resp?: Msg; error?: grpc.ServiceError }> {
  try {
    return { resp: await s.next(kind, 5_000) };
  } catch {
    return s.error ? { error: s.error } : {};
  }
}

interface SignCall {
  csr_pem: string;
  spiffe_id: string;
  credential_type: string;
  credential: string;
}

/** One raw Sign call, as an attacker would make it. */
function sign(
  target: string,
  creds: grpc.ChannelCredentials,
  req: SignCall,
): Promise<{ ok: true; chain: string } | { ok: false; code: number; details: string }> {
  const reqT = lookupType('mcpmesh.identity.v1.SignRequest');
  const resT = lookupType('mcpmesh.identity.v1.SignResponse');
  const client = new grpc.Client(target, creds);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/mcpmesh.identity.v1.Identity/Sign',
      (v: object) => Buffer.from(reqT.encode(reqT.fromObject(v)).finish()),
      (b: Buffer) => resT.toObject(resT.decode(b)) as { cert_chain_pem: string },
      req,
      (err, res) => {
        client.close();
        resolve(
          err
            ? { ok: false, code: err.code, details: err.details }
            : { ok: true, chain: (res as { cert_chain_pem: string }).cert_chain_pem },
        );
      },
    );
  });
}

describe('workload identity: keys born beside the workload, attested CSRs, authenticated xDS', () => {
  let cp: ControlPlane;
  let target: string;
  let bundle: string;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-wid-'));
  const agents: WorkloadIdentity[] = [];
  const clients: RawAdsClient[] = [];

  const agent = async (
    spiffeId: string,
    extra: Partial<ConstructorParameters<typeof WorkloadIdentity>[0]> = {},
  ): Promise<WorkloadIdentity> => {
    const { token } = await cp.mintJoinToken(spiffeId);
    const a = new WorkloadIdentity({
      controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
      credential: { type: 'join-token', token },
      log: quiet,
      ...extra,
    });
    agents.push(a);
    return a;
  };
  const ads = (creds: grpc.ChannelCredentials): RawAdsClient => {
    const c = new RawAdsClient(target, {}, creds);
    clients.push(c);
    return c;
  };

  before(async () => {
    writeFileSync(
      path.join(dir, 'r.yaml'),
      'services:\n  - { name: weather, protocol: "2025-11-25", sidecar: true, endpoints: [] }\n  - { name: billing, protocol: "2025-11-25", endpoints: [] }\n',
    );
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      security: SECURITY,
      certTtlMs: 4_000,
    }).start();
    target = `127.0.0.1:${cp.xdsPort}`;
    const w = await agent(WEATHER);
    bundle = (await w.start()).bundlePem;
  });
  after(async () => {
    for (const a of agents) a.stop();
    for (const c of clients) c.close();
    await cp?.stop();
  });

  it('an unauthenticated client (TLS, no certificate) claiming a sidecar or a gateway gets no config and no secret', async () => {
    const c = ads(tls(bundle));
    const claims: Array<[string, Record<string, string | number>]> = [
      ['sc', { role: 'sidecar', service: 'weather', app_port: 7001 }],
      ['gw', { role: 'gateway' }],
    ];
    for (const [id, md] of claims) {
      const s = c.sotw();
      s.send({ type_url: TYPE_URLS.listener, node: node(id, md) });
      const got = await firstOrError(s, 'listener');
      assert.equal(got.resp, undefined, 'no configuration');
      assert.equal(got.error?.code, grpc.status.UNAUTHENTICATED, got.error?.details);
      assert.match(got.error?.details ?? '', /requires mTLS/);
    }
  });

  it('a plaintext client gets nothing at all (the port speaks TLS)', async () => {
    const s = ads(grpc.credentials.createInsecure()).sotw();
    s.send({
      type_url: TYPE_URLS.secret,
      resource_names: ['mcpmesh.trust'],
      node: node('sc', { role: 'sidecar', service: 'weather', app_port: 7001 }),
    });
    const got = await firstOrError(s, 'secret');
    assert.equal(got.resp, undefined);
    assert.equal(got.error?.code, grpc.status.UNAVAILABLE);
  });

  it("a proxy with weather's certificate gets weather's config and the trust bundle, never a private key", async () => {
    const held = agents[0]?.current as Held;
    const s = ads(tls(bundle, held)).sotw();
    s.send({
      type_url: TYPE_URLS.secret,
      resource_names: ['mcpmesh.trust', 'mcpmesh.identity'],
      node: node('sc-w', { role: 'sidecar', service: 'weather', app_port: 7001 }),
    });
    const resp = await s.next('secret', 5_000);
    const secrets = decodeResources(resp);
    assert.deepEqual(
      secrets.map((x) => x['name']),
      ['mcpmesh.trust'],
      "only the trust bundle: the identity is the agent's",
    );
    assert.ok(!JSON.stringify(secrets).includes('PRIVATE KEY'));
    s.send({ type_url: TYPE_URLS.listener, node: node('sc-w', { role: 'sidecar', service: 'weather', app_port: 7001 }) });
    const listeners = decodeResources(await s.next('listener', 5_000));
    assert.equal(listeners[0]?.['name'], 'sidecar.inbound');
    assert.ok(!JSON.stringify(listeners).includes('PRIVATE KEY'));
    s.close();
  });

  it("a proxy holding weather's certificate that claims billing (or a gateway) is refused, naming the mismatch", async () => {
    const held = agents[0]?.current as Held;
    const c = ads(tls(bundle, held));
    const lies: Array<Record<string, string | number>> = [{ role: 'sidecar', service: 'billing', app_port: 7001 }, { role: 'gateway' }];
    for (const md of lies) {
      const s = c.sotw();
      s.send({ type_url: TYPE_URLS.listener, node: node('liar', md) });
      const got = await firstOrError(s, 'listener');
      assert.equal(got.resp, undefined);
      assert.equal(got.error?.code, grpc.status.PERMISSION_DENIED);
      assert.match(
        got.error?.details ?? '',
        new RegExp(`node "liar" claims role ${md.role}.*but its certificate is ${WEATHER.replaceAll('/', '\\/')}`),
      );
    }
  });

  it("the CA refuses a CSR for billing with weather's token, an expired, replayed, forged or mistyped token, and a renewal without the identity", async () => {
    const { csrPem } = await newKeyAndCsr(BILLING);
    const anon = tls(bundle);
    const refused = async (req: Partial<SignCall>, creds: grpc.ChannelCredentials, code: number, why: RegExp): Promise<void> => {
      const r = await sign(target, creds, { csr_pem: csrPem, spiffe_id: BILLING, credential_type: 'join-token', credential: '', ...req });
      assert.equal(r.ok, false, `signed: ${JSON.stringify(req).slice(0, 120)}`);
      if (!r.ok) {
        assert.equal(r.code, code, r.details);
        assert.match(r.details, why);
      }
    };
    const weatherToken = (await cp.mintJoinToken(WEATHER)).token;
    await refused(
      { credential: weatherToken },
      anon,
      grpc.status.PERMISSION_DENIED,
      /the join token is for spiffe:\/\/mesh\.test\/mcp\/weather, not spiffe:\/\/mesh\.test\/mcp\/billing/,
    );

    const short = await cp.mintJoinToken(BILLING, 1_000);
    await new Promise((r) => setTimeout(r, 7_000)); // past exp and the verifier's 5 s clock tolerance
    await refused({ credential: short.token }, anon, grpc.status.PERMISSION_DENIED, /has expired/);

    const once = (await cp.mintJoinToken(BILLING)).token;
    const first = await sign(target, anon, { csr_pem: csrPem, spiffe_id: BILLING, credential_type: 'join-token', credential: once });
    assert.ok(first.ok, 'the first use signs');
    const again = await sign(target, anon, { csr_pem: csrPem, spiffe_id: BILLING, credential_type: 'join-token', credential: once });
    assert.ok(again.ok, 'a retry with the same key (a lost answer) signs again');
    const other = await newKeyAndCsr(BILLING);
    await refused({ csr_pem: other.csrPem, credential: once }, anon, grpc.status.PERMISSION_DENIED, /already used, for another key/);

    const foreign = await CertificateAuthority.selfSigned({ trustDomain: TD });
    const forged = (await new JoinTokens(foreign).mint(BILLING)).token;
    await refused({ credential: forged }, anon, grpc.status.PERMISSION_DENIED, /not signed by this mesh's CA/);
    const mistyped = await foreign.signJwt({ sub: BILLING, aud: 'mcpmesh-join', exp: Math.floor(Date.now() / 1000) + 60, jti: 'x' }, 'JWT');
    await refused({ credential: mistyped }, anon, grpc.status.PERMISSION_DENIED, /join-token: /);
    await refused({ credential: 'not.a.jwt' }, anon, grpc.status.PERMISSION_DENIED, /not valid/);

    await refused(
      { credential_type: '' },
      anon,
      grpc.status.PERMISSION_DENIED,
      /renewal: it needs the current certificate of spiffe:\/\/mesh\.test\/mcp\/billing on this connection \(presented: no client certificate\)/,
    );
    await refused(
      { credential_type: '' },
      tls(bundle, agents[0]?.current),
      grpc.status.PERMISSION_DENIED,
      /presented: spiffe:\/\/mesh\.test\/mcp\/weather/,
    );
    await refused(
      { credential_type: 'ssh-key', credential: 'x' },
      anon,
      grpc.status.INVALID_ARGUMENT,
      /unknown credential type "ssh-key"; this control plane accepts: join-token/,
    );
    await refused(
      { spiffe_id: `spiffe://${TD}/control-plane`, credential: weatherToken },
      anon,
      grpc.status.INVALID_ARGUMENT,
      /not a workload identity/,
    );
    await refused({ csr_pem: 'garbage' }, anon, grpc.status.INVALID_ARGUMENT, /csr_pem: not a PEM certificate request/);
  });

  it('an agent refuses to send its token to a control plane whose bundle the token does not pin', async () => {
    const other = await CertificateAuthority.selfSigned({ trustDomain: TD });
    const { token } = await new JoinTokens(other).mint(WEATHER);
    const a = new WorkloadIdentity({
      controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
      credential: { type: 'join-token', token },
      log: quiet,
    });
    agents.push(a);
    await assert.rejects(a.start(), /offered a trust bundle .* that the join token does not pin .*refusing to send it the token/);
  });

  it('the agent serves its certificate to Envoy over SDS on a Unix socket, writes 0600 key files, and renews at half-life without dropping connections', async () => {
    const files = path.join(dir, 'files');
    const a = await agent(WEATHER, { dir: files });
    const first = await a.start();
    assert.equal(new X509Certificate(first.certChainPem).subjectAltName, `URI:${WEATHER}`);
    assert.equal(statSync(path.join(files, 'key.pem')).mode & 0o777, 0o600);
    assert.equal(readFileSync(path.join(files, 'key.pem'), 'utf8'), first.keyPem);

    const sds = new SdsServer(path.join(dir, 'sds.sock'), quiet);
    await sds.listen();
    sds.update(first);
    a.onChange((h) => sds.update(h));
    const envoy = new RawAdsClient(`unix:${sds.socketPath}`);
    clients.push(envoy);
    const stream = envoy.secrets();
    stream.send({ type_url: TYPE_URLS.secret, resource_names: ['mcpmesh.identity'] });
    const resp1 = await stream.next('secret', 5_000);
    const secret1 = decodeResources(resp1)[0] as {
      tls_certificate: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } };
    };
    assert.equal(secret1.tls_certificate.certificate_chain.inline_string, first.certChainPem);
    assert.equal(secret1.tls_certificate.private_key.inline_string, first.keyPem, 'the key reaches Envoy only from its own agent');
    stream.send({
      type_url: TYPE_URLS.secret,
      resource_names: ['mcpmesh.identity'],
      version_info: resp1['version_info'],
      response_nonce: resp1['nonce'],
    });

    // An mTLS connection made with the first certificate, before any renewal: it must outlive the renewal.
    const longLived = ads(tls(bundle, first)).sotw();
    longLived.send({ type_url: TYPE_URLS.cluster, node: node('sc-long', { role: 'sidecar', service: 'weather', app_port: 7001 }) });
    const c1 = await longLived.next('cluster', 5_000);
    longLived.send({ type_url: TYPE_URLS.cluster, version_info: c1['version_info'], response_nonce: c1['nonce'] });

    // The CA signs for 4 s: the agent renews at about 2 s, over mTLS with the old certificate, for a new key.
    const resp2 = await stream.next('secret', 8_000);
    const secret2 = decodeResources(resp2)[0] as typeof secret1;
    const renewed = new X509Certificate(secret2.tls_certificate.certificate_chain.inline_string);
    assert.notEqual(renewed.serialNumber, new X509Certificate(first.certChainPem).serialNumber, 'a new certificate was pushed');
    assert.notEqual(secret2.tls_certificate.private_key.inline_string, first.keyPem, 'for a new key');
    assert.ok(Date.parse(new X509Certificate(first.certChainPem).validTo) > Date.now(), 'while the old one was still valid');
    assert.equal(
      readFileSync(path.join(files, 'cert.pem'), 'utf8'),
      secret2.tls_certificate.certificate_chain.inline_string,
      'the files follow',
    );

    // The connection opened before the renewal still works: a registry edit reaches it.
    writeFileSync(
      path.join(dir, 'r.yaml'),
      'services:\n  - { name: weather, protocol: "2025-11-25", sidecar: true, routing: { connectTimeout: 7s }, endpoints: [] }\n',
    );
    const c2 = await longLived.next('cluster', 10_000);
    assert.match(JSON.stringify(decodeResources(c2)), /"connect_timeout":\{"seconds":"7"/);
    assert.equal(longLived.error, undefined);
    longLived.close();
    stream.close();
    await sds.close();
  });
});
