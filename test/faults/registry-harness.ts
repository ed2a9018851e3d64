// A real control plane (ephemeral ports) on a registry file the test prepares before start, for the big and
// broken registry fault tests: the file may be missing, huge, broken or invalid when the process starts.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ControlPlane } from '../../control-plane/src/control-plane.ts';
import { createLogger, silentLogger } from '../../control-plane/src/log.ts';
import { Metrics } from '../../control-plane/src/metrics.ts';
import { node, RawAdsClient, type AdsStream } from '../helpers/ads-client.ts';
import { TYPE_URLS } from '../../control-plane/src/xds/proto.ts';

export interface RegistryHarness {
  cp: ControlPlane;
  file: string;
  /** Replaces the registry file atomically, as editors and ConfigMap swaps do. */
  replace(text: string): void;
  readyz(): Promise<{ status: number; body: string }>;
  healthz(): Promise<number>;
  sources(): Promise<Record<string, string>>;
  /** Value of a counter or gauge sample from /metrics, 0 when absent. */
  metric(sample: string): Promise<number>;
  /** A gateway's ADS stream asking for every cluster (wildcard CDS), as Envoy does. */
  gatewayCds(): AdsStream;
  stop(): Promise<void>;
}

/** `setup` prepares the file (or returns another path to use, e.g. in a directory that does not exist yet). */
export async function startOnRegistry(
  setup: (file: string) => unknown,
  opts: { registryMaxBytes?: number } = {},
): Promise<RegistryHarness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-faults-'));
  const other = setup(path.join(dir, 'registry.yaml'));
  const file = typeof other === 'string' ? other : path.join(dir, 'registry.yaml');
  const cp = new ControlPlane({
    registryFile: file,
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    quietMs: 20,
    maxDelayMs: 200,
    log: process.env['MCPMESH_TEST_LOG'] ? createLogger({ level: 'debug' }) : silentLogger,
    metrics: new Metrics({ processMetrics: false }),
    ...(opts.registryMaxBytes !== undefined ? { registryMaxBytes: opts.registryMaxBytes } : {}),
  });
  await cp.start();
  const admin = (p: string): Promise<Response> => fetch(`http://127.0.0.1:${cp.adminPort}${p}`);
  let client: RawAdsClient | undefined;
  const streams: AdsStream[] = [];
  let n = 0;
  return {
    cp,
    file,
    replace(text) {
      mkdirSync(path.dirname(file), { recursive: true });
      const tmp = path.join(path.dirname(file), `.registry.${n++}.tmp`);
      writeFileSync(tmp, text);
      renameSync(tmp, file);
    },
    async readyz() {
      const r = await admin('/readyz');
      return { status: r.status, body: await r.text() };
    },
    healthz: async () => (await admin('/healthz')).status,
    sources: async () => (await (await admin('/debug/sources')).json()) as Record<string, string>,
    async metric(sample) {
      const text = await (await admin('/metrics')).text();
      const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
      return line ? Number(line.slice(sample.length + 1)) : 0;
    },
    gatewayCds() {
      client ??= new RawAdsClient(`127.0.0.1:${cp.xdsPort}`);
      const s = client.sotw();
      streams.push(s);
      s.send({
        type_url: TYPE_URLS.cluster,
        resource_names: [],
        node: node(`gw-${streams.length}`, { role: 'gateway' }, { region: 'eu-west', zone: 'a' }),
      });
      return s;
    },
    async stop() {
      for (const s of streams) s.close();
      client?.close();
      await cp.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A small valid registry with `services` one-endpoint services named svc-0, svc-1, ... */
export function smallRegistry(services = 1): string {
  const lines = ['services:'];
  for (let i = 0; i < services; i++) {
    lines.push(
      `  - name: svc-${i}`,
      '    protocol: "2025-11-25"',
      `    endpoints: [ { address: 10.0.0.${i + 1}, port: 7001, locality: { region: eu-west, zone: a } } ]`,
    );
  }
  return `${lines.join('\n')}\n`;
}
