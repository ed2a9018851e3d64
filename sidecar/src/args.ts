// Argument checks shared by the `mcpmesh sidecar` and `mcpmesh gateway` commands: each records a
// problem naming the flag instead of throwing, so one run reports every mistake at once.
import { parseDurationMs } from '../../control-plane/src/model/duration.ts';

export class ArgChecker {
  readonly problems: string[] = [];

  port(name: string, v: string | undefined): number {
    const n = Number(v);
    if (v === undefined || !/^\d+$/.test(v) || n < 1 || n > 65535)
      this.problems.push(`--${name}: must be a port number 1-65535 (got ${JSON.stringify(v)})`);
    return n;
  }

  duration(name: string, v: string): number {
    const ms = parseDurationMs(v);
    if (ms === undefined || ms < 0) this.problems.push(`--${name}: must be a duration such as 500ms, 10s (got ${JSON.stringify(v)})`);
    return ms ?? 0;
  }

  /** `host:port` of the control plane's xDS server: flag, else $MCPMESH_XDS_ADDR, else 127.0.0.1:18000. */
  controlPlane(flag: string | undefined, env: NodeJS.ProcessEnv): { host: string; port: number } {
    const cp = flag ?? env['MCPMESH_XDS_ADDR'] ?? '127.0.0.1:18000';
    const m = /^(.+):(\d+)$/.exec(cp);
    if (!m) this.problems.push(`--control-plane: must be host:port (got ${JSON.stringify(cp)})`);
    return { host: m?.[1] ?? '127.0.0.1', port: Number(m?.[2] ?? 18000) };
  }

  /** Throws one Error listing every problem, followed by the usage text. */
  check(command: string, usage: string): void {
    if (this.problems.length > 0)
      throw new Error(`${command}: ${this.problems.length} problem(s):\n  ${this.problems.join('\n  ')}\n\n${usage}`);
  }
}
