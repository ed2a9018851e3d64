// Runs everywhere, no Envoy needed: every golden case's snapshot (test/golden/cases/*.in.yaml, built as
// golden.test.ts builds it and decoded from the pushed bytes) made into a static Envoy bootstrap
// (static-bootstrap.ts), then checked:
//   - by the project's own validator, as a whole envoy.config.bootstrap.v3.Bootstrap (Envoy's protos + PGV
//     rules), i.e. the same gate that stands before every push, applied to the assembled config;
//   - for leftovers of dynamic xDS (an `ads` config source, `rds`, `eds_cluster_config`, `sds_config`,
//     `type: EDS`, an API listener): Envoy would wait on an ADS stream the bootstrap does not have;
//   - for references that do not resolve inside it (clusters named by routes, filters and JWKS fetches;
//     secrets named by TLS contexts; route tables named by connection managers);
//   - for completeness: every resource Envoy can load is there, transformed only as documented;
//   - against cross-field rules Envoy enforces when it loads config but the protos cannot express, each
//     documented in Envoy's protos or source (listed at `envoyRules`).
// The same bootstraps go to a real `envoy --mode validate` in validate.test.ts when an Envoy exists.
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { formatViolations, validateMessage } from '../../control-plane/src/xds/validate.ts';
import {
  BOOTSTRAP_TYPE,
  goldenCases,
  HCM_TYPE,
  renderStaticBootstrap,
  staticBootstrap,
  StaticBootstrapError,
  walkMessages,
  type Obj,
  type SnapshotJson,
  type StaticBootstrap,
} from './static-bootstrap.ts';
import { identitySecret, workloadSecretName } from '../../control-plane/src/identity/sds.ts';
import { localAuthzClusters } from '../../sidecar/src/bootstrap.ts';

/** What an agent serves on its SDS socket, with placeholder PEMs (carried, not parsed, here). */
const PLACEHOLDER_AGENT_SECRET = identitySecret(workloadSecretName(), {
  certPem: '-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n',
  chainPem: '',
  keyPem: '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n',
}) as Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every (path, key, value) in a plain JSON tree, Struct contents included (none of the keys below live there). */
function* entries(v: unknown, at = ''): Generator<{ at: string; key: string; value: unknown; parent: Obj }> {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) yield* entries(v[i], `${at}[${i}]`);
  } else if (isObj(v)) {
    for (const [key, value] of Object.entries(v)) {
      yield { at, key, value, parent: v };
      yield* entries(value, at ? `${at}.${key}` : key);
    }
  }
}

const staticResources = (b: Obj): { listeners: Obj[]; clusters: Obj[]; secrets: Obj[] } =>
  b['static_resources'] as { listeners: Obj[]; clusters: Obj[]; secrets: Obj[] };

/**
 * References by name, found by key rather than by schema so that this check does not share code with the
 * builder: `cluster` (RouteAction, HttpUri, mirror policies) and `cluster_name` (EnvoyGrpc, a load
 * assignment's own name) hold cluster names anywhere in Envoy's API, except the node's own `cluster`.
 */
function clusterRefs(b: Obj): Array<{ at: string; name: string }> {
  const out: Array<{ at: string; name: string }> = [];
  for (const e of entries(b)) {
    if (e.at === 'node') continue;
    if ((e.key === 'cluster' || e.key === 'cluster_name') && typeof e.value === 'string')
      out.push({ at: `${e.at}.${e.key}`, name: e.value });
    if (e.key === 'weighted_clusters' && isObj(e.value)) {
      for (const w of (e.value['clusters'] as Obj[] | undefined) ?? [])
        out.push({ at: `${e.at}.weighted_clusters`, name: String(w['name']) });
    }
  }
  return out;
}

const SECRET_REF_KEYS = new Set([
  'tls_certificate_sds_secret_configs',
  'validation_context_sds_secret_config',
  'session_ticket_keys_sds_secret_config',
]);

function secretRefs(b: Obj): Array<{ at: string; ref: Obj }> {
  const out: Array<{ at: string; ref: Obj }> = [];
  for (const e of entries(b)) {
    if (!SECRET_REF_KEYS.has(e.key)) continue;
    for (const ref of Array.isArray(e.value) ? e.value : [e.value]) if (isObj(ref)) out.push({ at: `${e.at}.${e.key}`, ref });
  }
  return out;
}

/** Drops `sds_config` from every secret reference (what the builder does when the secret is static). */
function withoutSdsConfig<T>(v: T): T {
  for (const r of secretRefs(v as Obj)) delete r.ref['sds_config'];
  return v;
}

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const ROUTER = 'envoy.filters.http.router';

/**
 * Rules Envoy applies when it loads config that neither the protos' types nor their PGV annotations carry,
 * so the project's validator cannot see them. Each returns the problems it finds.
 */
const envoyRules: Record<string, (b: Obj) => string[]> = {
  // http_protocol_options.proto, AutoHttpConfig: "This can only be used with transport sockets which support
  // ALPN. Using a transport socket which does not support ALPN will result in configuration failure."
  // (upstream_impl.cc: "ALPN configured for cluster X which has a non-ALPN transport socket"). Of the
  // transport sockets the project emits, only TLS supports ALPN.
  'auto_config (ALPN) only on clusters with a TLS transport socket': (b) =>
    staticResources(b).clusters.flatMap((c) => {
      const opts = (c['typed_extension_protocol_options'] as Obj | undefined)?.[HTTP_PROTOCOL_OPTIONS] as Obj | undefined;
      const tls = (c['transport_socket'] as Obj | undefined)?.['name'] === 'envoy.transport_sockets.tls';
      return opts?.['auto_config'] !== undefined && !tls
        ? [`cluster "${String(c['name'])}": auto_config without a TLS transport socket`]
        : [];
    }),
  // logical_dns_cluster.cc: "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint".
  'LOGICAL_DNS clusters have exactly one endpoint': (b) =>
    staticResources(b).clusters.flatMap((c) => {
      if (c['type'] !== 'LOGICAL_DNS') return [];
      const localities = ((c['load_assignment'] as Obj | undefined)?.['endpoints'] as Obj[] | undefined) ?? [];
      const n = localities.reduce((sum, l) => sum + ((l['lb_endpoints'] as unknown[] | undefined)?.length ?? 0), 0);
      return localities.length === 1 && n === 1
        ? []
        : [`cluster "${String(c['name'])}": LOGICAL_DNS with ${localities.length} localities / ${n} endpoints`];
    }),
  // route config_impl.cc: "Only unique values for domains are permitted. Duplicate entry of domain ..."
  'virtual host domains are unique within a route table': (b) => {
    const problems: string[] = [];
    walkMessages(BOOTSTRAP_TYPE, b, (type, msg, at) => {
      if (type !== 'envoy.config.route.v3.RouteConfiguration') return;
      const seen = new Map<string, string>();
      for (const vh of (msg['virtual_hosts'] as Obj[] | undefined) ?? []) {
        for (const d of (vh['domains'] as string[] | undefined) ?? []) {
          const key = d.toLowerCase();
          if (seen.has(key)) problems.push(`${at}: domain "${d}" in virtual hosts "${seen.get(key)}" and "${String(vh['name'])}"`);
          else seen.set(key, String(vh['name']));
        }
      }
    });
    return problems;
  },
  // HCM http filter chain (filter_config_discovery / filter_chain_helper): the router is terminal and must be
  // last; a chain whose last filter is not terminal is refused.
  'the router is the last HTTP filter, and only there': (b) => {
    const problems: string[] = [];
    walkMessages(BOOTSTRAP_TYPE, b, (type, msg, at) => {
      if (type !== HCM_TYPE) return;
      const names = ((msg['http_filters'] as Obj[] | undefined) ?? []).map((f) => String(f['name']));
      if (names.at(-1) !== ROUTER || names.indexOf(ROUTER) !== names.length - 1)
        problems.push(`${at}: http_filters ${JSON.stringify(names)}`);
    });
    return problems;
  },
};

for (const gc of goldenCases()) {
  describe(`static Envoy bootstrap of golden case ${gc.name}`, () => {
    let built: { snapshot: SnapshotJson; result: StaticBootstrap } | undefined;
    const get = (): { snapshot: SnapshotJson; result: StaticBootstrap } =>
      (built ??= (() => {
        const snapshot = gc.snapshot();
        return {
          snapshot,
          result: staticBootstrap(snapshot, { ...gc.options, ...(gc.workloadId ? { agentSecrets: [PLACEHOLDER_AGENT_SECRET] } : {}) }),
        };
      })());

    it(`passes the project's validator as an ${BOOTSTRAP_TYPE}`, () => {
      const violations = validateMessage(BOOTSTRAP_TYPE, get().result.bootstrap);
      assert.deepEqual(violations, [], formatViolations(`${gc.name} bootstrap`, violations));
    });

    it('has no dynamic xDS left: no ads / rds / eds_cluster_config / sds_config / api_listener, no EDS cluster', () => {
      const { bootstrap } = get().result;
      const left = [...entries(bootstrap)]
        .filter(
          (e) =>
            ['ads', 'rds', 'eds_cluster_config', 'sds_config', 'api_listener', 'lds_config', 'cds_config', 'ads_config'].includes(e.key) ||
            (e.key === 'type' && e.value === 'EDS'),
        )
        .map((e) => `${e.at}.${e.key}`);
      assert.deepEqual(left, []);
      assert.equal(bootstrap['dynamic_resources'], undefined);
    });

    it('every cluster, route table and secret it names is inside it', () => {
      const { bootstrap } = get().result;
      const sr = staticResources(bootstrap);
      const clusters = new Set(sr.clusters.map((c) => String(c['name'])));
      const refs = clusterRefs(bootstrap);
      const dangling = refs.filter((r) => !clusters.has(r.name)).map((r) => `${r.at} -> "${r.name}"`);
      assert.deepEqual(dangling, [], 'cluster references without a cluster');
      // Routes to a service name its cluster: a case with listeners has something to resolve.
      if (sr.listeners.length > 0)
        assert.ok(
          refs.some((r) => r.at.includes('route_config')),
          'no route names a cluster: the check above was vacuous',
        );

      const secrets = new Set(sr.secrets.map((s) => String(s['name'])));
      const sref = secretRefs(bootstrap);
      assert.deepEqual(
        sref
          .filter((r) => !secrets.has(String(r.ref['name'])) || r.ref['sds_config'] !== undefined)
          .map((r) => `${r.at} -> ${JSON.stringify(r.ref)}`),
        [],
      );
      if (secrets.size > 0) assert.ok(sref.length > 0, 'the case has secrets but nothing names them');

      const hcms = [...entries(bootstrap)]
        .filter((e) => e.key === '@type' && e.value === `type.googleapis.com/${HCM_TYPE}`)
        .map((e) => e.parent);
      assert.equal(hcms.length, sr.listeners.length, 'one connection manager per listener');
      for (const h of hcms)
        assert.ok(
          isObj(h['route_config']) && typeof h['route_config']['name'] === 'string',
          `an HCM without an inline route table: ${JSON.stringify(Object.keys(h))}`,
        );
    });

    it('keeps every resource Envoy can load, transformed only as documented', () => {
      const { snapshot, result } = get();
      const sr = staticResources(result.bootstrap);
      const apiListeners = (snapshot.listener ?? []).filter((l) => l.resource['api_listener'] !== undefined).map((l) => l.name);
      assert.deepEqual(
        sr.listeners.map((l) => l['name']),
        (snapshot.listener ?? []).map((l) => l.name).filter((n) => !apiListeners.includes(n)),
      );
      assert.deepEqual(
        result.skipped.filter((s) => s.kind === 'listener').map((s) => s.name),
        apiListeners,
        'only API listeners are left out',
      );
      assert.deepEqual(
        result.skipped.filter((s) => s.kind === 'endpoint'),
        [],
        'every ClusterLoadAssignment is used by its cluster',
      );
      if (apiListeners.length === 0) assert.deepEqual(result.skipped, []);

      // Listeners: as pushed, but with each `rds` replaced by its route table and secrets named without a source.
      const routes = new Map((snapshot.route ?? []).map((r) => [r.name, r.resource]));
      for (const { name, resource } of snapshot.listener ?? []) {
        if (apiListeners.includes(name)) continue;
        const expected = withoutSdsConfig(structuredClone(resource));
        for (const e of [...entries(expected)]) {
          if (e.key !== 'rds' || !isObj(e.value)) continue;
          delete e.parent['rds'];
          e.parent['route_config'] = routes.get(String(e.value['route_config_name']));
        }
        assert.deepEqual(
          sr.listeners.find((l) => l['name'] === name),
          expected,
          `listener ${name}`,
        );
      }

      // Route tables: the very ones pushed, inline.
      const inlined = [...entries(sr.listeners)].filter((e) => e.key === 'route_config').map((e) => e.value as Obj);
      for (const rc of inlined)
        assert.deepEqual(rc, routes.get(String(rc['name'])), `route table ${String(rc['name'])} changed on the way`);
      assert.deepEqual(
        new Set([...inlined.map((r) => r['name']), ...result.skipped.filter((s) => s.kind === 'route').map((s) => s.name)]),
        new Set(routes.keys()),
      );

      // Clusters: the same list; EDS ones with exactly their pushed endpoints, everything else untouched.
      const endpoints = new Map((snapshot.endpoint ?? []).map((r) => [r.name, r.resource]));
      const agentClusters = gc.options.agentClusters ?? [];
      assert.deepEqual(
        sr.clusters.map((c) => c['name']),
        [...(snapshot.cluster ?? []).map((c) => c.name), ...agentClusters.map((c) => c['name'])],
      );
      assert.deepEqual(
        sr.clusters.slice(sr.clusters.length - agentClusters.length),
        agentClusters,
        "the agent's clusters as its bootstrap has them",
      );
      for (const { name, resource } of snapshot.cluster ?? []) {
        const out = sr.clusters.find((c) => c['name'] === name) as Obj;
        const strip = (c: Obj): Obj => {
          const { type: _t, eds_cluster_config: _e, load_assignment: _l, ...rest } = c;
          return rest;
        };
        assert.deepEqual(
          strip(out),
          withoutSdsConfig(strip(structuredClone(resource))),
          `cluster ${name}: only type, EDS/endpoints and SDS sources may change`,
        );
        if (resource['type'] !== 'EDS') {
          assert.deepEqual(out['load_assignment'], resource['load_assignment']);
          assert.equal(out['type'], resource['type']);
          continue;
        }
        const edsName = ((resource['eds_cluster_config'] as Obj)['service_name'] as string | undefined) || name;
        const cla = endpoints.get(edsName) as Obj;
        assert.deepEqual(out['load_assignment'], { ...cla, cluster_name: name });
        const hosts = [...entries(cla)].filter((e) => e.key === 'socket_address').map((e) => String((e.value as Obj)['address']));
        assert.equal(
          out['type'],
          hosts.every((h) => isIP(h) !== 0) ? 'STATIC' : 'STRICT_DNS',
          `cluster ${name} with hosts ${hosts.join(', ')}`,
        );
      }
      assert.deepEqual(sr.secrets, [
        ...(snapshot.secret ?? []).map((s) => s.resource),
        ...(gc.workloadId ? [PLACEHOLDER_AGENT_SECRET] : []),
      ]);
    });

    it('renders as the proto3 JSON Envoy reads, zero-valued wrappers kept', () => {
      const { bootstrap } = get().result;
      const json = JSON.parse(renderStaticBootstrap(bootstrap)) as Obj;
      const sr = staticResources(json);
      assert.equal((json['admin'] as { address: { socket_address: { address: string } } }).address.socket_address.address, '127.0.0.1');
      for (const c of sr.clusters) {
        const od = c['outlier_detection'] as Obj | undefined;
        // Pushed as {value: 0}, decoded as {}: it must stay 0 (Envoy's default would be 100).
        if (od)
          assert.equal(
            od['enforcing_success_rate'],
            0,
            `cluster ${String(c['name'])}: enforcing_success_rate ${JSON.stringify(od['enforcing_success_rate'])}`,
          );
        assert.equal(typeof c['connect_timeout'], 'string', 'durations render as "5s"');
      }
      for (const e of entries(json)) {
        if (e.key === 'use_remote_address') assert.equal(typeof e.value, 'boolean', `${e.at}: BoolValue renders as a bare boolean`);
      }
    });

    for (const [rule, check] of Object.entries(envoyRules)) {
      it(`Envoy load-time rule: ${rule}`, () => {
        assert.deepEqual(check(get().result.bootstrap), []);
      });
    }
  });
}

describe('static bootstrap: what cannot be made static is refused, with the field', () => {
  const gateway = goldenCases().find((c) => c.name === 'gateway-secured');
  assert.ok(gateway, 'the gateway-secured golden case exists');
  const snap = (): SnapshotJson => gateway.snapshot();
  const agent = { ...gateway.options, agentSecrets: [PLACEHOLDER_AGENT_SECRET] };

  it('a cluster whose endpoints are missing', () => {
    const s = snap();
    assert.throws(
      () => staticBootstrap({ ...s, endpoint: (s.endpoint ?? []).slice(1) }, agent),
      (err: Error) => {
        assert.ok(err instanceof StaticBootstrapError);
        assert.match(err.message, /cluster "mcp\.[a-z]+": eds_cluster_config names endpoints "mcp\.[a-z]+", which the snapshot lacks/);
        return true;
      },
    );
  });

  it('a listener whose route table is missing', () => {
    assert.throws(
      () => staticBootstrap({ ...snap(), route: [] }, agent),
      /listener "gateway\.http": .*\.rds names route configuration "gateway\.routes"/,
    );
  });

  it('a TLS context whose secret is missing (from the snapshot, or from the agent)', () => {
    assert.throws(
      () => staticBootstrap({ ...snap(), secret: [] }, agent),
      /cluster "mcp\.weather": .*validation_context_sds_secret_config names secret "mcpmesh\.trust", which the snapshot lacks/,
    );
    assert.throws(
      () => staticBootstrap(snap(), gateway.options),
      /cluster "mcp\.weather": .*tls_certificate_sds_secret_configs\[0\] names secret "mcpmesh\.identity", which the proxy's agent serves/,
    );
  });

  it('an ADS subscription of a kind it does not inline (here: ECDS on an HTTP filter)', () => {
    const s = snap();
    const [first, ...rest] = s.listener ?? [];
    assert.ok(first);
    const listener = structuredClone(first.resource);
    walkMessages('envoy.config.listener.v3.Listener', listener, (type, msg) => {
      if (type !== HCM_TYPE) return;
      const filters = msg['http_filters'] as Obj[];
      filters.unshift({
        name: 'dynamic',
        config_discovery: {
          config_source: { ads: {}, resource_api_version: 'V3' },
          type_urls: ['type.googleapis.com/envoy.extensions.filters.http.router.v3.Router'],
        },
      });
    });
    assert.throws(
      () => staticBootstrap({ ...s, listener: [{ name: first.name, resource: listener }, ...rest] }, agent),
      /still subscribed over ADS[\s\S]*http_filters\[0\]\.config_discovery\.config_source/,
    );
  });

  it('the validator is live on the assembled bootstrap (a bad admin port is reported by path)', () => {
    const { bootstrap } = staticBootstrap(snap(), agent);
    const broken = { ...bootstrap, admin: { address: { socket_address: { address: '127.0.0.1', port_value: 70000 } } } };
    const v = validateMessage(BOOTSTRAP_TYPE, broken);
    assert.deepEqual(
      v.map((x) => `${x.path} ${x.rule}`),
      ['admin.address.socket_address.port_value uint32.lte'],
    );
  });

  it("a cluster both in the proxy's bootstrap and in its snapshot (Envoy keeps the static one; the control plane must not send it)", () => {
    assert.throws(
      () => staticBootstrap(snap(), { ...agent, agentClusters: localAuthzClusters('/run/mcpmesh/authz.sock') }),
      /cluster "mcpmesh\.authz" is in the proxy's bootstrap and in the snapshot/,
    );
  });

  it('the input is not modified', () => {
    const s = snap();
    const before = structuredClone(s);
    staticBootstrap(s, agent);
    assert.deepEqual(s, before);
  });
});
