// Preload (`node --import <this file> ...`) that forces every net/http server in the process to listen on
// 127.0.0.1. Used to run server-everything's Streamable HTTP mode in tests: it calls `app.listen(PORT)`,
// which would bind all interfaces (see /work/shared/docs/facts.md), and offers no host option.
import net from 'node:net';

const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(this: net.Server, ...args: unknown[]): net.Server {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, cb]): drop a caller host, use loopback
    const rest = args.slice(1).filter((a) => typeof a !== 'string');
    return (originalListen as (...a: unknown[]) => net.Server).call(this, Number(first), '127.0.0.1', ...rest);
  }
  if (first !== null && typeof first === 'object' && !('_handle' in first) && !('fd' in first) && !('path' in first)) {
    return (originalListen as (...a: unknown[]) => net.Server).call(this, { ...(first as object), host: '127.0.0.1' }, ...args.slice(1));
  }
  return (originalListen as (...a: unknown[]) => net.Server).apply(this, args);
};
