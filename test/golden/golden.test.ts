// Golden tests for the translators: <case>.in.yaml (a proxy + a registry) -> <case>.out.yaml (every
// resource that proxy receives, decoded back from the exact bytes pushed). UPDATE_GOLDEN=1 rewrites them.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { buildSnapshot, ResourceEncoder } from '../../control-plane/src/cache/snapshot.ts';
import { MeshBuilder } from '../../control-plane/src/model/mesh.ts';
import type { MeshSecurity, TrustBundle } from '../../control-plane/src/model/types.ts';
import { parseRegistry } from '../../control-plane/src/sources/registry-file.ts';
import { snapshotToJson } from '../../control-plane/src/server/admin.ts';
import { proxyResources } from '../../control-plane/src/translate/proxy.ts';
import { proxyInfoFromNode, snapshotKey } from '../../control-plane/src/xds/node.ts';
import { struct } from '../../control-plane/src/translate/resource.ts';
import { applyOverlays, type TuningOverlay } from '../../control-plane/src/model/tuning.ts';
import { ConfigEntryState, type ConfigEntry, type EntryUpdate } from '../../control-plane/src/sources/consul-config.ts';
import { parseRoutingFile } from '../../control-plane/src/sources/routing-file.ts';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cases');
const update = process.env['UPDATE_GOLDEN'] === '1';

interface Case {
  node: {
    id: string;
    user_agent_name?: string;
    locality?: { region: string; zone: string };
    metadata?: Record<string, string | number | boolean>;
  };
  registry: unknown;
  /** Optional: the mesh's security settings, with the policy already in its parsed form. */
  security?: MeshSecurity;
  /** Optional: the mesh's trust bundle (placeholder PEM text is fine: it is carried, not parsed). */
  trust?: TrustBundle;
  /** Optional: Consul config entries (as GET /v1/config/:kind returns them) tuning the registry's services. */
  consulEntries?: ConfigEntry[];
  /** Optional: a routing file's content. */
  routing?: unknown;
}

/** The overlays a case asks for; a Consul entry the mapping refuses fails the case (goldens hold good input only). */
function overlays(c: Case, name: string): TuningOverlay[] {
  const out: TuningOverlay[] = [];
  if (c.consulEntries) {
    const all = new Map();
    const state = new ConfigEntryState();
    let last: EntryUpdate | undefined;
    for (const kind of ['proxy-defaults', 'service-defaults', 'service-resolver'] as const)
      last = state.update(
        kind,
        c.consulEntries.filter((e) => e.Kind === kind),
        all,
      );
    assert.deepEqual(last?.problems, [], `${name}: consul entries refused`);
    out.push(last!.overlay);
  }
  if (c.routing) out.push(parseRoutingFile(stringify(c.routing), `${name}.in.yaml#routing`));
  return out;
}

for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.in.yaml'))
  .sort()) {
  const name = file.replace(/\.in\.yaml$/, '');
  test(`golden: ${name}`, () => {
    const c = parse(readFileSync(path.join(dir, file), 'utf8')) as Case;
    const proxy = proxyInfoFromNode({
      id: c.node.id,
      ...(c.node.user_agent_name ? { user_agent_name: c.node.user_agent_name } : {}),
      locality: c.node.locality ?? null,
      metadata: struct(c.node.metadata ?? {}) as never,
    });
    const specs = applyOverlays(parseRegistry(stringify(c.registry), `${name}.in.yaml`), overlays(c, name));
    const { mesh } = new MeshBuilder().build(specs, c.security);
    const resources = proxyResources(mesh, proxy, c.trust);
    // Pure and deterministic: the same input twice gives identical output.
    assert.deepEqual(proxyResources(new MeshBuilder().build(specs, c.security).mesh, proxy, c.trust), resources);
    const actual = stringify(snapshotToJson(buildSnapshot(snapshotKey(proxy), resources, new ResourceEncoder())), { lineWidth: 0 });
    const outFile = path.join(dir, `${name}.out.yaml`);
    if (update || !existsSync(outFile)) {
      writeFileSync(outFile, actual);
      if (!update) assert.fail(`${outFile} did not exist; wrote it — review and commit it`);
      return;
    }
    assert.equal(actual, readFileSync(outFile, 'utf8'), `${name}: output differs from ${name}.out.yaml (UPDATE_GOLDEN=1 rewrites it)`);
  });
}
