// One fixed case per finding of issue 11, run through the fuzz's machinery (the gateway model with the real
// authorizer and header RBAC, then both oracle servers). Each must be refused by the mesh, and no oracle may
// run a handler the policy denies; some carry an extra expectation (status, body size, decision time).
import { fixedCase, type FuzzCase } from './generators.ts';

export interface Regression {
  /** Short id, used in test names and `run.ts --regressions`. */
  readonly id: string;
  /** The finding, as issue 11 states it. */
  readonly finding: string;
  readonly case: FuzzCase;
  /** Statuses the refusal may have (by spec or by the finding), else any refusal will do. */
  readonly statuses?: readonly number[];
  /** A JSON-RPC error code the refusal must carry. */
  readonly jsonRpcCode?: number;
  /** Upper bound of the refusal's body. */
  readonly maxBodyBytes?: number;
  /** Upper bound of the ext_authz Check round trip. */
  readonly maxCheckMs?: number;
}

const JSON_HEADERS = (
  version: string,
  extra: ReadonlyArray<readonly [string, string]> = [],
  ct = 'application/json',
): Array<[string, string]> => [
  ['Content-Type', ct],
  ['Accept', 'application/json, text/event-stream'],
  ['MCP-Protocol-Version', version],
  ...extra.map(([k, v]): [string, string] => [k, v]),
];
const call = (name: string, id = 1): string =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
const read = (uri: string, id = 1): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'resources/read', params: { uri } });

/** A batch of pings just under `bytes` (Envoy's max_request_bytes forwards it whole) with one denied call in the middle. */
function bigBatch(bytes: number, denied: string): string {
  const parts: string[] = [];
  let size = 2;
  const hidden = call(denied, 0);
  for (let i = 1; ; i++) {
    const ping = JSON.stringify({ jsonrpc: '2.0', id: i, method: 'ping' });
    if (size + ping.length + hidden.length + 2 > bytes) break;
    parts.push(ping);
    size += ping.length + 1;
  }
  parts.splice(Math.floor(parts.length / 2), 0, hidden);
  return `[${parts.join(',')}]`;
}

/**
 * A batch SDK servers accept (100 messages) of pings with one denied call, ~`bytes` long: each ping carries a
 * long string id, which a JSON-RPC error answer would echo back.
 */
function bigIdBatch(bytes: number, denied: string): string {
  const idLength = Math.floor(bytes / 100) - 60;
  const parts: string[] = [];
  for (let i = 0; i < 99; i++)
    parts.push(JSON.stringify({ jsonrpc: '2.0', id: `${String(i).padStart(4, '0')}${'x'.repeat(idLength)}`, method: 'ping' }));
  parts.splice(50, 0, call(denied, 0));
  return `[${parts.join(',')}]`;
}

export const REGRESSIONS: readonly Regression[] = [
  {
    id: 'utf7-polyglot',
    finding:
      'content-type: application/json; charset=utf-7: the authorizer reads get_forecast as UTF-8, express.json() reads admin_reset (+ACI- is ")',
    case: fixedCase({
      name: 'utf7-polyglot',
      service: 'weather',
      caller: 'reader',
      classes: ['utf7'],
      headers: JSON_HEADERS('2025-11-25', [], 'application/json; charset=utf-7'),
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_forecast","arguments":{},"note":"+ACI-,+ACI-name+ACI-:+ACI-admin_reset+ACI-,+ACI-z+ACI-:+ACI-"}}',
    }),
  },
  {
    id: 'header-body-mismatch',
    finding: '2026-07-28 service: headers say get_tide, the body calls admin_x (facts.md: MUST be refused with 400 and JSON-RPC -32020)',
    case: fixedCase({
      name: 'header-body-mismatch',
      service: 'tides',
      caller: 'reader',
      classes: ['hdr-mismatch'],
      headers: JSON_HEADERS('2026-07-28', [
        ['Mcp-Method', 'tools/call'],
        ['Mcp-Name', 'get_tide'],
      ]),
      body: call('admin_x'),
    }),
    statuses: [400],
    jsonRpcCode: -32020,
  },
  {
    id: 'two-mcp-name',
    finding: '2026-07-28 service: two Mcp-Name headers (get_tide, then admin_x), the body calls admin_x',
    case: fixedCase({
      name: 'two-mcp-name',
      service: 'tides',
      caller: 'reader',
      classes: ['hdr-repeat'],
      headers: JSON_HEADERS('2026-07-28', [
        ['Mcp-Method', 'tools/call'],
        ['Mcp-Name', 'get_tide'],
        ['Mcp-Name', 'admin_x'],
      ]),
      body: call('admin_x'),
    }),
  },
  {
    id: 'missing-mcp-method',
    finding: '2026-07-28 service: no Mcp-Method header (RBAC takes it for a service-level request), the body calls admin_x',
    case: fixedCase({
      name: 'missing-mcp-method',
      service: 'tides',
      caller: 'reader',
      classes: ['hdr-mismatch'],
      headers: JSON_HEADERS('2026-07-28', [['Mcp-Name', 'get_tide']]),
      body: call('admin_x'),
    }),
  },
  {
    id: 'odd-cased-mcp-method',
    finding: '2026-07-28 service: Mcp-Method: Tools/call (not a named method to RBAC), the body calls admin_x',
    case: fixedCase({
      name: 'odd-cased-mcp-method',
      service: 'tides',
      caller: 'reader',
      classes: ['method-case'],
      headers: JSON_HEADERS('2026-07-28', [
        ['Mcp-Method', 'Tools/call'],
        ['Mcp-Name', 'admin_x'],
      ]),
      body: call('admin_x'),
    }),
  },
  {
    id: 'version-garbage',
    finding: '2026-07-28 service: MCP-Protocol-Version: garbage passes the "older than 2026-07-28" check',
    case: fixedCase({
      name: 'version-garbage',
      service: 'tides',
      caller: 'reader',
      classes: ['version'],
      headers: JSON_HEADERS('garbage', [
        ['Mcp-Method', 'tools/call'],
        ['Mcp-Name', 'get_tide'],
      ]),
      body: call('get_tide'),
    }),
  },
  {
    id: 'reports-dot-dot',
    finding: 'file:///reports/../etc/passwd is allowed for a reader of file:///reports/* (the SDK hands the handler file:///etc/passwd)',
    case: fixedCase({
      name: 'reports-dot-dot',
      service: 'weather',
      caller: 'reader',
      classes: ['uri'],
      headers: JSON_HEADERS('2025-11-25'),
      body: read('file:///reports/../etc/passwd'),
    }),
  },
  {
    id: 'reports-dot-dot-encoded',
    finding: 'file:///reports/%2e%2e/etc/passwd is allowed for a reader of file:///reports/* (URL parsing resolves %2e%2e as ..)',
    case: fixedCase({
      name: 'reports-dot-dot-encoded',
      service: 'weather',
      caller: 'reader',
      classes: ['uri'],
      headers: JSON_HEADERS('2025-11-25'),
      body: read('file:///reports/%2e%2e/etc/passwd'),
    }),
  },
  {
    id: 'reports-dot-dot-headers',
    finding: 'the same on a 2026-07-28 service, where Mcp-Name file:///reports/../etc/passwd matches the header RBAC glob',
    case: fixedCase({
      name: 'reports-dot-dot-headers',
      service: 'tides',
      caller: 'reader',
      classes: ['uri'],
      headers: JSON_HEADERS('2026-07-28', [
        ['Mcp-Method', 'resources/read'],
        ['Mcp-Name', 'file:///reports/../etc/passwd'],
      ]),
      body: read('file:///reports/../etc/passwd'),
    }),
  },
  {
    id: 'nul-in-name',
    finding: 'get_forecast\\u0000x matches get_*',
    case: fixedCase({
      name: 'nul-in-name',
      service: 'weather',
      caller: 'reader',
      classes: ['ctrl'],
      headers: JSON_HEADERS('2025-11-25'),
      body: call('get_forecast\u0000x'),
    }),
  },
  {
    id: 'trailing-space',
    finding: '"drop_cache " (trailing space) gets past the exact deny of drop_cache (and matches drop_*)',
    case: fixedCase({
      name: 'trailing-space',
      service: 'weather',
      caller: 'reader',
      classes: ['ctrl'],
      headers: JSON_HEADERS('2025-11-25'),
      body: call('drop_cache '),
    }),
  },
  {
    id: 'mib-batch',
    // 403 (the denied call) or 400 (more messages than SDK servers accept): either way small and fast.
    finding: 'a 1 MiB batch of pings with one denied call: the 403 must stay small (< 64 KiB) and the decision fast',
    case: fixedCase({
      name: 'mib-batch',
      service: 'weather',
      caller: 'reader',
      classes: ['batch'],
      headers: JSON_HEADERS('2025-11-25'),
      body: bigBatch(1 << 20, 'admin_reset'),
    }),
    statuses: [400, 403],
    maxBodyBytes: 64 * 1024,
    maxCheckMs: 200,
  },
  {
    id: 'mib-batch-of-100',
    finding: 'the same within what SDK servers accept: 100 messages, ~1 MiB of long request ids, one denied call: a small 403, fast',
    case: fixedCase({
      name: 'mib-batch-of-100',
      service: 'weather',
      caller: 'reader',
      classes: ['batch'],
      headers: JSON_HEADERS('2025-11-25'),
      body: bigIdBatch((1 << 20) - 1024, 'admin_reset'),
    }),
    statuses: [403],
    maxBodyBytes: 64 * 1024,
    maxCheckMs: 200,
  },
];
