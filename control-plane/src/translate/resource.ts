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
