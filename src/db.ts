import type pg from "pg";
import type { Executor } from "./executor.js";

/** SQLSTATE classes and errnos after which the same work may simply be tried again. */
const TRANSIENT_SQLSTATE_CLASSES = new Set(["08", "53", "57"]); // connection, resources, operator intervention
const TRANSIENT_SQLSTATES = new Set(["40001", "40P01", "55P03"]); // serialization, deadlock, lock not available
const TRANSIENT_ERRNOS = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
]);

/** Whether an error (or any error in its `cause` chain) says "try again": by SQLSTATE and errno only. */
export function isTransientDbError(err: unknown): boolean {
  for (
    let e = err, depth = 0;
    e && typeof e === "object" && depth < 8;
    e = (e as { cause?: unknown }).cause, depth++
  ) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      if (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_ERRNOS.has(code)) return true;
      if (code.length === 5 && TRANSIENT_SQLSTATE_CLASSES.has(code.slice(0, 2)) && code !== "57014")
        return true;
    }
    // node-postgres reports a connection that went away, or a client left broken by it, without a code.
    if (e instanceof Error && /^Connection terminated|connection error and is not queryable/.test(e.message))
      return true;
  }
  return false;
}

let guards = 0;
let guardLogger: { warn(message: string, fields?: Record<string, unknown>): void } | undefined;
// graphile-worker's own frames: the library leaves some of its writes unawaited (see below).
const GRAPHILE_FRAME = /[\\/]graphile-worker[\\/]/;
const onUnhandledRejection = (reason: unknown) => {
  const fromGraphile = reason instanceof Error && GRAPHILE_FRAME.test(reason.stack ?? "");
  if (isTransientDbError(reason) || fromGraphile) {
    guardLogger?.warn(
      "a database write outside the engine failed on a lost connection; the reaper recovers it",
      {
        error: String(reason),
        code: (reason as { code?: unknown } | null)?.code,
      },
    );
    return;
  }
  // Not ours: behave as if no handler were installed, unless the application has one of its own.
  if (process.listenerCount("unhandledRejection") > 1) return;
  throw reason;
};

/**
 * graphile-worker 0.17 does not await some of its own writes (failing a job; returning its local queue's jobs
 * when its pool shuts down): when Postgres goes away at that moment the rejection is unhandled and Node ends
 * the process. While a worker runs, a rejection that is a connection error or comes from graphile-worker is
 * logged instead (the jobs stay locked; the reaper and the runner's supervisor unlock them); any other
 * rejection still ends the process as it would have. Returns the uninstaller; nested installs are counted.
 *
 * @example
 * const release = guardConnectionRejections(logger);
 * // … run the worker …
 * release();
 */
export function guardConnectionRejections(logger: {
  warn(message: string, fields?: Record<string, unknown>): void;
}): () => void {
  guardLogger = logger;
  if (guards++ === 0) process.on("unhandledRejection", onUnhandledRejection);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--guards === 0) process.off("unhandledRejection", onUnhandledRejection);
  };
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.length === 5 ? code : undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` in a transaction on a pooled connection. Transient failures (by SQLSTATE/errno) are retried
 * with backoff up to `retries` times; `fn` must therefore decide from what it reads, not from memory.
 *
 * To save round trips, `open` (SQL without parameters) is sent with BEGIN in one message, and `fn` receives
 * its results; statements `fn` pushes into `close` are sent with COMMIT in one message.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (db: pg.PoolClient & Executor, opened: pg.QueryResult[], close: string[]) => Promise<T>,
  retries = 10,
  open?: string,
): Promise<T> {
  // Every transition decides from rows read after its lock: READ COMMITTED, whatever the server default.
  const begin = "begin isolation level read committed";
  for (let attempt = 0; ; attempt++) {
    let client: pg.PoolClient | undefined;
    let broken = false;
    try {
      client = await pool.connect();
      const opened =
        open === undefined
          ? [await client.query(begin)]
          : ([] as pg.QueryResult[]).concat(await client.query(`${begin};\n${open}`));
      const close: string[] = [];
      const result = await fn(client as pg.PoolClient & Executor, opened.slice(1), close);
      await client.query([...close, "commit"].join(";\n"));
      return result;
    } catch (err) {
      if (client) {
        try {
          await client.query("rollback");
        } catch {
          broken = true;
        }
      }
      if (attempt >= retries || !isTransientDbError(err)) throw err;
      broken = true;
      await sleep(Math.min(2_000, 25 * 2 ** attempt) * (0.5 + Math.random() / 2));
    } finally {
      client?.release(broken);
    }
  }
}
