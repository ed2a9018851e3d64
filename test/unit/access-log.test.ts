// Envoy's access log format and docs/logging.md describe the same fields.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { accessLogFormat } from '../../control-plane/src/translate/listeners.ts';

test('every access log field is documented in docs/logging.md, with its command operator', () => {
  const format = accessLogFormat('gateway') as { fields: Record<string, { stringValue: string }> };
  const doc = readFileSync(new URL('../../docs/logging.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Envoy access logs'));
  const documented = new Set<string>();
  for (const m of section.matchAll(/^\| ((?:`[a-z_]+`(?:, )?)+) \|([^|]*)\|/gm)) {
    const names = [...(m[1] ?? '').matchAll(/`([a-z_]+)`/g)].map((x) => x[1] ?? '');
    const operators = [...(m[2] ?? '').matchAll(/`(%[^`]+%)`/g)].map((x) => x[1] ?? '');
    names.forEach((n, i) => {
      documented.add(n);
      const value = format.fields[n]?.stringValue;
      if (value?.startsWith('%')) assert.equal(operators[i], value, `${n}: docs/logging.md gives another operator`);
    });
  }
  assert.deepEqual([...documented].sort(), Object.keys(format.fields).sort());
  for (const f of ['mcp_method', 'mcp_name', 'mcp_session_id', 'response_code', 'duration_ms', 'upstream_host', 'upstream_locality'])
    assert.ok(f in format.fields, f);
});
