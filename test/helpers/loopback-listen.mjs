// Preload (node --import) for third-party test servers that listen on every interface with no way to
// say otherwise (server-everything's HTTP modes): a bare `listen(port)` binds 127.0.0.1 instead.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const callbacks = args.slice(1).filter((a) => typeof a === 'function');
    return listen.call(this, { port: Number(args[0]), host: '127.0.0.1' }, ...callbacks);
  }
  return listen.apply(this, args);
};
