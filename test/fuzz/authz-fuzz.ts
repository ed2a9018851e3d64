// The MCP authorizer fuzz (issue 11, item 5): seeded, reproducible cases aimed at the ways a body-reading
// authorizer and the servers behind it can read one request differently, each decided by the mesh as a
// gateway Envoy decides it and, when the mesh lets it through, replayed byte for byte to two real MCP SDK
// servers whose handlers say what actually ran.
//
//   generators.ts  seeded cases: bodies (bytes) and header lines per attack class
//   mesh.ts        the gateway's decision from the xDS the control plane generates: header RBAC (grpc-js-xds's
//                  engine) and the real AuthzServer over gRPC with the CheckRequest Envoy would send
//   oracles.ts     the SDK's plain Streamable HTTP server (UTF-8) and createMcpExpressApp() (express.json()),
//                  oracle-servers.ts, run in a worker thread (oracle-worker.ts)
//   regressions.ts one fixed case per finding of issue 11
//
// FAILURE = the mesh allowed the request and an oracle ran a handler that policy/engine.ts `decide` denies to
// the caller, judged on what ran (tool name, resource URI as the SDK handed it over, prompt name). Refusing
// something harmless is not a failure (it is counted per class, so over-blocking shows).
//
// Budget: a real HTTP round trip to an SDK server costs about 1 ms here (a fresh server per stateless
// request, hono, zod), so 10,000 cases x 2 servers would take ~20 s. Every case goes through the mesh (RBAC
// and the authorizer, ~0.1-0.3 ms each); every case the mesh ALLOWS is replayed to both servers (the only
// ones that can fail), plus a seeded sample of the refused ones (default 5%), which measures whether the
// generators reach real handlers ("blocked": the mesh refused and a server would have run a denied handler).
// `run.ts --replay all` replays everything.
import { createHash } from 'node:crypto';
import { compilePolicy, decide, rolesFromClaims, scopesFromClaims } from '../../control-plane/src/policy/engine.ts';
import type { McpAction } from '../../control-plane/src/policy/types.ts';
import { ATTACK_CLASSES, generateCase, type AttackClass, type FuzzCase } from './generators.ts';
import { MeshModel, type MeshVerdict } from './mesh.ts';
import { startOracles, type OracleReply, type OracleSet, type RanAction } from './oracles.ts';
import type { Regression } from './regressions.ts';
import { Rng } from './rng.ts';

export interface Violation {
  readonly oracle: string;
  readonly action: RanAction;
  /** The engine's deciding rule and reason. */
  readonly rule: string;
  readonly reason: string;
}

export interface CaseResult {
  readonly case: FuzzCase;
  readonly verdict?: MeshVerdict;
  /** The oracles' answers (empty when the case was not replayed). */
  readonly replies: readonly OracleReply[];
  /** Handlers the policy denies that an oracle ran. */
  readonly violations: readonly Violation[];
  /** The mesh allowed it and an oracle ran a denied handler. */
  readonly failure: boolean;
  /** The harness could not decide the case (model or transport error). */
  readonly error?: string;
}

export interface RunOptions {
  readonly seed: string;
  readonly cases: number;
  /** First case index (default 0). */
  readonly start?: number;
  /** Replay every case ('all'), or the allowed ones plus a sample of the rest (default). */
  readonly replay?: 'all' | 'allowed+sample';
  /** Share of refused cases replayed (default 0.05). */
  readonly sampleRate?: number;
  /** Cases in flight (default 16). */
  readonly concurrency?: number;
  /** Failures kept in full for the report (all are counted). Default 50. */
  readonly keepFailures?: number;
  /** Called for each failure as it is found. */
  readonly onFailure?: (r: CaseResult) => void;
}

export interface ClassStats {
  cases: number;
  allowed: number;
  denied: number;
  replayed: number;
  failures: number;
  blocked: number;
}

export interface FuzzSummary {
  readonly seed: string;
  readonly start: number;
  readonly cases: number;
  readonly allowed: number;
  readonly denied: number;
  readonly replayed: number;
  readonly failureCount: number;
  /** The first `keepFailures` failures, by case index. */
  readonly failures: readonly CaseResult[];
  /** Refused by the mesh, and a replay shows a server would have run a denied handler. */
  readonly blocked: number;
  readonly harnessErrors: readonly CaseResult[];
  /** Allowed and replayed, and the two servers ran different handlers (a decoding divergence). */
  readonly oracleDisagreements: number;
  /** Allowed, and a server ran a handler (the replays do reach handlers). */
  readonly allowedRan: number;
  /** sha256 over every case's bytes and headers, by index: equal for equal seeds, on any machine. */
  readonly casesDigest: string;
  /** sha256 over every case's outcome (mesh status, what each server ran), by index. */
  readonly outcomesDigest: string;
  readonly byClass: Readonly<Record<AttackClass, ClassStats>>;
  /** Which gateway filter answered, by count. */
  readonly byDecider: Readonly<Record<string, number>>;
  readonly checkMs: { readonly count: number; readonly p50: number; readonly p99: number; readonly max: number };
  readonly wallMs: number;
}

const actionKey = (a: RanAction): string => (a.kind === 'resource' ? `resource ${a.uri}` : `${a.kind} ${a.name}`);

export class FuzzHarness {
  readonly mesh: MeshModel;
  private readonly oracles: OracleSet;
  private readonly compiled: ReturnType<typeof compilePolicy>;

  private constructor(mesh: MeshModel, oracles: OracleSet) {
    this.mesh = mesh;
    this.oracles = oracles;
    this.compiled = compilePolicy(mesh.policy);
  }

  static async start(): Promise<FuzzHarness> {
    const mesh = await MeshModel.start();
    try {
      return new FuzzHarness(mesh, await startOracles());
    } catch (err) {
      await mesh.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.mesh.close(), this.oracles.close()]);
  }

  /** The engine's verdict on what a handler ran, for the case's caller and service. */
  judge(c: FuzzCase, a: McpAction): { allow: boolean; rule: string; reason: string } {
    const claims = this.mesh.metadataClaims(c.caller);
    const d = decide(this.compiled, {
      service: c.service,
      roles: rolesFromClaims(claims, this.mesh.policy.roleClaim),
      scopes: scopesFromClaims(claims),
      action: a,
    });
    return { allow: d.allow, rule: d.rule, reason: d.reason };
  }

  /** Decides one case; replays it to the oracles when the mesh allows it, or when `replayRefused`. */
  async runCase(c: FuzzCase, replayRefused = false): Promise<CaseResult> {
    let verdict: MeshVerdict;
    try {
      verdict = await this.mesh.decide(c);
    } catch (err) {
      return { case: c, replies: [], violations: [], failure: false, error: `mesh model: ${(err as Error).message}` };
    }
    if (!verdict.allowed && !replayRefused) return { case: c, verdict, replies: [], violations: [], failure: false };
    // What goes upstream when allowed (after route and ext_authz header mutations); the client's bytes otherwise.
    const sent = verdict.allowed ? verdict.upstream : c;
    const replies = await Promise.all(this.oracles.oracles.map((o) => o.replay(sent)));
    const violations: Violation[] = [];
    for (const r of replies) {
      for (const a of r.ran) {
        const j = this.judge(c, a);
        if (!j.allow) violations.push({ oracle: r.oracle, action: a, rule: j.rule, reason: j.reason });
      }
    }
    const errors = replies.filter((r) => r.status === 0).map((r) => `${r.oracle}: ${r.error ?? 'no answer'}`);
    return {
      case: c,
      verdict,
      replies,
      violations,
      failure: verdict.allowed && violations.length > 0,
      ...(errors.length > 0 ? { error: `replay: ${errors.join('; ')}` } : {}),
    };
  }

  async run(o: RunOptions): Promise<FuzzSummary> {
    const t0 = performance.now();
    const start = o.start ?? 0;
    const sampleRate = o.sampleRate ?? 0.05;
    const keep = o.keepFailures ?? 50;
    const byClass = Object.fromEntries(
      ATTACK_CLASSES.map((k) => [k, { cases: 0, allowed: 0, denied: 0, replayed: 0, failures: 0, blocked: 0 }]),
    ) as Record<AttackClass, ClassStats>;
    const byDecider: Record<string, number> = {};
    const failures: CaseResult[] = [];
    const errors: CaseResult[] = [];
    const checkMs: number[] = [];
    let allowed = 0;
    let denied = 0;
    let replayed = 0;
    let failureCount = 0;
    let blocked = 0;
    let disagreements = 0;
    let allowedRan = 0;
    const caseHashes: string[] = new Array<string>(o.cases).fill('');
    const outcomeHashes: string[] = new Array<string>(o.cases).fill('');
    let next = start;
    const end = start + o.cases;
    const worker = async (): Promise<void> => {
      while (next < end) {
        const index = next++;
        const c = generateCase(o.seed, index);
        // Decided by the seed alone, so a run replays the same cases whatever the timing.
        const sample = o.replay === 'all' || new Rng(`${o.seed}/sample/${index}`).chance(sampleRate);
        const r = await this.runCase(c, sample);
        caseHashes[index - start] = sha256(
          `${c.service}\u0000${c.caller.name}\u0000${c.method}\u0000${JSON.stringify(c.headers)}\u0000${Buffer.from(c.body).toString('base64')}`,
        );
        outcomeHashes[index - start] = sha256(
          JSON.stringify([r.verdict?.allowed, r.verdict?.status, r.verdict?.by, r.replies.map((x) => [x.oracle, x.status, x.ran])]),
        );
        if (r.error !== undefined) errors.push(r);
        const v = r.verdict;
        if (!v) continue;
        if (v.checkMs !== undefined) checkMs.push(v.checkMs);
        byDecider[v.allowed ? 'allowed' : v.by] = (byDecider[v.allowed ? 'allowed' : v.by] ?? 0) + 1;
        const isBlocked = !v.allowed && r.violations.length > 0;
        if (v.allowed) allowed++;
        else denied++;
        if (r.replies.length > 0) replayed++;
        if (isBlocked) blocked++;
        if (v.allowed && r.replies.some((x) => x.ran.length > 0)) allowedRan++;
        if (v.allowed && r.replies.length === 2) {
          const [a, b] = r.replies.map((x) => x.ran.map(actionKey).sort().join('|'));
          if (a !== b) disagreements++;
        }
        for (const k of new Set(c.classes)) {
          const s = byClass[k];
          s.cases++;
          if (v.allowed) s.allowed++;
          else s.denied++;
          if (r.replies.length > 0) s.replayed++;
          if (r.failure) s.failures++;
          if (isBlocked) s.blocked++;
        }
        if (r.failure) {
          failureCount++;
          o.onFailure?.(r);
          failures.push(r);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 16) }, worker));
    failures.sort((a, b) => a.case.index - b.case.index);
    errors.sort((a, b) => a.case.index - b.case.index);
    checkMs.sort((a, b) => a - b);
    const q = (p: number): number => checkMs[Math.min(checkMs.length - 1, Math.floor(p * checkMs.length))] ?? 0;
    return {
      seed: o.seed,
      start,
      cases: o.cases,
      allowed,
      denied,
      replayed,
      failureCount,
      failures: failures.slice(0, keep),
      blocked,
      harnessErrors: errors,
      oracleDisagreements: disagreements,
      allowedRan,
      byClass,
      byDecider,
      casesDigest: sha256(caseHashes.join('')),
      outcomesDigest: sha256(outcomeHashes.join('')),
      checkMs: { count: checkMs.length, p50: q(0.5), p99: q(0.99), max: checkMs[checkMs.length - 1] ?? 0 },
      wallMs: performance.now() - t0,
    };
  }

  /** A regression case, always replayed; the problems found (empty when the finding is fixed). */
  async runRegression(r: Regression): Promise<{ result: CaseResult; problems: string[] }> {
    const result = await this.runCase(r.case, true);
    const problems: string[] = [];
    const v = result.verdict;
    if (result.error !== undefined) problems.push(result.error);
    if (!v) return { result, problems };
    if (v.allowed) problems.push('the mesh lets it through');
    else {
      if (r.statuses && !r.statuses.includes(v.status))
        problems.push(`refused with ${v.status} (by ${v.by}), expected ${r.statuses.join(' or ')}`);
      if (r.jsonRpcCode !== undefined) {
        const code = jsonRpcErrorCode(v.body);
        if (code !== r.jsonRpcCode) problems.push(`refusal carries JSON-RPC error ${code ?? 'none'}, expected ${r.jsonRpcCode}`);
      }
      if (r.maxBodyBytes !== undefined && v.body.length > r.maxBodyBytes)
        problems.push(`refusal body is ${v.body.length} bytes (limit ${r.maxBodyBytes})`);
    }
    if (r.maxCheckMs !== undefined && v.checkMs !== undefined && v.checkMs > r.maxCheckMs)
      problems.push(`ext_authz Check took ${v.checkMs.toFixed(1)} ms (limit ${r.maxCheckMs})`);
    // Replayed even when refused, to show the attack is real; only what an allowed request ran is a failure.
    if (v.allowed)
      for (const x of result.violations) problems.push(`FAILURE: ${x.oracle} ran ${actionKey(x.action)}, which ${x.rule} denies`);
    return { result, problems };
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function jsonRpcErrorCode(body: Uint8Array): number | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(body).toString('utf8'));
    const first: unknown = Array.isArray(parsed) ? parsed[0] : parsed;
    const code = typeof first === 'object' && first !== null ? (first as { error?: { code?: unknown } }).error?.code : undefined;
    return typeof code === 'number' ? code : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------- reports

/** The client's header lines as sent on the wire ("Name: value\r\n" each), base64. */
export function headersBase64(c: FuzzCase): string {
  return Buffer.from(c.headers.map(([k, v]) => `${k}: ${v}\r\n`).join(''), 'latin1').toString('base64');
}

/** One case in full: enough to replay it by hand or with `run.ts --seed S --case I`. */
export function formatCase(r: CaseResult): string {
  const c = r.case;
  const v = r.verdict;
  const preview = JSON.stringify(Buffer.from(c.body.subarray(0, 240)).toString('latin1'));
  const lines = [
    `${r.failure ? 'FAILURE' : 'case'} seed=${c.seed} case=${c.index} service=${c.service} caller=${c.caller.name} classes=${c.classes.join(',')}`,
    `  note:    ${c.note}`,
    `  mesh:    ${v ? (v.allowed ? `allowed (${v.by})` : `refused ${v.status} by ${v.by}: ${v.rule}`) : 'undecided'}${v?.checkMs !== undefined ? `, check ${v.checkMs.toFixed(2)} ms` : ''}`,
    ...r.replies.map(
      (x) => `  ${x.oracle.padEnd(8)} ${x.status} ran [${x.ran.map(actionKey).join(', ')}]${x.error ? ` (${x.error})` : ''}`,
    ),
    ...r.violations.map(
      (x) => `  policy:  ${x.oracle} ran ${actionKey(x.action)}, denied by ${x.rule}${v?.allowed ? '' : ' (the mesh refused the request)'}`,
    ),
    ...(r.error !== undefined ? [`  error:   ${r.error}`] : []),
    `  method:  ${c.method}`,
    `  headers: ${JSON.stringify(c.headers)}`,
    `  headers_b64: ${headersBase64(c)}`,
    `  body_b64:    ${Buffer.from(c.body).toString('base64').slice(0, 4096)}${c.body.length > 3072 ? ` (... ${c.body.length} bytes)` : ''}`,
    `  body (latin1 preview): ${preview}${c.body.length > 240 ? '...' : ''}`,
    ...(c.seed !== 'regression' ? [`  replay:  node test/fuzz/run.ts --seed ${c.seed} --case ${c.index}`] : []),
  ];
  return lines.join('\n');
}

export function formatSummary(s: FuzzSummary): string {
  const pad = (x: string | number, n: number): string => String(x).padStart(n);
  const rows = ATTACK_CLASSES.map((k) => {
    const x = s.byClass[k];
    return `  ${k.padEnd(17)}${pad(x.cases, 7)}${pad(x.allowed, 8)}${pad(x.denied, 8)}${pad(x.replayed, 9)}${pad(x.blocked, 8)}${pad(x.failures, 9)}`;
  });
  return [
    `seed ${s.seed}: cases ${s.start}..${s.start + s.cases - 1} (${s.cases}) in ${(s.wallMs / 1000).toFixed(1)} s`,
    `  mesh allowed ${s.allowed}, refused ${s.denied} (${Object.entries(s.byDecider)
      .map(([k, n]) => `${k}: ${n}`)
      .join(', ')})`,
    `  replayed ${s.replayed} to both servers (allowed and a handler ran: ${s.allowedRan}); blocked attacks ${s.blocked}; server disagreements ${s.oracleDisagreements}; harness errors ${s.harnessErrors.length}`,
    `  ext_authz Check round trips ${s.checkMs.count} (queueing included): p50 ${s.checkMs.p50.toFixed(2)} ms, p99 ${s.checkMs.p99.toFixed(2)} ms, max ${s.checkMs.max.toFixed(1)} ms`,
    `  cases digest ${s.casesDigest.slice(0, 16)}, outcomes digest ${s.outcomesDigest.slice(0, 16)}`,
    `  FAILURES ${s.failureCount}`,
    `  class              cases allowed refused replayed blocked failures`,
    ...rows,
  ].join('\n');
}
