// Public surface of the sidecar agent's stdio bridge (serves a stdio MCP server as Streamable HTTP).
export { StdioBridge, stderrLogger, type BridgeSessionInfo, type LogFn, type StdioBridgeOptions } from './stdio-bridge.ts';
