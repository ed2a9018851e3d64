// MCP session affinity at the gateway. A 2025-11-25 server keeps each session (Mcp-Session-Id) in its own
// memory, so every request of a session must reach the replica that answered `initialize`. Hashing the
// header cannot do that (the first request has no id yet), so the gateway wraps the server's id with the
// replica's address on the way out and unwraps it on the way in (Envoy's envelope session state). Servers
// see their own ids unchanged; clients only ever echo what they were given, as the MCP spec requires.
// Stateless 2026-07-28 servers send no session header, so the filter never engages for them.
import { any, type ProtoObject } from './resource.ts';

export const MCP_SESSION_HEADER = 'mcp-session-id';

export function sessionAffinityFilter(): ProtoObject {
  return {
    name: 'envoy.filters.http.stateful_session',
    typed_config: any('envoy.extensions.filters.http.stateful_session.v3.StatefulSession', {
      session_state: {
        name: 'envoy.http.stateful_session.envelope',
        typed_config: any('envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState', { header: { name: MCP_SESSION_HEADER } }),
      },
      // Not strict: when the replica is gone the request goes elsewhere, that server answers 404 for the
      // unknown session, and the client starts a new one (MCP's documented recovery), instead of a 503 loop.
      strict: false,
    }),
  };
}
