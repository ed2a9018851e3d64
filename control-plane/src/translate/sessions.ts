// MCP session affinity at the gateway. A 2025-11-25 server keeps each session (Mcp-Session-Id) in its own
// memory, so every request of a session must reach the replica that answered `initialize`. Hashing the
// header cannot do that (the first request has no id yet), so the gateway wraps the server's id with the
// replica's address on the way out and unwraps it on the way in (Envoy's envelope session state). Servers
// see their own ids unchanged; clients only ever echo what they were given, as the MCP spec requires.
// Stateless 2026-07-28 servers send no session header, so the filter never engages for them.
import type { MeshService } from '../model/types.ts';
import { any, type ProtoObject } from './resource.ts';

export const MCP_SESSION_HEADER = 'mcp-session-id';

/**
 * The session id as the server assigned it, copied by every route into this response header before the
 * gateway's session filter wraps Mcp-Session-Id (route headers are added by the router, ahead of the
 * encoder filters). The access log reads it, so `mcp_session_assigned` is the same plain id later requests
 * show as `mcp_session_id` (the filter unwraps the request header in place).
 */
export const SERVER_SESSION_HEADER = 'x-mcpmesh-server-session-id';

/** Route `response_headers_to_add` entry for SERVER_SESSION_HEADER (absent when the server sets no session). */
export function serverSessionEcho(): ProtoObject {
  return { header: { key: SERVER_SESSION_HEADER, value: `%RESP(${MCP_SESSION_HEADER})%` }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

export function sessionAffinityFilter(): ProtoObject {
  return {
    name: 'envoy.filters.http.stateful_session',
    typed_config: any('envoy.extensions.filters.http.stateful_session.v3.StatefulSession', {
      session_state: {
        name: 'envoy.http.stateful_session.envelope',
        typed_config: any('envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState', {
          header: { name: MCP_SESSION_HEADER },
        }),
      },
      // Not strict: when the replica is gone the request goes elsewhere, that server answers 404 for the
      // unknown session, and the client starts a new one (MCP's documented recovery), instead of a 503 loop.
      strict: false,
    }),
  };
}

/**
 * Affinity for 2024-11-05 (HTTP+SSE) services, whose session id travels in the POST URL (`?sessionId=`) that
 * the server announced on the client's `/sse` stream, where the envelope filter cannot see it (Envoy has no
 * SSE-endpoint session state: envoyproxy/envoy#40247). The route hashes the client's address, and the
 * cluster's ring hash sends its stream and its POSTs to one replica while the replica set holds.
 */
export function sessionAffinityHash(svc: MeshService): ProtoObject {
  return svc.transport === 'sse' ? { hash_policy: [{ connection_properties: { source_ip: true } }] } : {};
}
