import { sqlState } from "../db.js";
import { SagaError } from "../errors.js";
import type { Executor } from "../executor.js";
import type { SagaState } from "../model.js";

/**
 * Whether this connection's role may write the saga tables itself (the owner, saga_worker). A role that may
 * not (saga_app) cancels and retries through the SECURITY DEFINER SQL API instead.
 */
export async function mayWriteSagas(db: Executor): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(
    "select has_table_privilege('saga.instances', 'UPDATE') and has_function_privilege('saga._apply(uuid, jsonb, jsonb, jsonb, jsonb, text)', 'EXECUTE') as ok",
  );
  return rows[0]?.ok === true;
}

function translate(err: unknown, id: string): never {
  switch (sqlState(err)) {
    case "SG404":
      throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${id}`, { cause: err });
    case "SG410":
      throw new SagaError("SAGA_TERMINAL", `saga ${id} already ended; nothing to cancel`, { cause: err });
    case "SG412":
      throw new SagaError(
        "INVALID_STATE",
        `saga ${id} is not failed or compensation_failed; only those can be retried`,
        { cause: err },
      );
    default:
      throw err;
  }
}

/** saga.cancel(): queued for the worker that has the definition; returns the state now (running or compensating). */
export async function cancelBySql(db: Executor, id: string, reason: string): Promise<{ state: SagaState }> {
  try {
    const { rows } = await db.query<{ state: SagaState }>("select saga.cancel($1::uuid, $2) as state", [
      id,
      reason,
    ]);
    return { state: rows[0]!.state };
  } catch (err) {
    translate(err, id);
  }
}

/**
 * saga.retry(): queued for the worker that has the definition, which performs engine.retry()'s transition;
 * returns the state the retry moves the saga to. `by` is the session's login role.
 */
export async function retryBySql(
  db: Executor,
  id: string,
  reason: string | undefined,
): Promise<{ state: SagaState; queued: true }> {
  try {
    const { rows } = await db.query<{ state: SagaState }>("select saga.retry($1::uuid, $2) as state", [
      id,
      reason ?? null,
    ]);
    return { state: rows[0]!.state, queued: true };
  } catch (err) {
    translate(err, id);
  }
}
