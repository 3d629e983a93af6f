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
    // node-postgres reports a connection that went away without a code.
    if (e instanceof Error && /^Connection terminated/.test(e.message)) return true;
  }
  return false;
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.length === 5 ? code : undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` in a transaction on a pooled connection. Transient failures (by SQLSTATE/errno) are retried
 * with backoff up to `retries` times; `fn` must therefore decide from what it reads, not from memory.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (db: pg.PoolClient & Executor) => Promise<T>,
  retries = 5,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    let client: pg.PoolClient | undefined;
    let broken = false;
    try {
      client = await pool.connect();
      // Every transition decides from rows read after its lock: READ COMMITTED, whatever the server default.
      await client.query("begin isolation level read committed");
      const result = await fn(client as pg.PoolClient & Executor);
      await client.query("commit");
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
