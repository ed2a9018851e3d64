// Routing from Consul: the catalog's facts about a service and the config entries platform teams tune it
// with (proxy-defaults, service-defaults, service-resolver), mapped onto model/tuning.ts layers.
import { RANK, type Layer } from '../model/tuning.ts';

/** What the catalog says about routing: only the MCP path (instance meta `mcp-path`), when set. */
export function consulCatalogLayers(service: string, mcpPath: string | undefined): Layer[] {
  if (mcpPath === undefined) return [];
  return [{ scope: 'service', rank: RANK.consul, settings: { 'routing.mcpPath': { value: mcpPath, from: { source: 'consul', where: `catalog service ${service}`, field: 'Service.Meta.mcp-path' } } } }];
}
