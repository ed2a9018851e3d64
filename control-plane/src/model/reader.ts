import { parseDurationMs } from './duration.ts';

// A small checked reader for untrusted config trees (YAML registry, Consul meta): each problem is
// collected with the exact path where it sits, so one error message can name all of them.

export interface Problem {
  readonly path: string;
  readonly reason: string;
}

const MAX_PROBLEMS_SHOWN = 50;

export class ConfigError extends Error {
  readonly source: string;
  readonly problems: readonly Problem[];
  constructor(source: string, problems: readonly Problem[]) {
    // A generated file can have a problem per service: the message (logged, shown by /readyz and /debug/sources)
    // lists the first ones; `problems` keeps them all.
    const shown = problems.slice(0, MAX_PROBLEMS_SHOWN).map((p) => `  ${p.path || '(root)'}: ${p.reason}`);
    if (problems.length > MAX_PROBLEMS_SHOWN) shown.push(`  ... and ${problems.length - MAX_PROBLEMS_SHOWN} more`);
    super(`${source}: ${problems.length} problem(s):\n${shown.join('\n')}`);
    this.name = 'ConfigError';
    this.source = source;
    this.problems = problems;
  }
}

export type Node = Record<string, unknown>;

export function isNode(v: unknown): v is Node {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class Reader {
  readonly problems: Problem[] = [];

  fail(path: string, reason: string): void {
    this.problems.push({ path, reason });
  }

  /** Reports keys of `node` that are not in `allowed` (typos must not be silently ignored). */
  onlyKeys(node: Node, path: string, allowed: readonly string[]): void {
    for (const key of Object.keys(node)) {
      if (!allowed.includes(key)) this.fail(join(path, key), `unknown field (expected one of: ${allowed.join(', ')})`);
    }
  }

  object(node: Node, key: string, path: string): Node | undefined {
    const v = node[key];
    if (v === undefined || v === null) return undefined;
    if (!isNode(v)) {
      this.fail(join(path, key), 'must be a mapping');
      return undefined;
    }
    return v;
  }

  list(node: Node, key: string, path: string): unknown[] | undefined {
    const v = node[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) {
      this.fail(join(path, key), 'must be a list');
      return undefined;
    }
    return v;
  }

  string(node: Node, key: string, path: string, opts: { required?: boolean; pattern?: RegExp; hint?: string } = {}): string | undefined {
    const v = node[key];
    const p = join(path, key);
    if (v === undefined || v === null) {
      if (opts.required) this.fail(p, 'is required');
      return undefined;
    }
    if (typeof v !== 'string') {
      this.fail(p, `must be a string (got ${JSON.stringify(v)})`);
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.fail(p, `${JSON.stringify(v)} ${opts.hint ?? `must match ${opts.pattern}`}`);
      return undefined;
    }
    return v;
  }

  integer(node: Node, key: string, path: string, min: number, max: number, opts: { required?: boolean } = {}): number | undefined {
    const v = node[key];
    const p = join(path, key);
    if (v === undefined || v === null) {
      if (opts.required) this.fail(p, 'is required');
      return undefined;
    }
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      this.fail(p, `must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return n;
  }

  /** A duration string such as "250ms", "5s", "1h" or "0", returned in milliseconds. */
  duration(node: Node, key: string, path: string, minMs: number, maxMs: number): number | undefined {
    const v = node[key];
    if (v === undefined || v === null) return undefined;
    const ms = typeof v === 'string' ? parseDurationMs(v) : v === 0 ? 0 : undefined;
    if (ms === undefined || ms < minMs || ms > maxMs) {
      this.fail(
        join(path, key),
        `must be a duration like "250ms", "5s", "1h" between ${minMs}ms and ${maxMs}ms (got ${JSON.stringify(v)})`,
      );
      return undefined;
    }
    return ms;
  }

  boolean(node: Node, key: string, path: string): boolean | undefined {
    const v = node[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') {
      this.fail(join(path, key), `must be true or false (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return v;
  }

  oneOf<T extends string>(node: Node, key: string, path: string, values: readonly T[], opts: { required?: boolean } = {}): T | undefined {
    const v = node[key];
    const p = join(path, key);
    if (v === undefined || v === null) {
      if (opts.required) this.fail(p, `is required (one of: ${values.join(', ')})`);
      return undefined;
    }
    const s = String(v);
    if (!(values as readonly string[]).includes(s)) {
      this.fail(p, `${JSON.stringify(v)} is not one of: ${values.join(', ')}`);
      return undefined;
    }
    return s as T;
  }
}

export function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}
