// The MCP authorizer: Envoy's external authorization gRPC service (envoy.service.auth.v3.Authorization/Check)
// deciding every MCP request by the policy (see check.ts for what it reads and answers). Served with a
// hand-made ServiceDefinition and protobufjs codecs from Envoy's own protos, like server/ads.ts.
//
// Hot path: only the fields the authorizer reads are decoded (decode.ts), the token payload is cached per header
// value, globs are precompiled per policy, and the OK responses (one per deciding rule) are encoded once.
import * as grpc from '@grpc/grpc-js';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { compilePolicy, type CompiledPolicy } from '../policy/engine.ts';
import type { Policy } from '../policy/types.ts';
import { struct, type ProtoObject } from '../translate/resource.ts';
import { lookupType } from '../xds/proto.ts';
import {
  actionTargetOf,
  authorize,
  CallerCache,
  DecisionCache,
  DECISION_HEADER,
  SHADOW_HEADER,
  type AuthorizeOptions,
  type CheckOutcome,
  type Verdict,
} from './check.ts';
import { decodeCheckInput, type DecodedCheck } from './decode.ts';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';
export const CHECK_PATH = `/${AUTHORIZATION_SERVICE}/Check`;

/** gRPC status codes used in CheckResponse.status. */
const OK = 0;
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const INTERNAL = 13;

/** Longest status message (the reason, for Envoy's logs) put in a CheckResponse. */
const STATUS_MESSAGE_MAX = 1024;

/**
 * A string as it may go into a CheckResponse: proto3 strings must be UTF-8, and a lone surrogate (from a JSON
 * escape such as "\ud800" in a client's body, or a cut through a pair) has no UTF-8 form: Envoy would fail to
 * parse the answer. Replaced by U+FFFD here, whatever path the text took.
 */
function wellFormed(text: string, max = Infinity): string {
  let t = text.length > max ? `${text.slice(0, max)}…` : text;
  t = t.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
  return t;
}

/** Allowed targets longer than this are answered without the response cache (see ok()). */
const CACHED_TARGET_MAX = 512;

const identity = (b: Buffer): Buffer => b;

/**
 * gRPC server options of the authorizer (the benchmark's do-nothing baseline uses the same). Channelz is off:
 * nothing here serves it, and its per-call bookkeeping is a measurable share of a sub-100 µs check.
 */
export const AUTHZ_GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.enable_channelz': 0,
};

/**
 * The Authorization service definition with raw-bytes codecs: the handler gets the encoded CheckRequest and
 * returns an encoded CheckResponse. Shared by the authorizer and the benchmark's do-nothing baseline.
 */
export function authorizationServiceDefinition(): grpc.ServiceDefinition {
  return {
    Check: {
      path: CHECK_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
      originalName: 'check',
    },
  };
}

// ------------------------------------------------------------------------------------------ metrics

/**
 * The deciding rule as a metric label, bounded whatever the requests say: a rule of the policy, a
 * `services.<s>.requiredScopes` of a service the policy lists, one of the engine's and checker's fixed names
 * (`default-deny`, `header-mismatch`...), `several` for a batch decided by more than one rule, else `other`.
 */
export function ruleLabel(rule: string, policy: CompiledPolicy): string {
  if (policy.ruleIds.has(rule)) return rule;
  if (/^[a-z][a-z0-9-]*$/.test(rule)) return rule;
  const scopes = /^services\.(.+)\.requiredScopes$/.exec(rule);
  if (scopes && policy.services.has(scopes[1] as string)) return rule;
  return rule.includes(',') ? 'several' : 'other';
}

/**
 * Counts by three labels as plain numbers, handed to a prom-client counter when it is scraped: a labelled
 * child's inc() still hashes and validates its labels on every call (~0.2 us of a ~5 us check).
 */
class Tally {
  private readonly counts = new Map<string, Map<string, Map<Verdict, { n: number; reported: number }>>>();
  add(first: string, second: string, decision: Verdict): void {
    let bySecond = this.counts.get(first);
    if (!bySecond) this.counts.set(first, (bySecond = new Map()));
    let byVerdict = bySecond.get(second);
    if (!byVerdict) bySecond.set(second, (byVerdict = new Map()));
    const t = byVerdict.get(decision);
    if (t) t.n++;
    else byVerdict.set(decision, { n: 1, reported: 0 });
  }
  /** Calls `inc` with what was counted since the last flush. */
  flush(inc: (first: string, second: string, decision: Verdict, n: number) => void): void {
    for (const [first, bySecond] of this.counts)
      for (const [second, byVerdict] of bySecond)
        for (const [decision, t] of byVerdict) {
          if (t.n > t.reported) inc(first, second, decision, t.n - t.reported);
          t.reported = t.n;
        }
  }
}

export class AuthzMetrics {
  readonly decisions: Counter<'service' | 'tool' | 'decision'>;
  readonly ruleDecisions: Counter<'service' | 'rule' | 'decision'>;
  readonly checkSeconds: Histogram;
  // By service, tool / rule, decision (all bounded): plain numbers on the hot path, handed over at scrape time.
  private readonly toolTally = new Tally();
  private readonly ruleTally = new Tally();

  constructor(registry: Registry) {
    const tools = this.toolTally;
    this.decisions = new Counter({
      collect() {
        tools.flush((service, tool, decision, n) => this.inc({ service, tool, decision }, n));
      },
      name: 'mcpmesh_authz_decisions_total',
      help: 'MCP authorizer decisions, by service, tool (tools/call names written literally in the policy; "other" for the rest; "" for other methods) and decision (allow, deny, shadow_deny, error)',
      labelNames: ['service', 'tool', 'decision'] as const,
      registers: [registry],
    });
    const rules = this.ruleTally;
    this.ruleDecisions = new Counter({
      collect() {
        rules.flush((service, rule, decision, n) => this.inc({ service, rule, decision }, n));
      },
      name: 'mcpmesh_authz_rule_decisions_total',
      help: 'MCP authorizer decisions by service, deciding rule (roles.<role>.allow[i] / deny[i], default-deny, header-mismatch, ...; see ruleLabel) and decision: why calls are allowed or denied',
      labelNames: ['service', 'rule', 'decision'] as const,
      registers: [registry],
    });
    this.checkSeconds = new Histogram({
      name: 'mcpmesh_authz_check_seconds',
      help: 'Time the MCP authorizer spends on one ext_authz Check (decode, decide, encode)',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers: [registry],
    });
  }

  /** One decision: `tool` and `rule` already bounded (literal tools / ruleLabel). */
  count(service: string, tool: string, decision: Verdict, rule: string): void {
    this.toolTally.add(service, tool, decision);
    this.ruleTally.add(service, rule, decision);
  }
}

type OkCache = Map<string, Map<string, Map<string, Buffer>>>;

// ------------------------------------------------------------------------------------------- server

/** The request bytes are not a CheckRequest. */
export class CheckDecodeError extends Error {
  override readonly name = 'CheckDecodeError';
}

export interface AuthzServerOptions {
  policy: Policy;
  /** Where mcpmesh_authz_* metrics are registered. */
  registry: Registry;
  log?: Logger;
  /** Key under jwt_authn's dynamic metadata namespace holding the verified payload (jwt_authn `payload_in_metadata`). Default `jwt_payload`. */
  metadataPayloadKey?: string;
  /**
   * Fall back to the x-jwt-payload (claims) and x-mcp-service (service) request headers when Envoy sends no
   * metadata / context extension. Default false: only safe if the proxy strips both from client requests.
   */
  trustRequestHeaders?: boolean;
  /** The gateway's public base URL, for the resource_metadata of insufficient_scope challenges. */
  publicUrl?: string;
}

export class AuthzServer {
  readonly metrics: AuthzMetrics;
  private readonly log: Logger;
  private readonly metadataPayloadKey: string;
  private readonly trustRequestHeaders: boolean;
  private readonly publicUrl: string | undefined;
  private readonly server: grpc.Server;
  private compiled: CompiledPolicy;
  private readonly callers = new CallerCache();
  private readonly decisions = new DecisionCache();
  // Encoded OK answers by rule, action kind and target.
  private readonly okAllow: OkCache = new Map();
  private readonly okShadow: OkCache = new Map();
  private okCached = 0;
  private readonly encodeResponse: (m: object) => Buffer;
  // The same for every check: built once.
  private readonly authorizeOptions: AuthorizeOptions;

  constructor(opts: AuthzServerOptions) {
    this.metrics = new AuthzMetrics(opts.registry);
    this.log = opts.log ?? silentLogger;
    this.metadataPayloadKey = opts.metadataPayloadKey ?? 'jwt_payload';
    this.trustRequestHeaders = opts.trustRequestHeaders ?? false;
    this.publicUrl = opts.publicUrl;
    this.compiled = compilePolicy(opts.policy);
    this.authorizeOptions = {
      callers: this.callers,
      decisions: this.decisions,
      trustRequestHeaders: this.trustRequestHeaders,
      ...(this.publicUrl ? { publicUrl: this.publicUrl } : {}),
    };
    const respType = lookupType('envoy.service.auth.v3.CheckResponse');
    this.encodeResponse = (m) => Buffer.from(respType.encode(respType.fromObject(m)).finish());
    this.server = new grpc.Server(AUTHZ_GRPC_SERVER_OPTIONS);
    this.server.addService(authorizationServiceDefinition(), {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        let out: Buffer;
        try {
          out = this.check(call.request);
        } catch (err) {
          // Envoy fails closed on an error answer (unless the gateway sets failure_mode_allow).
          if (err instanceof CheckDecodeError) callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
          else {
            this.metrics.count('', '', 'error', 'authorizer-error');
            this.log.error('authz: check failed', { error: (err as Error).stack ?? String(err) });
            callback({ code: grpc.status.INTERNAL, details: `authorizer error: ${(err as Error).message}` });
          }
          return;
        }
        callback(null, out);
      },
    });
  }

  get policy(): Policy {
    return this.compiled.policy;
  }

  /** Swaps the policy atomically: every check after this call uses the new one. */
  setPolicy(policy: Policy): void {
    this.compiled = compilePolicy(policy);
    this.callers.clear();
    this.decisions.clear();
    this.okAllow.clear();
    this.okShadow.clear();
    this.okCached = 0;
    this.log.info('authz policy loaded', {
      roles: policy.roles.length,
      services: policy.services.length,
      providers: policy.providers.length,
    });
  }

  /** One Check: encoded CheckRequest in, encoded CheckResponse out. Throws CheckDecodeError if the request does not decode. */
  check(request: Buffer): Buffer {
    const t0 = performance.now();
    let input: DecodedCheck;
    try {
      input = decodeCheckInput(request, this.metadataPayloadKey);
    } catch (err) {
      this.metrics.count('', '', 'error', 'undecodable-check');
      this.log.warn('authz: undecodable CheckRequest', { error: (err as Error).message });
      throw new CheckDecodeError(`cannot decode CheckRequest: ${(err as Error).message}`);
    }
    const cp = this.compiled;
    const o = authorize(cp, input, this.authorizeOptions);
    const out = this.respond(o);
    const serviceLabel = o.service === '' ? '' : o.serviceFromRoute || cp.knownServices.has(o.service) ? o.service : 'other';
    const toolLabel = o.action?.kind === 'tool' ? (cp.literalTools.has(o.action.name) ? o.action.name : 'other') : '';
    this.metrics.count(serviceLabel, toolLabel, o.verdict, ruleLabel(o.rule, cp));
    if (o.verdict !== 'allow') {
      const fields = {
        service: o.service,
        decision: o.verdict,
        rule: o.rule,
        reason: o.reason,
        roles: o.roles,
        subject: o.subject,
        method: input.method,
        path: input.path,
        requestId: input.requestId,
        ...(o.action?.kind === 'tool' ? { tool: o.action.name } : {}),
      };
      if (o.verdict === 'error') this.log.warn('authz error', fields);
      else this.log.info(o.verdict === 'deny' ? 'authz deny' : 'authz shadow deny', fields);
    }
    this.metrics.checkSeconds.observe((performance.now() - t0) / 1000);
    return out;
  }

  private okResponse(header: string, value: string, o: CheckOutcome): Buffer {
    return this.encodeResponse({
      status: { code: OK },
      ok_response: {
        response_headers_to_add: [{ header: { key: header, value: wellFormed(value) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
      },
      dynamic_metadata: accessLogMetadata(o),
    });
  }

  private ok(cache: OkCache, rule: string, kind: string, target: string, header: string, value: string, o: CheckOutcome): Buffer {
    const b = this.okResponse(header, value, o);
    // Bounded by the policy's rules and the targets under CACHED_TARGET_MAX; cleared on policy swap.
    if (this.okCached >= 10_000) {
      this.okAllow.clear();
      this.okShadow.clear();
      this.okCached = 0;
    }
    let byKind = cache.get(rule);
    if (!byKind) cache.set(rule, (byKind = new Map()));
    let byTarget = byKind.get(kind);
    if (!byTarget) byKind.set(kind, (byTarget = new Map()));
    byTarget.set(target, b);
    this.okCached++;
    return b;
  }

  private respond(o: CheckOutcome): Buffer {
    // Keyed by the rule id and the named target: the response carries both back to Envoy's access log.
    if (o.verdict === 'allow' || o.verdict === 'shadow_deny') {
      // A flood of distinct long names must not fill the cache's memory: those are encoded every time.
      if (o.action !== undefined && actionTargetOf(o.action).length > CACHED_TARGET_MAX) {
        const [header, value] = o.verdict === 'allow' ? [DECISION_HEADER, `allow; rule=${o.rule}`] : [SHADOW_HEADER, o.rule];
        return this.okResponse(header, value, o);
      }
      // By rule, then kind and target: nested maps rather than one JSON key, which cost a string build and hash per check.
      const kind = o.action === undefined ? 'service' : o.action.kind;
      const target = o.action === undefined ? '' : actionTargetOf(o.action);
      const cache = o.verdict === 'allow' ? this.okAllow : this.okShadow;
      const b = cache.get(o.rule)?.get(kind)?.get(target);
      if (b !== undefined) return b;
      const [header, value] = o.verdict === 'allow' ? [DECISION_HEADER, `allow; rule=${o.rule}`] : [SHADOW_HEADER, o.rule];
      return this.ok(cache, o.rule, kind, target, header, value, o);
    }
    const http = o.http as NonNullable<CheckOutcome['http']>;
    const code = http.status >= 500 ? INTERNAL : http.status === 403 ? PERMISSION_DENIED : INVALID_ARGUMENT;
    return this.encodeResponse({
      status: { code, message: wellFormed(`${o.rule}: ${o.reason}`, STATUS_MESSAGE_MAX) },
      denied_response: {
        status: { code: http.status },
        headers: http.headers.map(([key, value]) => ({
          header: { key, value: wellFormed(value) },
          append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
        })),
        body: wellFormed(http.body),
      },
      dynamic_metadata: accessLogMetadata(o),
    });
  }

  /** Adds another gRPC service on the authorizer's port (the tools/list processor), before listen(). */
  mount(add: (server: grpc.Server) => void): void {
    add(this.server);
  }

  listen(host: string, port: number): Promise<number> {
    return this.bind(`${host}:${port}`);
  }

  /**
   * Serves on a Unix socket: a gateway agent's, for its own Envoy only (a static pipe cluster in its bootstrap).
   * A socket left by a previous run is replaced; the directory is made owner-only, like the agent's SDS socket's.
   */
  async listenUnix(socketPath: string): Promise<void> {
    mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    rmSync(socketPath, { force: true });
    await this.bind(`unix:${socketPath}`);
  }

  private bind(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }
}

/**
 * What the authorizer read from the JSON-RPC body, handed back to Envoy as dynamic metadata (namespace
 * envoy.filters.http.ext_authz) so the access log of a body-based (2025-11-25) service names the tool,
 * resource or prompt like the Mcp-Method/Mcp-Name headers do for 2026-07-28 services.
 */
function accessLogMetadata(o: CheckOutcome): ProtoObject {
  const a = o.action;
  return struct({
    decision: o.verdict,
    rule: wellFormed(o.rule),
    ...(a && a.kind !== 'service' ? { mcp_kind: a.kind, mcp_name: wellFormed(actionTargetOf(a), STATUS_MESSAGE_MAX) } : {}),
  });
}
