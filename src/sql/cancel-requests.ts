/**
 * saga.cancel_requests: cancels asked for without the instance row lock (see saga.cancel in sql/operator.sql).
 * Every query here is by the table's primary key.
 */
import type { Executor } from "../executor.js";
import { SagaError } from "../errors.js";
import { sqlState } from "../db.js";

/** A pending cancel: its reason, and who asked (undefined for a request written before that was recorded). */
export interface CancelRequest {
  reason: string;
  by: string | undefined;
}

const asRequest = (row: { reason: string; requested_by: string | null } | undefined): CancelRequest | null =>
  row ? { reason: row.reason, by: row.requested_by ?? undefined } : null;

/** The saga's pending cancel request, or null. */
export async function readCancelRequest(db: Executor, sagaId: string): Promise<CancelRequest | null> {
  const { rows } = await db.query<{ reason: string; requested_by: string | null }>(
    "select reason, requested_by from saga.cancel_requests where saga_id = $1",
    [sagaId],
  );
  return asRequest(rows[0]);
}

/** Consumes the saga's pending cancel request (inside the transition that performs it). */
export async function takeCancelRequest(db: Executor, sagaId: string): Promise<CancelRequest | null> {
  const { rows } = await db.query<{ reason: string; requested_by: string | null }>(
    "delete from saga.cancel_requests where saga_id = $1 returning reason, requested_by",
    [sagaId],
  );
  return asRequest(rows[0]);
}

/**
 * Asks for a cancel without waiting for the saga's row lock (saga.cancel): the request, a cancel job and a
 * `saga_control` wake-up. Returns the saga's state as it was read.
 */
export async function requestCancel(db: Executor, sagaId: string, reason: string): Promise<string> {
  try {
    const { rows } = await db.query<{ state: string }>("select saga.cancel($1, $2) as state", [
      sagaId,
      reason,
    ]);
    return rows[0]?.state ?? "running";
  } catch (err) {
    const code = sqlState(err);
    if (code === "SG404") throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${sagaId}`, { cause: err });
    if (code === "SG410")
      throw new SagaError("SAGA_TERMINAL", `saga ${sagaId} already ended; nothing to cancel`, { cause: err });
    throw err;
  }
}
