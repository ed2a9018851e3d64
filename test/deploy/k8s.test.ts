// deploy/k8s: renders every overlay with `kubectl kustomize` and checks what comes out.
//  1. Schemas: every object is validated against the Kubernetes OpenAPI schemas shipped by `kubernetes-models`
//     (ajv validators: types, required fields, enums, formats), and type-checked against the same package's
//     generated interfaces with the TypeScript compiler, whose excess-property check rejects unknown fields
//     (a misspelt `readinesProbe` would otherwise be silently dropped by the API server's non-strict paths).
//  2. Policy: replicas, PDBs, probes, non-root / read-only / resources, pinned images, NetworkPolicies, RBAC.
//  3. Wiring: the sidecar agent's and the gateway's container args parse with the real CLI parsers; ports,
//     paths, Services, ConfigMap keys and the policy file agree with each other.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { parseSidecarArgs } from '../../sidecar/src/cli.ts';
import { parseGatewayArgs } from '../../sidecar/src/gateway-cli.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const k8sDir = path.join(repoRoot, 'deploy/k8s');
const OVERLAYS = ['dev', 'production'] as const;
const NAMESPACE = 'mcp-mesh';

// Loose shapes for what the assertions read (the schemas have already vouched for the structure).
interface Obj { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown }
interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string }; configMapKeyRef?: { name: string; key: string }; secretKeyRef?: { name: string; key: string } } }
interface Probe { httpGet?: { path?: string; port: number | string }; tcpSocket?: { port: number | string } }
interface Container {
  name: string; image?: string; command?: string[]; args?: string[]; env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe; livenessProbe?: Probe; startupProbe?: Probe;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean; capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type: string } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  containers: Container[]; initContainers?: Container[]; serviceAccountName?: string; automountServiceAccountToken?: boolean;
  hostNetwork?: boolean; hostPID?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string }; emptyDir?: object }[];
}
interface Deployment extends Obj { spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec } } }
interface Service extends Obj { spec: { type?: string; clusterIP?: string; selector?: Record<string, string>; ports: { name?: string; port: number; targetPort?: number | string }[] } }
interface Pdb extends Obj { spec: { minAvailable?: number | string; maxUnavailable?: number | string; selector: { matchLabels: Record<string, string> } } }
interface NetPolPeer { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: { matchLabels?: Record<string, string> } }
interface NetPol extends Obj { spec: { podSelector: { matchLabels?: Record<string, string> }; policyTypes?: string[]; ingress?: { from?: NetPolPeer[]; ports?: { port: number | string }[] }[] } }
interface ConfigMap extends Obj { data?: Record<string, string> }

// ---------------------------------------------------------------------------------------------------------
// Rendering

function kustomize(dir: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 32 << 20 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('kubectl is not installed or not on PATH: these tests render deploy/k8s with `kubectl kustomize` '
      + '(kubectl >= 1.27 has kustomize built in). Install kubectl (e.g. apt-get install kubectl from the Kubernetes apt '
      + 'repository, or the pkgs.k8s.io binary) and run again.');
  }
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`kubectl kustomize ${path.relative(repoRoot, dir)} failed (exit ${r.status}):\n${r.stderr}`);
  const docs = parseAllDocuments(r.stdout);
  const objs: Obj[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors.map((e) => e.message).join('; ')}`);
    const o = d.toJS() as Obj | null;
    if (o) objs.push(o);
  }
  return objs;
}

const rendered = new Map<string, Obj[]>();
function objects(overlay: string): Obj[] {
  const o = rendered.get(overlay);
  if (!o) throw new Error(`overlay ${overlay} was not rendered (see the first failure)`);
  return o;
}
const ofKind = <T extends Obj>(objs: Obj[], kind: string): T[] => objs.filter((o) => o.kind === kind) as T[];
function named<T extends Obj>(objs: Obj[], kind: string, name: string): T {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is missing`);
  return o as T;
}
const id = (o: Obj): string => `${o.kind}/${o.metadata.name}`;
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

// ---------------------------------------------------------------------------------------------------------
// Schema validation

/** Validates one object with the kubernetes-models class for its apiVersion/kind. Returns the problems. */
async function schemaProblems(o: Obj): Promise<string[]> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(`kubernetes-models/${o.apiVersion}`) as Record<string, unknown>;
  } catch {
    return [`${id(o)}: no schema for apiVersion ${o.apiVersion}`];
  }
  const Model = mod[o.kind] as (new (data: unknown) => { validate(): void }) | undefined;
  if (typeof Model !== 'function') return [`${id(o)}: no schema for ${o.apiVersion} ${o.kind}`];
  try {
    new Model(o).validate();
    return [];
  } catch (err) {
    return [`${id(o)}: ${(err as Error).message}`];
  }
}

/**
 * Type-checks objects against kubernetes-models' interfaces (generated from the Kubernetes OpenAPI) in one
 * TypeScript program: `const o: M.IDeployment = {...}` reports unknown fields at any depth (excess property
 * checks), wrong types and missing required fields. Returns the diagnostics, each naming the object.
 */
function typeCheck(objs: Obj[]): string[] {
  const imports = new Map<string, string>();
  const lines: string[] = [];
  objs.forEach((o, i) => {
    let alias = imports.get(o.apiVersion);
    if (!alias) imports.set(o.apiVersion, alias = `M${imports.size}`);
    lines.push(`// ${id(o)}\nexport const o${i}: ${alias}.I${o.kind} = ${JSON.stringify(o, null, 1)};`);
  });
  const source = [...imports].map(([v, a]) => `import type * as ${a} from 'kubernetes-models/${v}';`).join('\n') + '\n' + lines.join('\n');
  const file = path.join(repoRoot, 'test/deploy/__rendered_manifests__.ts');
  const options: ts.CompilerOptions = {
    strict: true, noEmit: true, skipLibCheck: true, types: [], lib: ['lib.es2023.d.ts'],
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) => name === file ? ts.createSourceFile(name, source, lang) : getSourceFile.call(host, name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => name === file ? source : readFile.call(host, name);
  const program = ts.createProgram([file], options, host);
  const sf = program.getSourceFile(file);
  const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
  return diags.map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n  ');
    if (d.file && d.start !== undefined) {
      // Name the object the error is in: the nearest "// Kind/name" comment above it.
      const before = source.slice(0, d.start);
      const owner = /\/\/ (\S+)\n(?![\s\S]*\/\/ \S+\n)/.exec(before)?.[1] ?? '?';
      const field = /"([^"]+)":[^\n]*$/.exec(before + source.slice(d.start, d.start + 80).split('\n')[0])?.[1];
      return `${owner}${field ? ` (near "${field}")` : ''}: ${msg}`;
    }
    return msg;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Policy checks (functions returning problems, so the negative tests can show they bite)

function allContainers(spec: PodSpec): Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

/** Restricted-style pod security, resources and image pinning for every container of a workload. */
function workloadProblems(d: Deployment): string[] {
  const p: string[] = [];
  const spec = d.spec.template.spec;
  if (spec.automountServiceAccountToken !== false) p.push(`${id(d)}: automountServiceAccountToken must be false (no Kubernetes API access)`);
  if (spec.hostNetwork || spec.hostPID) p.push(`${id(d)}: must not use the host's network or PID namespace`);
  if (spec.securityContext?.seccompProfile?.type !== 'RuntimeDefault') p.push(`${id(d)}: pod seccompProfile must be RuntimeDefault`);
  for (const c of allContainers(spec)) {
    const where = `${id(d)} container ${c.name}`;
    const sc = c.securityContext ?? {};
    const nonRoot = sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
    const uid = sc.runAsUser ?? spec.securityContext?.runAsUser;
    if (nonRoot !== true) p.push(`${where}: runAsNonRoot must be true`);
    if (uid === 0) p.push(`${where}: runAsUser must not be 0`);
    if (sc.readOnlyRootFilesystem !== true) p.push(`${where}: readOnlyRootFilesystem must be true`);
    if (sc.allowPrivilegeEscalation !== false) p.push(`${where}: allowPrivilegeEscalation must be false`);
    if (sc.privileged) p.push(`${where}: must not be privileged`);
    if (!sc.capabilities?.drop?.includes('ALL')) p.push(`${where}: capabilities must drop ALL`);
    if ((sc.capabilities?.add ?? []).length > 0) p.push(`${where}: must not add capabilities`);
    for (const r of ['cpu', 'memory']) if (c.resources?.requests?.[r] === undefined) p.push(`${where}: resources.requests.${r} is not set`);
    if (c.resources?.limits?.['memory'] === undefined) p.push(`${where}: resources.limits.memory is not set`);
    p.push(...imageProblems(where, c.image));
  }
  return p;
}

function imageProblems(where: string, image: string | undefined): string[] {
  if (!image) return [`${where}: no image`];
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return [];
  const lastSegment = image.slice(image.lastIndexOf('/') + 1);
  const tag = lastSegment.includes(':') ? lastSegment.slice(lastSegment.indexOf(':') + 1) : undefined;
  if (!tag) return [`${where}: image ${image} has no tag (pin a version or digest)`];
  if (tag === 'latest' || !/\d/.test(tag)) return [`${where}: image ${image} is not pinned to a version (tag "${tag}")`];
  return [];
}

function containerPort(c: Container, port: number | string): number | undefined {
  if (typeof port === 'number') return c.ports?.some((p) => p.containerPort === port) ? port : undefined;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

/** Ports a NetworkPolicy set lets a peer matching `peerLabels` (in namespace `peerNs`) reach on `pod`. */
function allowedPorts(pols: NetPol[], podLabels: Record<string, string>, peerLabels: Record<string, string>, peerNs: string): Set<number> {
  const ports = new Set<number>();
  for (const pol of pols) {
    if (!selects(pol.spec.podSelector.matchLabels ?? {}, podLabels)) continue;
    for (const rule of pol.spec.ingress ?? []) {
      const peerOk = rule.from === undefined || rule.from.some((f) => {
        const nsOk = f.namespaceSelector === undefined ? peerNs === NAMESPACE : selects(f.namespaceSelector.matchLabels ?? {}, { 'kubernetes.io/metadata.name': peerNs });
        const podOk = f.podSelector === undefined || selects(f.podSelector.matchLabels ?? {}, peerLabels);
        return nsOk && podOk;
      });
      if (peerOk) for (const p of rule.ports ?? []) if (typeof p.port === 'number') ports.add(p.port);
    }
  }
  return ports;
}

// ---------------------------------------------------------------------------------------------------------
// Container args with $(VAR) expansion, as the kubelet does it

const FIELD_SAMPLES: Record<string, string> = { 'metadata.name': 'mcp-everything-5d8f7c9b4-x2x7k', 'status.podIP': '10.244.1.17', 'status.hostIP': '10.0.0.4', 'metadata.namespace': NAMESPACE };

function containerEnv(objs: Obj[], c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (e.value !== undefined) env[e.name] = expand(e.value, env);
    else if (from?.fieldRef) env[e.name] = FIELD_SAMPLES[from.fieldRef.fieldPath] ?? assert.fail(`${c.name}: no sample for fieldRef ${from.fieldRef.fieldPath}`);
    else if (from?.configMapKeyRef) {
      const ref = from.configMapKeyRef;
      const value = named<ConfigMap>(objs, 'ConfigMap', ref.name).data?.[ref.key];
      assert.ok(value !== undefined, `${c.name}: env ${e.name} refers to ConfigMap ${ref.name} key ${ref.key}, which does not exist`);
      env[e.name] = value;
    } else if (from?.secretKeyRef) env[e.name] = 'secret-from-' + from.secretKeyRef.name;
  }
  return env;
}

function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => env[name] ?? m);
}

function expandedArgs(objs: Obj[], c: Container): { args: string[]; env: Record<string, string> } {
  const env = containerEnv(objs, c);
  const args = (c.args ?? []).map((a) => expand(a, env));
  for (const a of args) assert.doesNotMatch(a, /\$\(/, `${c.name}: argument ${a} refers to an undefined variable`);
  return { args, env };
}

function containerByName(spec: PodSpec, name: string): Container {
  const c = allContainers(spec).find((x) => x.name === name);
  assert.ok(c, `container ${name} is missing`);
  return c;
}

// ---------------------------------------------------------------------------------------------------------

before(() => {
  for (const overlay of OVERLAYS) rendered.set(overlay, kustomize(path.join(k8sDir, 'overlays', overlay)));
});

for (const overlay of OVERLAYS) {
  describe(`deploy/k8s/overlays/${overlay}`, () => {
    test('renders, and every object passes the Kubernetes schemas', async () => {
      const objs = objects(overlay);
      assert.ok(objs.length >= 15, `expected the whole mesh, got ${objs.length} objects`);
      const problems = (await Promise.all(objs.map(schemaProblems))).flat();
      assert.deepEqual(problems, [], `schema violations:\n${problems.join('\n')}`);
    });

    test('every object type-checks against the Kubernetes API types (no unknown fields)', () => {
      const problems = typeCheck(objects(overlay));
      assert.deepEqual(problems, [], `type errors:\n${problems.join('\n')}`);
    });

    test('everything namespaced lives in mcp-mesh, names are unique', () => {
      const objs = objects(overlay);
      const seen = new Set<string>();
      for (const o of objs) {
        if (!['Namespace'].includes(o.kind)) assert.equal(o.metadata.namespace, NAMESPACE, `${id(o)} namespace`);
        assert.ok(!seen.has(id(o)), `${id(o)} appears twice`);
        seen.add(id(o));
      }
    });

    test('workloads: non-root, read-only root FS, no privileges, resources, pinned images', () => {
      const problems = ofKind<Deployment>(objects(overlay), 'Deployment').flatMap(workloadProblems);
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    test('the control plane: probes on /healthz and /readyz (18001), Consul, policy and CA wiring', () => {
      const objs = objects(overlay);
      const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane');
      const c = containerByName(d.spec.template.spec, 'control-plane');
      const rp = c.readinessProbe?.httpGet;
      assert.equal(rp?.path, '/readyz');
      assert.equal(containerPort(c, rp.port), 18001, 'readiness probe port');
      assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(containerPort(c, c.livenessProbe.httpGet.port), 18001, 'liveness probe port');
      for (const p of [18000, 18001, 18002]) assert.ok(containerPort(c, p), `container port ${p}`);
      // Environment: envFrom the generated ConfigMap + env.
      const cmName = (c as Container & { envFrom?: { configMapRef?: { name: string } }[] }).envFrom?.[0]?.configMapRef?.name;
      assert.ok(cmName, 'envFrom configMapRef');
      const cm = named<ConfigMap>(objs, 'ConfigMap', cmName);
      const env = { ...cm.data, ...containerEnv(objs, c) };
      assert.match(env['CONSUL_HTTP_ADDR'] ?? '', /^http:\/\/10\.0\.0\.4:8500$/, 'Consul: the node-local client agent');
      assert.ok(c.env?.some((e) => e.name === 'CONSUL_HTTP_TOKEN' && e.valueFrom?.secretKeyRef), 'Consul ACL token from a Secret');
      // The policy file: mounted from the policy ConfigMap, and it parses with the real parser.
      const policyPath = env['MCPMESH_POLICY'];
      assert.ok(policyPath, 'MCPMESH_POLICY');
      const mount = c.volumeMounts?.find((m) => policyPath.startsWith(m.mountPath + '/'));
      assert.ok(mount, `no volume mounted at ${policyPath}`);
      const vol = d.spec.template.spec.volumes?.find((v) => v.name === mount.name);
      assert.ok(vol?.configMap, 'the policy volume is a ConfigMap');
      const policyText = named<ConfigMap>(objs, 'ConfigMap', vol.configMap.name).data?.[path.basename(policyPath)];
      assert.ok(policyText, `ConfigMap ${vol.configMap.name} has no key ${path.basename(policyPath)}`);
      const policy = parsePolicy(policyText, 'policy ConfigMap');
      assert.equal(policy.trustDomain, 'mcpmesh.local');
      // The authorizer address gateways are given is a Service of this namespace that serves 18002.
      const authz = env['MCPMESH_AUTHZ_ADVERTISE'] ?? '';
      const m = /^([a-z0-9-]+)\.mcp-mesh\.svc\.cluster\.local$/.exec(authz);
      assert.ok(m?.[1], `MCPMESH_AUTHZ_ADVERTISE ${authz} is not a Service DNS name in ${NAMESPACE}`);
      const authzSvc = named<Service>(objs, 'Service', m[1]);
      assert.ok(authzSvc.spec.ports.some((p) => p.port === 18002), 'the authorizer Service exposes 18002');
      assert.ok(selects(authzSvc.spec.selector, d.spec.template.metadata.labels), 'the authorizer Service selects the control plane');
      // The shared CA: every replica must sign with the same one.
      for (const k of ['MCPMESH_CA_CERT', 'MCPMESH_CA_KEY']) {
        const f = env[k] ?? assert.fail(`${k} is not set`);
        const caMount = c.volumeMounts?.find((vm) => f.startsWith(vm.mountPath + '/'));
        assert.ok(caMount && d.spec.template.spec.volumes?.find((v) => v.name === caMount.name)?.secret, `${k} must come from a Secret volume`);
      }
      // Prometheus scrapes the admin port.
      assert.equal(d.spec.template.metadata.annotations?.['prometheus.io/port'], '18001');
    });

    test('Services select pods and target ports those pods have', () => {
      const objs = objects(overlay);
      const deployments = ofKind<Deployment>(objs, 'Deployment');
      for (const s of ofKind<Service>(objs, 'Service')) {
        const d = deployments.find((x) => selects(s.spec.selector, x.spec.template.metadata.labels));
        assert.ok(d, `${id(s)} selects no pods`);
        for (const p of s.spec.ports) {
          const target = p.targetPort ?? p.port;
          assert.ok(d.spec.template.spec.containers.some((c) => containerPort(c, target)), `${id(s)} port ${p.port} -> ${target}: no such container port in ${id(d)}`);
        }
      }
    });

    test('the example MCP server: agent and bootstrap args parse with the real sidecar parser and match the pod', () => {
      const objs = objects(overlay);
      const d = named<Deployment>(objs, 'Deployment', 'mcp-everything');
      const spec = d.spec.template.spec;
      const app = containerByName(spec, 'everything');
      const envoy = containerByName(spec, 'envoy');
      const agent = containerByName(spec, 'mcpmesh-agent');
      const init = containerByName(spec, 'mcpmesh-bootstrap');
      assert.ok(spec.initContainers?.includes(init), 'the bootstrap writer is an init container');
      const envoyConfig = envoy.args?.[(envoy.args.indexOf('-c')) + 1];
      assert.ok(envoyConfig, 'envoy -c FILE');

      const a = expandedArgs(objs, agent);
      assert.equal(a.args[0], 'sidecar');
      const parsed = parseSidecarArgs(a.args.slice(1), a.env);
      assert.equal(parsed.printBootstrap, false);
      const o = parsed.options;
      assert.equal(o.externalEnvoy, true, 'Envoy runs in its own container');
      assert.equal(o.envoyBin, undefined);
      assert.equal(o.bootstrapPath, envoyConfig, 'the agent writes the file Envoy reads');
      assert.equal(o.address, FIELD_SAMPLES['status.podIP'], '--address is the pod IP');
      assert.equal(o.serviceId, FIELD_SAMPLES['metadata.name'], '--id is the pod name');
      assert.equal(o.consul.address, `http://${FIELD_SAMPLES['status.hostIP']}:8500`, 'the node-local Consul agent');
      assert.ok(a.env['CONSUL_HTTP_TOKEN'], 'Consul ACL token');
      assert.equal(o.controlPlane.host, 'mcp-mesh-control-plane.mcp-mesh.svc.cluster.local');
      assert.equal(o.controlPlane.port, 18000);
      assert.ok(containerPort(app, o.appPort), `--port ${o.appPort} is the MCP server's container port`);
      assert.ok(containerPort(envoy, o.inboundPort), `--inbound-port ${o.inboundPort} is an Envoy container port`);
      assert.ok(o.region && o.zone, 'locality from the locality ConfigMap');
      // The agent's health server backs its probes.
      assert.ok(o.healthPort, '--health-port');
      assert.equal(agent.readinessProbe?.httpGet?.path, '/readyz');
      assert.equal(containerPort(agent, agent.readinessProbe.httpGet.port), o.healthPort);
      assert.equal(agent.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(containerPort(agent, agent.livenessProbe.httpGet.port), o.healthPort);
      // Envoy's readiness is its own /ready on the stats listener (15090), which Prometheus also scrapes.
      assert.equal(envoy.readinessProbe?.httpGet?.path, '/ready');
      assert.equal(containerPort(envoy, envoy.readinessProbe.httpGet.port), 15090);
      assert.equal(d.spec.template.metadata.annotations?.['prometheus.io/port'], '15090');

      const b = expandedArgs(objs, init);
      const boot = parseSidecarArgs(b.args.slice(1), b.env);
      assert.equal(b.args[0], 'sidecar');
      assert.equal(boot.printBootstrap, true);
      assert.equal(boot.options.bootstrapPath, envoyConfig);
      // Same identity and placement in the bootstrap as in the running agent.
      for (const k of ['service', 'serviceId', 'appPort', 'inboundPort', 'protocol', 'region', 'zone', 'controlPlane', 'externalEnvoy'] as const) {
        assert.deepEqual(boot.options[k], o[k], `bootstrap and agent disagree on ${k}`);
      }
      // The bootstrap volume is shared, written by the init container and the agent, read-only for Envoy.
      const vol = (c: Container) => c.volumeMounts?.find((m) => envoyConfig.startsWith(m.mountPath + '/'));
      assert.ok(vol(init) && vol(agent) && vol(envoy), 'all three mount the bootstrap volume');
      assert.equal(vol(envoy)?.readOnly, true);
      assert.equal(vol(init)?.name, vol(envoy)?.name);
    });

    test('the gateway: bootstrap args parse with the real gateway parser and match the pod and Service', () => {
      const objs = objects(overlay);
      const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway');
      const spec = d.spec.template.spec;
      const init = containerByName(spec, 'bootstrap');
      const envoy = containerByName(spec, 'envoy');
      assert.ok(spec.initContainers?.includes(init));
      const g = expandedArgs(objs, init);
      assert.equal(g.args[0], 'gateway');
      const parsed = parseGatewayArgs(g.args.slice(1), g.env);
      assert.equal(parsed.printBootstrap, true);
      assert.equal(parsed.bootstrapPath, envoy.args?.[envoy.args.indexOf('-c') + 1], 'the init container writes the file Envoy reads');
      assert.equal(parsed.bootstrap.nodeId, FIELD_SAMPLES['metadata.name'], '--id is the pod name');
      assert.equal(parsed.bootstrap.controlPlane.host, 'mcp-mesh-control-plane.mcp-mesh.svc.cluster.local');
      assert.equal(parsed.bootstrap.controlPlane.port, 18000);
      assert.ok(parsed.bootstrap.region && parsed.bootstrap.zone);
      assert.equal(containerPort(envoy, 'http'), parsed.bootstrap.listenerPort, 'the Envoy container exposes the listener port');
      assert.equal(containerPort(envoy, envoy.readinessProbe?.httpGet?.port ?? -1), parsed.bootstrap.statsPort, 'readiness on the stats port');
      assert.equal(envoy.readinessProbe?.httpGet?.path, '/ready');
      const svc = named<Service>(objs, 'Service', 'mcp-mesh-gateway');
      assert.ok(svc.spec.ports.every((p) => containerPort(envoy, p.targetPort ?? p.port) === parsed.bootstrap.listenerPort), 'the Service targets the MCP listener');
    });

    test('NetworkPolicies: default deny, xDS only from proxies, authz only from gateways, MCP servers only via the sidecar', () => {
      const objs = objects(overlay);
      const pols = ofKind<NetPol>(objs, 'NetworkPolicy');
      const deny = pols.find((p) => Object.keys(p.spec.podSelector.matchLabels ?? {}).length === 0 && (p.spec.ingress ?? []).length === 0);
      assert.ok(deny?.spec.policyTypes?.includes('Ingress'), 'a default-deny ingress policy for the whole namespace');
      const labels = (name: string) => named<Deployment>(objs, 'Deployment', name).spec.template.metadata.labels;
      const cp = labels('mcp-mesh-control-plane');
      const gw = labels('mcp-mesh-gateway');
      const mcp = labels('mcp-everything');
      const prometheus = { 'app.kubernetes.io/name': 'prometheus' };
      const stranger = { app: 'something-else' };
      const sorted = (s: Set<number>) => [...s].sort((x, y) => x - y);
      // Control plane.
      assert.deepEqual(sorted(allowedPorts(pols, cp, gw, NAMESPACE)), [18000, 18002], 'gateways: xDS + authorizer');
      assert.deepEqual(sorted(allowedPorts(pols, cp, mcp, NAMESPACE)), [18000], 'sidecars: xDS only');
      assert.deepEqual(sorted(allowedPorts(pols, cp, mcp, 'team-a')), [18000], 'sidecars in other namespaces: xDS only');
      assert.deepEqual(sorted(allowedPorts(pols, cp, prometheus, 'monitoring')), [18001], 'Prometheus: admin/metrics only');
      assert.deepEqual(sorted(allowedPorts(pols, cp, stranger, NAMESPACE)), [], 'nothing else');
      // Gateway: MCP listener for everyone, stats for Prometheus.
      assert.deepEqual(sorted(allowedPorts(pols, gw, stranger, 'elsewhere')), [8080]);
      assert.deepEqual(sorted(allowedPorts(pols, gw, prometheus, 'monitoring')), [8080, 15090]);
      // MCP server pod: only the sidecar's inbound port, only from gateways.
      assert.deepEqual(sorted(allowedPorts(pols, mcp, gw, NAMESPACE)), [15006]);
      assert.deepEqual(sorted(allowedPorts(pols, mcp, stranger, NAMESPACE)), []);
      assert.deepEqual(sorted(allowedPorts(pols, mcp, prometheus, 'monitoring')), [15090]);
    });

    test('RBAC: workload ServiceAccounts have no token and no bindings', () => {
      const objs = objects(overlay);
      const sas = ofKind<Obj & { automountServiceAccountToken?: boolean }>(objs, 'ServiceAccount');
      for (const sa of sas) assert.equal(sa.automountServiceAccountToken, false, `${id(sa)}: automountServiceAccountToken`);
      for (const d of ofKind<Deployment>(objs, 'Deployment')) {
        assert.ok(sas.some((sa) => sa.metadata.name === d.spec.template.spec.serviceAccountName), `${id(d)} runs as its own ServiceAccount`);
      }
      for (const b of [...ofKind<Obj & { subjects?: { kind: string; name: string }[] }>(objs, 'RoleBinding'), ...ofKind<Obj & { subjects?: { kind: string; name: string }[] }>(objs, 'ClusterRoleBinding')]) {
        for (const s of b.subjects ?? []) assert.notEqual(s.kind, 'ServiceAccount', `${id(b)} binds ServiceAccount ${s.name}: the mesh needs no Kubernetes API access`);
      }
      assert.equal(ofKind(objs, 'ClusterRole').length + ofKind(objs, 'ClusterRoleBinding').length, 0, 'no cluster-wide RBAC');
      const roles = ofKind<Obj & { rules: { verbs: string[]; resources?: string[] }[] }>(objs, 'Role');
      for (const r of roles) {
        for (const rule of r.rules) {
          assert.ok(!rule.verbs.includes('*') && !(rule.resources ?? []).includes('*'), `${id(r)}: no wildcards`);
          assert.ok(!(rule.resources ?? []).includes('secrets'), `${id(r)}: no access to Secrets`);
        }
      }
    });

    test('the namespace enforces the restricted Pod Security Standard', () => {
      const ns = named<Obj>(objects(overlay), 'Namespace', NAMESPACE);
      assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    });
  });
}

describe('production overlay', () => {
  test('control plane: >= 2 replicas, a PDB that selects it, spread over nodes', () => {
    const objs = objects('production');
    const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane');
    assert.ok((d.spec.replicas ?? 1) >= 2, `replicas ${d.spec.replicas}`);
    const pdb = ofKind<Pdb>(objs, 'PodDisruptionBudget').find((p) => selects(p.spec.selector.matchLabels, d.spec.template.metadata.labels));
    assert.ok(pdb, 'a PodDisruptionBudget selects the control plane');
    assert.ok(typeof pdb.spec.minAvailable === 'number' && pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < (d.spec.replicas ?? 1), 'minAvailable leaves room for a drain');
    const tsc = (d.spec.template.spec as PodSpec & { topologySpreadConstraints?: { topologyKey: string; whenUnsatisfiable: string }[] }).topologySpreadConstraints ?? [];
    assert.ok(tsc.some((t) => t.topologyKey === 'kubernetes.io/hostname' && t.whenUnsatisfiable === 'DoNotSchedule'), 'never two replicas on one node');
    assert.equal(new Set(tsc.map((t) => t.topologyKey)).size, tsc.length, 'one constraint per topology key');
  });

  test('gateway: >= 2 replicas with a PDB, behind a LoadBalancer', () => {
    const objs = objects('production');
    const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway');
    assert.ok((d.spec.replicas ?? 1) >= 2);
    assert.ok(ofKind<Pdb>(objs, 'PodDisruptionBudget').some((p) => selects(p.spec.selector.matchLabels, d.spec.template.metadata.labels)));
    assert.equal(named<Service>(objs, 'Service', 'mcp-mesh-gateway').spec.type, 'LoadBalancer');
  });

  test('the control plane has Guaranteed QoS (requests = limits)', () => {
    const c = containerByName(named<Deployment>(objects('production'), 'Deployment', 'mcp-mesh-control-plane').spec.template.spec, 'control-plane');
    assert.deepEqual(c.resources?.requests, c.resources?.limits);
  });

  test('a public URL is set', () => {
    const cm = ofKind<ConfigMap>(objects('production'), 'ConfigMap').find((x) => x.data?.['MCPMESH_PUBLIC_URL']);
    assert.match(cm?.data?.['MCPMESH_PUBLIC_URL'] ?? '', /^https:\/\//);
  });
});

describe('deploy/k8s/consul/values.yaml (hashicorp/consul Helm chart)', () => {
  test('servers, ACLs, TLS, UI on; Consul service mesh injection off; client agents for the TTL checks', () => {
    const v = parseYaml(readFileSync(path.join(k8sDir, 'consul/values.yaml'), 'utf8')) as {
      global: { acls: { manageSystemACLs: boolean }; tls: { enabled: boolean; enableAutoEncrypt: boolean }; gossipEncryption: { autoGenerate: boolean } };
      server: { replicas: number }; client: { enabled: boolean }; ui: { enabled: boolean }; connectInject: { enabled: boolean };
    };
    assert.equal(v.global.acls.manageSystemACLs, true);
    assert.equal(v.global.tls.enabled, true);
    assert.equal(v.global.gossipEncryption.autoGenerate, true);
    assert.ok(v.server.replicas >= 3 && v.server.replicas % 2 === 1, 'an odd number of servers, at least 3');
    assert.equal(v.client.enabled, true);
    assert.equal(v.ui.enabled, true);
    assert.equal(v.connectInject.enabled, false);
  });
});

describe('deploy/k8s/README.md: "Add a sidecar to your own MCP server"', () => {
  test('the snippet, pasted into a Deployment, passes the schemas and the workload rules, and its args parse', async () => {
    const readme = readFileSync(path.join(k8sDir, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Add a sidecar to your own MCP server'));
    const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(block, 'the README section has a yaml block');
    const snippet = parseYaml(block) as { spec: { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } };
    const pod = snippet.spec.template.spec;
    // A team's own server, as the snippet's comment describes it.
    pod.containers.unshift({
      name: 'weather', image: 'registry.example.com/weather:1.4.2', ports: [{ name: 'mcp', containerPort: 8000 }],
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
      securityContext: { runAsNonRoot: true, runAsUser: 1000, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    });
    pod.serviceAccountName = 'weather';
    pod.automountServiceAccountToken = false;
    const labels = { app: 'weather', ...snippet.spec.template.metadata.labels };
    const d = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'weather', namespace: 'team-a' },
      spec: { replicas: 2, selector: { matchLabels: { app: 'weather' } }, template: { ...snippet.spec.template, metadata: { ...snippet.spec.template.metadata, labels } } } } as Deployment;
    assert.deepEqual(await schemaProblems(d), []);
    assert.deepEqual(typeCheck([d]), []);
    assert.deepEqual(workloadProblems(d), []);
    const objs = objects('production');
    const agent = containerByName(pod, 'mcpmesh-agent');
    const a = expandedArgs(objs, agent);
    const o = parseSidecarArgs(a.args.slice(1), a.env).options;
    assert.equal(o.externalEnvoy, true);
    assert.equal(o.appPort, 8000);
    assert.equal(o.healthPort, containerPort(agent, agent.readinessProbe?.httpGet?.port ?? -1) ?? 15020);
    const b = expandedArgs(objs, containerByName(pod, 'mcpmesh-bootstrap'));
    const boot = parseSidecarArgs(b.args.slice(1), b.env);
    assert.equal(boot.printBootstrap, true);
    for (const k of ['service', 'serviceId', 'appPort', 'inboundPort', 'mcpPath', 'protocol', 'region', 'zone', 'controlPlane'] as const) {
      assert.deepEqual(boot.options[k], o[k], `bootstrap and agent disagree on ${k}`);
    }
    const envoy = containerByName(pod, 'envoy');
    assert.equal(envoy.args?.[envoy.args.indexOf('-c') + 1], o.bootstrapPath);
    assert.ok(containerPort(envoy, o.inboundPort));
    // The mesh's NetworkPolicy lets a gateway reach the snippet's pod on the inbound port only.
    const gw = named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway').spec.template.metadata.labels;
    assert.deepEqual([...allowedPorts(ofKind<NetPol>(objs, 'NetworkPolicy'), labels, gw, NAMESPACE)], [o.inboundPort]);
  });
});

describe('the checks can fail', () => {
  const good = (): Deployment => structuredClone(named<Deployment>(objects('production'), 'Deployment', 'mcp-mesh-control-plane'));

  test('the schema check rejects a Deployment with a wrong field type', async () => {
    const d = good() as Obj & { spec: Record<string, unknown> };
    d.spec['replicas'] = 'two';
    const problems = await schemaProblems(d);
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /replicas must be integer/);
  });

  test('the schema check rejects a missing required field and an unknown kind', async () => {
    const d = good();
    delete (d.spec as Partial<Deployment['spec']>).selector;
    assert.match((await schemaProblems(d)).join(), /selector/);
    assert.match((await schemaProblems({ apiVersion: 'apps/v1', kind: 'Deploymnet', metadata: { name: 'x' } })).join(), /no schema/);
  });

  test('the type check rejects an unknown (misspelt) field and a wrong type', () => {
    const d = good();
    const c = d.spec.template.spec.containers[0] as Container & Record<string, unknown>;
    c['readinesProbe'] = c.readinessProbe;
    const svc = structuredClone(named<Service>(objects('production'), 'Service', 'mcp-mesh-gateway'));
    (svc.spec.ports[0] as Record<string, unknown>)['port'] = [80];
    const problems = typeCheck([d, svc]);
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0] ?? '', /Deployment\/mcp-mesh-control-plane.*readinesProbe/s);
    assert.match(problems[1] ?? '', /Service\/mcp-mesh-gateway/);
  });

  test('the workload check rejects a writable root FS, a root user, a missing limit and an unpinned image', () => {
    const d = good();
    const c = d.spec.template.spec.containers[0];
    assert.ok(c?.securityContext && c.resources?.limits);
    c.securityContext.readOnlyRootFilesystem = false;
    c.securityContext.runAsUser = 0;
    delete c.resources.limits['memory'];
    c.image = 'ghcr.io/mcp-mesh/control-plane:latest';
    const problems = workloadProblems(d).join('\n');
    for (const m of [/readOnlyRootFilesystem/, /runAsUser must not be 0/, /limits\.memory/, /not pinned/]) assert.match(problems, m);
    assert.deepEqual(imageProblems('x', 'registry:5000/team/app'), ['x: image registry:5000/team/app has no tag (pin a version or digest)']);
    assert.deepEqual(imageProblems('x', 'node:24.20.0-trixie-slim'), []);
  });

  test('kubectl kustomize failures are reported', () => {
    assert.throws(() => kustomize(path.join(k8sDir, 'no-such-overlay')), /kubectl kustomize .* failed/);
  });
});
