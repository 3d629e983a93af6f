import type { Executor } from "../executor.js";

/**
 * Why a saga's running step must stop, read from the instance row: a notification on `saga_control` is only
 * a hint (any connected role can send one), so a worker aborts a handler only when the row says the saga was
 * interrupted (the cancel or deadline transition committed before its NOTIFY was delivered). Null: keep
 * running. Primary key of saga.instances.
 */
export async function interruptionOf(db: Executor, sagaId: string): Promise<"cancel" | "timeout" | null> {
  const { rows } = await db.query<{ state: string; cause: string | null }>(
    "select i.state, i.compensation_cause as cause from saga.instances i where i.id = $1",
    [sagaId],
  );
  const row = rows[0];
  if (!row || row.state === "running") return null;
  return row.cause === "cancel" || row.cause === "timeout" ? row.cause : null;
}
