// Golden tests of the sidecar's Envoy bootstrap: golden/<case>.in.yaml (options) -> <case>.out.json.
// UPDATE_GOLDEN=1 rewrites them. The bootstrap passes Envoy's Bootstrap proto + validate rules.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { envoyBootstrap, renderBootstrap, type BootstrapOptions } from '../../sidecar/src/bootstrap.ts';
import { proxyInfoFromNode, type PbNode } from '../../control-plane/src/xds/node.ts';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'golden');
const update = process.env['UPDATE_GOLDEN'] === '1';

for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.in.yaml'))
  .sort()) {
  const name = file.replace(/\.in\.yaml$/, '');
  test(`bootstrap golden: ${name}`, () => {
    const actual = renderBootstrap(parse(readFileSync(path.join(dir, file), 'utf8')) as BootstrapOptions);
    const outFile = path.join(dir, `${name}.out.json`);
    if (update || !existsSync(outFile)) {
      writeFileSync(outFile, actual);
      if (!update) assert.fail(`${outFile} did not exist; wrote it — review and commit it`);
      return;
    }
    assert.equal(actual, readFileSync(outFile, 'utf8'), `${name}: differs from ${name}.out.json (UPDATE_GOLDEN=1 rewrites it)`);
  });
}

test('an impossible bootstrap is refused with the field and rule', () => {
  assert.throws(
    () =>
      renderBootstrap({ nodeId: 'n', service: 'x', inboundPort: 15006, appPort: 7001, controlPlane: { host: '10.0.0.1', port: 70000 } }),
    /bootstrap: static_resources\.clusters\[0\]\.load_assignment\.endpoints\[0\]\.lb_endpoints\[0\]\.endpoint\.address\.socket_address\.port_value: uint32\.lte/,
  );
});

test('the control plane reads each bootstrap node as the role it was written for', () => {
  const controlPlane = { host: '127.0.0.1', port: 18000 };
  const gw = proxyInfoFromNode(
    envoyBootstrap({ kind: 'gateway', nodeId: 'gw-1', gatewayName: 'public', listenerPort: 8443, zone: 'a', controlPlane }).node as PbNode,
  );
  assert.deepEqual(gw, { id: 'gw-1', role: 'gateway', locality: { region: '', zone: 'a' }, listenerPort: 8443, gatewayName: 'public' });
  const sc = proxyInfoFromNode(
    envoyBootstrap({ nodeId: 'sc-1', service: 'weather', inboundPort: 15006, appPort: 7001, controlPlane }).node as PbNode,
  );
  assert.equal(sc.role, 'sidecar');
  assert.equal(sc.role === 'sidecar' ? sc.service : '', 'weather');
});
