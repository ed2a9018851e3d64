// Checks a resource, written as the plain object the translators build, against Envoy's proto schema
// (no unknown fields, right shapes) and the protoc-gen-validate rules carried in those protos. This is
// the gate before anything is pushed: Envoy would NACK what fails here, so we refuse to send it.
import protobuf from 'protobufjs';
import { lookupType, TYPE_PREFIX } from './proto.ts';

export interface Violation {
  /** Field path inside the resource, e.g. `load_assignment.endpoints[0].lb_endpoints[1]...port_value`. */
  path: string;
  /** The rule that failed, e.g. `uint32.lte` or `schema.unknown_field`. */
  rule: string;
  message: string;
}

type Plain = Record<string, unknown>;
type Rules = Record<string, unknown>;

const WRAPPER_KIND: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

const NUMERIC_KINDS = new Set([
  'double',
  'float',
  'int32',
  'int64',
  'uint32',
  'uint64',
  'sint32',
  'sint64',
  'fixed32',
  'fixed64',
  'sfixed32',
  'sfixed64',
]);

const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE_FORBIDDEN = /[\0\r\n]/;

function isPlain(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

// protobufjs computes fullName by walking up the namespace tree on every read; validation reads it a lot.
const names = new WeakMap<protobuf.ReflectionObject, string>();
function fullName(t: protobuf.ReflectionObject): string {
  let n = names.get(t);
  if (n === undefined) {
    n = t.fullName;
    names.set(t, n);
  }
  return n;
}

const rulesCache = new WeakMap<protobuf.ReflectionObject, Rules | null>();

function rulesOf(obj: protobuf.ReflectionObject, key: '(validate.rules)'): Rules | undefined {
  const cached = rulesCache.get(obj);
  if (cached !== undefined) return cached ?? undefined;
  const parsed = obj.parsedOptions as Array<Record<string, unknown>> | undefined;
  let merged: Rules | undefined;
  for (const entry of parsed ?? []) {
    const r = entry[key];
    if (isPlain(r)) merged = { ...(merged ?? {}), ...r };
  }
  rulesCache.set(obj, merged ?? null);
  return merged;
}

function durationNanos(v: unknown): bigint {
  if (!isPlain(v)) return 0n;
  return BigInt(String(v['seconds'] ?? 0)) * 1_000_000_000n + BigInt(Number(v['nanos'] ?? 0));
}

function defaultScalar(field: protobuf.Field): unknown {
  if (field.resolvedType instanceof protobuf.Enum) return 0;
  switch (field.type) {
    case 'string':
      return '';
    case 'bytes':
      return new Uint8Array();
    case 'bool':
      return false;
    default:
      return 0;
  }
}

interface FieldPlan {
  readonly field: protobuf.Field;
  readonly rules: Rules | undefined;
  /** Message type of the field (or of a map's values), if any. */
  readonly msg: protobuf.Type | undefined;
  readonly msgName: string;
  readonly wrapper: string | undefined;
}

interface Plan {
  readonly fields: Readonly<Record<string, FieldPlan>>;
  /** Fields outside oneofs whose rules apply even when unset (proto3 scalars, required messages, min_items). */
  readonly unsetChecked: readonly protobuf.Field[];
  readonly oneofs: readonly protobuf.OneOf[];
}

// What to look at per message type, worked out once: most of Envoy's fields are unset in any one resource.
const plans = new WeakMap<protobuf.Type, Plan>();
function plan(type: protobuf.Type): Plan {
  let p = plans.get(type);
  if (!p) {
    const fields: Record<string, FieldPlan> = {};
    for (const f of type.fieldsArray) {
      const rt = f.resolvedType;
      const msg = rt instanceof protobuf.Type ? rt : undefined;
      const msgName = msg ? fullName(msg) : '';
      fields[f.name] = { field: f, rules: rulesOf(f, '(validate.rules)'), msg, msgName, wrapper: WRAPPER_KIND[msgName] };
    }
    p = {
      fields,
      unsetChecked: type.fieldsArray.filter(
        (f) => (f.partOf === null || f.partOf === undefined) && rulesOf(f, '(validate.rules)') !== undefined,
      ),
      oneofs: type.oneofsArray,
    };
    plans.set(type, p);
  }
  return p;
}

/** Code points in `s` (PGV's string length), as `[...s].length` counts them, without building the array. */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n -= 1;
        i += 1;
      }
    }
  }
  return n;
}

class Walker {
  readonly violations: Violation[] = [];

  private add(path: string, rule: string, message: string): void {
    this.violations.push({ path: path || '(root)', rule, message });
  }

  message(type: protobuf.Type, value: unknown, path: string, inAny = false): void {
    if (!isPlain(value)) {
      this.add(path, 'schema.type', `expected a ${fullName(type).slice(1)} message, got ${typeof value}`);
      return;
    }
    if (fullName(type) === '.google.protobuf.Any') {
      this.any(value, path);
      return;
    }
    const p = plan(type);
    for (const key in value) {
      const fp = p.fields[key];
      if (!fp) {
        if (!(inAny && key === '@type'))
          this.add(join(path, key), 'schema.unknown_field', `${fullName(type).slice(1)} has no field "${key}"`);
        continue;
      }
      const raw = value[key];
      if (raw !== undefined && raw !== null) this.field(fp, raw, join(path, key));
    }
    for (const field of p.unsetChecked) {
      const raw = value[field.name];
      if (raw === undefined || raw === null) this.unsetField(field, join(path, field.name));
    }
    for (const oneof of p.oneofs) {
      let count = 0;
      for (const f of oneof.fieldsArray) if (value[f.name] !== undefined && value[f.name] !== null) count += 1;
      if (count > 1) {
        const set = oneof.fieldsArray.filter((f) => value[f.name] !== undefined && value[f.name] !== null);
        this.add(join(path, oneof.name), 'schema.oneof', `only one of ${set.map((f) => f.name).join(', ')} may be set`);
      }
      if (count === 0 && oneof.options?.['(validate.required)'] === true) {
        this.add(join(path, oneof.name), 'oneof.required', `one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} is required`);
      }
    }
  }

  private any(value: Plain, path: string): void {
    const url = value['@type'];
    if (typeof url !== 'string' || !url.startsWith(TYPE_PREFIX)) {
      this.add(path, 'any.type_url', `Any needs "@type" starting with ${TYPE_PREFIX}`);
      return;
    }
    let inner: protobuf.Type;
    try {
      inner = lookupType(url);
    } catch {
      this.add(path, 'any.type_url', `unknown type ${url}`);
      return;
    }
    this.message(inner, value, `${path}<${url.slice(TYPE_PREFIX.length)}>`, true);
  }

  // proto3 scalars are validated even when unset (they read as their default), messages only for `required`.
  private unsetField(field: protobuf.Field, path: string): void {
    const rules = rulesOf(field, '(validate.rules)');
    if (!rules) return;
    if (field.repeated || field.map) {
      this.checkRepeated(rules, [], path, field);
      return;
    }
    if (field.resolvedType instanceof protobuf.Type) {
      const msgRules = rules['message'];
      const kindRules = Object.values(rules).find(isPlain);
      if ((isPlain(msgRules) && msgRules['required'] === true) || (isPlain(kindRules) && kindRules['required'] === true)) {
        this.add(path, `${Object.keys(rules)[0]}.required`, 'is required');
      }
      return;
    }
    if (field.options?.['proto3_optional']) return;
    this.checkScalar(field, rules, defaultScalar(field), path);
  }

  private field(fp: FieldPlan, raw: unknown, path: string): void {
    const { field, rules } = fp;
    if (field.map) {
      if (!isPlain(raw)) return this.add(path, 'schema.type', 'expected a map');
      if (rules) this.checkRepeated(rules, Object.keys(raw), path, field);
      if (fp.msg) for (const k in raw) this.message(fp.msg, raw[k], `${path}[${JSON.stringify(k)}]`);
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(raw)) return this.add(path, 'schema.type', 'expected a list');
      if (rules) this.checkRepeated(rules, raw, path, field);
      const itemRules = rules && isPlain(rules['repeated']) ? rules['repeated']['items'] : undefined;
      const ir = isPlain(itemRules) ? itemRules : undefined;
      for (let i = 0; i < raw.length; i++) this.single(fp, raw[i], `${path}[${i}]`, ir);
      return;
    }
    this.single(fp, raw, path, rules);
  }

  private single(fp: FieldPlan, raw: unknown, path: string, rules: Rules | undefined): void {
    const { field, msg: rt, wrapper } = fp;
    if (rt) {
      if (rules) {
        if (wrapper && isPlain(raw)) {
          const kindRules = rules[wrapper];
          if (isPlain(kindRules)) this.checkKind(wrapper, kindRules, raw['value'] ?? defaultScalar(field), `${path}.value`);
        }
        if (fp.msgName === '.google.protobuf.Duration' && isPlain(rules['duration'])) this.checkDuration(rules['duration'], raw, path);
      }
      if (fp.msgName === '.google.protobuf.Any' && rules && isPlain(rules['any']) && isPlain(raw)) {
        const allowed = rules['any']['in'];
        if (Array.isArray(allowed) && !allowed.includes(raw['@type'])) {
          this.add(path, 'any.in', `type ${String(raw['@type'])} is not one of ${allowed.join(', ')}`);
        }
      }
      const msgRules = rules?.['message'];
      if (isPlain(msgRules) && msgRules['skip'] === true) return;
      this.message(rt, raw, path);
      return;
    }
    if (rules) this.checkScalar(field, rules, raw, path);
    else this.checkShape(field, raw, path);
  }

  /** Reports a value of the wrong JSON shape; returns false when it did (rules are then meaningless). */
  private checkShape(field: protobuf.Field, raw: unknown, path: string): boolean {
    const rt = field.resolvedType;
    let problem: [string, string] | undefined;
    if (rt instanceof protobuf.Enum) {
      const known = typeof raw === 'string' ? raw in rt.values : Object.values(rt.values).includes(Number(raw));
      if (!known) problem = ['schema.enum', `${String(raw)} is not a value of ${fullName(rt).slice(1)}`];
    } else if (field.type === 'string' && typeof raw !== 'string') problem = ['schema.type', 'expected a string'];
    else if (field.type === 'bool' && typeof raw !== 'boolean') problem = ['schema.type', 'expected a boolean'];
    else if (
      NUMERIC_KINDS.has(field.type) &&
      !(typeof raw === 'number' || typeof raw === 'bigint' || (typeof raw === 'string' && /^-?\d+$/.test(raw)))
    ) {
      problem = ['schema.type', `expected a ${field.type}`];
    }
    if (problem) this.add(path, ...problem);
    return problem === undefined;
  }

  private checkScalar(field: protobuf.Field, rules: Rules, raw: unknown, path: string): void {
    if (!this.checkShape(field, raw, path)) return;
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Enum) {
      const enumRules = rules['enum'];
      if (isPlain(enumRules)) {
        const num = typeof raw === 'string' ? rt.values[raw] : Number(raw);
        if (enumRules['defined_only'] === true && (num === undefined || !Object.values(rt.values).includes(num))) {
          this.add(path, 'enum.defined_only', `${String(raw)} is not a defined ${fullName(rt).slice(1)}`);
        }
        const notIn = list(enumRules['not_in']),
          isIn = list(enumRules['in']);
        if (notIn?.map(Number).includes(Number(num))) this.add(path, 'enum.not_in', `${String(raw)} is not allowed`);
        if (isIn && !isIn.map(Number).includes(Number(num))) this.add(path, 'enum.in', `${String(raw)} is not allowed`);
      }
      return;
    }
    const kind = Object.keys(rules).find((k) => k === field.type) ?? field.type;
    const kindRules = rules[kind];
    if (isPlain(kindRules)) this.checkKind(kind, kindRules, raw, path);
  }

  private checkKind(kind: string, r: Rules, raw: unknown, path: string): void {
    if (kind === 'string') {
      const s = typeof raw === 'string' ? raw : '';
      if (r['ignore_empty'] === true && s === '') return;
      // Counted only when a rule needs them: every name of every resource passes here (10,000-service meshes).
      const hasMinLen = typeof r['min_len'] === 'number' || typeof r['min_len'] === 'string';
      const len = hasMinLen || r['max_len'] !== undefined ? codePoints(s) : 0;
      const bytes = r['min_bytes'] !== undefined || r['max_bytes'] !== undefined ? Buffer.byteLength(s) : 0;
      if (hasMinLen && len < Number(r['min_len']))
        this.add(path, 'string.min_len', `must be at least ${r['min_len']} characters (got ${len})`);
      if (r['max_len'] !== undefined && len > Number(r['max_len']))
        this.add(path, 'string.max_len', `must be at most ${r['max_len']} characters (got ${len})`);
      if (r['min_bytes'] !== undefined && bytes < Number(r['min_bytes']))
        this.add(path, 'string.min_bytes', `must be at least ${r['min_bytes']} bytes`);
      if (r['max_bytes'] !== undefined && bytes > Number(r['max_bytes']))
        this.add(path, 'string.max_bytes', `must be at most ${r['max_bytes']} bytes`);
      if (typeof r['prefix'] === 'string' && !s.startsWith(r['prefix']))
        this.add(path, 'string.prefix', `must start with "${r['prefix']}"`);
      if (typeof r['suffix'] === 'string' && !s.endsWith(r['suffix'])) this.add(path, 'string.suffix', `must end with "${r['suffix']}"`);
      if (typeof r['contains'] === 'string' && !s.includes(r['contains']))
        this.add(path, 'string.contains', `must contain "${r['contains']}"`);
      const sIn = list(r['in']),
        sNotIn = list(r['not_in']);
      if (sIn && !sIn.includes(s)) this.add(path, 'string.in', `must be one of ${sIn.join(', ')}`);
      if (sNotIn?.includes(s)) this.add(path, 'string.not_in', `must not be "${s}"`);
      if (typeof r['pattern'] === 'string') {
        let re: RegExp | undefined;
        try {
          re = new RegExp(r['pattern'], 'u');
        } catch {
          re = undefined;
        }
        if (re && !re.test(s)) this.add(path, 'string.pattern', `must match ${r['pattern']}`);
      }
      const wk = r['well_known_regex'];
      if (wk === 'HTTP_HEADER_NAME' || wk === 1) {
        if (r['strict'] === false ? HEADER_VALUE_FORBIDDEN.test(s) : s !== '' && !HEADER_NAME.test(s))
          this.add(path, 'string.well_known_regex', `"${s}" is not a valid HTTP header name`);
      } else if (wk === 'HTTP_HEADER_VALUE' || wk === 2) {
        if (HEADER_VALUE_FORBIDDEN.test(s)) this.add(path, 'string.well_known_regex', 'HTTP header value must not contain NUL, CR or LF');
      }
      return;
    }
    if (NUMERIC_KINDS.has(kind)) {
      const n = Number(raw ?? 0);
      const cmp = (key: string, ok: (bound: number) => boolean, words: string): void => {
        if (r[key] === undefined) return;
        const bound = Number(r[key]);
        if (!ok(bound)) this.add(path, `${kind}.${key}`, `must be ${words} ${bound} (got ${n})`);
      };
      // gt+lt with gt > lt means "outside the range" in PGV; Envoy's protos use only plain ranges.
      cmp('const', (b) => n === b, 'exactly');
      cmp('lt', (b) => n < b, 'less than');
      cmp('lte', (b) => n <= b, 'at most');
      cmp('gt', (b) => n > b, 'greater than');
      cmp('gte', (b) => n >= b, 'at least');
      const nIn = list(r['in']),
        nNotIn = list(r['not_in']);
      if (nIn && !nIn.map(Number).includes(n)) this.add(path, `${kind}.in`, `must be one of ${nIn.join(', ')}`);
      if (nNotIn?.map(Number).includes(n)) this.add(path, `${kind}.not_in`, `must not be ${n}`);
      return;
    }
    if (kind === 'bytes') {
      const len = raw instanceof Uint8Array ? raw.length : typeof raw === 'string' ? Buffer.from(raw, 'base64').length : 0;
      if (r['min_len'] !== undefined && len < Number(r['min_len']))
        this.add(path, 'bytes.min_len', `must be at least ${r['min_len']} bytes`);
      if (r['max_len'] !== undefined && len > Number(r['max_len']))
        this.add(path, 'bytes.max_len', `must be at most ${r['max_len']} bytes`);
    }
  }

  private checkDuration(r: Rules, raw: unknown, path: string): void {
    const n = durationNanos(raw);
    const bound = (key: string): bigint | undefined => (isPlain(r[key]) ? durationNanos(r[key]) : undefined);
    const show = (b: bigint): string => `${Number(b) / 1e9}s`;
    const lt = bound('lt'),
      lte = bound('lte'),
      gt = bound('gt'),
      gte = bound('gte');
    if (lt !== undefined && !(n < lt)) this.add(path, 'duration.lt', `must be less than ${show(lt)} (got ${show(n)})`);
    if (lte !== undefined && !(n <= lte)) this.add(path, 'duration.lte', `must be at most ${show(lte)} (got ${show(n)})`);
    if (gt !== undefined && !(n > gt)) this.add(path, 'duration.gt', `must be greater than ${show(gt)} (got ${show(n)})`);
    if (gte !== undefined && !(n >= gte)) this.add(path, 'duration.gte', `must be at least ${show(gte)} (got ${show(n)})`);
    if (isPlain(raw)) {
      const nanos = Number(raw['nanos'] ?? 0);
      if (nanos < 0 || nanos > 999_999_999) this.add(`${path}.nanos`, 'duration.nanos', 'nanos must be within 0..999999999');
    }
  }

  private checkRepeated(rules: Rules, items: unknown[], path: string, field: protobuf.Field): void {
    const rep = field.map ? rules['map'] : rules['repeated'];
    if (!isPlain(rep)) return;
    const n = items.length;
    const minKey = field.map ? 'min_pairs' : 'min_items';
    const maxKey = field.map ? 'max_pairs' : 'max_items';
    const kind = field.map ? 'map' : 'repeated';
    if (rep[minKey] !== undefined && n < Number(rep[minKey]))
      this.add(path, `${kind}.${minKey}`, `needs at least ${rep[minKey]} item(s) (got ${n})`);
    if (rep[maxKey] !== undefined && n > Number(rep[maxKey]))
      this.add(path, `${kind}.${maxKey}`, `allows at most ${rep[maxKey]} item(s) (got ${n})`);
    if (rep['unique'] === true) {
      const seen = new Set(items.map((i) => JSON.stringify(i)));
      if (seen.size !== n) this.add(path, 'repeated.unique', 'items must be unique');
    }
  }
}

/** protobufjs reads a one-element rule list (`not_in: [0]`) as the bare value: make it a list again. */
function list(v: unknown): unknown[] | undefined {
  if (v === undefined || v === null) return undefined;
  return Array.isArray(v) ? v : [v];
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Validates a plain resource object against `typeName` (full proto name or type URL). */
export function validateMessage(typeName: string, value: unknown): Violation[] {
  const w = new Walker();
  w.message(lookupType(typeName), value, '');
  return w.violations;
}

export function formatViolations(resource: string, violations: readonly Violation[]): string {
  return violations.map((v) => `${resource}: ${v.path}: ${v.rule}: ${v.message}`).join('\n');
}
