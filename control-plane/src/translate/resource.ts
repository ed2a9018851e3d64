// The unit a translator produces: one named xDS resource as a plain object in the shape protobufjs
// `fromObject` takes (snake_case field names, Any as {"@type": url, ...fields}).
import type { ResourceKind } from '../xds/proto.ts';

export type ProtoObject = { readonly [field: string]: unknown };

export interface XdsResource {
  readonly kind: ResourceKind;
  readonly name: string;
  readonly body: ProtoObject;
  /**
   * Whether a wildcard subscription (Envoy's LDS/CDS) receives it. API listeners are only for
   * proxyless gRPC clients that ask for them by name; Envoy rejects them over LDS.
   */
  readonly wildcard: boolean;
}

export const ADS_CONFIG_SOURCE: ProtoObject = { ads: {}, resource_api_version: 'V3' };

export function any(typeName: string, fields: ProtoObject): ProtoObject {
  return { '@type': `type.googleapis.com/${typeName}`, ...fields };
}

export function u32(value: number): ProtoObject {
  return { value };
}

export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [k: string]: JsonValue };

/** google.protobuf.Struct in protobufjs object form (its well-known types use camelCase field names). */
export function struct(json: { readonly [k: string]: JsonValue }): ProtoObject {
  return { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, value(v)])) };
}

function value(v: JsonValue): ProtoObject {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
  return { structValue: struct(v as { readonly [k: string]: JsonValue }) };
}
