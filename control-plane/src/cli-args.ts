// How every command here reads its arguments (the mcpmesh CLIs, the demo, the Compose helpers), so they fail
// alike: a bad flag names itself with the usage on stderr (exit 2), --help prints the usage (exit 0).
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

export type CliArgs<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; allowPositionals: true; options: O }>
>;

/**
 * Parses `argv` against `options` (which include `help`): the values and positionals, or the exit code when the
 * command should stop here (2 after "<name>: <why>" and the usage on stderr; 0 after --help printed the usage
 * with `out`, stdout by default). Positionals are refused unless `positionals` is set.
 */
export function parseCli<O extends ParseArgsOptionsConfig>(
  name: string,
  argv: string[],
  options: O & { help: { type: 'boolean' } },
  usage: string,
  opts: { positionals?: boolean; out?: (text: string) => void } = {},
): CliArgs<O> | number {
  let parsed: CliArgs<O>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: opts.positionals === true }) as CliArgs<O>;
  } catch (err) {
    process.stderr.write(`${name}: ${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    (opts.out ?? ((text: string) => process.stdout.write(text)))(usage);
    return 0;
  }
  return parsed;
}
