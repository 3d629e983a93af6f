import type pg from "pg";
import type { Executor, QueryResult } from "./executor.js";
import { isFromGraphileWorker } from "./graphile/boundary.js";

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
  }
  return false;
}

/**
 * A query failed because its connection ended under it (the server went away, the backend was terminated, the
 * socket closed). node-postgres reports that without a SQLSTATE; this carries SQLSTATE 08006
 * (connection_failure), so the error is classed by code like any other. Known from the client's own `error`
 * and `end` events while the query ran, not from the message.
 */
export class ConnectionLostError extends Error {
  readonly code = "08006";
  constructor(cause: unknown) {
    super(`the database connection was lost: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "ConnectionLostError";
  }
}

/**
 * Runs `use` on a client of `pool`. An error without a SQLSTATE thrown while the client's connection ended
 * becomes a {@link ConnectionLostError}, and the client is destroyed rather than returned to the pool.
 */
export async function withClient<T>(pool: pg.Pool, use: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let lost = false;
  const onLost = () => {
    lost = true;
  };
  client.on("error", onLost).on("end", onLost);
  try {
    return await use(client);
  } catch (err) {
    throw lost && sqlState(err) === undefined ? new ConnectionLostError(err) : err;
  } finally {
    client.off("error", onLost).off("end", onLost);
    client.release(lost);
  }
}

/** An executor over `pool` whose queries report a lost connection as {@link ConnectionLostError}. */
export function lossAware(pool: pg.Pool): Executor {
  return {
    query: async <R>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>> => {
      const result = await withClient(pool, (client) => client.query(text, values as unknown[] | undefined));
      return result as unknown as QueryResult<R>;
    },
  };
}

let guards = 0;
let guardLogger: { warn(message: string, fields?: Record<string, unknown>): void } | undefined;
const onUnhandledRejection = (reason: unknown) => {
  // graphile-worker leaves some of its writes unawaited (see below).
  if (isTransientDbError(reason) || isFromGraphileWorker(reason)) {
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
    try {
      return await withClient(pool, async (client) => {
        try {
          const opened =
            open === undefined
              ? [await client.query(begin)]
              : ([] as pg.QueryResult[]).concat(await client.query(`${begin};\n${open}`));
          const close: string[] = [];
          const result = await fn(client as pg.PoolClient & Executor, opened.slice(1), close);
          await client.query([...close, "commit"].join(";\n"));
          return result;
        } catch (err) {
          // A rollback that fails too means the connection is gone: withClient then destroys the client.
          await client.query("rollback").catch(() => {});
          throw err;
        }
      });
    } catch (err) {
      if (attempt >= retries || !isTransientDbError(err)) throw err;
      await sleep(Math.min(2_000, 25 * 2 ** attempt) * (0.5 + Math.random() / 2));
    }
  }
}
