// A service that moves to MCP 2026-07-28 with nothing else changed must get the header-based parts of the
// gateway route table (per-method stats; header RBAC when secured): the route table is memoized, and the
// protocol is one of its inputs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startControlPlane } from '../helpers/control-plane.ts';
import { waitFor } from '../helpers/wait.ts';

const registry = (protocol: string): string =>
  `services:\n  - name: weather\n    protocol: "${protocol}"\n    endpoints: [{ address: 10.0.0.1, port: 7001 }]\n`;

test("changing only a service's protocol rebuilds the gateway routes", async () => {
  const tcp = await startControlPlane(registry('2025-11-25'));
  try {
    const routes = async (): Promise<string> =>
      JSON.stringify(((await (await tcp.admin('/debug/config_dump?role=gateway')).json()) as { route: unknown }).route);
    assert.ok(!(await routes()).includes('weather__tools_call'));
    tcp.writeRegistry(registry('2026-07-28'));
    await waitFor('per-method virtual clusters appear', async () => (await routes()).includes('weather__tools_call'), 10_000);
  } finally {
    await tcp.stop();
  }
});
