// The Envoy binary the real-Envoy tests run: $ENVOY_BIN, else `envoy` on PATH (the same lookup as the
// sidecar agent, sidecar/src/envoy.ts), confirmed by running `envoy --version`. Without one the tests skip
// with the reason; with MCPMESH_REQUIRE_ENVOY=1 (CI jobs that provide Envoy) a missing or broken binary is
// an error instead, so such a job can never pass by skipping everything.
import { spawnSync } from 'node:child_process';
import { findEnvoy } from '../../sidecar/src/envoy.ts';

export const NO_ENVOY = 'no Envoy binary: set ENVOY_BIN or put envoy on PATH (docker: envoyproxy/envoy:v1.37-latest)';

export interface EnvoyBinary {
  readonly path: string;
  /** `envoy --version` output, trimmed, e.g. "envoy  version: 8d1f.../1.37.0/Clean/RELEASE/BoringSSL". */
  readonly version: string;
  /** [major, minor, patch] parsed from it. */
  readonly semver: readonly [number, number, number];
}

export type EnvoyLookup =
  | { readonly envoy: EnvoyBinary; readonly skip?: undefined }
  | { readonly envoy?: undefined; readonly skip: string };

export function findEnvoyBinary(env: NodeJS.ProcessEnv = process.env): EnvoyLookup {
  const bin = findEnvoy(env);
  if (!bin) return { skip: NO_ENVOY };
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.error || r.status !== 0) {
    return {
      skip: `Envoy at ${bin} does not run: ${r.error?.message ?? `\`envoy --version\` exited with ${r.status ?? r.signal}`}${out ? `: ${out}` : ''}`,
    };
  }
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(out.replace(/^[^:]*version:\s*[0-9a-f]+\//i, ''));
  if (!m) return { skip: `Envoy at ${bin}: cannot read a version from \`envoy --version\`: ${out}` };
  return { envoy: { path: bin, version: out, semver: [Number(m[1]), Number(m[2]), Number(m[3])] } };
}

/**
 * For `describe(..., { skip })`: false when Envoy is there (and at least `min`, if given), else the reason.
 * With MCPMESH_REQUIRE_ENVOY=1 it throws instead of returning a reason.
 */
export function envoySkip(lookup: EnvoyLookup, min?: readonly [number, number]): string | false {
  let reason: string | undefined = lookup.skip;
  if (lookup.envoy && min) {
    const [major, minor] = lookup.envoy.semver;
    if (major < min[0] || (major === min[0] && minor < min[1]))
      reason = `Envoy ${lookup.envoy.semver.join('.')} at ${lookup.envoy.path} is older than ${min.join('.')}, which this test needs`;
  }
  if (reason === undefined) return false;
  if (process.env['MCPMESH_REQUIRE_ENVOY'] === '1') throw new Error(`MCPMESH_REQUIRE_ENVOY=1 but ${reason}`);
  return reason;
}
