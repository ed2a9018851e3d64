// deploy/k8s: renders every overlay with `kubectl kustomize` and checks what comes out.
//  1. Schemas: every object is validated against the Kubernetes OpenAPI schemas shipped by `kubernetes-models`
//     (ajv validators: types, required fields, enums, formats), and type-checked against the same package's
//     generated interfaces with the TypeScript compiler, whose excess-property check rejects unknown fields
//     (a misspelt `readinesProbe` would otherwise be silently dropped by the API server's non-strict paths).
//  2. Policy: replicas, PDBs, probes, non-root / read-only / resources, pinned images, NetworkPolicies, RBAC.
//  3. Wiring: the sidecar agent's and the gateway's container args parse with the real CLI parsers (with the
//     files they read at start laid out from the volumes they mount); ports, paths, Services, ConfigMap keys
//     and the policy file agree with each other.
//  4. Workload identity: every agent has exactly one credential, its pod's own projected ServiceAccount token
//     (audience mcpmesh), on a volume no other kind of container mounts; the attestation map names exactly
//     that ServiceAccount for that identity; the SDS socket is shared only with that pod's Envoy (same uid);
//     no key or CA Secret reaches a workload; the control plane may create TokenReviews (auth-delegator), has
//     its API token and the admin token from a Secret; NetworkPolicies let agents reach xDS and the control
//     plane reach the API server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import {
  DEFAULT_K8S_AUDIENCE,
  IN_CLUSTER_CA_FILE,
  IN_CLUSTER_TOKEN_FILE,
  KubernetesAttestor,
  parseK8sAttestationMap,
  type K8sAttestationMap,
} from '../../control-plane/src/identity/attest-k8s.ts';
import { CertificateAuthority } from '../../control-plane/src/identity/ca.ts';
import { silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { LOCAL_SDS_CLUSTER } from '../../control-plane/src/identity/sds.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { parsePolicy } from '../../control-plane/src/policy/parse.ts';
import { sidecarBootstrapJson } from '../../sidecar/src/agent.ts';
import { renderBootstrap } from '../../sidecar/src/bootstrap.ts';
import { parseSidecarArgs, type ParsedSidecar } from '../../sidecar/src/cli.ts';
import { parseGatewayArgs, type ParsedGateway } from '../../sidecar/src/gateway-cli.ts';
import type { IdentityConfig } from '../../sidecar/src/identity-agent.ts';
import { WorkloadIdentity } from '../../sidecar/src/identity.ts';
import { TokenReviewStandIn } from '../k8s-standin/tokenreview.ts';
import { INSTALL, skipUnless } from '../helpers/tools.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const k8sDir = path.join(repoRoot, 'deploy/k8s');
const OVERLAYS = ['dev', 'production'] as const;
const NAMESPACE = 'mcp-mesh';
/** What the sidecar image sets (deploy/docker/sidecar.Dockerfile): `mcpmesh gateway` finds Envoy through it. */
const SIDECAR_IMAGE_ENV = { ENVOY_BIN: '/usr/local/bin/envoy' };
/** Kinds without a namespace. */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);
/** The workload token lifetime the deployment promises (the kubelet rotates it at 80 %). */
const TOKEN_SECONDS = 3600;

// Loose shapes for what the assertions read (the schemas have already vouched for the structure).
interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    configMapKeyRef?: { name: string; key: string };
    secretKeyRef?: { name: string; key: string };
  };
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
  tcpSocket?: { port: number | string };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    privileged?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  hostPID?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  volumes?: Volume[];
}
interface KeyToPath {
  key: string;
  path: string;
}
interface ProjectedSource {
  serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string };
  configMap?: { name: string; items?: KeyToPath[] };
  secret?: { name: string; items?: KeyToPath[] };
  downwardAPI?: object;
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: KeyToPath[] };
  secret?: { secretName: string; items?: KeyToPath[] };
  emptyDir?: object;
  projected?: { sources: ProjectedSource[] };
}
interface Deployment extends Obj {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  };
}
interface Service extends Obj {
  spec: {
    type?: string;
    clusterIP?: string;
    selector?: Record<string, string>;
    ports: { name?: string; port: number; targetPort?: number | string }[];
  };
}
interface Pdb extends Obj {
  spec: { minAvailable?: number | string; maxUnavailable?: number | string; selector: { matchLabels: Record<string, string> } };
}
interface NetPolPeer {
  podSelector?: { matchLabels?: Record<string, string> };
  namespaceSelector?: { matchLabels?: Record<string, string> };
  ipBlock?: { cidr: string; except?: string[] };
}
interface NetPolPort {
  port: number | string;
  protocol?: string;
}
interface NetPol extends Obj {
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    policyTypes?: string[];
    ingress?: { from?: NetPolPeer[]; ports?: NetPolPort[] }[];
    egress?: { to?: NetPolPeer[]; ports?: NetPolPort[] }[];
  };
}
interface IngressSpec {
  tls?: { hosts?: string[]; secretName?: string }[];
  rules?: {
    host?: string;
    http?: { paths: { path: string; backend: { service: { name: string; port: { name?: string; number?: number } } } }[] };
  }[];
}
interface Binding extends Obj {
  roleRef: { apiGroup: string; kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}
interface ConfigMap extends Obj {
  data?: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------------------
// Rendering

/** kubectl (>= 1.27 has kustomize built in) renders the overlays; without it the tests that need a render skip. */
const skipKubectl = skipUnless('kubectl', INSTALL.kubectl);

function kustomize(dir: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 32 << 20 });
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
    mod = (await import(`kubernetes-models/${o.apiVersion}`)) as Record<string, unknown>;
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
    if (!alias) imports.set(o.apiVersion, (alias = `M${imports.size}`));
    lines.push(`// ${id(o)}\nexport const o${i}: ${alias}.I${o.kind} = ${JSON.stringify(o, null, 1)};`);
  });
  const source = `${[...imports].map(([v, a]) => `import type * as ${a} from 'kubernetes-models/${v}';`).join('\n')}\n${lines.join('\n')}`;
  const file = path.join(repoRoot, 'test/deploy/__rendered_manifests__.ts');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2023.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang) : getSourceFile.call(host, name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
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
  if (spec.automountServiceAccountToken !== false)
    p.push(`${id(d)}: automountServiceAccountToken must be false (no Kubernetes API access)`);
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
      const peerOk =
        rule.from === undefined ||
        rule.from.some((f) => {
          const nsOk =
            f.namespaceSelector === undefined
              ? peerNs === NAMESPACE
              : selects(f.namespaceSelector.matchLabels ?? {}, { 'kubernetes.io/metadata.name': peerNs });
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

const FIELD_SAMPLES: Record<string, string> = {
  'metadata.name': 'mcp-everything-5d8f7c9b4-x2x7k',
  'status.podIP': '10.244.1.17',
  'status.hostIP': '10.0.0.4',
  'metadata.namespace': NAMESPACE,
};

function containerEnv(objs: Obj[], c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (e.value !== undefined) env[e.name] = expand(e.value, env);
    else if (from?.fieldRef)
      env[e.name] = FIELD_SAMPLES[from.fieldRef.fieldPath] ?? assert.fail(`${c.name}: no sample for fieldRef ${from.fieldRef.fieldPath}`);
    else if (from?.configMapKeyRef) {
      const ref = from.configMapKeyRef;
      const value = named<ConfigMap>(objs, 'ConfigMap', ref.name).data?.[ref.key];
      assert.ok(value !== undefined, `${c.name}: env ${e.name} refers to ConfigMap ${ref.name} key ${ref.key}, which does not exist`);
      env[e.name] = value;
    } else if (from?.secretKeyRef) env[e.name] = `secret-from-${from.secretKeyRef.name}`;
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
// Volumes as a container sees them, and the files an agent reads at start

const volumeOf = (spec: PodSpec, name: string): Volume | undefined => spec.volumes?.find((v) => v.name === name);

/** The mount of `c` that holds `file` (the longest mount path that is a prefix), and its volume. */
function mountFor(spec: PodSpec, c: Container, file: string): { mountPath: string; readOnly: boolean; volume: Volume } | undefined {
  const m = (c.volumeMounts ?? [])
    .filter((x) => file.startsWith(`${x.mountPath}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const volume = m ? volumeOf(spec, m.name) : undefined;
  return m && volume ? { mountPath: m.mountPath, readOnly: m.readOnly === true, volume } : undefined;
}

let scratch: string | undefined;
after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/**
 * The container's args and env with every path on a ConfigMap, Secret or projected volume moved to a local
 * copy of that volume (ConfigMaps from the rendered objects, tokens as placeholders): the CLI parsers read
 * those files at start, so a path that is on no volume, or a key a volume does not project, fails to parse.
 * emptyDir paths stay as they are (written at run time, not read by the parsers).
 */
function materialize(
  objs: Obj[],
  spec: PodSpec,
  c: Container,
  a: { args: string[]; env: Record<string, string> },
): { args: string[]; env: Record<string, string> } {
  scratch ??= mkdtempSync(path.join(tmpdir(), 'mcpmesh-k8s-volumes-'));
  const root = mkdtempSync(path.join(scratch, `${c.name}-`));
  const moved: Array<[string, string]> = [];
  for (const m of c.volumeMounts ?? []) {
    const v = volumeOf(spec, m.name);
    assert.ok(v, `${c.name} mounts volume ${m.name}, which the pod does not define`);
    if (v.emptyDir) continue;
    const files: Record<string, string> = {};
    const fromConfigMap = (name: string, items?: KeyToPath[]): void => {
      const data = ofKind<ConfigMap>(objs, 'ConfigMap').find((x) => x.metadata.name === name)?.data;
      if (items)
        for (const it of items) files[it.path] = data?.[it.key] ?? `placeholder for ConfigMap ${name} key ${it.key} (created at install)`;
      else if (data) Object.assign(files, data);
      else assert.fail(`${c.name}: volume ${m.name} projects all keys of ConfigMap ${name}, which is not rendered: list its items`);
    };
    const fromSecret = (name: string, items?: KeyToPath[]): void => {
      for (const it of items ?? []) files[it.path] = `placeholder for Secret ${name} key ${it.key}`;
    };
    if (v.configMap) fromConfigMap(v.configMap.name, v.configMap.items);
    if (v.secret) fromSecret(v.secret.secretName, v.secret.items);
    for (const src of v.projected?.sources ?? []) {
      if (src.serviceAccountToken)
        files[src.serviceAccountToken.path] = `projected.serviceaccount.token.for.${src.serviceAccountToken.audience ?? 'the-api-server'}`;
      if (src.configMap) fromConfigMap(src.configMap.name, src.configMap.items);
      if (src.secret) fromSecret(src.secret.name, src.secret.items);
    }
    const dir = path.join(root, m.name);
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      writeFileSync(path.join(dir, f), text);
    }
    mkdirSync(dir, { recursive: true });
    moved.push([m.mountPath, dir]);
  }
  const move = (s: string): string => {
    const hit = moved.filter(([mp]) => s.startsWith(`${mp}/`)).sort((x, y) => y[0].length - x[0].length)[0];
    return hit ? hit[1] + s.slice(hit[0].length) : s;
  };
  return { args: a.args.map(move), env: Object.fromEntries(Object.entries(a.env).map(([k, v]) => [k, move(v)])) };
}

/** Containers running an agent (`mcpmesh sidecar` / `mcpmesh gateway`), init containers included. */
const agentContainers = (spec: PodSpec): Container[] =>
  allContainers(spec).filter((c) => ['sidecar', 'gateway'].includes(c.args?.[0] ?? ''));

interface ParsedAgent {
  /** Expanded args in the container's own paths. */
  args: string[];
  /** The same with the files of its ConfigMap, Secret and projected volumes laid out locally (materialize). */
  localArgs: string[];
  sidecar?: ParsedSidecar;
  gateway?: ParsedGateway;
  identity?: IdentityConfig;
  /** The SPIFFE ID the args ask for. */
  spiffeId: string;
  /** The attestation map entry that must list this pod's ServiceAccount. */
  mapEntry: { section: 'services' | 'gateways'; name: string };
}

/** Parses an agent container's args with the real parser, its files laid out from its volumes. */
function parseAgent(objs: Obj[], spec: PodSpec, c: Container, trustDomain: string): ParsedAgent {
  const a = expandedArgs(objs, c);
  const m = materialize(objs, spec, c, { args: a.args, env: { ...SIDECAR_IMAGE_ENV, ...a.env } });
  if (a.args[0] === 'gateway') {
    const g = parseGatewayArgs(m.args.slice(1), m.env);
    const name = g.bootstrap.gatewayName ?? 'default';
    return {
      args: a.args,
      localArgs: m.args,
      gateway: g,
      ...(g.identity ? { identity: g.identity } : {}),
      spiffeId: gatewayId(trustDomain, name),
      mapEntry: { section: 'gateways', name },
    };
  }
  assert.equal(a.args[0], 'sidecar', `${c.name}: args[0]`);
  const p = parseSidecarArgs(m.args.slice(1), m.env);
  return {
    args: a.args,
    localArgs: m.args,
    sidecar: p,
    ...(p.options.identity ? { identity: p.options.identity } : {}),
    spiffeId: sidecarId(trustDomain, p.options.service),
    mapEntry: { section: 'services', name: p.options.service },
  };
}

/** The pipe the bootstrap's `mcpmesh.sds` cluster points Envoy at. */
function sdsPipe(bootstrapJson: string): string | undefined {
  const b = JSON.parse(bootstrapJson) as {
    static_resources: {
      clusters: {
        name: string;
        load_assignment?: { endpoints: { lb_endpoints: { endpoint: { address: { pipe?: { path: string } } } }[] }[] };
      }[];
    };
  };
  return b.static_resources.clusters.find((x) => x.name === LOCAL_SDS_CLUSTER)?.load_assignment?.endpoints[0]?.lb_endpoints[0]?.endpoint
    .address.pipe?.path;
}

const uidOf = (spec: PodSpec, c: Container): number | undefined => c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;

/** The rendered attestation map the control plane reads (MCPMESH_K8S_ATTESTATION), parsed by the real parser. */
function attestationMap(objs: Obj[]): K8sAttestationMap {
  const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane');
  const c = containerByName(d.spec.template.spec, 'control-plane');
  const cmName = c.envFrom?.[0]?.configMapRef?.name ?? assert.fail('control plane: envFrom configMapRef');
  const file =
    { ...named<ConfigMap>(objs, 'ConfigMap', cmName).data, ...containerEnv(objs, c) }['MCPMESH_K8S_ATTESTATION'] ??
    assert.fail('MCPMESH_K8S_ATTESTATION is not set');
  const m = mountFor(d.spec.template.spec, c, file);
  assert.ok(m?.volume.configMap, `${file}: not on a ConfigMap volume of the control plane`);
  const text = named<ConfigMap>(objs, 'ConfigMap', m.volume.configMap.name).data?.[path.posix.relative(m.mountPath, file)];
  assert.ok(text, `ConfigMap ${m.volume.configMap.name} has no key ${path.posix.relative(m.mountPath, file)}`);
  return parseK8sAttestationMap(text, 'attestation ConfigMap');
}

const policyTrustDomain = (objs: Obj[]): string => {
  const cm = ofKind<ConfigMap>(objs, 'ConfigMap').find((x) => x.metadata.name.startsWith('mcp-mesh-policy'));
  return parsePolicy(cm?.data?.['policy.yaml'] ?? assert.fail('no policy ConfigMap'), 'policy ConfigMap').trustDomain;
};

/**
 * Workload-identity rules for one Deployment's agents (functions returning problems, so the negative tests can
 * show they bite): exactly one credential, the pod's own projected ServiceAccount token for the mesh's audience;
 * the trust domain of the policy; the CA bundle from a ConfigMap; an attestation map entry for this
 * ServiceAccount; the token only in agent containers; the SDS socket shared only with this pod's Envoy.
 */
function identityProblems(objs: Obj[], d: Deployment, map: K8sAttestationMap, trustDomain: string): string[] {
  const p: string[] = [];
  const spec = d.spec.template.spec;
  const account = `${d.metadata.namespace ?? NAMESPACE}/${spec.serviceAccountName ?? 'default'}`;
  const agents = agentContainers(spec);
  const tokenVolumes = new Set<string>();
  for (const c of agents) {
    const where = `${id(d)} container ${c.name}`;
    const { args, env } = expandedArgs(objs, c);
    const flags = (f: string) => args.filter((x) => x === f || x.startsWith(`${f}=`)).length;
    const creds =
      flags('--join-token') +
      flags('--join-token-file') +
      flags('--k8s-token-file') +
      ['MCPMESH_JOIN_TOKEN', 'MCPMESH_JOIN_TOKEN_FILE', 'MCPMESH_K8S_TOKEN_FILE'].filter((k) => env[k] !== undefined).length;
    if (creds !== 1 || flags('--k8s-token-file') !== 1) {
      p.push(`${where}: needs exactly one credential, --k8s-token-file (got ${creds}: join tokens are for Compose and VMs)`);
      continue;
    }
    const file = args[args.indexOf('--k8s-token-file') + 1] ?? '';
    const m = mountFor(spec, c, file);
    const sat = m?.volume.projected?.sources
      .map((s) => s.serviceAccountToken)
      .find((t) => t !== undefined && path.posix.join(m.mountPath, t.path) === file);
    if (!m || !sat) {
      p.push(`${where}: --k8s-token-file ${file} is not a projected ServiceAccount token of the pod`);
      continue;
    }
    tokenVolumes.add(m.volume.name);
    if (m.volume.projected?.sources.length !== 1) p.push(`${where}: the token volume ${m.volume.name} projects more than the token`);
    if (sat.audience !== DEFAULT_K8S_AUDIENCE)
      p.push(
        `${where}: the token's audience is ${JSON.stringify(sat.audience)}, not "${DEFAULT_K8S_AUDIENCE}" (the control plane's TokenReview asks for "${DEFAULT_K8S_AUDIENCE}"; an API-server token would be a Kubernetes credential)`,
      );
    if (sat.expirationSeconds !== TOKEN_SECONDS)
      p.push(`${where}: the token's expirationSeconds is ${sat.expirationSeconds}, not ${TOKEN_SECONDS}`);
    if (!m.readOnly) p.push(`${where}: mounts the token volume writable`);
    let parsed: ParsedAgent;
    try {
      parsed = parseAgent(objs, spec, c, trustDomain);
    } catch (err) {
      p.push(`${where}: args do not parse: ${(err as Error).message.split('\n\n')[0]}`);
      continue;
    }
    if (parsed.identity?.trustDomain !== trustDomain)
      p.push(`${where}: trust domain ${parsed.identity?.trustDomain} is not the policy's (${trustDomain})`);
    if (parsed.identity?.spiffeId !== parsed.spiffeId)
      p.push(`${where}: identity ${parsed.identity?.spiffeId}, expected ${parsed.spiffeId}`);
    const listed = map[parsed.mapEntry.section][parsed.mapEntry.name] ?? [];
    if (!listed.includes(account))
      p.push(
        `${where}: the attestation map does not list ${account} under ${parsed.mapEntry.section}.${parsed.mapEntry.name} (the control plane would refuse its CSR)`,
      );
    for (const [section, entries] of [
      ['services', map.services],
      ['gateways', map.gateways],
    ] as const) {
      for (const [name, accounts] of Object.entries(entries)) {
        if (accounts.includes(account) && !(section === parsed.mapEntry.section && name === parsed.mapEntry.name))
          p.push(`${id(d)}: its ServiceAccount ${account} is also listed for ${section}.${name}: one identity per ServiceAccount`);
      }
    }
    const isInit = spec.initContainers?.includes(c) === true;
    const printOnly = parsed.sidecar?.printBootstrap ?? parsed.gateway?.printBootstrap ?? false;
    if (!isInit && !printOnly) {
      // The running agent: it trusts the control plane through the CA bundle, a public ConfigMap.
      const bundle = parsed.args[parsed.args.indexOf('--ca-bundle') + 1];
      const bm = parsed.args.includes('--ca-bundle') && bundle ? mountFor(spec, c, bundle) : undefined;
      if (!bm?.volume.configMap)
        p.push(`${where}: --ca-bundle must be a file of a ConfigMap volume (a Kubernetes agent has no join token to pin the CA)`);
      // The SDS socket: on an emptyDir, and only this pod's Envoy (running as the agent's uid) shares it.
      const socket = parsed.identity?.sdsSocket ?? '';
      const sm = mountFor(spec, c, socket);
      if (!sm?.volume.emptyDir) p.push(`${where}: --sds-socket ${socket} is not on an emptyDir`);
      else {
        const sharers = allContainers(spec).filter((x) => x !== c && (x.volumeMounts ?? []).some((vm) => vm.name === sm.volume.name));
        const envoys = sharers.filter((x) => x.command?.[0] === 'envoy');
        if (sharers.length !== envoys.length || envoys.length > 1)
          p.push(
            `${where}: the SDS volume ${sm.volume.name} is shared with ${sharers.map((x) => x.name).join(', ')}: only its Envoy may reach the key`,
          );
        for (const e of envoys)
          if (uidOf(spec, e) !== uidOf(spec, c))
            p.push(
              `${id(d)} container ${e.name}: runs as uid ${uidOf(spec, e)}, the agent as ${uidOf(spec, c)}: the SDS socket is owner-only`,
            );
        if (parsed.sidecar?.options.externalEnvoy && envoys.length !== 1)
          p.push(`${where}: Envoy runs in another container but does not mount the SDS volume ${sm.volume.name}`);
      }
    }
  }
  // The token (and any Secret) only where it belongs.
  for (const c of allContainers(spec)) {
    for (const vm of c.volumeMounts ?? []) {
      if (tokenVolumes.has(vm.name) && !agents.includes(c))
        p.push(`${id(d)} container ${c.name}: mounts the agent's token volume ${vm.name}`);
      const v = volumeOf(spec, vm.name);
      const secrets = [v?.secret?.secretName, ...(v?.projected?.sources.map((s) => s.secret?.name) ?? [])].filter((x) => x !== undefined);
      if (secrets.length > 0 && agents.length > 0)
        p.push(
          `${id(d)} container ${c.name}: mounts Secret ${secrets.join(', ')} (a workload gets no Secret volume: keys are made by its agent)`,
        );
    }
  }
  return p;
}

// ---------------------------------------------------------------------------------------------------------
// NetworkPolicy egress

function ipv4(ip: string): number | undefined {
  const parts = ip.split('.').map(Number);
  return parts.length === 4 && parts.every((n) => Number.isInteger(n) && n >= 0 && n <= 255)
    ? parts.reduce((a, n) => a * 256 + n, 0)
    : undefined;
}
function inCidr(ip: string, cidr: string): boolean {
  const [base = '', bits = '32'] = cidr.split('/');
  const a = ipv4(ip);
  const b = ipv4(base);
  if (a === undefined || b === undefined) return false;
  const size = 2 ** (32 - Number(bits));
  return Math.floor(a / size) === Math.floor(b / size);
}

/** A destination: a pod (labels, namespace, IP) or an address outside the pod network (API server, node). */
type Destination = { pod: Record<string, string>; ns: string; ip: string } | { ip: string };

/** Whether the NetworkPolicies let a pod with `podLabels` (in mcp-mesh) open a connection to `dest`:`port`. */
function egressAllowed(pols: NetPol[], podLabels: Record<string, string>, dest: Destination, port: number, protocol = 'TCP'): boolean {
  const selecting = pols.filter(
    (pol) => pol.spec.policyTypes?.includes('Egress') && selects(pol.spec.podSelector.matchLabels ?? {}, podLabels),
  );
  if (selecting.length === 0) return true;
  return selecting.some((pol) =>
    (pol.spec.egress ?? []).some((rule) => {
      const portOk = rule.ports === undefined || rule.ports.some((p) => p.port === port && (p.protocol ?? 'TCP') === protocol);
      const peerOk =
        rule.to === undefined ||
        rule.to.some((t) => {
          if (t.ipBlock) return inCidr(dest.ip, t.ipBlock.cidr) && !(t.ipBlock.except ?? []).some((e) => inCidr(dest.ip, e));
          if (!('pod' in dest)) return false;
          const nsOk =
            t.namespaceSelector === undefined
              ? dest.ns === NAMESPACE
              : selects(t.namespaceSelector.matchLabels ?? {}, { 'kubernetes.io/metadata.name': dest.ns });
          return nsOk && (t.podSelector === undefined || selects(t.podSelector.matchLabels ?? {}, dest.pod));
        });
      return portOk && peerOk;
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------

before(() => {
  if (skipKubectl) return;
  for (const overlay of OVERLAYS) rendered.set(overlay, kustomize(path.join(k8sDir, 'overlays', overlay)));
});

for (const overlay of OVERLAYS) {
  describe(`deploy/k8s/overlays/${overlay}`, () => {
    test('renders, and every object passes the Kubernetes schemas', { skip: skipKubectl }, async () => {
      const objs = objects(overlay);
      assert.ok(objs.length >= 15, `expected the whole mesh, got ${objs.length} objects`);
      const problems = (await Promise.all(objs.map(schemaProblems))).flat();
      assert.deepEqual(problems, [], `schema violations:\n${problems.join('\n')}`);
    });

    test('every object type-checks against the Kubernetes API types (no unknown fields)', { skip: skipKubectl }, () => {
      const problems = typeCheck(objects(overlay));
      assert.deepEqual(problems, [], `type errors:\n${problems.join('\n')}`);
    });

    test('everything namespaced lives in mcp-mesh, names are unique', { skip: skipKubectl }, () => {
      const objs = objects(overlay);
      const seen = new Set<string>();
      for (const o of objs) {
        if (CLUSTER_SCOPED.has(o.kind)) assert.equal(o.metadata.namespace, undefined, `${id(o)} is cluster-scoped`);
        else assert.equal(o.metadata.namespace, NAMESPACE, `${id(o)} namespace`);
        assert.ok(!seen.has(id(o)), `${id(o)} appears twice`);
        seen.add(id(o));
      }
    });

    test('workloads: non-root, read-only root FS, no privileges, resources, pinned images', { skip: skipKubectl }, () => {
      const problems = ofKind<Deployment>(objects(overlay), 'Deployment').flatMap(workloadProblems);
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    test('the control plane: probes on /healthz and /readyz (18001), Consul, policy and CA wiring', { skip: skipKubectl }, () => {
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
      assert.ok(
        c.env?.some((e) => e.name === 'CONSUL_HTTP_TOKEN' && e.valueFrom?.secretKeyRef),
        'Consul ACL token from a Secret',
      );
      // The policy file: mounted from the policy ConfigMap, and it parses with the real parser.
      const policyPath = env['MCPMESH_POLICY'];
      assert.ok(policyPath, 'MCPMESH_POLICY');
      const mount = c.volumeMounts?.find((m) => policyPath.startsWith(`${m.mountPath}/`));
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
      assert.ok(
        authzSvc.spec.ports.some((p) => p.port === 18002),
        'the authorizer Service exposes 18002',
      );
      assert.ok(selects(authzSvc.spec.selector, d.spec.template.metadata.labels), 'the authorizer Service selects the control plane');
      // The shared CA: every replica must sign with the same one.
      for (const k of ['MCPMESH_CA_CERT', 'MCPMESH_CA_KEY']) {
        const f = env[k] ?? assert.fail(`${k} is not set`);
        const caMount = c.volumeMounts?.find((vm) => f.startsWith(`${vm.mountPath}/`));
        assert.ok(
          caMount && d.spec.template.spec.volumes?.find((v) => v.name === caMount.name)?.secret,
          `${k} must come from a Secret volume`,
        );
      }
      // Prometheus scrapes the admin port.
      assert.equal(d.spec.template.metadata.annotations?.['prometheus.io/port'], '18001');
      // Binds (control-plane/src/main.ts: each defaults to 127.0.0.1): the kubelet's probes and Prometheus reach
      // the admin port on the pod address, gateways the authorizer, proxies xDS, which is TLS (a policy is set).
      assert.equal(env['MCPMESH_ADMIN_HOST'], '0.0.0.0', 'probes on the pod IP');
      assert.equal(env['MCPMESH_AUTHZ_BIND'], '0.0.0.0', 'gateways reach the authorizer');
      assert.equal(env['MCPMESH_XDS_HOST'], '0.0.0.0');
      for (const k of ['MCPMESH_XDS_INSECURE', 'MCPMESH_BIND']) assert.equal(env[k], undefined, `${k} must not be set`);
      // Beyond loopback the admin port's /debug, /admin/join-token and /oauth/token need the admin token: from a
      // Secret the operator creates (none is rendered: nothing secret is committed).
      const adminToken = c.env?.find((e) => e.name === 'MCPMESH_ADMIN_TOKEN');
      assert.ok(
        adminToken?.valueFrom?.secretKeyRef && adminToken.value === undefined,
        'MCPMESH_ADMIN_TOKEN from a Secret (secretKeyRef), never a literal',
      );
      for (const k of ['MCPMESH_ADMIN_TOKEN', 'MCPMESH_ADMIN_TOKEN_FILE']) assert.equal(cm.data?.[k], undefined, `${k} in the ConfigMap`);
      assert.equal(ofKind(objs, 'Secret').length, 0, 'no Secret is rendered: the operator creates them (README, Install)');
      // Kubernetes attestation: the map (mounted from a ConfigMap) parses with the real parser...
      const map = attestationMap(objs);
      assert.ok(Object.keys(map.services).length > 0 && Object.keys(map.gateways).length > 0);
      // ... and TokenReview is called with the control plane's own API token and the cluster CA, at the in-cluster
      // paths the attestor reads, projected into this container only (no automount for the pod).
      const spec = d.spec.template.spec;
      const api = mountFor(spec, c, IN_CLUSTER_TOKEN_FILE);
      assert.ok(api?.readOnly && api.volume.projected, `${IN_CLUSTER_TOKEN_FILE}: a read-only projected volume`);
      const sat = api.volume.projected.sources.find((x) => x.serviceAccountToken)?.serviceAccountToken;
      assert.equal(sat && path.posix.join(api.mountPath, sat.path), IN_CLUSTER_TOKEN_FILE);
      assert.equal(sat?.audience, undefined, "an API token (the API server's audience), not one for the mesh");
      assert.ok(sat?.expirationSeconds !== undefined && sat.expirationSeconds <= TOKEN_SECONDS, 'short-lived, rotated by the kubelet');
      const caSrc = mountFor(spec, c, IN_CLUSTER_CA_FILE);
      assert.equal(caSrc?.volume.name, api.volume.name);
      const rootCa = api.volume.projected.sources.find((x) => x.configMap)?.configMap;
      assert.equal(rootCa?.name, 'kube-root-ca.crt', 'the cluster CA every namespace gets');
      assert.ok(rootCa?.items?.some((it) => it.key === 'ca.crt' && path.posix.join(api.mountPath, it.path) === IN_CLUSTER_CA_FILE));
      assert.equal(spec.automountServiceAccountToken, false);
    });

    test('Services select pods and target ports those pods have', { skip: skipKubectl }, () => {
      const objs = objects(overlay);
      const deployments = ofKind<Deployment>(objs, 'Deployment');
      for (const s of ofKind<Service>(objs, 'Service')) {
        const d = deployments.find((x) => selects(s.spec.selector, x.spec.template.metadata.labels));
        assert.ok(d, `${id(s)} selects no pods`);
        for (const p of s.spec.ports) {
          const target = p.targetPort ?? p.port;
          assert.ok(
            d.spec.template.spec.containers.some((c) => containerPort(c, target)),
            `${id(s)} port ${p.port} -> ${target}: no such container port in ${id(d)}`,
          );
        }
      }
    });

    test('the example MCP server: agent and bootstrap args parse with the real sidecar parser and match the pod', {
      skip: skipKubectl,
    }, () => {
      const objs = objects(overlay);
      const d = named<Deployment>(objs, 'Deployment', 'mcp-everything');
      const spec = d.spec.template.spec;
      const app = containerByName(spec, 'everything');
      const envoy = containerByName(spec, 'envoy');
      const agent = containerByName(spec, 'mcpmesh-agent');
      const init = containerByName(spec, 'mcpmesh-bootstrap');
      assert.ok(spec.initContainers?.includes(init), 'the bootstrap writer is an init container');
      const envoyConfig = envoy.args?.[envoy.args.indexOf('-c') + 1];
      assert.ok(envoyConfig, 'envoy -c FILE');

      const td = policyTrustDomain(objs);
      const a = parseAgent(objs, spec, agent, td);
      assert.equal(a.args[0], 'sidecar');
      const parsed = a.sidecar ?? assert.fail('not a sidecar agent');
      assert.equal(parsed.printBootstrap, false);
      const o = parsed.options;
      assert.equal(o.externalEnvoy, true, 'Envoy runs in its own container');
      assert.equal(o.envoyBin, undefined);
      assert.equal(o.bootstrapPath, envoyConfig, 'the agent writes the file Envoy reads');
      assert.equal(o.address, FIELD_SAMPLES['status.podIP'], '--address is the pod IP');
      assert.equal(o.serviceId, FIELD_SAMPLES['metadata.name'], '--id is the pod name');
      assert.equal(o.consul.address, `http://${FIELD_SAMPLES['status.hostIP']}:8500`, 'the node-local Consul agent');
      assert.ok(expandedArgs(objs, agent).env['CONSUL_HTTP_TOKEN'], 'Consul ACL token');
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

      const b = parseAgent(objs, spec, init, td);
      const boot = b.sidecar ?? assert.fail('not a sidecar agent');
      assert.equal(b.args[0], 'sidecar');
      assert.equal(boot.printBootstrap, true);
      assert.equal(boot.options.bootstrapPath, envoyConfig);
      // Same identity and placement in the bootstrap as in the running agent.
      for (const k of [
        'service',
        'serviceId',
        'appPort',
        'inboundPort',
        'protocol',
        'region',
        'zone',
        'controlPlane',
        'externalEnvoy',
      ] as const) {
        assert.deepEqual(boot.options[k], o[k], `bootstrap and agent disagree on ${k}`);
      }
      // The workload identity: secured (a k8s-sat credential), spiffe://<policy trust domain>/mcp/everything.
      assert.equal(o.identity?.credential.type, 'k8s-sat', 'the agent joins with its ServiceAccount token');
      assert.equal(o.identity.spiffeId, sidecarId(td, 'everything'));
      for (const k of ['spiffeId', 'trustDomain', 'sdsSocket'] as const)
        assert.equal(boot.options.identity?.[k], o.identity[k], `bootstrap and agent disagree on identity.${k}`);
      // The bootstrap the init container writes points Envoy at the agent's SDS socket, on the volume both mount.
      const pipe =
        sdsPipe(sidecarBootstrapJson(boot.options, boot.options.appPort)) ?? assert.fail('the bootstrap has no mcpmesh.sds pipe');
      assert.equal(pipe, o.identity.sdsSocket);
      const sdsVolume = mountFor(spec, agent, pipe)?.volume;
      assert.ok(sdsVolume?.emptyDir, 'the socket is on an emptyDir');
      assert.equal(mountFor(spec, envoy, pipe)?.volume.name, sdsVolume.name, "Envoy mounts the agent's socket volume");
      assert.ok(!(app.volumeMounts ?? []).some((m) => m.name === sdsVolume.name), 'the MCP server does not');
      assert.equal(uidOf(spec, envoy), uidOf(spec, agent), "Envoy runs as the agent's uid (the socket is owner-only)");
      assert.deepEqual(identityProblems(objs, d, attestationMap(objs), td), []);
      // The bootstrap volume is shared, written by the init container and the agent, read-only for Envoy.
      const vol = (c: Container) => c.volumeMounts?.find((m) => envoyConfig.startsWith(`${m.mountPath}/`));
      assert.ok(vol(init) && vol(agent) && vol(envoy), 'all three mount the bootstrap volume');
      assert.equal(vol(envoy)?.readOnly, true);
      assert.equal(vol(init)?.name, vol(envoy)?.name);
    });

    test('the gateway: one container runs the gateway agent and its Envoy; args parse with the real gateway parser and match the pod and Service', {
      skip: skipKubectl,
    }, () => {
      const objs = objects(overlay);
      const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway');
      const spec = d.spec.template.spec;
      // `mcpmesh gateway` supervises Envoy itself: the key, the SDS socket and Envoy share one container.
      assert.deepEqual(
        allContainers(spec).map((c) => c.name),
        ['gateway'],
      );
      const gw = containerByName(spec, 'gateway');
      assert.match(gw.image ?? '', /^ghcr\.io\/mcp-mesh\/sidecar:/, 'the sidecar image (agent + Envoy)');
      const td = policyTrustDomain(objs);
      const g = parseAgent(objs, spec, gw, td);
      assert.equal(g.args[0], 'gateway');
      const parsed = g.gateway ?? assert.fail('not a gateway agent');
      assert.equal(parsed.printBootstrap, false);
      assert.equal(parsed.envoyBin, SIDECAR_IMAGE_ENV.ENVOY_BIN, "the image's Envoy");
      assert.equal(parsed.bootstrap.nodeId, FIELD_SAMPLES['metadata.name'], '--id is the pod name');
      assert.equal(parsed.bootstrap.controlPlane.host, 'mcp-mesh-control-plane.mcp-mesh.svc.cluster.local');
      assert.equal(parsed.bootstrap.controlPlane.port, 18000);
      assert.ok(parsed.bootstrap.region && parsed.bootstrap.zone);
      assert.equal(containerPort(gw, 'http'), parsed.bootstrap.listenerPort, 'the container exposes the listener port');
      assert.equal(containerPort(gw, gw.readinessProbe?.httpGet?.port ?? -1), parsed.bootstrap.statsPort, 'readiness on the stats port');
      assert.equal(gw.readinessProbe?.httpGet?.path, '/ready');
      const svc = named<Service>(objs, 'Service', 'mcp-mesh-gateway');
      assert.ok(
        svc.spec.ports.every((p) => containerPort(gw, p.targetPort ?? p.port) === parsed.bootstrap.listenerPort),
        'the Service targets the MCP listener',
      );
      // Identity: spiffe://<td>/gateway/default with the pod's ServiceAccount token; Envoy's SDS socket inside
      // the container (a volume no other container mounts).
      assert.equal(parsed.identity?.credential.type, 'k8s-sat');
      assert.equal(parsed.identity.spiffeId, gatewayId(td, 'default'));
      const pipe = sdsPipe(renderBootstrap(parsed.bootstrap)) ?? assert.fail('the bootstrap has no mcpmesh.sds pipe');
      assert.equal(pipe, parsed.identity.sdsSocket);
      assert.ok(mountFor(spec, gw, pipe)?.volume.emptyDir, "the socket is on the container's own emptyDir (read-only root file system)");
      assert.deepEqual(identityProblems(objs, d, attestationMap(objs), td), []);
      // It decides beside Envoy with the control plane's own policy ConfigMap (parsed above, trust domain checked
      // against its identity): the directory mounted read-only, so a ConfigMap update reaches its watch.
      assert.ok(parsed.localAuthz, 'the gateway runs --policy');
      const policyArg = g.args[g.args.indexOf('--policy') + 1] ?? '';
      const policyMount = mountFor(spec, gw, policyArg) ?? assert.fail(`--policy ${policyArg} is on no volume`);
      assert.ok(policyMount.readOnly && policyMount.volume.configMap, 'a read-only ConfigMap volume');
      assert.equal(
        (gw.volumeMounts ?? []).find((m) => m.mountPath === policyMount.mountPath)?.subPath,
        undefined,
        'no subPath: those never see ConfigMap updates',
      );
      const cpSpec = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane').spec.template.spec;
      assert.ok(
        (cpSpec.volumes ?? []).some((v) => v.configMap?.name === policyMount.volume.configMap?.name),
        'the ConfigMap the control plane mounts',
      );
      assert.equal(
        path.dirname(parsed.localAuthz.socket),
        path.dirname(parsed.identity.sdsSocket),
        'the authorizer socket beside the SDS socket',
      );
      assert.ok(mountFor(spec, gw, parsed.localAuthz.socket)?.volume.emptyDir);
    });

    test("workload identity: each agent holds exactly one credential, its own pod's mcpmesh token, and the attestation map names exactly that ServiceAccount for that identity", {
      skip: skipKubectl,
    }, () => {
      const objs = objects(overlay);
      const map = attestationMap(objs);
      const td = policyTrustDomain(objs);
      const deployments = ofKind<Deployment>(objs, 'Deployment');
      const withAgents = deployments.filter((d) => agentContainers(d.spec.template.spec).length > 0);
      assert.deepEqual(withAgents.map((d) => d.metadata.name).sort(), ['mcp-everything', 'mcp-mesh-gateway']);
      for (const d of withAgents) assert.deepEqual(identityProblems(objs, d, map, td), [], id(d));
      // Every workload has a ServiceAccount of its own: the identity a token proves is the workload's.
      const accounts = deployments.map((d) => d.spec.template.spec.serviceAccountName);
      assert.equal(new Set(accounts).size, accounts.length, `ServiceAccounts shared between Deployments: ${accounts.join(', ')}`);
      // Every account the map names in this namespace exists here; every agent workload is in the map.
      const sas = new Set(ofKind(objs, 'ServiceAccount').map((sa) => `${NAMESPACE}/${sa.metadata.name}`));
      for (const listed of [...Object.values(map.services), ...Object.values(map.gateways)].flat()) {
        if (listed.startsWith(`${NAMESPACE}/`)) assert.ok(sas.has(listed), `the attestation map names ${listed}, which is not rendered`);
      }
      // The control plane is the only workload with a Secret volume (the CA key) and with an API token.
      for (const d of deployments) {
        const spec = d.spec.template.spec;
        const secrets = (spec.volumes ?? []).filter((v) => v.secret || v.projected?.sources.some((x) => x.secret));
        const apiTokens = (spec.volumes ?? []).filter((v) =>
          v.projected?.sources.some((x) => x.serviceAccountToken && x.serviceAccountToken.audience === undefined),
        );
        if (d.metadata.name !== 'mcp-mesh-control-plane') {
          assert.deepEqual(
            secrets.map((v) => v.name),
            [],
            `${id(d)}: Secret volumes`,
          );
          assert.deepEqual(
            apiTokens.map((v) => v.name),
            [],
            `${id(d)}: a Kubernetes API token`,
          );
        }
      }
    });

    test('NetworkPolicies: default deny, xDS only from proxies, authz only from gateways, MCP servers only via the sidecar', {
      skip: skipKubectl,
    }, () => {
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
      // Every pod running an agent reaches the control plane's xDS port: its CSRs (with the ServiceAccount token,
      // then renewals over mTLS) and its Envoy's ADS both go there. Ingress at the control plane, egress at the pod.
      const cpPod = { pod: cp, ns: NAMESPACE, ip: '10.244.0.10' };
      for (const d of ofKind<Deployment>(objs, 'Deployment').filter((x) => agentContainers(x.spec.template.spec).length > 0)) {
        const l = d.spec.template.metadata.labels;
        assert.ok(allowedPorts(pols, cp, l, NAMESPACE).has(18000), `${id(d)}: the control plane does not admit it on 18000`);
        assert.ok(egressAllowed(pols, l, cpPod, 18000), `${id(d)}: may not connect to the control plane's 18000`);
      }
      // The control plane's own calls: TokenReview at the API server (the kubernetes Service's 443, and the
      // endpoint port it forwards to, often 6443), the node-local Consul agent, DNS; nothing else.
      assert.ok(egressAllowed(pols, cp, { ip: '10.96.0.1' }, 443), 'the kubernetes Service (TokenReview)');
      assert.ok(egressAllowed(pols, cp, { ip: '172.18.0.2' }, 6443), 'the API server endpoint (TokenReview)');
      assert.ok(egressAllowed(pols, cp, { ip: FIELD_SAMPLES['status.hostIP'] ?? '' }, 8500), 'the node-local Consul agent');
      assert.ok(egressAllowed(pols, cp, { pod: { 'k8s-app': 'kube-dns' }, ns: 'kube-system', ip: '10.244.0.2' }, 53, 'UDP'), 'DNS');
      assert.ok(!egressAllowed(pols, cp, { ip: '203.0.113.7' }, 80), "no other way out for the CA key's holder");
      assert.ok(
        !egressAllowed(pols, cp, { pod: mcp, ns: NAMESPACE, ip: '10.244.1.17' }, 15006),
        'the control plane never calls a workload',
      );
      assert.ok(
        !egressAllowed(pols, cp, { pod: { 'k8s-app': 'kube-dns' }, ns: 'elsewhere', ip: '10.244.3.3' }, 53, 'UDP'),
        'DNS only in kube-system',
      );
    });

    test('RBAC: no default tokens; only the control plane is bound, to system:auth-delegator (TokenReview); no other ServiceAccount binding', {
      skip: skipKubectl,
    }, () => {
      const objs = objects(overlay);
      const sas = ofKind<Obj & { automountServiceAccountToken?: boolean }>(objs, 'ServiceAccount');
      for (const sa of sas) assert.equal(sa.automountServiceAccountToken, false, `${id(sa)}: automountServiceAccountToken`);
      for (const d of ofKind<Deployment>(objs, 'Deployment')) {
        assert.ok(
          sas.some((sa) => sa.metadata.name === d.spec.template.spec.serviceAccountName),
          `${id(d)} runs as its own ServiceAccount`,
        );
      }
      // The Kubernetes attestor creates TokenReviews: exactly that binding, for exactly the control plane's account.
      const crbs = ofKind<Binding>(objs, 'ClusterRoleBinding');
      assert.equal(crbs.length, 1, `ClusterRoleBindings: ${crbs.map(id).join(', ')}`);
      const [crb] = crbs;
      assert.deepEqual(crb?.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' });
      const cpAccount = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane').spec.template.spec.serviceAccountName;
      assert.deepEqual(crb?.subjects, [{ kind: 'ServiceAccount', name: cpAccount, namespace: NAMESPACE }]);
      assert.equal(ofKind(objs, 'ClusterRole').length, 0, 'no cluster role of our own');
      for (const b of ofKind<Binding>(objs, 'RoleBinding')) {
        for (const s of b.subjects ?? [])
          assert.notEqual(s.kind, 'ServiceAccount', `${id(b)} binds ServiceAccount ${s.name}: workloads need no Kubernetes API access`);
      }
      const roles = ofKind<Obj & { rules: { verbs: string[]; resources?: string[] }[] }>(objs, 'Role');
      for (const r of roles) {
        for (const rule of r.rules) {
          assert.ok(!rule.verbs.includes('*') && !(rule.resources ?? []).includes('*'), `${id(r)}: no wildcards`);
          assert.ok(!(rule.resources ?? []).includes('secrets'), `${id(r)}: no access to Secrets`);
        }
      }
    });

    test('the namespace enforces the restricted Pod Security Standard', { skip: skipKubectl }, () => {
      const ns = named<Obj>(objects(overlay), 'Namespace', NAMESPACE);
      assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    });
  });
}

describe('the rendered identity wiring against a real control plane (a TokenReview stand-in plays the API server)', () => {
  test("each running agent's projected token, reviewed against the rendered attestation map, gets its own identity; another workload's token gets nothing", {
    skip: skipKubectl || skipUnless('openssl', INSTALL.openssl),
  }, async () => {
    const objs = objects('production');
    const td = policyTrustDomain(objs);
    const cpSpec = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane').spec.template.spec;
    const cpAccount = `system:serviceaccount:${NAMESPACE}:${cpSpec.serviceAccountName}`;
    // RBAC as rendered: the control plane may create TokenReviews only through its system:auth-delegator binding.
    const mayReview = ofKind<Binding>(objs, 'ClusterRoleBinding').some(
      (b) =>
        b.roleRef.name === 'system:auth-delegator' &&
        (b.subjects ?? []).some((x) => x.kind === 'ServiceAccount' && `system:serviceaccount:${x.namespace}:${x.name}` === cpAccount),
    );
    const api = new TokenReviewStandIn({ reviewers: { 'control-plane-api-token': { username: cpAccount, mayReview } } });
    await api.start();
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-k8s-cp-'));
    writeFileSync(path.join(dir, 'r.yaml'), 'services: []\n');
    const policyCm = ofKind<ConfigMap>(objs, 'ConfigMap').find((x) => x.metadata.name.startsWith('mcp-mesh-policy'));
    // The CA of the Secret mcp-mesh-ca; its certificate is what the ConfigMap mcp-mesh-ca-bundle holds.
    const ca = await CertificateAuthority.selfSigned({ trustDomain: td });
    const cp = await new ControlPlane({
      registryFile: path.join(dir, 'r.yaml'),
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      authzHost: '127.0.0.1',
      authzPort: 0,
      security: {
        policy: parsePolicy(policyCm?.data?.['policy.yaml'] ?? '', 'policy ConfigMap'),
        publicUrl: 'https://mcp.example.com',
        authz: { host: '127.0.0.1', port: 18002 },
      },
      ca,
      attestors: [
        new KubernetesAttestor({
          apiServer: api.url,
          caPem: api.caPem,
          token: () => 'control-plane-api-token',
          mapping: attestationMap(objs),
        }),
      ],
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
    }).start();
    const sign = async (identity: IdentityConfig): Promise<string> => {
      const w = new WorkloadIdentity({
        spiffeId: identity.spiffeId,
        credential: identity.credential,
        bundlePem: ca.bundlePem,
        controlPlane: { host: '127.0.0.1', port: cp.xdsPort },
        log: () => {},
      });
      try {
        return (await w.start()).spiffeId;
      } finally {
        w.stop();
      }
    };
    try {
      const signed: string[] = [];
      const agents: Array<{ d: Deployment; parsed: ParsedAgent; tokenFile: string }> = [];
      for (const d of ofKind<Deployment>(objs, 'Deployment')) {
        const spec = d.spec.template.spec;
        for (const c of agentContainers(spec).filter((x) => !spec.initContainers?.includes(x))) {
          const parsed = parseAgent(objs, spec, c, td);
          assert.ok(parsed.identity, `${id(d)} ${c.name}: no identity`);
          const tokenFile = parsed.localArgs[parsed.localArgs.indexOf('--k8s-token-file') + 1] ?? assert.fail('--k8s-token-file');
          // What the kubelet puts in the projected volume: a token of the pod's ServiceAccount, for the volume's audience.
          const source = mountFor(spec, c, parsed.args[parsed.args.indexOf('--k8s-token-file') + 1] ?? '')?.volume.projected?.sources.find(
            (x) => x.serviceAccountToken,
          )?.serviceAccountToken;
          const token = `sat-${d.metadata.name}`;
          api.tokens.set(token, {
            username: `system:serviceaccount:${d.metadata.namespace}:${spec.serviceAccountName}`,
            audiences: source?.audience ? [source.audience] : api.apiAudiences,
            podName: FIELD_SAMPLES['metadata.name'] ?? '',
          });
          writeFileSync(tokenFile, token);
          signed.push(await sign(parsed.identity));
          agents.push({ d, parsed, tokenFile });
        }
      }
      assert.deepEqual(signed.sort(), [gatewayId(td, 'default'), sidecarId(td, 'everything')].sort());
      // Swap the two pods' tokens: each ServiceAccount is good for its own identity only.
      const [x, y] = agents;
      assert.ok(x && y);
      writeFileSync(x.tokenFile, `sat-${y.d.metadata.name}`);
      await assert.rejects(sign(x.parsed.identity ?? assert.fail()), /PERMISSION_DENIED: k8s-sat: ServiceAccount \S+ may not be /);
    } finally {
      await cp.stop();
      await api.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('production overlay', () => {
  test('control plane: >= 2 replicas, a PDB that selects it, spread over nodes', { skip: skipKubectl }, () => {
    const objs = objects('production');
    const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane');
    assert.ok((d.spec.replicas ?? 1) >= 2, `replicas ${d.spec.replicas}`);
    const pdb = ofKind<Pdb>(objs, 'PodDisruptionBudget').find((p) => selects(p.spec.selector.matchLabels, d.spec.template.metadata.labels));
    assert.ok(pdb, 'a PodDisruptionBudget selects the control plane');
    assert.ok(
      typeof pdb.spec.minAvailable === 'number' && pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < (d.spec.replicas ?? 1),
      'minAvailable leaves room for a drain',
    );
    const tsc =
      (d.spec.template.spec as PodSpec & { topologySpreadConstraints?: { topologyKey: string; whenUnsatisfiable: string }[] })
        .topologySpreadConstraints ?? [];
    assert.ok(
      tsc.some((t) => t.topologyKey === 'kubernetes.io/hostname' && t.whenUnsatisfiable === 'DoNotSchedule'),
      'never two replicas on one node',
    );
    assert.equal(new Set(tsc.map((t) => t.topologyKey)).size, tsc.length, 'one constraint per topology key');
  });

  test('gateway: >= 2 replicas with a PDB; public only through TLS for the https public URL (no plain-HTTP load balancer)', {
    skip: skipKubectl,
  }, () => {
    const objs = objects('production');
    const d = named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway');
    assert.ok((d.spec.replicas ?? 1) >= 2);
    assert.ok(ofKind<Pdb>(objs, 'PodDisruptionBudget').some((p) => selects(p.spec.selector.matchLabels, d.spec.template.metadata.labels)));
    // Issue 12: the production overlay served plain HTTP on :80 from a LoadBalancer for an https:// public URL.
    for (const svc of ofKind<Service>(objs, 'Service'))
      assert.ok(
        svc.spec.type === undefined || svc.spec.type === 'ClusterIP',
        `Service ${svc.metadata.name} is ${svc.spec.type}: exposed without TLS`,
      );
    const host = new URL(
      ofKind<ConfigMap>(objs, 'ConfigMap').find((x) => x.data?.['MCPMESH_PUBLIC_URL'])?.data?.['MCPMESH_PUBLIC_URL'] ?? '',
    ).hostname;
    const gwService = named<Service>(objs, 'Service', 'mcp-mesh-gateway');
    const ingresses = ofKind<Obj & { spec: IngressSpec }>(objs, 'Ingress');
    const ing = ingresses.find((i) => i.spec.rules?.some((r) => r.host === host));
    assert.ok(ing, `an Ingress for ${host}`);
    assert.ok(
      ing.spec.tls?.some((t) => t.hosts?.includes(host) && t.secretName),
      `TLS for ${host} with a certificate Secret`,
    );
    const backends = (ing.spec.rules ?? []).flatMap((r) => r.http?.paths ?? []).map((p) => p.backend.service);
    assert.deepEqual(backends, [{ name: 'mcp-mesh-gateway', port: { name: 'http' } }]);
    assert.ok(
      gwService.spec.ports.some((p) => p.name === 'http'),
      'the backend port names a port of the gateway Service',
    );
    assert.equal(ing.metadata.annotations?.['nginx.ingress.kubernetes.io/proxy-buffering'], 'off', 'SSE passes unbuffered');
    assert.ok(
      Number(ing.metadata.annotations?.['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 3600,
      'long tool calls and streams stay open',
    );
  });

  test('the control plane has Guaranteed QoS (requests = limits)', { skip: skipKubectl }, () => {
    const c = containerByName(
      named<Deployment>(objects('production'), 'Deployment', 'mcp-mesh-control-plane').spec.template.spec,
      'control-plane',
    );
    assert.deepEqual(c.resources?.requests, c.resources?.limits);
  });

  test('a public URL is set', { skip: skipKubectl }, () => {
    const cm = ofKind<ConfigMap>(objects('production'), 'ConfigMap').find((x) => x.data?.['MCPMESH_PUBLIC_URL']);
    assert.match(cm?.data?.['MCPMESH_PUBLIC_URL'] ?? '', /^https:\/\//);
  });
});

describe('deploy/k8s/consul/values.yaml (hashicorp/consul Helm chart)', () => {
  test('servers, ACLs, TLS, UI on; Consul service mesh injection off; client agents for the TTL checks', () => {
    const v = parseYaml(readFileSync(path.join(k8sDir, 'consul/values.yaml'), 'utf8')) as {
      global: {
        acls: { manageSystemACLs: boolean };
        tls: { enabled: boolean; enableAutoEncrypt: boolean };
        gossipEncryption: { autoGenerate: boolean };
      };
      server: { replicas: number };
      client: { enabled: boolean };
      ui: { enabled: boolean };
      connectInject: { enabled: boolean };
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

describe('deploy/k8s/README.md: Install', () => {
  const readme = readFileSync(path.join(k8sDir, 'README.md'), 'utf8');
  const install = readme.slice(readme.indexOf('## Install'), readme.indexOf('## Health'));
  const shell = [...install.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '').join('\n');

  test('every $VARIABLE the commands use is set by an earlier command (issue 12: an undefined $TOKEN)', () => {
    const set = new Set<string>();
    const problems: string[] = [];
    for (const line of shell.split('\n').map((l) => l.replace(/(^|\s)#.*$/, ''))) {
      for (const m of line.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
        const name = m[1] as string;
        const assignedHere = new RegExp(`(^|[\\s;(])(${name}=|for ${name} in)`).test(line.slice(0, m.index));
        if (!set.has(name) && !assignedHere) problems.push(`$${name} in: ${line.trim()}`);
      }
      for (const m of line.matchAll(/(?:^|[\s;(])([A-Za-z_][A-Za-z0-9_]*)=/g)) set.add(m[1] as string);
      for (const m of line.matchAll(/\bfor ([A-Za-z_][A-Za-z0-9_]*) in\b/g)) set.add(m[1] as string);
    }
    assert.deepEqual(problems, []);
    assert.ok(set.has('TOKEN'), 'the token for "Try it" is set');
  });

  test("the images the overlays run are built (and loaded or pushed) by the README's commands, from Dockerfiles and targets that exist", {
    skip: skipKubectl,
  }, () => {
    const built = new Map(
      [...shell.matchAll(/docker build -f (\S+)(?: --target (\S+))? -t (\S+) \./g)].map((m) => [
        m[3] as string,
        { file: m[1] as string, target: m[2] },
      ]),
    );
    for (const overlay of OVERLAYS) {
      const ours = new Set(
        ofKind<Deployment>(objects(overlay), 'Deployment')
          .flatMap((d) => [...d.spec.template.spec.containers, ...(d.spec.template.spec.initContainers ?? [])])
          .map((c) => c.image ?? '')
          .filter((i) => i.startsWith('ghcr.io/mcp-mesh/')),
      );
      assert.ok(ours.size >= 2, `${overlay}: the mesh's images`);
      for (const image of ours) {
        const b = built.get(image);
        assert.ok(b, `${overlay} runs ${image}, which no \`docker build ... -t ${image}\` in the README makes`);
        const dockerfile = readFileSync(path.join(repoRoot, b.file), 'utf8');
        if (b.target) assert.match(dockerfile, new RegExp(`^FROM \\S+ AS ${b.target}$`, 'm'), `${b.file} has a stage ${b.target}`);
        assert.ok(shell.includes(`kind load docker-image`) && shell.includes(image), `${image}: a load step for local clusters`);
        assert.match(shell, /docker push/, 'a push step for registries');
      }
    }
  });
});

describe('deploy/k8s/README.md: "Add a sidecar to your own MCP server"', () => {
  test('the snippet, pasted into a Deployment, passes the schemas, the workload and identity rules, and its args parse', {
    skip: skipKubectl,
  }, async () => {
    const readme = readFileSync(path.join(k8sDir, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Add a sidecar to your own MCP server'));
    const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    const [block, mapBlock] = blocks;
    assert.ok(block && mapBlock, 'the README section has the Deployment snippet and the attestation map');
    const snippet = parseYaml(block) as { spec: { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } };
    const pod = snippet.spec.template.spec;
    // A team's own server, as the snippet's comment describes it.
    pod.containers.unshift({
      name: 'weather',
      image: 'registry.example.com/weather:1.4.2',
      ports: [{ name: 'mcp', containerPort: 8000 }],
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 1000,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      },
    });
    assert.equal(pod.serviceAccountName, 'weather', 'the snippet runs as its own ServiceAccount');
    assert.equal(pod.automountServiceAccountToken, false);
    const labels = { app: 'weather', ...snippet.spec.template.metadata.labels };
    const d = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'weather', namespace: 'team-a' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'weather' } },
        template: { ...snippet.spec.template, metadata: { ...snippet.spec.template.metadata, labels } },
      },
    } as Deployment;
    assert.deepEqual(await schemaProblems(d), []);
    assert.deepEqual(typeCheck([d]), []);
    assert.deepEqual(workloadProblems(d), []);
    const objs = objects('production');
    const td = policyTrustDomain(objs);
    const agent = containerByName(pod, 'mcpmesh-agent');
    const a = parseAgent(objs, pod, agent, td);
    const o = (a.sidecar ?? assert.fail('not a sidecar agent')).options;
    assert.equal(o.externalEnvoy, true);
    assert.equal(o.appPort, 8000);
    assert.equal(o.healthPort, containerPort(agent, agent.readinessProbe?.httpGet?.port ?? -1) ?? 15020);
    const boot = parseAgent(objs, pod, containerByName(pod, 'mcpmesh-bootstrap'), td).sidecar ?? assert.fail('not a sidecar agent');
    assert.equal(boot.printBootstrap, true);
    for (const k of ['service', 'serviceId', 'appPort', 'inboundPort', 'mcpPath', 'protocol', 'region', 'zone', 'controlPlane'] as const) {
      assert.deepEqual(boot.options[k], o[k], `bootstrap and agent disagree on ${k}`);
    }
    const envoy = containerByName(pod, 'envoy');
    assert.equal(envoy.args?.[envoy.args.indexOf('-c') + 1], o.bootstrapPath);
    assert.ok(containerPort(envoy, o.inboundPort));
    assert.equal(
      sdsPipe(sidecarBootstrapJson(boot.options, boot.options.appPort)),
      o.identity?.sdsSocket,
      "the bootstrap points Envoy at the agent's socket",
    );
    // The map after step 4: the rendered one plus the team's ServiceAccount, for weather's identity only.
    const readmeMap = parseK8sAttestationMap(mapBlock, 'README attestation map');
    const rendered = attestationMap(objs);
    for (const section of ['services', 'gateways'] as const) {
      for (const [name, accounts] of Object.entries(rendered[section]))
        assert.deepEqual(readmeMap[section][name], accounts, `the README's map keeps ${section}.${name} of base/attestation.yaml`);
    }
    assert.deepEqual(identityProblems(objs, d, readmeMap, td), []);
    assert.match(
      identityProblems(objs, d, rendered, td).join('\n'),
      /does not list team-a\/weather under services\.weather/,
      'without step 4 the CA refuses it',
    );
    // The mesh's NetworkPolicy lets a gateway reach the snippet's pod on the inbound port only, and the
    // control plane admits its agent and Envoy on xDS.
    const pols = ofKind<NetPol>(objs, 'NetworkPolicy');
    const gw = named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway').spec.template.metadata.labels;
    assert.deepEqual([...allowedPorts(pols, labels, gw, NAMESPACE)], [o.inboundPort]);
    const cp = named<Deployment>(objs, 'Deployment', 'mcp-mesh-control-plane').spec.template.metadata.labels;
    assert.ok(allowedPorts(pols, cp, labels, 'team-a').has(18000), "xDS from the team's namespace");
  });
});

describe('the checks can fail', () => {
  const good = (): Deployment => structuredClone(named<Deployment>(objects('production'), 'Deployment', 'mcp-mesh-control-plane'));

  test('the schema check rejects a Deployment with a wrong field type', { skip: skipKubectl }, async () => {
    const d = good() as Obj & { spec: Record<string, unknown> };
    d.spec['replicas'] = 'two';
    const problems = await schemaProblems(d);
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /replicas must be integer/);
  });

  test('the schema check rejects a missing required field and an unknown kind', { skip: skipKubectl }, async () => {
    const d = good();
    delete (d.spec as Partial<Deployment['spec']>).selector;
    assert.match((await schemaProblems(d)).join(), /selector/);
    assert.match((await schemaProblems({ apiVersion: 'apps/v1', kind: 'Deploymnet', metadata: { name: 'x' } })).join(), /no schema/);
  });

  test('the type check rejects an unknown (misspelt) field and a wrong type', { skip: skipKubectl }, () => {
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

  test('the workload check rejects a writable root FS, a root user, a missing limit and an unpinned image', { skip: skipKubectl }, () => {
    const d = good();
    const c = d.spec.template.spec.containers[0];
    assert.ok(c?.securityContext && c.resources?.limits);
    c.securityContext.readOnlyRootFilesystem = false;
    c.securityContext.runAsUser = 0;
    delete c.resources.limits['memory'];
    c.image = 'ghcr.io/mcp-mesh/control-plane:latest';
    const problems = workloadProblems(d).join('\n');
    for (const m of [/readOnlyRootFilesystem/, /runAsUser must not be 0/, /limits\.memory/, /not pinned/]) assert.match(problems, m);
    assert.deepEqual(imageProblems('x', 'registry:5000/team/app'), [
      'x: image registry:5000/team/app has no tag (pin a version or digest)',
    ]);
    assert.deepEqual(imageProblems('x', 'node:24.20.0-trixie-slim'), []);
  });

  test('the identity check rejects another audience, a ServiceAccount the map names for another identity, a second credential, a foreign Envoy uid and a token in the app container', {
    skip: skipKubectl,
  }, () => {
    const objs = objects('production');
    const d = structuredClone(named<Deployment>(objs, 'Deployment', 'mcp-everything'));
    const spec = d.spec.template.spec;
    const token = spec.volumes?.find((v) => v.name === 'mcpmesh-token')?.projected?.sources[0]?.serviceAccountToken;
    assert.ok(token);
    token.audience = 'https://kubernetes.default.svc.cluster.local';
    spec.serviceAccountName = 'mcp-mesh-gateway';
    const envoy = containerByName(spec, 'envoy');
    assert.ok(envoy.securityContext);
    envoy.securityContext.runAsUser = 101;
    containerByName(spec, 'mcpmesh-bootstrap').env?.push({ name: 'MCPMESH_JOIN_TOKEN', value: 'a.b.c' });
    containerByName(spec, 'everything').volumeMounts?.push({
      name: 'mcpmesh-token',
      mountPath: '/var/run/secrets/mcpmesh',
      readOnly: true,
    });
    const problems = identityProblems(objs, d, attestationMap(objs), policyTrustDomain(objs)).join('\n');
    for (const m of [
      /container mcpmesh-bootstrap: needs exactly one credential/,
      /audience is "https:\/\/kubernetes\.default\.svc\.cluster\.local"/,
      /does not list mcp-mesh\/mcp-mesh-gateway under services\.everything/,
      /also listed for gateways\.default/,
      /container envoy: runs as uid 101/,
      /container everything: mounts the agent's token volume/,
    ])
      assert.match(problems, m);
    // The CA bundle from the CA's Secret (which holds the key) is refused too.
    const g = structuredClone(named<Deployment>(objs, 'Deployment', 'mcp-mesh-gateway'));
    const bundle = g.spec.template.spec.volumes?.find((v) => v.name === 'mcpmesh-ca-bundle');
    assert.ok(bundle);
    delete bundle.configMap;
    bundle.secret = { secretName: 'mcp-mesh-ca', items: [{ key: 'tls.crt', path: 'ca.crt' }] };
    const gp = identityProblems(objs, g, attestationMap(objs), policyTrustDomain(objs)).join('\n');
    assert.match(gp, /--ca-bundle must be a file of a ConfigMap volume/);
    assert.match(gp, /mounts Secret mcp-mesh-ca/);
  });

  test('the egress check follows ports, CIDRs and namespaces', { skip: skipKubectl }, () => {
    const pols = ofKind<NetPol>(objects('production'), 'NetworkPolicy').map((p) => structuredClone(p));
    const cp = named<Deployment>(objects('production'), 'Deployment', 'mcp-mesh-control-plane').spec.template.metadata.labels;
    assert.ok(egressAllowed(pols, cp, { ip: '172.18.0.2' }, 6443));
    const egress = pols.find((p) => p.metadata.name === 'control-plane-egress');
    assert.ok(egress?.spec.egress?.[0]?.to?.[0]?.ipBlock);
    egress.spec.egress[0].to[0].ipBlock = { cidr: '10.0.0.0/8', except: ['10.96.0.0/12'] };
    egress.spec.egress[0].to.splice(1);
    assert.ok(!egressAllowed(pols, cp, { ip: '172.18.0.2' }, 6443), 'outside the CIDR');
    assert.ok(!egressAllowed(pols, cp, { ip: '10.96.0.1' }, 443), 'in an except block');
    assert.ok(egressAllowed(pols, cp, { ip: '10.1.2.3' }, 443));
    assert.ok(!egressAllowed(pols, cp, { ip: '10.1.2.3' }, 444), 'another port');
    assert.ok(egressAllowed(pols, { app: 'unrestricted' }, { ip: '203.0.113.7' }, 80), 'a pod no egress policy selects may go anywhere');
  });

  test('kubectl kustomize failures are reported', { skip: skipKubectl }, () => {
    assert.throws(() => kustomize(path.join(k8sDir, 'no-such-overlay')), /kubectl kustomize .* failed/);
  });
});
