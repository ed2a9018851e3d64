#!/usr/bin/env node
// The `mcpmesh` command as npm installs it (package.json "bin"). Plain JavaScript on purpose: it must load on
// any Node to say which Node it needs, and the CLI behind it is TypeScript run by Node's type stripping.
//
// 1. Node older than the floor (type stripping on by default: 22.18 on the 22 line, 23.6 after it): re-run
//    with the Node 24 this repository pins (node_modules/.bin/node, present in a checkout after `npm ci`), or
//    stop with one line naming the version needed.
// 2. Installed under node_modules, Node refuses to strip types there (ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING):
//    a load hook strips this package's own .ts files with the same stripper (module.stripTypeScriptTypes).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ENGINES, supported } from './node-floor.js';

const root = path.dirname(path.dirname(realpathSync(fileURLToPath(import.meta.url))));

if (!supported(process.versions.node)) {
  const pinned = path.join(root, 'node_modules', '.bin', 'node');
  // MCPMESH_REEXEC guards against a pinned binary that is itself too old (no loop).
  if (existsSync(pinned) && process.env.MCPMESH_REEXEC !== '1') {
    const r = spawnSync(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, MCPMESH_REEXEC: '1' },
    });
    process.exit(r.status ?? 1);
  }
  process.stderr.write(`mcpmesh: needs Node ${ENGINES} (TypeScript type stripping on by default); this is Node ${process.versions.node}\n`);
  process.exit(1);
}

if (root.split(path.sep).includes('node_modules')) {
  const { registerHooks, stripTypeScriptTypes } = await import('node:module');
  // Node 22 calls stripTypeScriptTypes experimental and says so on every run; the same stripper runs for
  // `node file.ts` without a word, so only that one warning is dropped.
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, ...rest) => {
    if (String(warning).includes('stripTypeScriptTypes')) return;
    emitWarning.call(process, warning, ...rest);
  };
  const own = pathToFileURL(root + path.sep).href;
  registerHooks({
    load(url, context, nextLoad) {
      if (url.startsWith(own) && url.endsWith('.ts') && !url.slice(own.length).includes('node_modules/')) {
        return { format: 'module', source: stripTypeScriptTypes(readFileSync(fileURLToPath(url), 'utf8')), shortCircuit: true };
      }
      return nextLoad(url, context);
    },
  });
}

const { mcpmesh } = await import(pathToFileURL(path.join(root, 'control-plane', 'src', 'cli.ts')).href);
process.exitCode = await mcpmesh(process.argv.slice(2));
