// `mcpmesh routing explain SERVICE`: every routing knob of one service as the running control plane resolved
// it, with where each value came from (built-in default, registry or routing file + YAML path, Consul config
// entry kind/name + field) and the lower layers it overrode. Reads /debug/routing on the admin port.
import type { ParseArgsOptionsConfig } from 'node:util';
import { showProvenance, type KnobExplanation } from './model/tuning.ts';
import { parseCli } from './cli-args.ts';

const USAGE = `usage: mcpmesh routing explain SERVICE [options]
  --admin URL          a running control plane's admin address  [$MCPMESH_ADMIN_URL or http://127.0.0.1:18001]
  --admin-token T      its admin token, when it listens beyond loopback  [$MCPMESH_ADMIN_TOKEN]
  --json               print the control plane's answer as JSON
exit status: 0 shown, 1 unknown service or control plane unreachable, 2 usage error
`;

interface Explained {
  service: string;
  knobs: KnobExplanation[];
  problems?: { sources?: Record<string, string>; unknownServices?: Array<{ origin: string; service: string }> };
}

/** The human table: knob, value, source; overridden layers indented under it. */
export function renderExplanation(e: Explained): string {
  const width = Math.max(...e.knobs.map((k) => k.knob.length));
  const vwidth = Math.max(...e.knobs.map((k) => k.shown.length));
  const lines = [
    `routing of service "${e.service}" (highest layer wins; per-service beats mesh-wide; file > consul > registry > built-in)`,
  ];
  for (const k of e.knobs) {
    lines.push(`  ${k.knob.padEnd(width)}  ${k.shown.padEnd(vwidth)}  ${showProvenance(k.from)}`);
    for (const o of [...k.overridden].reverse())
      if (o.from.source !== 'default')
        lines.push(`  ${''.padEnd(width)}  ${''.padEnd(vwidth)}    overrides ${o.shown} from ${showProvenance(o.from)}`);
  }
  for (const [src, err] of Object.entries(e.problems?.sources ?? {})) lines.push(`problem (${src}): ${err}`);
  return `${lines.join('\n')}\n`;
}

export async function routingMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const options = {
    admin: { type: 'string' },
    'admin-token': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  } satisfies ParseArgsOptionsConfig;
  const parsed = parseCli('mcpmesh routing', argv, options, USAGE, { positionals: true });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [verb, service, ...extra] = positionals;
  if (verb !== 'explain' || service === undefined || extra.length > 0) {
    process.stderr.write(`mcpmesh routing: expected "explain SERVICE"\n\n${USAGE}`);
    return 2;
  }
  const admin = values.admin ?? env['MCPMESH_ADMIN_URL'] ?? 'http://127.0.0.1:18001';
  const token = values['admin-token'] ?? env['MCPMESH_ADMIN_TOKEN'];
  const url = new URL('/debug/routing', admin);
  url.searchParams.set('service', service);
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (err) {
    process.stderr.write(`mcpmesh routing: cannot reach the control plane at ${admin}: ${(err as Error).message}\n`);
    return 1;
  }
  const text = await res.text();
  if (!res.ok) {
    process.stderr.write(`mcpmesh routing: ${admin} answered ${res.status}: ${text}\n`);
    return 1;
  }
  process.stdout.write(values.json ? `${text}\n` : renderExplanation(JSON.parse(text) as Explained));
  return 0;
}
