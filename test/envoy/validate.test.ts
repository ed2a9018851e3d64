// Real Envoy, no traffic: every golden case's snapshot as a static bootstrap (static-bootstrap.ts) goes to
// `envoy --mode validate`, which builds every listener, route table, cluster, filter and TLS context the way
// Envoy does when they arrive over ADS, and exits 0 ("configuration '<file>' OK") or 1 with the reason.
// That is what the project's protos-and-PGV validator cannot prove: Envoy's own load-time checks, the
// filters' factories, the extensions compiled into that Envoy, regexes under RE2's limits, and PEMs that
// parse. The ADS bootstraps the sidecar agent and gateway CLI write (sidecar/src/bootstrap.ts) get the same.
//
// Golden cases carry placeholder PEMs (the golden files only show that certificates are carried); Envoy
// parses certificates and keys when it builds a TLS context, so here the case's identity is replaced by a
// real one: a throwaway CA from the project's own CertificateAuthority, and a leaf for the case's SPIFFE ID.
//
// Skips without an Envoy binary (ENVOY_BIN, or envoy on PATH); see envoy-bin.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import type { TrustBundle } from '../../control-plane/src/model/types.ts';
import { identitySecret, workloadSecretName } from '../../control-plane/src/identity/sds.ts';
import { renderBootstrap } from '../../sidecar/src/bootstrap.ts';
import { envoySkip, findEnvoyBinary } from './envoy-bin.ts';
import { goldenCases, renderStaticBootstrap, staticBootstrap } from './static-bootstrap.ts';

const lookup = findEnvoyBinary();
const skip = envoySkip(lookup);

/** `envoy --mode validate -c file`: exit status and everything it printed. */
function envoyValidate(bin: string, file: string): { status: number | null; output: string } {
  const r = spawnSync(bin, ['--mode', 'validate', '-c', file, '--log-level', 'warn'], { encoding: 'utf8', timeout: 120_000 });
  const output = [r.error ? `spawn error: ${r.error.message}` : '', r.signal ? `killed by ${r.signal}` : '', r.stdout ?? '', r.stderr ?? '']
    .filter(Boolean)
    .join('\n')
    .trim();
  return { status: r.status, output };
}

function assertValid(bin: string, file: string, what: string): void {
  const { status, output } = envoyValidate(bin, file);
  assert.equal(status, 0, `envoy --mode validate rejected ${what} (${file}):\n${output}`);
  assert.match(output, /configuration '.*' OK/, `envoy --mode validate exited 0 without its OK line for ${what}:\n${output}`);
}

/**
 * A real certificate and key for `spiffeId` (what the proxy's agent would serve on its local SDS socket) and
 * the bundle of the fresh CA that signed it (what the control plane would push).
 */
async function realIdentity(trustDomain: string, spiffeId: string): Promise<{ trust: TrustBundle; agentSecret: Record<string, unknown> }> {
  const ca = await CertificateAuthority.selfSigned({ trustDomain });
  const leaf = await ca.issue({ spiffeId, ttlMs: 3_600_000 });
  return { trust: { bundlePem: ca.bundlePem }, agentSecret: identitySecret(workloadSecretName(), leaf) as Record<string, unknown> };
}

// Each test carries the skip (rather than the suite), so a run without Envoy counts them as skipped.
describe(`envoy --mode validate accepts every golden case as a static bootstrap${lookup.envoy ? ` (${lookup.envoy.version})` : ''}`, () => {
  let tmp: string | undefined;
  const dir = (): string => (tmp ??= mkdtempSync(path.join(tmpdir(), 'mcpmesh-envoy-validate-')));
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  const bin = lookup.envoy?.path ?? '';

  for (const gc of goldenCases()) {
    it(gc.name, { skip }, async () => {
      let real: Awaited<ReturnType<typeof realIdentity>> | undefined;
      if (gc.workloadId) {
        assert.ok(gc.trustDomain, `${gc.name}: a secured case has a policy with a trust domain`);
        real = await realIdentity(gc.trustDomain, gc.workloadId);
      }
      const { bootstrap, skipped } = staticBootstrap(gc.snapshot(real?.trust), {
        ...gc.options,
        ...(real ? { agentSecrets: [real.agentSecret] } : {}),
      });
      const file = path.join(dir(), `${gc.name}.json`);
      writeFileSync(file, renderStaticBootstrap(bootstrap));
      assertValid(
        bin,
        file,
        `golden case ${gc.name}${skipped.length > 0 ? ` (left out: ${skipped.map((s) => `${s.kind} ${s.name}`).join(', ')})` : ''}`,
      );
    });
  }

  it('a secret that is not a certificate is refused (the check above has teeth)', { skip }, () => {
    const gc = goldenCases().find((c) => c.name === 'sidecar-secured');
    assert.ok(gc, 'the sidecar-secured golden case exists');
    // The golden's own placeholder PEMs: Envoy must refuse them when it builds the inbound TLS context.
    const placeholder = identitySecret(workloadSecretName(), {
      certPem: '-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n',
      chainPem: '',
      keyPem: '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n',
    });
    const { bootstrap } = staticBootstrap(gc.snapshot(), { ...gc.options, agentSecrets: [placeholder as Record<string, unknown>] });
    const file = path.join(dir(), 'placeholder-pem.json');
    writeFileSync(file, renderStaticBootstrap(bootstrap));
    const { status, output } = envoyValidate(bin, file);
    assert.notEqual(status, 0, `Envoy accepted a placeholder certificate:\n${output}`);
  });

  it('the ADS bootstraps of the sidecar agent and the gateway CLI (sidecar/src/bootstrap.ts)', { skip }, () => {
    const controlPlane = { host: '127.0.0.1', port: 18000 };
    const sidecar = path.join(dir(), 'sidecar-ads.json');
    writeFileSync(
      sidecar,
      renderBootstrap({
        nodeId: 'weather-1',
        service: 'weather',
        inboundPort: 15006,
        appPort: 7001,
        region: 'eu-west',
        zone: 'a',
        controlPlane,
        metadata: { 'mcp-protocol': '2025-11-25' },
      }),
    );
    assertValid(bin, sidecar, 'the sidecar ADS bootstrap');
    const gateway = path.join(dir(), 'gateway-ads.json');
    // A host name for the control plane (STRICT_DNS), as in Compose and Kubernetes.
    writeFileSync(
      gateway,
      renderBootstrap({
        kind: 'gateway',
        nodeId: 'gw-1',
        gatewayName: 'public',
        listenerPort: 8080,
        controlPlane: { host: 'control-plane.mcpmesh.svc', port: 18000 },
      }),
    );
    assertValid(bin, gateway, 'the gateway ADS bootstrap');
  });
});
