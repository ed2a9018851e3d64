// protobufjs object form (what translators write) -> canonical proto3 JSON (what Envoy reads from a
// bootstrap file): Durations as "1.5s", wrapper types as bare values, Struct as plain JSON, Any with "@type".
import protobuf from 'protobufjs';
import { lookupType } from './proto.ts';

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

const WRAPPERS = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue'].map(
    (n) => `.google.protobuf.${n}`,
  ),
);

function structValue(v: unknown): unknown {
  if (!isPlain(v)) return null;
  if ('stringValue' in v) return v['stringValue'];
  if ('numberValue' in v) return v['numberValue'];
  if ('boolValue' in v) return v['boolValue'];
  if ('structValue' in v) return structToPlain(v['structValue']);
  if ('listValue' in v) return (((isPlain(v['listValue']) ? v['listValue']['values'] : []) as unknown[]) ?? []).map(structValue);
  return null;
}

function structToPlain(s: unknown): Plain {
  const fields = isPlain(s) && isPlain(s['fields']) ? s['fields'] : {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, structValue(v)]));
}

function convert(type: protobuf.Type, obj: Plain): unknown {
  const name = type.fullName;
  if (name === '.google.protobuf.Duration') {
    const nanos = Number(obj['nanos'] ?? 0);
    const seconds = Number(obj['seconds'] ?? 0);
    return nanos === 0 ? `${seconds}s` : `${(seconds + nanos / 1e9).toFixed(9).replace(/0+$/, '')}s`;
  }
  if (WRAPPERS.has(name)) return obj['value'];
  if (name === '.google.protobuf.Struct') return structToPlain(obj);
  if (name === '.google.protobuf.Any') {
    const { ['@type']: url, ...rest } = obj;
    return { '@type': url, ...(convert(lookupType(String(url)), rest) as Plain) };
  }
  const out: Plain = {};
  for (const [key, value] of Object.entries(obj)) {
    const field = type.fields[key];
    if (!field) throw new Error(`${name.slice(1)} has no field "${key}"`);
    const rt = field.resolvedType;
    const one = (v: unknown): unknown => (rt instanceof protobuf.Type && isPlain(v) ? convert(rt, v) : v);
    if (field.map) out[key] = Object.fromEntries(Object.entries(value as Plain).map(([k, v]) => [k, one(v)]));
    else if (field.repeated) out[key] = (value as unknown[]).map(one);
    else out[key] = one(value);
  }
  return out;
}

export function toProto3Json(typeName: string, obj: Record<string, unknown>): unknown {
  return convert(lookupType(typeName), obj);
}
