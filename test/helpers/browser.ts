// Headless Chromium for the console's end-to-end tests: Debian's `chromium` driven by playwright-core (no
// browser download). Where it is absent the tests skip with the install command (.ci/run installs it).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { findTool, INSTALL } from './tools.ts';

export function chromiumPath(): string | undefined {
  return process.env['CHROMIUM_BIN'] ?? findTool('chromium') ?? findTool('chromium-browser');
}

/** For `{ skip }`: false when a Chromium is there. */
export function skipWithoutChromium(): string | false {
  return chromiumPath() === undefined ? `chromium not found on PATH (or CHROMIUM_BIN): ${INSTALL.chromium}` : false;
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  // --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
  return chromium.launch({ executablePath: chromiumPath() as string, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

/** Where screenshots go (gitignored): test/artifacts/. */
export function artifactPath(name: string): string {
  const dir = path.join(import.meta.dirname, '..', 'artifacts');
  mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}
