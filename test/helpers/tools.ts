// OS tools some tests need (CI installs them, see .ci/run; a fresh machine with only Node and npm lacks them).
// findTool looks a tool up on PATH; skipUnless gives a node:test `skip` value: false when the tool is there,
// otherwise a reason naming the install command, so the tests that need it are reported as skipped, never
// passed silently or failed.
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { after as nodeAfter, before as nodeBefore, it as nodeIt } from 'node:test';

/** The absolute path of an executable `name` on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? path.resolve(name) : undefined;
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** For `{ skip }`: false when `tool` is on PATH, else "TOOL not found on PATH: INSTALL_HINT". */
export function skipUnless(tool: string, installHint: string): string | false {
  return findTool(tool) === undefined ? `${tool} not found on PATH: ${installHint}` : false;
}

/** Install hints, shared so every skip names the same command as .ci/run. */
export const INSTALL = {
  openssl: 'apt-get install openssl',
  prometheus: 'apt-get install prometheus',
  dockerCompose: 'apt-get install docker-compose',
  kubectl: 'install kubectl >= 1.27 (pkgs.k8s.io or the Kubernetes apt repository)',
  chromium: 'apt-get install chromium',
} as const;

/**
 * For a suite whose setup itself needs a tool (certificates made with openssl in the describe body or its
 * hooks). `describe(name, { skip })` would drop the suite's tests from the totals; this keeps the suite and
 * reports each test as skipped with the reason: `it` carries the skip, hooks and `setup` do not run.
 */
export function toolGate(skip: string | false) {
  type Body = () => void | Promise<void>;
  return {
    skip,
    it: (name: string, fn: Body): void => void nodeIt(name, { skip }, fn),
    before: (fn: Body): void =>
      void nodeBefore(async () => {
        if (skip === false) await fn();
      }),
    after: (fn: Body): void =>
      void nodeAfter(async () => {
        if (skip === false) await fn();
      }),
    /** `make()` when the tool is there; otherwise nothing (no test or hook that would read it runs). */
    setup: <T>(make: () => T): T => (skip === false ? make() : (undefined as T)),
  };
}
