/** What a worker does with an attempt that was aborted (see callHandler) beyond recording it. */
import type pg from "pg";
import type { Executor } from "../executor.js";
import { AbortError, type Outcome } from "../model.js";

/** An attempt aborted because a cancel was asked for while it held the saga's row (saga.cancel_requests). */
export function cancelAbort(outcome: Outcome): boolean {
  return (
    !outcome.ok &&
    outcome.error instanceof AbortError &&
    outcome.error.code === "SAGA_CANCELLED" &&
    outcome.error.requested !== undefined
  );
}

/**
 * Stops the queries an aborted transactional handler left running on the step's transaction (a lock wait, a
 * long statement): without it the record would queue behind them. PostgreSQL ignores a cancel that reaches a
 * backend between statements, so a query that ended meanwhile costs nothing; the record waits for the
 * cancelled ones to settle before it sends its own statements.
 */
export async function stopQueries(
  pool: pg.Pool,
  db: Executor,
  inFlight: ReadonlySet<Promise<unknown>>,
): Promise<void> {
  if (inFlight.size === 0) return;
  const pid = (db as { processID?: unknown }).processID;
  if (typeof pid === "number") await pool.query("select pg_cancel_backend($1)", [pid]);
  await Promise.allSettled([...inFlight]);
}
