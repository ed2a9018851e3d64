// The Compose demo stack (deploy/compose/) and its images (deploy/docker/), checked without a Docker engine:
//  - Debian's docker-compose (v1) validates the file (`config`), and rejects broken copies of it;
//  - the file's structure: pinned images, the services and the three MCP nodes the README promises, mounts
//    that exist, healthchecks behind every depends_on condition, ports bound to loopback;
//  - the sidecar and gateway commands parse with the CLI's own argument parsers;
//  - workload identity: every agent has exactly one credential, a join-token file on a volume only it and its
//    own one-shot minter mount, for its own identity; no key on any volume; the admin token only where needed;
//    the one-shots (deploy/compose/join-token.ts) run against a control plane configured like the Compose one
//    (policy, admin port beyond loopback with the admin token), and the CA signs each agent's CSR with its token;
//  - policy.yaml parses with the control plane's parser and names real server-everything tools;
//  - prometheus.yml scrapes every Envoy and the control plane (and passes `promtool check config` when
//    promtool is installed), Grafana's provisioning points at the mounted dashboards;
//  - call-tool.ts (the README's client) gets a dev token and calls a tool through a JWT-checking proxy in
//    front of a real server-everything, from a control plane on loopback and from one beyond loopback (with
//    the admin token, as in Compose).
// CI needs `docker-compose` (Debian package docker-compose) and, for the promtool check, `prometheus` (.ci/run
// installs both); without them on PATH the tests that run them are reported as skipped, naming the install command.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { DevIssuer } from '../../control-plane/src/auth/dev-issuer.ts';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { readJoinToken } from '../../control-plane/src/identity/join-token.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { parseSidecarArgs, type ParsedSidecar } from '../../sidecar/src/cli.ts';
import { parseGatewayArgs, type ParsedGateway } from '../../sidecar/src/gateway-cli.ts';
import { WorkloadIdentity } from '../../sidecar/src/identity.ts';
import { COMPOSE_ADMIN_TOKEN, DEV_CLIENT_SECRET } from '../../deploy/compose/call-tool.ts';
import { INSTALL, skipUnless } from '../helpers/tools.ts';
import { EVERYTHING_BIN, freePort, startEverythingHttp, type RunningServer } from '../helpers/everything.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const COMPOSE_DIR = path.join(ROOT, 'deploy/compose');
const COMPOSE_FILE = path.join(COMPOSE_DIR, 'docker-compose.yml');
const CALL_TOOL = path.join(COMPOSE_DIR, 'call-tool.ts');
const JOIN_TOKEN = path.join(COMPOSE_DIR, 'join-token.ts');
/** Where the one-shot minters run deploy/compose/join-token.ts from (bind-mounted into the sidecar image). */
const JOIN_TOKEN_IN_IMAGE = '/app/deploy/compose/join-token.ts';
const DOCKER_COMPOSE = process.env['DOCKER_COMPOSE'] ?? 'docker-compose';
/** v1 validates a file with `config` without a Docker engine; DOCKER_COMPOSE may name another compose binary. */
const skipCompose = skipUnless(DOCKER_COMPOSE, `${INSTALL.dockerCompose} (or set DOCKER_COMPOSE to a compose binary)`);
const skipPromtool = skipUnless('promtool', INSTALL.prometheus);
/** What the sidecar image sets (deploy/docker/sidecar.Dockerfile): the agent finds Envoy through it. */
const IMAGE_ENV = { ENVOY_BIN: '/usr/local/bin/envoy' };

// --- helpers --------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const obj = (v: unknown, what: string): Obj => {
  assert.ok(isObj(v), `${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
};
const strings = (v: unknown, what: string): string[] => {
  assert.ok(
    Array.isArray(v) && v.every((x) => typeof x === 'string'),
    `${what}: expected a list of strings (exec form), got ${JSON.stringify(v)}`,
  );
  return v;
};

/** The environment docker-compose interpolates with: ours, minus the variables the file reads (defaults apply). */
function composeEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [
    'MCPMESH_DEV_CLIENT_SECRET',
    'MCPMESH_ADMIN_TOKEN',
    'MCPMESH_GATEWAY_PORT',
    'GRAFANA_PORT',
    'GRAFANA_ADMIN_PASSWORD',
    'COMPOSE_FILE',
    'COMPOSE_PROFILES',
    'COMPOSE_PROJECT_NAME',
  ])
    delete env[k];
  return env;
}

function runCompose(file: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(DOCKER_COMPOSE, ['-f', file, 'config'], {
    encoding: 'utf8',
    env: composeEnv(),
    cwd: path.dirname(file),
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `${VAR:-default}` / `${VAR}` as Compose interpolates them with VAR unset. */
function interpolateDefaults(s: string): string {
  return s.replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_m, _name: string, def: string | undefined) => def ?? '');
}

// merge: Compose resolves YAML merge keys (`<<: *join-token`) like YAML 1.1 did.
const compose = obj(parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }), 'docker-compose.yml');
const services = obj(compose['services'], 'services');
const service = (name: string): Obj => obj(services[name], `services.${name}`);
const command = (name: string): string[] => strings(service(name)['command'], `services.${name}.command`);
const env = (name: string): Record<string, string> => {
  const e = service(name)['environment'] ?? {};
  assert.ok(isObj(e), `services.${name}.environment: use the mapping form`);
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, interpolateDefaults(String(v))]));
};

interface McpNode {
  /** Compose service running the sidecar agent. */
  agent: string;
  /** Compose service owning the network namespace (the MCP server's, or the agent's own for stdio). */
  netns: string;
  parsed: ParsedSidecar;
}

function mcpNodes(): McpNode[] {
  return Object.keys(services)
    .filter((name) => Array.isArray(service(name)['command']) && command(name)[0] === 'sidecar')
    .map((name) => {
      const nm = service(name)['network_mode'];
      const netns = typeof nm === 'string' && nm.startsWith('service:') ? nm.slice('service:'.length) : name;
      let parsed: ParsedSidecar;
      try {
        parsed = parseSidecarArgs(agentArgv(name), IMAGE_ENV);
      } catch (err) {
        assert.fail(`services.${name}.command does not parse with parseSidecarArgs:\n${(err as Error).message}`);
      }
      return { agent: name, netns, parsed };
    });
}

function gatewayParsed(): ParsedGateway {
  const cmd = command('gateway');
  assert.equal(cmd[0], 'gateway', 'the gateway service runs `mcpmesh gateway`');
  try {
    return parseGatewayArgs(agentArgv('gateway'), IMAGE_ENV);
  } catch (err) {
    assert.fail(`services.gateway.command does not parse with parseGatewayArgs:\n${(err as Error).message}`);
  }
}

// --- workload identity wiring ---------------------------------------------------------------------------

/** Every mount of a service (short syntax): a named volume or a bind mount. */
interface Mount {
  source: string;
  container: string;
  readOnly: boolean;
  bind: boolean;
}
function mounts(name: string): Mount[] {
  return ((service(name)['volumes'] as unknown[] | undefined) ?? []).map((v) => {
    assert.equal(typeof v, 'string', `services.${name}.volumes: use the short syntax SOURCE:CONTAINER[:ro]`);
    const [source = '', container = '', mode] = (v as string).split(':');
    return { source, container, readOnly: mode === 'ro', bind: source.startsWith('.') || source.startsWith('/') };
  });
}
/** Services running an agent: `mcpmesh sidecar` or `mcpmesh gateway` (each makes a key and holds an identity). */
const agents = (): string[] =>
  Object.keys(services).filter((n) => Array.isArray(service(n)['command']) && ['sidecar', 'gateway'].includes(command(n)[0] ?? ''));
/** The one-shot services running deploy/compose/join-token.ts. */
const minters = (): string[] =>
  Object.keys(services).filter(
    (n) => Array.isArray(service(n)['entrypoint']) && strings(service(n)['entrypoint'], 'entrypoint').includes(JOIN_TOKEN_IN_IMAGE),
  );
const isOneShot = (name: string): boolean => service(name)['restart'] === 'no';
/** Values of `flag` before a `--` (after it comes a stdio server's own command line). */
function flagValues(argv: readonly string[], flag: string): string[] {
  const end = argv.indexOf('--');
  const own = end === -1 ? argv : argv.slice(0, end);
  return own.flatMap((a, i) => (a === flag ? [own[i + 1] ?? ''] : a.startsWith(`${flag}=`) ? [a.slice(flag.length + 1)] : []));
}
const policyTrustDomain = (): string => parsePolicy(readFileSync(path.join(COMPOSE_DIR, 'policy.yaml'), 'utf8'), 'policy.yaml').trustDomain;

interface Identity {
  kind: 'service' | 'gateway';
  name: string;
}
/** The identity an agent's command asks for: its --service, or its gateway --name. */
function agentIdentity(agent: string): Identity {
  const argv = command(agent);
  if (argv[0] === 'gateway') return { kind: 'gateway', name: flagValues(argv, '--name')[0] ?? 'default' };
  return { kind: 'service', name: flagValues(argv, '--service')[0] ?? '' };
}
const spiffeIdOf = (i: Identity): string =>
  i.kind === 'service' ? sidecarId(policyTrustDomain(), i.name) : gatewayId(policyTrustDomain(), i.name);

/** How one agent proves its identity, with every rule of the wiring asserted on the way. */
interface CredentialWiring {
  agent: string;
  /** The agent's --join-token-file, inside its container. */
  file: string;
  volume: string;
  /** The one-shot that writes it, and the identity it asks the control plane for. */
  minter: string;
  minted: Identity;
}
function credentialWiring(agent: string): CredentialWiring {
  const argv = command(agent);
  const e = env(agent);
  for (const k of ['MCPMESH_JOIN_TOKEN', 'MCPMESH_JOIN_TOKEN_FILE', 'MCPMESH_K8S_TOKEN_FILE', 'MCPMESH_ADMIN_TOKEN']) {
    assert.equal(
      e[k],
      undefined,
      `services.${agent}: ${k} in the environment (a credential belongs in its own file; the admin token never in an agent)`,
    );
  }
  assert.deepEqual(
    flagValues(argv, '--join-token'),
    [],
    `services.${agent}: --join-token on the command line (ps and docker inspect show it): use --join-token-file`,
  );
  assert.deepEqual(flagValues(argv, '--k8s-token-file'), [], `services.${agent}: no Kubernetes token in Compose`);
  const files = flagValues(argv, '--join-token-file');
  assert.equal(files.length, 1, `services.${agent}: exactly one credential (--join-token-file), got ${JSON.stringify(files)}`);
  const file = files[0] as string;
  const mount = mounts(agent).find((m) => file.startsWith(`${m.container}/`));
  assert.ok(mount, `services.${agent}: --join-token-file ${file} is on no volume the agent mounts`);
  assert.ok(!mount.bind, `services.${agent}: the join token comes from a named volume (not a host path)`);
  assert.ok(mount.readOnly, `services.${agent}: mounts ${mount.source} read-only`);
  assert.ok(obj(compose['volumes'] ?? {}, 'volumes')[mount.source] !== undefined, `volume ${mount.source} is not declared under volumes:`);
  const users = Object.keys(services).filter((n) => mounts(n).some((m) => !m.bind && m.source === mount.source));
  const writers = users.filter((n) => minters().includes(n));
  assert.deepEqual(
    users.filter((n) => agents().includes(n)),
    [agent],
    `volume ${mount.source} holds ${agent}'s token: no other agent may mount it`,
  );
  assert.equal(writers.length, 1, `volume ${mount.source}: exactly one one-shot writes it (got ${JSON.stringify(writers)})`);
  assert.deepEqual(
    users.sort(),
    [agent, writers[0] as string].sort(),
    `volume ${mount.source}: only ${agent} and its minter mount it (got ${JSON.stringify(users)})`,
  );
  const minter = writers[0] as string;
  const minterMount = mounts(minter).find((m) => m.source === mount.source);
  assert.ok(minterMount && !minterMount.readOnly, `services.${minter}: mounts ${mount.source} writable`);
  const mc = command(minter);
  const out = flagValues(mc, '--out');
  assert.deepEqual(
    out,
    [path.posix.join(minterMount.container, path.posix.relative(mount.container, file))],
    `services.${minter} --out must be the file ${agent} reads (${file})`,
  );
  const svc = flagValues(mc, '--service');
  const gw = flagValues(mc, '--gateway');
  assert.equal(svc.length + gw.length, 1, `services.${minter}: exactly one --service or --gateway`);
  const minted: Identity = svc.length > 0 ? { kind: 'service', name: svc[0] as string } : { kind: 'gateway', name: gw[0] as string };
  return { agent, file, volume: mount.source, minter, minted };
}

/** A join token's shape, as the agent reads it before trusting anything (readJoinToken): unsigned, for parsing. */
function fakeJoinToken(spiffeId: string): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'ES256', typ: 'mcpmesh-join+jwt' })}.${b64({ sub: spiffeId, cah: '0'.repeat(64), exp: Math.floor(Date.now() / 1000) + 3600 })}.c2ln`;
}
let scratch: string | undefined;
after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});
/**
 * The agent's arguments (without the command word) with its --join-token-file pointing at a local file:
 * `tokenFile`, or one holding a token for the identity its own minter asks for. The CLI parsers read the file
 * and refuse a token for another identity, so a minter wired to the wrong agent fails here.
 */
function agentArgv(agent: string, tokenFile?: string): string[] {
  const w = credentialWiring(agent);
  let file = tokenFile;
  if (file === undefined) {
    scratch ??= mkdtempSync(path.join(tmpdir(), 'mcpmesh-compose-tokens-'));
    file = path.join(scratch, `${agent}.token`);
    writeFileSync(file, fakeJoinToken(spiffeIdOf(w.minted)));
  }
  // Files the agent reads from a bind mount (the policy) are read on the host side, where Compose mounts them from.
  const binds = bindMounts().filter((m) => m.service === agent);
  const argv = command(agent)
    .slice(1)
    .map((a) => binds.find((m) => m.container === a)?.host ?? a);
  const i = argv.indexOf('--join-token-file');
  return [...argv.slice(0, i + 1), file, ...argv.slice(i + 2)];
}

/** Host side of every short-syntax bind mount, resolved like Compose does (relative to the file's folder). */
function bindMounts(): Array<{ service: string; host: string; container: string }> {
  const out: Array<{ service: string; host: string; container: string }> = [];
  for (const name of Object.keys(services)) {
    for (const v of (service(name)['volumes'] as unknown[] | undefined) ?? []) {
      assert.equal(typeof v, 'string', `services.${name}.volumes: use the short syntax HOST:CONTAINER[:ro]`);
      const [host = '', container = ''] = (v as string).split(':');
      if (!host.startsWith('.') && !host.startsWith('/')) continue; // a named volume
      out.push({ service: name, host: path.resolve(COMPOSE_DIR, host), container });
    }
  }
  return out;
}

// --- docker-compose config ------------------------------------------------------------------------------

describe('docker-compose config (Debian docker-compose v1, no engine needed)', () => {
  it('accepts deploy/compose/docker-compose.yml and lists every service', { skip: skipCompose }, () => {
    const r = runCompose(COMPOSE_FILE);
    assert.equal(r.status, 0, `docker-compose config failed:\n${r.stderr}`);
    const normalized = obj(parse(r.stdout), 'config output');
    assert.deepEqual(Object.keys(obj(normalized['services'], 'services')).sort(), Object.keys(services).sort());
    // Interpolation defaults reach the containers: the dev secret the README and call-tool.ts use.
    const cp = obj(obj(normalized['services'], 'services')['control-plane'], 'control-plane');
    assert.equal(obj(cp['environment'], 'environment')['MCPMESH_DEV_CLIENT_SECRET'], DEV_CLIENT_SECRET);
    assert.equal(obj(cp['environment'], 'environment')['MCPMESH_DEV_ISSUER'], 'on', 'quoted "on" (YAML 1.1 would read a bare on as true)');
    // The admin token's default reaches the control plane, every join-token one-shot and the client alike.
    for (const name of ['control-plane', 'client', ...minters()]) {
      const s = obj(obj(normalized['services'], 'services')[name], name);
      assert.equal(
        obj(s['environment'], `${name}.environment`)['MCPMESH_ADMIN_TOKEN'],
        COMPOSE_ADMIN_TOKEN,
        `${name}: MCPMESH_ADMIN_TOKEN`,
      );
    }
  });

  describe('rejects broken copies (so the check above means something)', () => {
    let dir: string;
    let copy: string;
    const original = readFileSync(COMPOSE_FILE, 'utf8');
    before(() => {
      if (skipCompose) return;
      // Same layout as the repository, so relative build contexts and mounts resolve as in the real file.
      dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-compose-'));
      mkdirSync(path.join(dir, 'deploy/compose'), { recursive: true });
      copy = path.join(dir, 'deploy/compose/docker-compose.yml');
    });
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const cases: Array<[string, (s: string) => string, RegExp]> = [
      ['the unmodified copy passes', (s) => s, /^$/],
      [
        'an unknown service key',
        (s) => s.replace('  consul:\n    image:', '  consul:\n    imagee: typo\n    image:'),
        /imagee|Additional properties|Unsupported config option/i,
      ],
      [
        'a depends_on on a service that does not exist',
        (s) =>
          s.replace(
            '      consul:\n        condition: service_healthy\n    healthcheck:\n      test: ["CMD", "node", "-e", "fetch(\'http://127.0.0.1:18001',
            '      consul-typo:\n        condition: service_healthy\n    healthcheck:\n      test: ["CMD", "node", "-e", "fetch(\'http://127.0.0.1:18001',
          ),
        /consul-typo/,
      ],
      [
        'an invalid depends_on condition',
        (s) => s.replace('condition: service_healthy', 'condition: service_ready'),
        /condition|service_ready/i,
      ],
      [
        'an agent mounting a volume that is not declared',
        (s) => s.replace('      - gateway-join-token:/run/mcpmesh/join:ro', '      - gateway-join-tokn:/run/mcpmesh/join:ro'),
        /gateway-join-tokn/,
      ],
      ['a YAML syntax error', (s) => s.replace('services:\n', 'services:\n  broken: [\n'), /yaml|while parsing|expected/i],
    ];
    for (const [what, edit, expected] of cases) {
      it(what, { skip: skipCompose }, () => {
        const text = edit(original);
        if (what !== 'the unmodified copy passes')
          assert.notEqual(text, original, 'the edit must change the file (the test is stale otherwise)');
        writeFileSync(copy, text);
        const r = runCompose(copy);
        if (what === 'the unmodified copy passes') {
          assert.equal(r.status, 0, r.stderr);
        } else {
          assert.notEqual(r.status, 0, `docker-compose config accepted a broken file (${what})`);
          assert.match(r.stderr, expected);
        }
      });
    }
  });
});

// --- structure ------------------------------------------------------------------------------------------

describe('compose file structure', () => {
  it('has no obsolete top-level version key and the services the README describes', () => {
    assert.equal(compose['version'], undefined, 'the Compose Specification needs no version key (v2 warns about it)');
    for (const s of ['consul', 'control-plane', 'gateway', 'prometheus', 'grafana']) assert.ok(services[s], `service ${s} is missing`);
  });

  it('pins every third-party image to a version; the mesh images are built from deploy/docker', () => {
    for (const name of Object.keys(services)) {
      const s = service(name);
      const image = s['image'];
      assert.equal(typeof image, 'string', `services.${name}: needs an image (built services tag what they build)`);
      const m = /^([a-z0-9][a-z0-9._/-]*):([A-Za-z0-9_][A-Za-z0-9_.-]*)$/.exec(image as string);
      assert.ok(m, `services.${name}.image "${String(image)}" has no tag`);
      const tag = m[2] ?? '';
      assert.notEqual(tag, 'latest', `services.${name}.image uses :latest`);
      if (s['build'] !== undefined) {
        const b = obj(s['build'], `services.${name}.build`);
        const context = path.resolve(COMPOSE_DIR, String(b['context']));
        assert.equal(context, ROOT, `services.${name}.build.context must be the repository root (see .dockerignore)`);
        const dockerfile = path.join(context, String(b['dockerfile']));
        assert.ok(existsSync(dockerfile), `services.${name}.build.dockerfile ${dockerfile} does not exist`);
        if (b['target'] !== undefined)
          assert.match(
            readFileSync(dockerfile, 'utf8'),
            new RegExp(`^FROM \\S+ AS ${String(b['target'])}$`, 'm'),
            `target ${String(b['target'])} not in ${dockerfile}`,
          );
        assert.match(String(image), /^mcpmesh\//, `services.${name}: a locally built image is named mcpmesh/...`);
      } else {
        assert.match(tag, /\d+\.\d+\.\d+/, `services.${name}.image "${String(image)}" must be pinned to a full version`);
      }
    }
    // All services building one image build it the same way (docker-compose v1 builds each of them).
    const byImage = new Map<string, string>();
    for (const name of Object.keys(services)) {
      const s = service(name);
      if (s['build'] === undefined) continue;
      const key = JSON.stringify(s['build']);
      const seen = byImage.get(String(s['image']));
      if (seen !== undefined) assert.equal(key, seen, `services.${name}: image ${String(s['image'])} is built differently elsewhere`);
      byImage.set(String(s['image']), key);
    }
  });

  it("pins the Dockerfiles' base images to versions and runs them as a non-root user", () => {
    for (const file of ['control-plane.Dockerfile', 'sidecar.Dockerfile']) {
      const text = readFileSync(path.join(ROOT, 'deploy/docker', file), 'utf8');
      const args = new Map([...text.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1] ?? '', m[2] ?? '']));
      for (const [, from] of text.matchAll(/^FROM (\S+)/gm)) {
        const ref = (from ?? '').replace(/^\$\{(\w+)\}$/, (_m, a: string) => args.get(a) ?? `<unset ARG ${a}>`);
        if (!ref.includes(':') && !ref.includes('/')) continue; // an earlier stage
        assert.match(ref, /^[a-z0-9._/-]+:v?\d+\.\d+\.\d+[A-Za-z0-9.-]*$/, `${file}: FROM ${ref} is not pinned to a version`);
      }
      const users = [...text.matchAll(/^USER (\S+)$/gm)].map((m) => m[1] ?? '');
      assert.ok(users.length > 0, `${file}: no USER`);
      for (const u of users) assert.match(u, /^[1-9]\d*:[1-9]\d*$/, `${file}: USER ${u} must be a numeric non-root uid:gid`);
      assert.match(text, /npm ci --omit=dev/, `${file}: production dependencies only`);
    }
    const sidecar = readFileSync(path.join(ROOT, 'deploy/docker/sidecar.Dockerfile'), 'utf8');
    assert.match(sidecar, /^ENTRYPOINT \["node", "\/app\/control-plane\/src\/cli\.ts"\]$/m);
    assert.match(
      readFileSync(path.join(ROOT, 'deploy/docker/control-plane.Dockerfile'), 'utf8'),
      /^ENTRYPOINT \["node", "\/app\/control-plane\/src\/main\.ts"\]$/m,
    );
  });

  it('the demo server-everything is the version the tests run against', () => {
    const demo = JSON.parse(readFileSync(path.join(ROOT, 'deploy/docker/server-everything/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const installed = JSON.parse(readFileSync(path.join(path.dirname(EVERYTHING_BIN), '../package.json'), 'utf8')) as { version: string };
    assert.equal(demo.dependencies['@modelcontextprotocol/server-everything'], installed.version);
    const lock = JSON.parse(readFileSync(path.join(ROOT, 'deploy/docker/server-everything/package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string }>;
    };
    assert.equal(
      lock.packages['node_modules/@modelcontextprotocol/server-everything']?.version,
      installed.version,
      'regenerate the lockfile: npm install --package-lock-only (in deploy/docker/server-everything)',
    );
  });

  it('.dockerignore is an allow-list that lets in what the Dockerfiles copy, and nothing like node_modules', () => {
    const lines = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    assert.equal(lines[0], '*');
    const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    assert.ok(!allowed.some((a) => a.includes('node_modules')));
    for (const file of ['control-plane.Dockerfile', 'sidecar.Dockerfile']) {
      const text = readFileSync(path.join(ROOT, 'deploy/docker', file), 'utf8');
      for (const [, srcs] of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
        for (const src of (srcs ?? '').split(' ').filter((s) => !s.startsWith('--'))) {
          assert.ok(
            allowed.some((a) => src === a || src.startsWith(`${a}/`)),
            `${file}: COPY ${src} is excluded by .dockerignore`,
          );
          assert.ok(existsSync(path.join(ROOT, src)), `${file}: COPY ${src}: no such path in the repository`);
        }
      }
    }
  });

  it('every bind-mounted host path exists in the repository', () => {
    const mounts = bindMounts();
    assert.ok(mounts.length >= 5);
    for (const m of mounts) {
      assert.ok(m.host.startsWith(ROOT + path.sep), `services.${m.service}: ${m.host} is outside the repository`);
      assert.ok(existsSync(m.host), `services.${m.service}: mounted ${path.relative(ROOT, m.host)} does not exist`);
    }
  });

  it('every depends_on waits for a healthcheck that exists, or for a one-shot to complete; every long-running service has a healthcheck', () => {
    for (const name of Object.keys(services)) {
      const s = service(name);
      const profiles = s['profiles'];
      const hc = s['healthcheck'];
      if (profiles === undefined && !isOneShot(name)) assert.ok(isObj(hc) && Array.isArray(hc['test']), `services.${name}: no healthcheck`);
      const deps = s['depends_on'] ?? {};
      assert.ok(isObj(deps), `services.${name}.depends_on: use the long form with conditions`);
      for (const [dep, spec] of Object.entries(deps)) {
        assert.ok(services[dep], `services.${name} depends on unknown ${dep}`);
        const condition = obj(spec, `${name}.depends_on.${dep}`)['condition'];
        if (isOneShot(dep)) {
          assert.equal(
            condition,
            'service_completed_successfully',
            `services.${name}.depends_on.${dep}: ${dep} is a one-shot (restart: "no")`,
          );
        } else {
          assert.equal(condition, 'service_healthy', `services.${name}.depends_on.${dep}`);
          assert.ok(isObj(service(dep)['healthcheck']), `services.${name} waits for ${dep}'s health, which has no healthcheck`);
        }
      }
    }
    // `up --wait` accepts an exited one-shot only when a service waits for its completion.
    for (const name of Object.keys(services).filter(isOneShot)) {
      const waiters = Object.keys(services).filter(
        (n) => isObj(service(n)['depends_on']) && obj(service(n)['depends_on'], 'depends_on')[name] !== undefined,
      );
      assert.ok(waiters.length > 0, `one-shot ${name}: no service waits for it (docker compose up --wait would report it as exited)`);
    }
  });

  it('publishes ports on 127.0.0.1 only (the dev issuer secret must not reach the LAN)', () => {
    for (const name of Object.keys(services)) {
      for (const p of (service(name)['ports'] as unknown[] | undefined) ?? []) {
        assert.match(interpolateDefaults(String(p)), /^127\.0\.0\.1:\d+:\d+$/, `services.${name}.ports: ${String(p)}`);
      }
    }
  });
});

describe("MCP nodes and the gateway (parsed with the CLI's own argument parsers)", () => {
  it('three MCP nodes in two zones of one region, one of them a stdio server through the bridge', () => {
    const nodes = mcpNodes();
    assert.equal(nodes.length, 3, `MCP nodes: ${nodes.map((n) => n.agent).join(', ')}`);
    const zones = nodes.map((n) => n.parsed.options.zone);
    assert.deepEqual([...new Set(zones)].sort(), ['central', 'edge']);
    assert.equal(zones.filter((z) => z === 'central').length, 2);
    assert.deepEqual([...new Set(nodes.map((n) => n.parsed.options.region))], ['dc1']);
    const stdio = nodes.filter((n) => n.parsed.options.stdio);
    assert.equal(stdio.length, 1);
    const [cmd] = stdio.map((n) => n.parsed.options.stdio);
    assert.deepEqual(cmd?.args.slice(-1), ['stdio'], "server-everything's stdio transport");
    assert.match(cmd?.args[0] ?? '', /server-everything\/dist\/index\.js$/);
    // Unique Consul service ids, and distinct network namespaces (each Envoy binds :15006/:15090/:15000).
    assert.equal(new Set(nodes.map((n) => n.parsed.options.serviceId)).size, 3);
    assert.equal(new Set(nodes.map((n) => n.netns)).size, 3);
  });

  it('each HTTP node: the sidecar and its MCP server share one network namespace, and the sidecar proxies the port it listens on', () => {
    for (const n of mcpNodes().filter((x) => !x.parsed.options.stdio)) {
      assert.notEqual(n.netns, n.agent, `${n.agent}: network_mode: "service:<node>"`);
      const [serverName, more] = Object.keys(services).filter((x) => x !== n.agent && service(x)['network_mode'] === `service:${n.netns}`);
      assert.ok(serverName !== undefined && more === undefined, `${n.netns}: exactly one MCP server joins it beside ${n.agent}`);
      const server = service(serverName);
      assert.equal(env(serverName)['PORT'], String(n.parsed.options.appPort), `${n.agent} --port vs ${serverName}'s PORT`);
      assert.deepEqual(strings(server['command'], `${serverName}.command`), ['streamableHttp']);
      assert.match(strings(server['entrypoint'], `${serverName}.entrypoint`).join(' '), /^node \S+server-everything\/dist\/index\.js$/);
      assert.ok(obj(service(n.agent)['depends_on'], 'depends_on')[serverName], `${n.agent} waits for ${serverName}`);
    }
  });

  it("restarts keep the network: every namespace another container joins is held by a container that only sleeps (the pause container's role)", () => {
    // Docker keeps a joiner in the namespace it joined: if its owner restarted (a crashed MCP server with
    // restart: unless-stopped), the joiner would be left without a network for good (issue 12).
    const owners = new Set(
      Object.values(services)
        .map((x) => (x as Record<string, unknown>)['network_mode'])
        .filter((m): m is string => typeof m === 'string' && m.startsWith('service:'))
        .map((m) => m.slice('service:'.length)),
    );
    assert.deepEqual([...owners].sort(), ['everything-central', 'weather-central']);
    for (const owner of owners) {
      const h = service(owner);
      assert.equal(h['command'], undefined, `${owner} runs nothing but its entrypoint`);
      assert.match(
        strings(h['entrypoint'], `${owner}.entrypoint`).join(' '),
        /^node -e process\.on\('SIGTERM', \(\) => process\.exit\(0\)\); setInterval\(\(\) => \{\}, 1 << 30\)$/,
      );
      assert.equal(h['network_mode'], undefined, `${owner} owns its namespace`);
      assert.equal(h['restart'], 'unless-stopped');
      const joiners = Object.keys(services)
        .filter((x) => service(x)['network_mode'] === `service:${owner}`)
        .sort();
      assert.deepEqual(joiners, [`${owner}-server`, `${owner}-sidecar`], `${owner}: the MCP server and its sidecar join it`);
      assert.ok(obj(service(`${owner}-server`)['depends_on'], 'depends_on')[owner], `${owner}-server starts after its namespace holder`);
      for (const j of joiners) assert.equal(service(j)['restart'], 'unless-stopped', `${j} restarts on its own, into the held namespace`);
    }
  });

  it('each agent reaches Consul and the control plane by service name, runs Envoy itself and serves /readyz where its healthcheck looks', () => {
    for (const n of mcpNodes()) {
      const o = n.parsed.options;
      assert.ok(services[new URL(o.consul.address).hostname], `${n.agent}: --consul ${o.consul.address}`);
      assert.equal(o.controlPlane.host, 'control-plane');
      assert.equal(o.controlPlane.port, 18000);
      assert.equal(o.envoyBin, IMAGE_ENV.ENVOY_BIN, `${n.agent}: the agent starts the image's Envoy`);
      assert.equal(o.externalEnvoy, undefined);
      const hc = strings(obj(service(n.agent)['healthcheck'], 'healthcheck')['test'], 'test').join(' ');
      assert.ok(
        hc.includes(`127.0.0.1:${o.healthPort}/readyz`),
        `${n.agent}: healthcheck must probe the agent's /readyz on ${o.healthPort}`,
      );
    }
  });

  it('the gateway: placed in zone central, its listener port published, xDS from the control plane', () => {
    const g = gatewayParsed();
    assert.equal(g.bootstrap.zone, 'central');
    assert.equal(g.bootstrap.region, 'dc1');
    assert.equal(g.bootstrap.controlPlane.host, 'control-plane');
    assert.equal(g.envoyBin, IMAGE_ENV.ENVOY_BIN);
    assert.equal(g.printBootstrap, false);
    const ports = ((service('gateway')['ports'] as unknown[]) ?? []).map((p) => interpolateDefaults(String(p)));
    assert.ok(
      ports.some((p) => p.endsWith(`:${g.bootstrap.listenerPort}`)),
      `gateway listener ${g.bootstrap.listenerPort} not published: ${ports.join(', ')}`,
    );
    const hc = strings(obj(service('gateway')['healthcheck'], 'healthcheck')['test'], 'test').join(' ');
    assert.ok(
      hc.includes(`127.0.0.1:${g.bootstrap.statsPort ?? 15090}/ready`),
      'gateway healthcheck probes Envoy /ready on the stats port',
    );
  });

  it("the gateway decides beside its Envoy with the control plane's own policy file (the data path survives the control plane)", () => {
    const g = gatewayParsed();
    assert.ok(g.localAuthz, 'the gateway runs --policy');
    // The very file the control plane reads, mounted read-only, the same host file.
    const cpPolicy = bindMounts().find((m) => m.service === 'control-plane' && m.container === env('control-plane')['MCPMESH_POLICY']);
    const gwPolicy = bindMounts().find((m) => m.service === 'gateway' && m.host === g.localAuthz?.policyFile);
    assert.ok(cpPolicy && gwPolicy, 'both mount policy.yaml');
    assert.equal(gwPolicy.host, cpPolicy.host);
    assert.ok(
      mounts('gateway').some((m) => m.container === gwPolicy.container && m.readOnly && m.bind),
      'read-only bind mount',
    );
    // Its socket in the container's own /tmp, beside the SDS socket: Envoy is the agent's child there.
    assert.equal(path.dirname(g.localAuthz.socket), path.dirname(g.identity?.sdsSocket ?? ''));
    assert.deepEqual(g.bootstrap.localAuthz, { socket: g.localAuthz.socket });
  });
});

describe('workload identity: one credential per agent, its own, and no key on any volume', () => {
  it('every agent (three sidecar agents and the gateway) joins with exactly one join-token file, written by its own one-shot for its own identity', () => {
    const all = agents();
    assert.deepEqual(all.sort(), ['everything-central-sidecar', 'gateway', 'weather-central-sidecar', 'weather-edge'].sort());
    const seenMinters = new Set<string>();
    for (const agent of all) {
      const w = credentialWiring(agent);
      assert.deepEqual(
        w.minted,
        agentIdentity(agent),
        `services.${w.minter} mints a token for ${w.minted.kind} ${w.minted.name}, but ${agent} is ${agentIdentity(agent).kind} ${agentIdentity(agent).name}`,
      );
      assert.ok(!seenMinters.has(w.minter), `services.${w.minter} mints for two agents: a join token is single-use`);
      seenMinters.add(w.minter);
      // The CLI reads the file and checks the token's identity against its own: a secured agent.
      const parsed =
        agent === 'gateway'
          ? parseGatewayArgs(agentArgv(agent), IMAGE_ENV).identity
          : parseSidecarArgs(agentArgv(agent), IMAGE_ENV).options.identity;
      assert.ok(parsed, `${agent}: no identity (it would run unsecured, plain xDS)`);
      assert.equal(parsed.spiffeId, spiffeIdOf(agentIdentity(agent)));
      assert.equal(parsed.trustDomain, policyTrustDomain(), `${agent}: trust domain of policy.yaml`);
      assert.equal(parsed.credential.type, 'join-token');
    }
    assert.deepEqual([...seenMinters].sort(), minters().sort(), 'every one-shot minter serves exactly one agent');
  });

  it("no volume is shared by two agents, and no key is on any volume: the SDS socket and the key stay in the agent's container", () => {
    const byVolume = new Map<string, string[]>();
    for (const agent of agents()) {
      for (const m of mounts(agent)) if (!m.bind) byVolume.set(m.source, [...(byVolume.get(m.source) ?? []), agent]);
      const argv = command(agent);
      assert.deepEqual(
        flagValues(argv, '--identity-dir'),
        [],
        `${agent}: --identity-dir writes key.pem (for proxyless clients): not in this stack`,
      );
      const identity =
        agent === 'gateway'
          ? parseGatewayArgs(agentArgv(agent), IMAGE_ENV).identity
          : parseSidecarArgs(agentArgv(agent), IMAGE_ENV).options.identity;
      const socket = identity?.sdsSocket ?? '';
      assert.ok(socket.startsWith('/'), `${agent}: --sds-socket`);
      for (const m of mounts(agent))
        assert.ok(
          !socket.startsWith(`${m.container}/`),
          `${agent}: the SDS socket ${socket} is on ${m.source}; it must stay inside the container (Envoy runs there too)`,
        );
      // The one host file an agent may read is the policy (read-only; it holds no key): the gateway decides with it.
      const policyMount = (m: Mount): boolean =>
        m.readOnly && path.resolve(COMPOSE_DIR, m.source) === path.join(COMPOSE_DIR, 'policy.yaml');
      assert.ok(!mounts(agent).some((m) => m.bind && !policyMount(m)), `${agent}: bind-mounts a host path`);
    }
    for (const [volume, users] of byVolume) assert.equal(users.length, 1, `volume ${volume} is mounted by ${users.join(' and ')}`);
    // The sidecar containers that share a network namespace with their MCP server share nothing else with it.
    for (const n of mcpNodes().filter((x) => x.netns !== x.agent))
      assert.equal(service(n.netns)['volumes'], undefined, `${n.netns}: mounts a volume`);
  });

  it('the one-shots run after the control plane is healthy, the agents after them; only they, the control plane and the client hold the admin token', () => {
    for (const m of minters()) {
      const s = service(m);
      assert.ok(isOneShot(m), `${m}: restart: "no"`);
      assert.equal(
        obj(obj(s['depends_on'], 'depends_on')['control-plane'], 'control-plane')['condition'],
        'service_healthy',
        `${m} waits for the control plane`,
      );
      assert.equal(s['read_only'], true, `${m}: read_only`);
      assert.deepEqual(s['cap_drop'], ['ALL'], `${m}: cap_drop ALL`);
      assert.equal(
        s['image'],
        service('gateway')['image'],
        `${m}: the sidecar image (its /run/mcpmesh/join belongs to uid 10001, which a new volume inherits)`,
      );
      assert.ok(
        mounts(m).some(
          (x) => x.bind && x.container === JOIN_TOKEN_IN_IMAGE && x.readOnly && path.resolve(COMPOSE_DIR, x.source) === JOIN_TOKEN,
        ),
        `${m}: mounts deploy/compose/join-token.ts read-only`,
      );
      const url = new URL(env(m)['MCPMESH_ADMIN_URL'] ?? '');
      assert.equal(url.hostname, 'control-plane');
      assert.equal(url.port, '18001', 'the admin port');
    }
    for (const agent of agents()) {
      const { minter } = credentialWiring(agent);
      assert.equal(
        obj(obj(service(agent)['depends_on'], 'depends_on')[minter], minter)['condition'],
        'service_completed_successfully',
        `${agent} starts once ${minter} has written its token`,
      );
    }
    const holders = Object.keys(services)
      .filter((n) => env(n)['MCPMESH_ADMIN_TOKEN'] !== undefined)
      .sort();
    assert.deepEqual(holders, ['client', 'control-plane', ...minters()].sort());
    for (const h of holders)
      assert.equal(env(h)['MCPMESH_ADMIN_TOKEN'], env('control-plane')['MCPMESH_ADMIN_TOKEN'], `${h}: the control plane's admin token`);
  });

  it('the control plane: xDS over TLS on the network, admin and authorizer beyond loopback, an admin token the admin server accepts', () => {
    const e = env('control-plane');
    assert.ok(e['MCPMESH_POLICY'], 'a policy: the mesh is secured (the CA, TLS xDS)');
    assert.equal(e['MCPMESH_XDS_INSECURE'], undefined, 'never plain xDS');
    assert.equal(e['MCPMESH_BIND'], undefined, 'each bind set on its own');
    assert.equal(e['MCPMESH_XDS_HOST'], '0.0.0.0');
    assert.equal(e['MCPMESH_ADMIN_HOST'], '0.0.0.0', 'healthchecks, Prometheus and the one-shots reach the admin port by name');
    assert.equal(e['MCPMESH_AUTHZ_BIND'], '0.0.0.0', 'the gateway reaches the authorizer at control-plane:18002');
    // The admin server refuses shorter tokens or other characters (admin.ts: 16+ characters of token68).
    assert.match(e['MCPMESH_ADMIN_TOKEN'] ?? '', /^[A-Za-z0-9\-._~+/]{16,}=*$/);
    // The agents reach xDS (CSRs and ADS) at the control plane's service name and xDS port.
    for (const agent of agents()) {
      const cp =
        agent === 'gateway' ? gatewayParsed().bootstrap.controlPlane : parseSidecarArgs(agentArgv(agent), IMAGE_ENV).options.controlPlane;
      assert.deepEqual(cp, { host: 'control-plane', port: 18000 }, agent);
    }
  });
});

describe('policy, OAuth and observability wiring', () => {
  const policyText = readFileSync(path.join(COMPOSE_DIR, 'policy.yaml'), 'utf8');

  it("policy.yaml parses and matches the control plane's dev issuer and the mesh's services", () => {
    const policy = parsePolicy(policyText, 'deploy/compose/policy.yaml');
    const cpEnv = env('control-plane');
    assert.equal(cpEnv['MCPMESH_POLICY'], '/etc/mcpmesh/policy.yaml');
    assert.ok(
      bindMounts().some(
        (m) => m.service === 'control-plane' && m.host === path.join(COMPOSE_DIR, 'policy.yaml') && m.container === cpEnv['MCPMESH_POLICY'],
      ),
    );
    assert.equal(cpEnv['MCPMESH_DEV_ISSUER'], 'on');
    assert.ok(services[cpEnv['MCPMESH_AUTHZ_ADVERTISE'] ?? ''], 'the gateway reaches the authorizer by a service name');
    const dev = policy.providers.find((p) => p.issuer === cpEnv['MCPMESH_DEV_ISSUER_URL']);
    assert.ok(dev, `no provider with issuer ${cpEnv['MCPMESH_DEV_ISSUER_URL']} (MCPMESH_DEV_ISSUER_URL)`);
    assert.ok(dev.audiences.includes('mcp-mesh'), "the dev issuer's default audience");
    assert.ok(dev.jwksUri && services[new URL(dev.jwksUri).hostname], 'JWKS fetched from a Compose service');
    assert.equal(policy.roleClaim, 'roles', 'the dev issuer puts roles in the `roles` claim');
    const meshServices = new Set(mcpNodes().map((n) => n.parsed.options.service));
    for (const s of policy.services) assert.ok(meshServices.has(s.service), `policy service ${s.service} is not in the stack`);
    for (const s of meshServices)
      assert.ok(
        policy.services.some((p) => p.service === s),
        `service ${s} not listed in policy.yaml`,
      );
  });

  it('every literal tool name in policy.yaml is a real server-everything tool', () => {
    const toolsDir = path.join(path.dirname(EVERYTHING_BIN), 'tools');
    const real = new Set(
      readdirSync(toolsDir).flatMap((f) =>
        [...readFileSync(path.join(toolsDir, f), 'utf8').matchAll(/^const name = "([^"]+)";$/gm)].map((m) => m[1] ?? ''),
      ),
    );
    assert.ok(real.has('echo') && real.has('get-sum'), `tool names not found in ${toolsDir}`);
    const policy = parsePolicy(policyText, 'policy.yaml');
    for (const role of policy.roles) {
      for (const rule of [...role.allow, ...role.deny]) {
        for (const t of rule.tools ?? [])
          if (!t.includes('*'))
            assert.ok(real.has(t), `roles.${role.name}: "${t}" is not a server-everything tool (${[...real].join(', ')})`);
      }
    }
  });

  const prom = obj(parse(readFileSync(path.join(COMPOSE_DIR, 'prometheus.yml'), 'utf8')), 'prometheus.yml');
  const jobs = (prom['scrape_configs'] as Obj[]).map((j) => ({
    name: String(j['job_name']),
    path: String(j['metrics_path'] ?? '/metrics'),
    targets: (j['static_configs'] as Obj[]).flatMap((c) => c['targets'] as string[]),
  }));

  it("Prometheus scrapes the control plane and every Envoy (gateway + each node's sidecar) on :15090", () => {
    const cp = jobs.find((j) => j.name === 'mcpmesh-control-plane');
    assert.deepEqual(cp?.targets, ['control-plane:18001']);
    const envoy = jobs.find((j) => j.name === 'mcpmesh-envoy');
    assert.equal(envoy?.path, '/stats/prometheus');
    const expected = ['gateway', ...mcpNodes().map((n) => n.netns)].map((h) => `${h}:15090`).sort();
    assert.deepEqual([...(envoy?.targets ?? [])].sort(), expected);
    for (const t of [...(envoy?.targets ?? []), ...(cp?.targets ?? [])])
      assert.ok(services[t.split(':')[0] ?? ''], `target ${t} is not a Compose service`);
    // Same job names as the reference config the alerts and dashboards are written against.
    const ref = path.join(ROOT, 'deploy/prometheus/prometheus.yml');
    if (existsSync(ref)) {
      const refJobs = ((obj(parse(readFileSync(ref, 'utf8')), 'ref')['scrape_configs'] as Obj[]) ?? [])
        .map((j) => String(j['job_name']))
        .filter((n) => n.startsWith('mcpmesh-'));
      for (const j of refJobs)
        assert.ok(
          jobs.some((x) => x.name === j),
          `job ${j} of deploy/prometheus/prometheus.yml missing`,
        );
    }
    // alerts.yml is mounted next to the config, where rule_files points.
    assert.deepEqual(prom['rule_files'], ['alerts.yml']);
    assert.ok(
      bindMounts().some(
        (m) =>
          m.service === 'prometheus' &&
          m.host === path.join(ROOT, 'deploy/prometheus/alerts.yml') &&
          m.container === '/etc/prometheus/alerts.yml',
      ),
    );
    assert.ok(strings(service('prometheus')['command'], 'command').includes('--config.file=/etc/prometheus/prometheus.yml'));
  });

  it('promtool check config passes (config + alerts.yml laid out as in the container)', { skip: skipPromtool }, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-prom-'));
    try {
      cpSync(path.join(COMPOSE_DIR, 'prometheus.yml'), path.join(dir, 'prometheus.yml'));
      cpSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), path.join(dir, 'alerts.yml'));
      const r = spawnSync('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout + r.stderr, /1 rule files found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Grafana provisions the Prometheus datasource and the mounted dashboards folder', () => {
    const ds = obj(parse(readFileSync(path.join(COMPOSE_DIR, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')), 'datasource');
    const [d] = ds['datasources'] as Obj[];
    assert.equal(d?.['type'], 'prometheus');
    assert.equal(d?.['uid'], 'prometheus');
    assert.ok(services[new URL(String(d?.['url'])).hostname]);
    const prov = obj(parse(readFileSync(path.join(COMPOSE_DIR, 'grafana/provisioning/dashboards/mcpmesh.yml'), 'utf8')), 'dashboards');
    const [p] = prov['providers'] as Obj[];
    const dashboardsMount = bindMounts().find((m) => m.service === 'grafana' && m.host === path.join(ROOT, 'deploy/grafana/dashboards'));
    assert.ok(dashboardsMount, 'deploy/grafana/dashboards is mounted into grafana');
    assert.equal(obj(p?.['options'], 'options')['path'], dashboardsMount.container);
    assert.ok(
      bindMounts().some(
        (m) =>
          m.service === 'grafana' &&
          m.host === path.join(COMPOSE_DIR, 'grafana/provisioning') &&
          m.container === '/etc/grafana/provisioning',
      ),
    );
  });
});

// --- the README's client --------------------------------------------------------------------------------

/** Runs call-tool.ts as the README does, without blocking this process's event loop. */
function callToolCli(
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    for (const k of ['MCPMESH_DEV_CLIENT_SECRET', 'MCPMESH_TOKEN', 'MCPMESH_GATEWAY_URL', 'MCPMESH_ADMIN_URL', 'MCPMESH_ADMIN_TOKEN'])
      delete env[k];
    const child = execFile(
      process.execPath,
      [CALL_TOOL, ...args],
      { encoding: 'utf8', env: { ...env, ...extraEnv } },
      (_err, stdout, stderr) => resolve({ status: child.exitCode, stdout, stderr }),
    );
  });
}

/** The dev issuer as the Compose control plane runs it: the roles of deploy/compose/policy.yaml are grantable. */
function composeDevIssuer(): Promise<DevIssuer> {
  return DevIssuer.create({
    issuer: 'http://control-plane:18001/oauth',
    audience: 'mcp-mesh',
    clients: { dev: { secret: DEV_CLIENT_SECRET, roles: ['*'] } },
    grantableRoles: new Set(
      parsePolicy(readFileSync(path.join(COMPOSE_DIR, 'policy.yaml'), 'utf8'), 'policy.yaml').roles.map((r) => r.name),
    ),
  });
}

/** Plays the gateway: /mcp/<service> -> the server's /mcp, only with a valid dev token (what jwt_authn + the route do). */
async function startJwtProxy(
  issuer: DevIssuer,
  upstreamUrl: string,
  seenRoles: string[][],
): Promise<{ url: string; close: () => Promise<void> }> {
  const upstream = new URL(upstreamUrl);
  const proxy = http.createServer((req, res) => {
    const auth = req.headers['authorization'] ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    void (async () => {
      try {
        const payload = await issuer.verify(token);
        seenRoles.push(payload['roles'] as string[]);
      } catch {
        res
          .writeHead(401, {
            'www-authenticate': 'Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp/weather"',
          })
          .end('Jwt is missing');
        return;
      }
      const headers = { ...req.headers, host: upstream.host };
      delete headers['authorization'];
      const up = http.request(
        { host: upstream.hostname, port: upstream.port, path: upstream.pathname, method: req.method, headers },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    })();
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

describe('call-tool.ts against the dev issuer and a real server-everything (a JWT-checking proxy plays the gateway)', () => {
  let cp: ControlPlane;
  let admin: string;
  let server: RunningServer;
  let proxy: { url: string; close: () => Promise<void> } | undefined;
  let proxyUrl: string;
  const seenRoles: string[][] = [];
  let dir: string;

  before(async () => {
    const adminPort = await freePort();
    admin = `http://127.0.0.1:${adminPort}`;
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-calltool-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services: []\n');
    // The roles deploy/compose/policy.yaml defines: what the control plane lets the dev client ask for there.
    const issuer = await composeDevIssuer();
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      devIssuer: issuer,
    }).start();
    server = await startEverythingHttp();
    proxy = await startJwtProxy(issuer, server.url, seenRoles);
    proxyUrl = proxy.url;
  });
  after(async () => {
    await proxy?.close();
    await server?.stop();
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gets an analyst token from the dev issuer and calls get-sum through the "gateway"', async () => {
    const r = await callToolCli([
      '--gateway',
      proxyUrl,
      '--service',
      'weather',
      '--admin',
      admin,
      '--tool',
      'get-sum',
      '--args',
      '{"a":2,"b":3}',
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /tools shown to this caller: .*echo.*get-sum/);
    assert.match(r.stdout, /get-sum ->\n.*\b5\b/);
    assert.match(r.stderr, new RegExp(`MCP endpoint: ${proxyUrl}/mcp/weather`));
    assert.ok(seenRoles.length > 0 && seenRoles.every((roles) => JSON.stringify(roles) === '["analyst"]'), JSON.stringify(seenRoles));
  });

  it('echo with the default arguments, as admin', async () => {
    seenRoles.length = 0;
    const r = await callToolCli(['--gateway', proxyUrl, '--admin', admin, '--role', 'admin']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /echo ->\n\s+Echo: hello through MCP Mesh/);
    assert.ok(seenRoles.every((roles) => JSON.stringify(roles) === '["admin"]'));
  });

  it('without a token the call fails with an explained 401', async () => {
    const r = await callToolCli(['--gateway', proxyUrl, '--no-token']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /401/);
    assert.match(r.stderr, /no token, or the gateway rejected it/);
  });

  it('a wrong client secret is reported by the dev issuer', async () => {
    const r = await callToolCli(['--gateway', proxyUrl, '--admin', admin, '--client-secret', 'wrong']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /dev issuer answered 401: invalid_client/);
  });

  it('usage errors exit 2', async () => {
    const r = await callToolCli(['--args', '[1,2]']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--args: must be a JSON object/);
  });
});

// --- a control plane configured like the Compose one -----------------------------------------------------

/** Runs deploy/compose/join-token.ts as a one-shot service does: its command, its environment, `--out` moved. */
function runMinter(
  minter: string,
  outFile: string,
  envOverride: Record<string, string>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const argv = command(minter);
  const i = argv.indexOf('--out');
  const args = [...argv.slice(0, i + 1), outFile, ...argv.slice(i + 2)];
  const childEnv = { ...process.env };
  for (const k of Object.keys(childEnv)) if (k.startsWith('MCPMESH_')) delete childEnv[k];
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [JOIN_TOKEN, ...args],
      { encoding: 'utf8', env: { ...childEnv, ...env(minter), ...envOverride } },
      (_err, stdout, stderr) => resolve({ status: child.exitCode, stdout, stderr }),
    );
  });
}

describe('the Compose control plane (policy, admin port beyond loopback with the admin token): join-token one-shots and call-tool.ts', () => {
  const cpEnv = env('control-plane');
  let cp: ControlPlane;
  let admin: string;
  let server: RunningServer;
  let proxy: { url: string; close: () => Promise<void> } | undefined;
  const seenRoles: string[][] = [];
  let dir: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-compose-cp-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services: []\n');
    const adminPort = await freePort();
    admin = `http://127.0.0.1:${adminPort}`;
    const issuer = await composeDevIssuer();
    const policyText = readFileSync(path.join(COMPOSE_DIR, 'policy.yaml'), 'utf8');
    // As main.ts builds it from the Compose environment: a policy (CA, TLS xDS), the admin port on every
    // address (0.0.0.0, like MCPMESH_ADMIN_HOST) with MCPMESH_ADMIN_TOKEN, the dev issuer.
    assert.equal(cpEnv['MCPMESH_ADMIN_HOST'], '0.0.0.0');
    cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: cpEnv['MCPMESH_ADMIN_HOST'],
      adminPort,
      adminToken: cpEnv['MCPMESH_ADMIN_TOKEN'] ?? assert.fail('no MCPMESH_ADMIN_TOKEN'),
      authzHost: '127.0.0.1',
      authzPort: 0,
      security: {
        policy: parsePolicy(policyText, 'policy.yaml'),
        publicUrl: 'http://localhost:8080',
        authz: { host: '127.0.0.1', port: 18002 },
      },
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      devIssuer: issuer,
    }).start();
    server = await startEverythingHttp();
    proxy = await startJwtProxy(issuer, server.url, seenRoles);
  });
  after(async () => {
    await proxy?.close();
    await server?.stop();
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("each one-shot mints its agent's token through the admin port; the agent's command accepts it and the CA signs the agent's own key with it", async () => {
    const tokens = new Set<string>();
    for (const agent of agents()) {
      const w = credentialWiring(agent);
      const out = path.join(dir, w.minter, 'token');
      const r = await runMinter(w.minter, out, { MCPMESH_ADMIN_URL: admin });
      assert.equal(r.status, 0, `${w.minter}: ${r.stderr}`);
      assert.equal(statSync(out).mode & 0o777, 0o600, `${w.minter}: the token file is owner-only`);
      const token = readFileSync(out, 'utf8').trim();
      assert.ok(!r.stderr.includes(token) && !r.stdout.includes(token), `${w.minter}: the token must not reach the container log`);
      assert.ok(!tokens.has(token), 'one token per agent');
      tokens.add(token);
      // The agent's own command, reading that file: a token for another identity would be refused here.
      const identity =
        agent === 'gateway'
          ? parseGatewayArgs(agentArgv(agent, out), IMAGE_ENV).identity
          : parseSidecarArgs(agentArgv(agent, out), IMAGE_ENV).options.identity;
      assert.ok(identity && identity.credential.type === 'join-token');
      assert.equal(readJoinToken(token).spiffeId, identity.spiffeId);
      // What the agent does with it at start: a key of its own, a CSR with the token, over TLS to xDS.
      const wid = new WorkloadIdentity({
        spiffeId: identity.spiffeId,
        credential: identity.credential,
        controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
        log: () => {},
      });
      try {
        const held = await wid.start();
        assert.equal(held.spiffeId, spiffeIdOf(agentIdentity(agent)));
        assert.equal(held.controlPlaneId, `spiffe://${policyTrustDomain()}/control-plane`);
      } finally {
        wid.stop();
      }
    }
    assert.equal(tokens.size, agents().length);
  });

  it('a one-shot without the admin token fails, saying why, and writes nothing', async () => {
    const [minter] = minters();
    assert.ok(minter);
    const out = path.join(dir, 'refused', 'token');
    const r = await runMinter(minter, out, { MCPMESH_ADMIN_URL: admin, MCPMESH_ADMIN_TOKEN: '' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /refused \(HTTP 401\).*MCPMESH_ADMIN_TOKEN is not set/);
    assert.ok(!existsSync(out));
    const wrong = await runMinter(minter, out, { MCPMESH_ADMIN_URL: admin, MCPMESH_ADMIN_TOKEN: 'not-the-admin-token-at-all' });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /refused \(HTTP 401\): wrong admin token/);
  });

  it("call-tool.ts with the client service's MCPMESH_ADMIN_TOKEN gets a token (client secret in the body) and calls a tool", async () => {
    seenRoles.length = 0;
    const r = await callToolCli(['--gateway', proxy?.url ?? '', '--admin', admin, '--tool', 'get-sum', '--args', '{"a":20,"b":22}'], {
      MCPMESH_ADMIN_TOKEN: env('client')['MCPMESH_ADMIN_TOKEN'] ?? '',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /get-sum ->\n.*\b42\b/);
    assert.ok(seenRoles.length > 0 && seenRoles.every((roles) => JSON.stringify(roles) === '["analyst"]'), JSON.stringify(seenRoles));
  });

  it('call-tool.ts without the admin token is refused by the admin port, and says what to set', async () => {
    const r = await callToolCli(['--gateway', proxy?.url ?? '', '--admin', admin]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /admin port at .* answered 401/);
    assert.match(
      r.stderr,
      new RegExp(`set MCPMESH_ADMIN_TOKEN or pass --admin-token \\(the Compose stack's default is ${COMPOSE_ADMIN_TOKEN}\\)`),
    );
    const wrong = await callToolCli(['--gateway', proxy?.url ?? '', '--admin', admin, '--admin-token', 'not-the-admin-token-at-all']);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /the admin token was refused/);
  });
});
