// The `mcpmesh sidecar` and `mcpmesh gateway` argument parsers: defaults, the container modes used by the
// Compose and Kubernetes manifests, and every mistake reported at once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseSidecarArgs } from '../../sidecar/src/cli.ts';
import { parseGatewayArgs } from '../../sidecar/src/gateway-cli.ts';

const MCPMESH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../control-plane/src/cli.ts');
const noEnvoy = { PATH: '' };

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MCPMESH, ...args], { env: { ...process.env, ENVOY_BIN: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('mcpmesh sidecar arguments', () => {
  it('serves health on 15020 by default; 0 turns it off', () => {
    assert.equal(parseSidecarArgs(['--service', 'w', '--port', '7001'], noEnvoy).options.healthPort, 15020);
    assert.equal(parseSidecarArgs(['--service', 'w', '--port', '7001', '--health-port', '0'], noEnvoy).options.healthPort, undefined);
  });

  it('--external-envoy writes the bootstrap for another container and never looks for a binary', () => {
    const o = parseSidecarArgs(['--service', 'w', '--port', '7001', '--external-envoy', '--bootstrap-out', '/etc/mcpmesh/envoy.json'], {
      ENVOY_BIN: '/usr/bin/envoy',
    }).options;
    assert.equal(o.externalEnvoy, true);
    assert.equal(o.envoyBin, undefined);
    assert.equal(o.bootstrapPath, '/etc/mcpmesh/envoy.json');
  });

  it('reports contradictions and missing companions together', () => {
    assert.throws(
      () => parseSidecarArgs(['--service', 'w', '--port', '7001', '--external-envoy', '--no-envoy', '--health-port', '99999'], noEnvoy),
      (err: Error) => {
        assert.match(err.message, /3 problem\(s\)/);
        assert.match(err.message, /--health-port: must be a port number/);
        assert.match(err.message, /--external-envoy and --no-envoy contradict/);
        assert.match(err.message, /--external-envoy: give --bootstrap-out FILE/);
        return true;
      },
    );
    assert.throws(
      () => parseSidecarArgs(['--service', 'w', '--stdio', '--print-bootstrap', '--', 'server'], noEnvoy),
      /--print-bootstrap with --stdio/,
    );
  });
});

describe('mcpmesh sidecar --print-bootstrap', () => {
  it("writes the bootstrap the agent would, with the node id the agent registers (the advertised port, Envoy's)", async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'mcpmesh-sc-')), 'envoy.json');
    const r = await run([
      'sidecar',
      '--service',
      'weather',
      '--port',
      '7001',
      '--inbound-port',
      '15123',
      '--zone',
      'a',
      '--external-envoy',
      '--print-bootstrap',
      '--bootstrap-out',
      file,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const b = JSON.parse(readFileSync(file, 'utf8')) as { node: { id: string; metadata: Record<string, unknown> } };
    assert.equal(b.node.id, `weather-${hostname()}-15123`);
    assert.deepEqual(
      [b.node.metadata['app_port'], b.node.metadata['inbound_port'], b.node.metadata['mcp-protocol']],
      [7001, 15123, '2025-11-25'],
    );
  });
});

describe('mcpmesh gateway arguments', () => {
  it('defaults: gateway "default" on 8080, control plane from $MCPMESH_XDS_ADDR', () => {
    const g = parseGatewayArgs([], { ...noEnvoy, MCPMESH_XDS_ADDR: 'control-plane:18000' });
    assert.deepEqual(
      [g.bootstrap.gatewayName, g.bootstrap.listenerPort, g.bootstrap.controlPlane, g.envoyBin],
      ['default', 8080, { host: 'control-plane', port: 18000 }, undefined],
    );
    assert.match(g.bootstrap.nodeId, /^gateway-default-/);
  });

  it('names every bad argument', () => {
    assert.throws(
      () => parseGatewayArgs(['--name', 'bad name', '--stats-port', '8080', '--control-plane', 'nohost', '--drain', 'later'], noEnvoy),
      (err: Error) => {
        assert.match(err.message, /--name: must be 1-63 letters/);
        assert.match(err.message, /must differ \(got 8080, 15000, 8080\)/);
        assert.match(err.message, /--control-plane: must be host:port/);
        assert.match(err.message, /--drain: must be a duration/);
        return true;
      },
    );
  });

  it('--print-bootstrap --bootstrap-out writes a gateway bootstrap (an init container) and exits 0', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'mcpmesh-gw-')), 'envoy.json');
    const r = await run([
      'gateway',
      '--name',
      'public',
      '--id',
      'gw-1',
      '--listener-port',
      '8443',
      '--control-plane',
      'cp:18000',
      '--print-bootstrap',
      '--bootstrap-out',
      file,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const b = JSON.parse(readFileSync(file, 'utf8')) as { node: { id: string; metadata: Record<string, unknown> } };
    assert.deepEqual([b.node.id, b.node.metadata], ['gw-1', { role: 'gateway', gateway_name: 'public', listener_port: 8443 }]);
  });

  it('--policy (or $MCPMESH_POLICY): the agent decides beside Envoy; the bootstrap says so and reaches its socket', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-gw-policy-'));
    const file = path.join(dir, 'policy.yaml');
    writeFileSync(
      file,
      'trustDomain: mcpmesh.local\nroles:\n  analyst:\n    allow:\n      - { service: weather, tools: [get_forecast] }\n',
    );
    const g = parseGatewayArgs(['--id', 'gw-1', '--policy', file, '--authz-socket', '/run/mcpmesh/authz.sock'], noEnvoy);
    assert.equal(g.localAuthz?.policyFile, file);
    assert.equal(g.localAuthz?.policy.trustDomain, 'mcpmesh.local');
    assert.equal(g.localAuthz?.socket, '/run/mcpmesh/authz.sock');
    assert.deepEqual(g.bootstrap.localAuthz, { socket: '/run/mcpmesh/authz.sock' });
    const fromEnv = parseGatewayArgs(['--id', 'gw/2'], { ...noEnvoy, MCPMESH_POLICY: file });
    assert.equal(fromEnv.localAuthz?.socket, path.join(tmpdir(), 'mcpmesh-authz-gw_2.sock'), 'a default socket per node id');
    assert.equal(parseGatewayArgs([], noEnvoy).localAuthz, undefined, "without a policy: the control plane's authorizer");
    // Envoy in another container (it reads --print-bootstrap's output): the agent runs only its side.
    assert.equal(parseGatewayArgs(['--no-envoy', '--policy', file], noEnvoy).noEnvoy, true);
  });

  it('--policy problems are reported with the file, path and reason, with every other problem', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-gw-policy-'));
    const broken = path.join(dir, 'broken.yaml');
    writeFileSync(
      broken,
      'trustDomain: mcpmesh.local\nroles:\n  analyst:\n    allow:\n      - { service: weather, tools: ["bad[glob"] }\n',
    );
    assert.throws(
      () => parseGatewayArgs(['--policy', broken, '--listener-port', '0'], noEnvoy),
      (err: Error) => {
        assert.match(err.message, /2 problem\(s\)/);
        assert.match(
          err.message,
          new RegExp(
            `--policy: ${broken.replaceAll('.', '\\.')}: 1 problem\\(s\\):\\n +roles\\.analyst\\.allow\\[0\\]\\.tools\\[0\\]: "bad\\[glob"`,
          ),
        );
        assert.match(err.message, /--listener-port: must be a port number/);
        return true;
      },
    );
    assert.throws(() => parseGatewayArgs(['--policy', path.join(dir, 'missing.yaml')], noEnvoy), /--policy: .*missing\.yaml: cannot read/);
    assert.throws(() => parseGatewayArgs(['--authz-socket', '/x.sock'], noEnvoy), /--authz-socket without --policy/);
    assert.throws(() => parseGatewayArgs(['--no-envoy'], noEnvoy), /--no-envoy without --xds-relay or --policy: nothing would run/);
    // The policy's trust domain must be the gateway identity's.
    const good = path.join(dir, 'good.yaml');
    writeFileSync(good, 'trustDomain: mcpmesh.local\nroles: {}\n');
    const token = path.join(dir, 'sa-token');
    writeFileSync(token, 'header.payload.signature');
    assert.throws(
      () => parseGatewayArgs(['--policy', good, '--k8s-token-file', token, '--trust-domain', 'other.local'], noEnvoy),
      /--policy: .*good\.yaml: trustDomain is "mcpmesh\.local", but this gateway's identity is in trust domain "other\.local"/,
    );
  });

  it('refuses to run without Envoy rather than pretend to be a gateway', async () => {
    const r = await run(['gateway', '--envoy-bin', '']);
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, /no Envoy binary/);
  });
});
