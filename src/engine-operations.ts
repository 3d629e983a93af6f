/**
 * The engine's operator actions, cancel() and retry(): in one transaction holding the saga's row lock, or,
 * for a role that may not write the saga tables or a row held by a transactional step, through the SQL API
 * (sql/operator.sql).
 */
import type pg from "pg";
import type { AnySaga } from "./definition.js";
import { sqlState, withTransaction } from "./db.js";
import type { SagaEngine } from "./engine-api.js";
import { SagaError } from "./errors.js";
import { TERMINAL_STATES, isUuid } from "./model.js";
import type { PayloadCodec } from "./codec/codec.js";
import { checkReason } from "./options.js";
import { lockInstance } from "./sql/lock-instance.js";
import { cancelBySql, mayWriteSagas, retryBySql } from "./sql/operator-calls.js";
import { interrupt } from "./worker/interrupt.js";
import { resume } from "./worker/resume.js";
import { Transition } from "./worker/transition.js";

const CANCEL_LOCK_TIMEOUT = "set local lock_timeout = 1000";

/** The saga's row lock was not granted in time. */
class RowLocked extends Error {}

export interface OperatorDeps {
  pool: pg.Pool;
  codec: PayloadCodec;
  /** Throws ENGINE_CLOSED once the engine is closed. */
  alive: () => void;
  definitionOf: (name: string, version: number) => AnySaga | undefined;
}

export function operatorActions({
  pool,
  codec,
  alive,
  definitionOf,
}: OperatorDeps): Pick<SagaEngine, "cancel" | "retry"> {
  // saga_app may not write the saga tables: its cancel and retry go through the SQL API (sql/operator.sql).
  let writer: Promise<boolean> | undefined;
  // Audit: an operator action without an explicit `by` is recorded as the session's database role.
  let sessionRole: Promise<string> | undefined;
  const sessionUser = () =>
    (sessionRole ??= pool
      .query<{ u: string }>("select session_user as u")
      .then((r) => r.rows[0]!.u)
      .catch((err: unknown) => ((sessionRole = undefined), Promise.reject(err))));
  const writes = () =>
    (writer ??= mayWriteSagas(pool).catch((err: unknown) => ((writer = undefined), Promise.reject(err))));

  async function operate<T>(
    id: string,
    fn: (t: Transition, def: AnySaga | undefined) => T,
    open?: string,
  ): Promise<T> {
    alive();
    if (typeof id !== "string" || !isUuid(id))
      throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${JSON.stringify(id)} (not a uuid)`);
    return withTransaction(
      pool,
      async (db) => {
        const saga = await lockInstance(db, id).catch((err: unknown) => {
          throw sqlState(err) === "55P03" ? new RowLocked() : err;
        });
        if (!saga) throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${id}`);
        const t = new Transition(saga, codec);
        const result = fn(t, definitionOf(saga.name, saga.version));
        await t.flush(db);
        return result;
      },
      10,
      open,
    );
  }

  return {
    async cancel(id, reason = "cancelled", who = {}) {
      alive();
      checkReason(reason);
      if (isUuid(id) && !(await writes())) return cancelBySql(pool, id, reason);
      const by = who.by ?? (isUuid(id) ? await sessionUser() : undefined);
      const cancel = (t: Transition, def: AnySaga | undefined) => {
        if (TERMINAL_STATES.has(t.saga.state)) {
          throw new SagaError("SAGA_TERMINAL", `saga ${id} already ended ${t.saga.state}; nothing to cancel`);
        }
        if (t.saga.state !== "running") return { state: t.saga.state };
        // Without the definition here, the worker that has it performs the cancel.
        if (!def) t.job({ id, cancel: reason, ...(by === undefined ? {} : { by }) });
        else interrupt(t, def, "cancel", reason, by);
        return { state: t.saga.state };
      };
      try {
        return await operate(id, cancel, CANCEL_LOCK_TIMEOUT);
      } catch (err) {
        if (!(err instanceof RowLocked)) throw err;
        // A transactional step holds the row while its handler runs: the request is read by its worker,
        // which aborts it (saga.cancel, sql/operator.sql).
        return cancelBySql(pool, id, reason);
      }
    },

    async retry(id, who = {}) {
      alive();
      if (who.by !== undefined) checkReason(who.by, "retry: by");
      if (who.reason !== undefined) checkReason(who.reason, "retry: reason");
      if (isUuid(id) && !(await writes())) return retryBySql(pool, id, who.reason);
      const by = who.by ?? (isUuid(id) ? await sessionUser() : undefined);
      return operate(id, (t) => {
        if (!resume(t, { ...who, ...(by === undefined ? {} : { by }) })) {
          throw new SagaError(
            "INVALID_STATE",
            `saga ${id} is ${t.saga.state}; only failed and compensation_failed sagas can be retried`,
          );
        }
        return { state: t.saga.state };
      });
    },
  };
}
