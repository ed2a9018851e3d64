// What a proxy tells us about itself in the xDS Node (id, locality, metadata) -> the model's ProxyInfo.
import { DEFAULT_GATEWAY_PORT, DEFAULT_SIDECAR_APP_PORT, DEFAULT_SIDECAR_INBOUND_PORT } from '../model/defaults.ts';
import type { ProxyInfo } from '../model/types.ts';

/** google.protobuf.Struct / Value as protobufjs decodes them (its built-in well-known types use camelCase). */
interface PbValue {
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
}
interface PbStruct {
  fields?: Record<string, PbValue>;
}

export interface PbNode {
  id?: string;
  cluster?: string;
  metadata?: PbStruct | null;
  locality?: { region?: string; zone?: string; sub_zone?: string } | null;
  user_agent_name?: string;
}

export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

export function structToJson(s: PbStruct | null | undefined): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: PbValue): Json {
  if (v.stringValue !== undefined && v.stringValue !== null) return v.stringValue;
  if (v.numberValue !== undefined && v.numberValue !== null) return v.numberValue;
  if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
  if (v.structValue) return structToJson(v.structValue);
  if (v.listValue) return (v.listValue.values ?? []).map(valueToJson);
  return null;
}

export class NodeError extends Error {
  constructor(nodeId: string, field: string, reason: string) {
    super(`xDS node "${nodeId}": node.${field}: ${reason}`);
    this.name = 'NodeError';
  }
}

function port(meta: Record<string, Json>, key: string, fallback: number, id: string): number {
  const v = meta[key];
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535)
    throw new NodeError(id, `metadata.${key}`, `must be a port number 1-65535 (got ${JSON.stringify(v)})`);
  return n;
}

/**
 * A yes/no node field. Strictly true/false (or the strings "true"/"false", as hand-written bootstraps spell
 * them): anything else is refused rather than guessed, since it decides where the gateway's authorizer is.
 */
function flag(meta: Record<string, Json>, key: string, id: string): boolean {
  const v = meta[key];
  if (v === undefined || v === null || v === false || v === 'false') return false;
  if (v === true || v === 'true') return true;
  throw new NodeError(id, `metadata.${key}`, `must be true or false (got ${JSON.stringify(v)})`);
}

/** Reads the proxy's role and placement from its node. Throws NodeError naming the bad field. */
export function proxyInfoFromNode(node: PbNode | null | undefined): ProxyInfo {
  const id = node?.id ?? '';
  if (id === '') throw new NodeError('(none)', 'id', 'is required: each proxy needs a unique node id');
  const meta = structToJson(node?.metadata);
  const role = meta['role'] ?? 'gateway';
  const loc = node?.locality;
  const locality = loc && (loc.region || loc.zone) ? { region: loc.region ?? '', zone: loc.zone ?? '' } : undefined;
  if (role === 'gateway') {
    // Every gRPC xDS client names itself "gRPC <language>"; Envoy says "envoy".
    const proxyless = /^grpc\b/i.test(node?.user_agent_name ?? '');
    const gatewayName = meta['gateway_name'] ?? 'default';
    if (typeof gatewayName !== 'string' || !/^[A-Za-z0-9._-]{1,63}$/.test(gatewayName))
      throw new NodeError(
        id,
        'metadata.gateway_name',
        `must be 1-63 letters, digits, ".", "_" or "-" (got ${JSON.stringify(gatewayName)})`,
      );
    // Only what an Envoy can use: a proxyless client has no ext_authz or ext_proc filter to point anywhere.
    const localAuthz = !proxyless && flag(meta, 'local_authz', id);
    return {
      id,
      role,
      ...(locality ? { locality } : {}),
      listenerPort: port(meta, 'listener_port', DEFAULT_GATEWAY_PORT, id),
      ...(proxyless ? { proxyless } : {}),
      ...(gatewayName !== 'default' ? { gatewayName } : {}),
      ...(localAuthz ? { localAuthz } : {}),
    };
  }
  if (role === 'sidecar') {
    const service = meta['service'];
    if (typeof service !== 'string' || service === '')
      throw new NodeError(id, 'metadata.service', 'a sidecar must name the MCP service it fronts');
    return {
      id,
      role,
      service,
      ...(locality ? { locality } : {}),
      listenerPort: port(meta, 'inbound_port', DEFAULT_SIDECAR_INBOUND_PORT, id),
      appPort: port(meta, 'app_port', DEFAULT_SIDECAR_APP_PORT, id),
    };
  }
  throw new NodeError(id, 'metadata.role', `must be "gateway" or "sidecar" (got ${JSON.stringify(role)})`);
}

/** Proxies with the same key get the same snapshot, so it is built and encoded once for all of them. */
export function snapshotKey(p: ProxyInfo): string {
  const loc = p.locality ? `${p.locality.region}/${p.locality.zone}` : '-';
  return p.role === 'gateway'
    ? // A local-authz gateway gets other clusters than one of the same name and place that uses the control plane's.
      `gateway|${p.gatewayName ?? 'default'}|${loc}|${p.listenerPort}${p.proxyless ? '|grpc' : ''}${p.localAuthz ? '|local-authz' : ''}`
    : `sidecar|${p.service}|${p.listenerPort}|${p.appPort}`;
}
