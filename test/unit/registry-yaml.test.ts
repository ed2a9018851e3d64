// The fast registry reader (sources/registry-yaml.ts) against the `yaml` library it stands in for: whatever it
// reads must be exactly parseDocument(...).toJS(); whatever it is not sure of it must leave to `yaml`.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseDocument } from 'yaml';
import { readSimpleYaml } from '../../control-plane/src/sources/registry-yaml.ts';
import { meshSpecs, registryYaml } from '../bench/mesh.ts';

function viaYaml(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true });
  assert.deepEqual(doc.errors, [], `yaml accepts ${JSON.stringify(text)}`);
  return doc.toJS();
}

const READ = [
  '',
  '# only a comment\n',
  'services: []\n',
  'services:\n',
  'services:\n  - name: a\n    protocol: "2025-11-25"\n    endpoints:\n      - { address: 10.0.0.1, port: 80, locality: { region: r, zone: z } }\n',
  // A sequence under a key at the key's own indent, then more keys.
  'services:\n- name: a\n  endpoints:\n  - address: 10.0.0.2\n    port: 8080\n  sidecar: true\ndefaults: {}\n',
  "a: 1 # comment\nb: \"x # not a comment\"\nc: 'it''s'\nd: it's plain\ne: 2001:db8::1\n",
  'a: [1, two, "three", [], {}]\nb: { x: -3, y: null, z: ~, w: True, v: FALSE }\n',
  'a:\n  -\n    b: 1\n  - # nothing\n  - c\n',
  'a: "esc \\" \\\\ \\n \\t \\/"\nb: 0\nc: -0\nd: 9007199254740\n',
  'a:\n    deep:\n        deeper: [x]\n#end\n',
  'a: { b: "}", c: "," }\n',
  'hosts: [weather.example.com, "*.example.com"]\n',
  'a: # comment\n  b: 1\nc: b#c\nd: b "c" d&e *f\ne: { f: g"h }\n',
  // YAML 1.1 look-alikes that YAML 1.2 (yaml's default) reads as strings, and plain scalars with colons.
  'a: 1_000\nb: yes\nc: 1:30\nd: 2026-07-28\ne: http://x.y/z\nf: x:y\ng: [a , b ,]\nh: -0\ni: é\n',
];

// Constructs outside the subset, duplicates and errors: left to `yaml` (undefined), never guessed.
const LEFT = [
  'a: &x 1\nb: *x\n',
  'a: !!str 1\n',
  'a: |\n  text\n',
  'a: >\n  text\n',
  '---\na: 1\n',
  '%YAML 1.2\n---\na: 1\n',
  'a:\tb\n',
  'a: 1\r\n',
  '\ufeffa: 1\n',
  'a: 1\na: 2\n',
  'a: { b: 1, b: 2 }\n',
  'a: 0x1F\n',
  'a: 0o17\n',
  'a: 1.5\n',
  'a: 1e3\n',
  'a: .inf\n',
  'a: 012\n',
  'a: +1\n',
  'a: multi\n  line\n',
  'a: "open\n  quote"\n',
  'a: { b: 1,\n  c: 2 }\n',
  '? a\n: b\n',
  '"a": 1\n',
  'true: 1\n',
  'null: 1\n',
  '__proto__: 1\n',
  'a: b: c\n',
  'a: -x\n',
  'a: [1, 2\n',
  'a: "x" y\n',
  'a: "\\u00e9"\n',
  '- a\nb: 1\n',
  'a: 1\n  b: 2\n',
  '  a: 1\n',
  'a: { b }\n',
  'a: { b:c }\n',
  'a: @x\n',
  'a: `x`\n',
  'a: [b: 1]\n',
  'a: 0.\n',
  'a: -.5\n',
  'a: 00\n',
  'a: 9999999999999999\n',
  'a: - b\n',
  '- - a\n',
  'a: &x\n  b: 1\n',
  '- &a x\n',
  '- !t x\n',
  'a: [&a x]\n',
  'a: { b: *x }\n',
  'a: ::1\n',
];

describe('fast registry YAML reader', () => {
  it('reads what it reads exactly as yaml parseDocument().toJS() does', () => {
    for (const text of READ) {
      const fast = readSimpleYaml(text);
      assert.notEqual(fast, undefined, `reads ${JSON.stringify(text)}`);
      assert.deepEqual(fast, viaYaml(text), JSON.stringify(text));
    }
  });

  it('leaves anything else to yaml', () => {
    for (const text of LEFT) assert.equal(readSimpleYaml(text), undefined, JSON.stringify(text));
  });

  it('reads the benchmark registry and the YAML files of this repository like yaml', () => {
    const bench = registryYaml(meshSpecs(50, 3));
    assert.deepEqual(readSimpleYaml(bench), viaYaml(bench));
    const root = path.join(import.meta.dirname, '..', '..');
    const files = ['deploy', 'test/golden/cases', 'test/sidecar/golden'].flatMap((d) =>
      readdirSync(path.join(root, d), { recursive: true, encoding: 'utf8' })
        .filter((n) => /\.ya?ml$/.test(n))
        .map((n) => path.join(root, d, n)),
    );
    let read = 0;
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      const fast = readSimpleYaml(text);
      if (fast === undefined) continue;
      assert.deepEqual(fast, viaYaml(text), f);
      read++;
    }
    assert.ok(read >= 20, `most files are in the subset (${read} of ${files.length})`);
  });
});
