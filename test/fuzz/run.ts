// The authorizer fuzz from the command line, for longer runs than `npm test` affords:
//   node test/fuzz/run.ts --seed S --cases N [--start K] [--replay all|sample] [--sample 0.05] [--concurrency 16]
//   node test/fuzz/run.ts --seed S --case I          one case in full (what the mesh and each server did)
//   node test/fuzz/run.ts --regressions              the fixed cases of issue 11's findings
// Without --seed a seed is made from the clock and printed first: rerun with it to get the same cases.
// Exit status 1 when a failure (or a regression, or a harness error) shows up.
import { parseArgs } from 'node:util';
import { formatCase, formatSummary, FuzzHarness } from './authz-fuzz.ts';
import { generateCase } from './generators.ts';
import { REGRESSIONS } from './regressions.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    cases: { type: 'string', default: '10000' },
    start: { type: 'string', default: '0' },
    case: { type: 'string' },
    replay: { type: 'string', default: 'sample' },
    sample: { type: 'string', default: '0.05' },
    concurrency: { type: 'string', default: '16' },
    'max-report': { type: 'string', default: '20' },
    regressions: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  console.log(
    'usage: node test/fuzz/run.ts [--seed S] [--cases N] [--start K] [--replay all|sample] [--sample R] [--concurrency C] [--max-report M]\n' +
      '       node test/fuzz/run.ts --seed S --case I\n       node test/fuzz/run.ts --regressions',
  );
  process.exit(0);
}

const int = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer (got ${v})`);
    process.exit(2);
  }
  return n;
};

const seed = values.seed ?? String(Date.now());
if (!values.regressions) console.log(`seed ${seed}`);
const harness = await FuzzHarness.start();
let bad = false;
try {
  if (values.regressions) {
    for (const r of REGRESSIONS) {
      const { result, problems } = await harness.runRegression(r);
      console.log(`${problems.length === 0 ? 'ok  ' : 'FAIL'} ${r.id}: ${r.finding}`);
      for (const p of problems) console.log(`       - ${p}`);
      if (problems.length > 0) {
        bad = true;
        console.log(
          formatCase(result)
            .split('\n')
            .map((l) => `       ${l}`)
            .join('\n'),
        );
      }
    }
  } else if (values.case !== undefined) {
    const r = await harness.runCase(generateCase(seed, int('case', values.case)), true);
    console.log(formatCase(r));
    bad = r.failure || r.error !== undefined;
  } else {
    const maxReport = int('max-report', values['max-report']);
    let shown = 0;
    const sampleRate = Number(values.sample);
    if (!(sampleRate >= 0 && sampleRate <= 1)) throw new Error(`--sample must be in [0, 1] (got ${values.sample})`);
    const s = await harness.run({
      seed,
      cases: int('cases', values.cases),
      start: int('start', values.start),
      replay: values.replay === 'all' ? 'all' : 'allowed+sample',
      sampleRate,
      concurrency: Math.max(1, int('concurrency', values.concurrency)),
      keepFailures: maxReport,
      onFailure: (r) => {
        if (shown++ < maxReport) console.log(`${formatCase(r)}\n`);
      },
    });
    for (const e of s.harnessErrors.slice(0, maxReport)) console.log(`${formatCase(e)}\n`);
    console.log(formatSummary(s));
    bad = s.failureCount > 0 || s.harnessErrors.length > 0;
  }
} finally {
  await harness.close();
}
process.exit(bad ? 1 : 0);
