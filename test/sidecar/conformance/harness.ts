// Shared helpers for the stdio bridge tests (real peers: server-everything over stdio, SDK client over HTTP).
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import { StdioBridge, type StdioBridgeOptions } from '../../../sidecar/src/bridge/stdio-bridge.ts';

import { EVERYTHING_BIN } from '../../helpers/everything.ts';

/** server-everything's entry point; its bin is `dist/index.js [stdio|sse|streamableHttp]` (stdio is the default). */
export const EVERYTHING_ENTRY = EVERYTHING_BIN;

export interface LogRecord {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export function startEverythingBridge(overrides: Partial<StdioBridgeOptions> = {}): { bridge: StdioBridge; logs: LogRecord[] } {
  const logs: LogRecord[] = [];
  const bridge = new StdioBridge({
    // The pinned Node runs the child too.
    command: process.execPath,
    args: [EVERYTHING_ENTRY, 'stdio'],
    log: (level, msg, fields) => {
      logs.push(fields === undefined ? { level, msg } : { level, msg, fields });
      if (process.env.BRIDGE_TEST_LOG) console.error(level, msg, fields ?? '');
    },
    ...overrides,
  });
  return { bridge, logs };
}

/** An SDK client + Streamable HTTP transport, not yet connected (so handlers can be registered first). */
export function newClient(
  url: string,
  capabilities: ClientCapabilities = {},
): { client: Client; transport: StreamableHTTPClientTransport } {
  const client = new Client({ name: 'bridge-test', version: '1.0.0' }, { capabilities });
  return { client, transport: new StreamableHTTPClientTransport(new URL(url)) };
}

export async function connectClient(
  url: string,
  capabilities: ClientCapabilities = {},
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const { client, transport } = newClient(url, capabilities);
  await client.connect(transport);
  return { client, transport };
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
