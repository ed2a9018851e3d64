// "Is this module the program being run?" for the CLIs (control plane, agents, deploy helpers).
//
// Not `import.meta.url === pathToFileURL(process.argv[1]).href`: Node loads the main module by its real path
// (symlinks resolved, unless --preserve-symlinks-main) while argv[1] keeps the path as typed, so through a
// symlinked folder (macOS's /var -> /private/var temporary folders, npm's node_modules/.bin links) that test
// is false and the CLI silently does nothing. Both sides are compared as real paths instead.
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** True when the module whose `import.meta.url` is given is the entry point of this process. */
export function isEntryPoint(moduleUrl: string, argv1: string | undefined = process.argv[1]): boolean {
  if (argv1 === undefined || !moduleUrl.startsWith('file:')) return false;
  return realPath(fileURLToPath(moduleUrl)) === realPath(argv1);
}
