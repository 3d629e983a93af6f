/** The logger the engine writes to. The library never writes to the console on its own. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const noop = () => {};
/** Drops everything; the default. */
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });

/** A logger whose every line carries `scope` (saga id, step, worker). */
export function scopedLogger(base: Logger, scope: Record<string, unknown>): Logger {
  if (base === silentLogger) return base;
  return {
    debug: (m, f) => base.debug(m, { ...scope, ...f }),
    info: (m, f) => base.info(m, { ...scope, ...f }),
    warn: (m, f) => base.warn(m, { ...scope, ...f }),
    error: (m, f) => base.error(m, { ...scope, ...f }),
  };
}
