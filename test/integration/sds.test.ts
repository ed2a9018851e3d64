// Workload certificates over SDS on the same ADS stream: a sidecar gets a certificate for its SPIFFE ID
// and the trust bundle, the chain verifies, and a rotated certificate is pushed before the old one expires.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import type { MeshSecurity } from '../../control-plane/src/model/types.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';
import { decodeResources, node, RawAdsClient, type AdsStream, type Msg } from '../helpers/ads-client.ts';

const SECURITY: MeshSecurity = {
  publicUrl: 'https://mcp.example.com',
  authz: { host: '127.0.0.1', port: 18002 },
  policy: { trustDomain: 'mesh.test', roleClaim: 'roles', providers: [], roles: [], services: [] },
};

interface SecretMsg { name: string; tls_certificate?: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } }; validation_context?: { trusted_ca: { inline_string: string } } }

async function secrets(s: AdsStream): Promise<{ resp: Msg; byName: Map<string, SecretMsg> }> {
  for (;;) {
    const resp = await s.next('secret', 10_000);
    s.send({ type_url: TYPE_URLS.secret, resource_names: ['mcpmesh.identity', 'mcpmesh.trust'], version_info: resp['version_info'], response_nonce: resp['nonce'] });
    const byName = new Map((decodeResources(resp) as unknown as SecretMsg[]).map((x) => [x.name, x]));
    if (byName.size === 2) return { resp, byName };
  }
}

describe('workload certificates over SDS', () => {
  let cp: ControlPlane;
  let client: RawAdsClient;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services:\n  - { name: weather, protocol: "2025-11-25", endpoints: [] }\n');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'), xdsHost: '127.0.0.1', xdsPort: 0, adminHost: '127.0.0.1', adminPort: 0,
      log: silentLogger, metrics: new Metrics({ processMetrics: false }), security: SECURITY, certTtlMs: 4_000,
    }).start();
    client = new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
  });
  after(async () => {
    client?.close();
    await cp?.stop();
  });

  it('a sidecar gets its SPIFFE certificate and the trust bundle, and a fresh one before expiry', async () => {
    const s = client.sotw();
    s.send({ type_url: TYPE_URLS.secret, resource_names: ['mcpmesh.identity', 'mcpmesh.trust'], node: node('sidecar-w1', { role: 'sidecar', service: 'weather', app_port: 7001 }) });
    const first = await secrets(s);
    const leaf = new X509Certificate(first.byName.get('mcpmesh.identity')?.tls_certificate?.certificate_chain.inline_string ?? '');
    const ca = new X509Certificate(first.byName.get('mcpmesh.trust')?.validation_context?.trusted_ca.inline_string ?? '');
    assert.equal(leaf.subjectAltName, 'URI:spiffe://mesh.test/mcp/weather');
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), 'the leaf chains to the trust bundle');
    assert.ok(first.byName.get('mcpmesh.identity')?.tls_certificate?.private_key.inline_string.includes('PRIVATE KEY'));
    const next = await secrets(s);
    const renewed = new X509Certificate(next.byName.get('mcpmesh.identity')?.tls_certificate?.certificate_chain.inline_string ?? '');
    assert.notEqual(renewed.serialNumber, leaf.serialNumber, 'a new certificate was pushed');
    assert.ok(Date.parse(leaf.validTo) > Date.now(), 'it arrived while the old one was still valid');
    s.close();
    // Operators see issuance and expiry: one first issue plus at least one renewal, the expiry of the
    // certificate now in use, and the CA's.
    const metrics = await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text();
    const issued = Number(/mcpmesh_certificates_issued_total\{role="sidecar"\} (\d+)/.exec(metrics)?.[1]);
    assert.ok(issued >= 2, `issued ${issued}`);
    const expiry = Number(/mcpmesh_certificate_expiry_timestamp_seconds\{identity="spiffe:\/\/mesh.test\/mcp\/weather"\} (\S+)/.exec(metrics)?.[1]);
    assert.ok(expiry * 1000 >= Date.parse(renewed.validTo) - 1000 && expiry * 1000 <= Date.now() + 10_000, `expiry ${expiry} vs renewed ${renewed.validTo}`);
    const caExpiry = Number(/^mcpmesh_ca_expiry_timestamp_seconds (\S+)$/m.exec(metrics)?.[1]);
    assert.equal(caExpiry * 1000, Date.parse(ca.validTo));
  });

  it('a gateway gets its own identity', async () => {
    const s = client.sotw();
    s.send({ type_url: TYPE_URLS.secret, resource_names: ['mcpmesh.identity', 'mcpmesh.trust'], node: node('gw-1', { role: 'gateway', gateway_name: 'edge-eu' }) });
    const { byName } = await secrets(s);
    const leaf = new X509Certificate(byName.get('mcpmesh.identity')?.tls_certificate?.certificate_chain.inline_string ?? '');
    assert.equal(leaf.subjectAltName, 'URI:spiffe://mesh.test/gateway/edge-eu');
    s.close();
  });
});
