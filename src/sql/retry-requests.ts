/**
 * saga.retry_requests: retries asked for from SQL (saga.retry in sql/operator.sql), performed by the worker that
 * has the saga's definition. Every query here is by the table's primary key.
 */
import type { Executor } from "../executor.js";

export interface RetryRequest {
  /** The saga's event sequence when the retry was asked for: a saga that has moved on since is not retried. */
  seq: number;
  reason: string | null;
  /** The login role that asked (session_user). */
  requested_by: string;
}

/** Consumes the saga's retry request, inside the transition that performs it (instance row locked first). */
export async function takeRetryRequest(db: Executor, sagaId: string): Promise<RetryRequest | null> {
  const { rows } = await db.query<RetryRequest>(
    "delete from saga.retry_requests where saga_id = $1 returning seq, reason, requested_by",
    [sagaId],
  );
  return rows[0] ?? null;
}

/** Whether a retry of the saga as it is now is queued and not yet performed. */
export async function retryQueued(db: Executor, sagaId: string): Promise<boolean> {
  const { rows } = await db.query<{ queued: boolean }>(
    `select exists (select 1 from saga.retry_requests r join saga.instances i on i.id = r.saga_id and i.seq = r.seq
                    where r.saga_id = $1) as queued`,
    [sagaId],
  );
  return rows[0]?.queued === true;
}
