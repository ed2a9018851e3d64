// The policy file parser: defaults, the example file, and error messages naming file, path and reason.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../control-plane/src/model/reader.ts';
import { decide, servicePolicyOf } from '../../control-plane/src/policy/engine.ts';
import { EC_P256_JWK, jwksText, RSA_JWK } from './jwks-fixtures.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const EC_JWKS = jwksText(EC_P256_JWK);
const EXAMPLE = path.join(here, '../../deploy/policy.example.yaml');

/** The problems of a bad policy, as "path: reason" lines. */
function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, '/etc/mcpmesh/policy.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.source, '/etc/mcpmesh/policy.yaml');
    assert.match(err.message, /^\/etc\/mcpmesh\/policy\.yaml: \d+ problem\(s\):\n/);
    return err.problems.map((p) => `${p.path}: ${p.reason}`);
  }
  assert.fail('expected the policy to be refused');
}

const PROVIDER =
  '{ name: dev, issuer: "http://127.0.0.1:18001/oauth", audiences: [mcp-mesh], jwksUri: "http://127.0.0.1:18001/oauth/jwks" }';

describe('parsePolicy', () => {
  it('parses the example policy (deploy/policy.example.yaml) and its worked example decides as documented', () => {
    const p = parsePolicy(readFileSync(EXAMPLE, 'utf8'), EXAMPLE);
    assert.equal(p.trustDomain, 'mcpmesh.local');
    assert.equal(p.roleClaim, 'roles');
    assert.deepEqual(p.providers, [
      {
        name: 'dev',
        issuer: 'http://127.0.0.1:18001/oauth',
        audiences: ['mcp-mesh'],
        jwksUri: 'http://127.0.0.1:18001/oauth/jwks',
        jwksCacheMs: 300_000,
      },
    ]);
    assert.deepEqual(
      p.roles.map((r) => r.name),
      ['analyst', 'admin', 'intern'],
    );
    assert.deepEqual(servicePolicyOf(p, 'files').mode, 'shadow');
    const d = (roles: string[], service: string, action: Parameters<typeof decide>[1]['action']): string => {
      const x = decide(p, { service, roles, action });
      return `${x.allow ? 'allow' : 'deny'} ${x.rule}`;
    };
    assert.equal(d(['analyst'], 'weather', { kind: 'tool', name: 'get_forecast' }), 'allow roles.analyst.allow[0]');
    assert.equal(d(['analyst'], 'weather', { kind: 'tool', name: 'get_secret_forecast' }), 'deny roles.analyst.deny[0]');
    assert.equal(d(['analyst'], 'files', { kind: 'resource', uri: 'file:///reports/2026/q1.pdf' }), 'allow roles.analyst.allow[1]');
    assert.equal(d(['admin'], 'files', { kind: 'tool', name: 'delete_file' }), 'deny roles.admin.deny[0]');
    assert.equal(d(['admin'], 'weather', { kind: 'prompt', name: 'anything' }), 'allow roles.admin.allow[0]');
    assert.equal(d(['intern'], 'weather', { kind: 'service' }), 'allow roles.intern.allow[0]');
    assert.equal(d(['intern'], 'weather', { kind: 'tool', name: 'get_history' }), 'deny default-deny');
    assert.equal(d(['analyst', 'intern'], 'files', { kind: 'tool', name: 'read_file' }), 'deny roles.intern.deny[0]');
  });

  it('fills in the defaults', () => {
    const p = parsePolicy(
      `
trustDomain: example.org
providers:
  - { name: a, issuer: "https://idp.example.org/", audiences: [mesh], jwks: '${EC_JWKS}' }
services:
  weather:
  files: { mode: shadow }
roles:
  r1:
  r2: { allow: [ { service: weather } ] }
`,
      'defaults.yaml',
    );
    assert.equal(p.roleClaim, 'roles');
    assert.deepEqual(p.providers[0], {
      name: 'a',
      issuer: 'https://idp.example.org/',
      audiences: ['mesh'],
      jwksCacheMs: 300_000,
      jwks: EC_JWKS,
    });
    assert.deepEqual(p.services, [
      { service: 'weather', mode: 'enforce', requiredScopes: [], forwardToken: false, allowedCallers: ['spiffe://example.org/gateway/*'] },
      { service: 'files', mode: 'shadow', requiredScopes: [], forwardToken: false, allowedCallers: ['spiffe://example.org/gateway/*'] },
    ]);
    // A service the policy does not list gets the same defaults.
    assert.deepEqual(servicePolicyOf(p, 'other'), {
      service: 'other',
      mode: 'enforce',
      requiredScopes: [],
      forwardToken: false,
      allowedCallers: ['spiffe://example.org/gateway/*'],
    });
    assert.deepEqual(p.roles, [
      { name: 'r1', allow: [], deny: [] },
      { name: 'r2', allow: [{ service: 'weather' }], deny: [] },
    ]);
  });

  it('reads every option', () => {
    const p = parsePolicy(
      `
trustDomain: mcpmesh.local
roleClaim: scope
providers:
  - { name: dev, issuer: "http://127.0.0.1:18001/oauth", audiences: [mcp-mesh, other], jwksUri: "http://127.0.0.1:18001/oauth/jwks", jwksCache: 30s }
  - { name: idp, issuer: "https://idp.example.org/", audiences: [mcp-mesh], jwksUri: "https://idp.example.org/jwks", jwksCaFile: /etc/mcpmesh/idp-ca.pem }
  - name: inline
    issuer: corp
    audiences: [x]
    jwks: { keys: [ { kty: RSA, kid: k1, n: "${RSA_JWK.n}", e: AQAB } ] }
services:
  weather: { mode: enforce, requiredScopes: [mcp.weather, "read:all"], forwardToken: true, allowedCallers: ["spiffe://mcpmesh.local/ns/*/sa/agent"] }
roles:
  analyst:
    allow: [ { service: weather, tools: ["get_*"], resources: ["weather://*"], prompts: ["*"], completions: ["*"] } ]
    deny:  [ { service: weather, tools: ["get_secret*"] } ]
`,
      'full.yaml',
    );
    assert.equal(p.roleClaim, 'scope');
    assert.equal(p.providers[0]?.jwksCacheMs, 30_000);
    assert.equal(p.providers[2]?.jwks, JSON.stringify({ keys: [{ kty: 'RSA', kid: 'k1', n: RSA_JWK.n, e: 'AQAB' }] }));
    assert.equal(p.providers[1]?.jwksCaFile, '/etc/mcpmesh/idp-ca.pem');
    assert.deepEqual(p.services[0], {
      service: 'weather',
      mode: 'enforce',
      requiredScopes: ['mcp.weather', 'read:all'],
      forwardToken: true,
      allowedCallers: ['spiffe://mcpmesh.local/ns/*/sa/agent'],
    });
    assert.deepEqual(p.roles[0], {
      name: 'analyst',
      allow: [{ service: 'weather', tools: ['get_*'], resources: ['weather://*'], prompts: ['*'], completions: ['*'] }],
      deny: [{ service: 'weather', tools: ['get_secret*'] }],
    });
  });

  it('refuses unknown keys everywhere, naming the path', () => {
    assert.deepEqual(
      problems(`
trustDomain: mcpmesh.local
rolesClaim: roles
providers: [ { name: dev, issuer: x, audiences: [a], jwksUri: "https://x/jwks", jwks_cache: 5m } ]
services: { weather: { mode: enforce, forward: true } }
roles:
  analyst:
    allows: []
    allow: [ { service: weather, tool: [echo] } ]
`),
      [
        'rolesClaim: unknown field (expected one of: trustDomain, roleClaim, providers, services, roles)',
        'providers[0].jwks_cache: unknown field (expected one of: name, issuer, audiences, jwksUri, jwks, jwksCache, jwksCaFile)',
        'services.weather.forward: unknown field (expected one of: mode, requiredScopes, forwardToken, allowedCallers)',
        'roles.analyst.allows: unknown field (expected one of: allow, deny)',
        'roles.analyst.allow[0].tool: unknown field (expected one of: service, tools, resources, prompts, completions)',
      ],
    );
  });

  it('refuses bad globs with the reason', () => {
    assert.deepEqual(
      problems(`
trustDomain: mcpmesh.local
roles:
  a:
    allow:
      - service: Weather
        tools: ["get_[a-z]*", "", "a**", "x?", 7]
        resources: ["weather://{city}", "ok://*", "has space"]
        prompts: ["{p}"]
      - { tools: [x] }
    deny:
      - { service: "*", completions: ["file:///{path}"] }
`),
      [
        'roles.a.allow[0].service: "Weather": a service pattern is a service name (lower-case letters, digits, "-") with optional "*" wildcards',
        'roles.a.allow[0].tools[0]: "get_[a-z]*": only "*" is a wildcard ("?", "[...]" and "{...}" are not supported)',
        'roles.a.allow[0].tools[1]: must not be empty (use "*" to match everything)',
        'roles.a.allow[0].tools[2]: "a**": "**" is not supported; a single "*" already matches any run of characters, "/" included',
        'roles.a.allow[0].tools[3]: "x?": only "*" is a wildcard ("?", "[...]" and "{...}" are not supported)',
        'roles.a.allow[0].tools[4]: must be a string pattern (got 7)',
        'roles.a.allow[0].resources[0]: "weather://{city}": "{...}" (URI template variables) is not supported; use "*" instead, e.g. "weather://*"',
        'roles.a.allow[0].resources[2]: "has space": must not contain whitespace or control characters',
        'roles.a.allow[0].prompts[0]: "{p}": only "*" is a wildcard ("?", "[...]" and "{...}" are not supported)',
        'roles.a.allow[1].service: is required (a service name or pattern, "*" for all)',
        'roles.a.deny[0].completions[0]: "file:///{path}": "{...}" (URI template variables) is not supported; use "*" instead, e.g. "weather://*"',
      ],
    );
  });

  it('refuses duplicate provider names, jwksUri and jwks both or neither, bad URLs', () => {
    assert.deepEqual(
      problems(`
trustDomain: mcpmesh.local
providers:
  - ${PROVIDER}
  - { name: dev, issuer: "http://other/", audiences: [a], jwksUri: "http://other/jwks" }
  - { name: both, issuer: x, audiences: [a], jwksUri: "https://x/jwks", jwks: '{"keys":[{}]}' }
  - { name: neither, issuer: x, audiences: [a] }
  - { name: badurl, issuer: "https://idp/", audiences: [a], jwksUri: "not a url" }
  - { name: ftp, issuer: "ftp://idp/", audiences: [a], jwksUri: "ftp://idp/jwks" }
  - { name: badjwks, issuer: x, audiences: [a], jwks: '{"keys": 1}', jwksCache: 5m }
  - { name: notjson, issuer: x, audiences: [a], jwks: '{keys' }
  - { name: noaud, issuer: x, jwksUri: "https://x/jwks" }
  - { name: "bad name", issuer: x, audiences: [], jwksUri: "https://x/jwks", jwksCache: forever }
`),
      [
        'providers[1].name: duplicate provider name "dev" (also at providers[0])',
        'providers[2]: set exactly one of jwksUri and jwks (both are set)',
        "providers[2].jwks.keys[0]: Envoy's jwt_authn cannot use this key: [kty] is missing in [keys]",
        'providers[3]: set exactly one of jwksUri (remote JWKS) and jwks (inline JWKS JSON); neither is set',
        'providers[4].jwksUri: "not a url" is not a URL',
        'providers[5].issuer: "ftp://idp/" must be an http:// or https:// URL',
        'providers[5].jwksUri: "ftp://idp/jwks" must be an http:// or https:// URL',
        'providers[6].jwks: must be a JWKS: an object with a "keys" list',
        'providers[6].jwksCache: only applies to a remote JWKS (jwksUri)',
        "providers[7].jwks: is not JSON: Expected property name or '}' in JSON at position 1 (line 1 column 2)",
        'providers[8].audiences: is required: tokens must have been issued for this mesh (its audience / resource indicator)',
        'providers[9].name: "bad name" must be 1-64 letters, digits, ".", "_" or "-"',
        'providers[9].audiences: must list at least one audience',
        'providers[9].jwksCache: must be a duration like "250ms", "5s", "1h" between 1000ms and 86400000ms (got "forever")',
      ],
    );
  });

  it('refuses resource patterns that are not in the normal form URIs are matched in (policy/uri.ts)', () => {
    assert.deepEqual(
      problems(`
trustDomain: mcpmesh.local
roles:
  a:
    allow:
      - service: files
        resources: ["FILE:///reports/*", "file:///reports/../etc/*", "file:///a%2e*", "file:///r%C3%A9*", "file:///a%3a*", "file:///a\\\\b", "file:///a%zz", "file:///ok%3A*", "file:///ré*", "weather://*"]
  "ops\\u0001zz2": {}
`),
      [
        'roles.a.allow[0].resources[0]: "FILE:///reports/*": the scheme must be in lower case ("file:"), as URIs are normalized',
        'roles.a.allow[0].resources[1]: "file:///reports/../etc/*": contains a dot segment ("." or ".."); URIs are matched with dot segments removed',
        'roles.a.allow[0].resources[2]: "file:///a%2e*": write "%2e" as ".", as URIs are normalized',
        'roles.a.allow[0].resources[3]: "file:///r%C3%A9*": write "%C3" (part of a UTF-8 character) as the character itself, as URIs are normalized',
        'roles.a.allow[0].resources[4]: "file:///a%3a*": write "%3a" in upper case ("%3A"), as URIs are normalized',
        'roles.a.allow[0].resources[5]: "file:///a\\\\b": contains a backslash; normalized URIs never do (a URI with one is refused)',
        'roles.a.allow[0].resources[6]: "file:///a%zz": "%" must be followed by two hex digits',
        'roles.ops\u0001zz2: "ops\\u0001zz2" is not a role name (1-256 characters, no whitespace or control characters)',
      ],
    );
  });

  it('refuses bad services, roles and top-level values', () => {
    assert.deepEqual(
      problems(`
roleClaim: "two words"
services:
  Bad_Name: {}
  weather: { mode: block, requiredScopes: ["has space"], forwardToken: "yes", allowedCallers: ["https://x", "spiffe://mcpmesh.local/a?"] }
  files: [1]
roles:
  "has space": {}
  a: [1]
  b: { allow: { service: x } }
`),
      [
        'trustDomain: is required',
        'roleClaim: "two words" must be a claim name such as "roles" or "scope"',
        'services.Bad_Name: "Bad_Name" is not a service name (a DNS label: lower-case letters, digits and "-", at most 63)',
        'services.weather.mode: "block" is not one of: enforce, shadow',
        'services.weather.requiredScopes[0]: "has space" is not an OAuth scope (printable, no spaces, quotes or backslashes)',
        'services.weather.forwardToken: must be true or false (got "yes")',
        'services.weather.allowedCallers[0]: "https://x": must be a SPIFFE ID pattern such as "spiffe://mcpmesh.local/gateway/*"',
        'services.weather.allowedCallers[1]: "spiffe://mcpmesh.local/a?": only "*" is a wildcard',
        'services.files: must be a mapping (mode, requiredScopes, forwardToken, allowedCallers)',
        'roles.has space: "has space" is not a role name (1-256 characters, no whitespace or control characters)',
        'roles.a: must be a mapping with allow and/or deny lists',
        'roles.b.allow: must be a list',
      ],
    );
  });

  it('refuses patterns and role names whose regex Envoy would refuse (RE2 program size over 100)', () => {
    const longTail = `get_*${'x'.repeat(89)}`; // 12 + 89 = 101 (measured against libre2 in test/xds/re2-size.test.ts)
    const okTail = `get_*${'x'.repeat(88)}`;
    const longRole = 'r'.repeat(75);
    const text = (tool: string, role: string, caller: string): string => `
trustDomain: mcpmesh.local
services:
  weather: { allowedCallers: ["${caller}"] }
roles:
  ${role}: { allow: [ { service: weather, tools: ["${tool}", "${'n'.repeat(300)}"] } ] }
`;
    assert.doesNotThrow(
      () => parsePolicy(text(okTail, 'r'.repeat(74), `spiffe://mcpmesh.local/ns/*/sa/${'a'.repeat(60)}`), 'ok.yaml'),
      'at the limit, and a long literal name (no "*") costs 4 whatever its length',
    );
    assert.throws(
      () => parsePolicy(text(longTail, longRole, `spiffe://mcpmesh.local/ns/*/sa/${'a'.repeat(100)}`), 'long.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const lines = err.problems.map((p) => `${p.path}: ${p.reason}`);
        assert.equal(lines.length, 3, lines.join('\n'));
        assert.match(lines[0] ?? '', /^services\.weather\.allowedCallers\[0\]: .* of program size 1\d\d; Envoy refuses regexes over 100/);
        assert.match(
          lines[1] ?? '',
          new RegExp(
            `^roles\\.${longRole}: role "${longRole}" compiles to the RE2 regex .* of program size 101; Envoy refuses regexes over 100: role names of up to 74 ASCII characters fit`,
          ),
        );
        assert.match(
          lines[2] ?? '',
          /^roles\.r+\.allow\[0\]\.tools\[0\]: "get_\*x+" compiles to the RE2 regex "\^get_\.\*x+\$" of program size 101/,
        );
        return true;
      },
    );
  });

  it('rules that reference nothing are fine', () => {
    const p = parsePolicy(
      'trustDomain: mcpmesh.local\nroles:\n  r: { allow: [ { service: no-such-service, tools: [nothing] } ] }\n',
      'x.yaml',
    );
    assert.equal(decide(p, { service: 'weather', roles: ['r'], action: { kind: 'service' } }).rule, 'default-deny');
  });

  it('reports YAML syntax errors and duplicate keys with a line number', () => {
    const a = problems('trustDomain: [unclosed\n');
    assert.match(a[0] ?? '', /^line \d+, column \d+: /);
    const b = problems('trustDomain: a\nroles:\n  x: {}\n  x: {}\n');
    assert.match(b[0] ?? '', /^line 4, column 3: Map keys must be unique/);
    assert.deepEqual(
      problems('- just a list\n'),
      ['(root): must be a mapping with trustDomain, providers, services and roles'].map((s) => s.replace('(root)', '')),
    );
  });
});
