// Structured logs: one JSON object per line on stderr, with level, component and the ids that matter.
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(component: string): Logger;
}

export function createLogger(opts: { level?: Level; component?: string; write?: (line: string) => void } = {}): Logger {
  const min = ORDER[opts.level ?? (process.env['MCPMESH_LOG_LEVEL'] as Level | undefined) ?? 'info'] ?? ORDER.info;
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const component = opts.component ?? 'control-plane';
  const emit = (level: Level, msg: string, fields?: Fields): void => {
    if (ORDER[level] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields }));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (c) => createLogger({ ...opts, component: `${component}.${c}`, write }),
  };
}

/** For tests and benchmarks that want silence. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silentLogger };

/** `logger` with `fields` on every line (and on its children's): e.g. which gateway and node an agent's line is about. */
export function withFields(logger: Logger, fields: Fields): Logger {
  return {
    debug: (m, f) => logger.debug(m, { ...fields, ...f }),
    info: (m, f) => logger.info(m, { ...fields, ...f }),
    warn: (m, f) => logger.warn(m, { ...fields, ...f }),
    error: (m, f) => logger.error(m, { ...fields, ...f }),
    child: (c) => withFields(logger.child(c), fields),
  };
}
