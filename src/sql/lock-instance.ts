import { escapeLiteral } from "pg";
import type { Executor } from "../executor.js";
import type { LockedSaga } from "../model.js";

// Primary keys of instances and steps. Locks the instance row only (invariant 2: instance first); step rows
// are locked by the updates that follow, in the same transaction. saga._lock (sql/functions.sql) reads
// after the lock is granted, so a transition never decides on step rows older than the lock.
const LOCK_SQL = "select saga._lock($1::uuid) as saga";

/** Locks and reads one saga; `null` when it does not exist. */
export async function lockInstance(db: Executor, id: string): Promise<LockedSaga | null> {
  const { rows } = await db.query<{ saga: LockedSaga | null }>(LOCK_SQL, [id]);
  return rows[0]?.saga ?? null;
}

/** {@link lockInstance} as SQL text (the id as a literal), to send with BEGIN in one message. */
export function lockInstanceSql(id: string): string {
  return LOCK_SQL.replace("$1", escapeLiteral(id));
}

/** Reads one saga without locking it, for an optimistic transition (see Transition.commit). */
export async function readSaga(db: Executor, id: string): Promise<LockedSaga | null> {
  const { rows } = await db.query<{ saga: LockedSaga | null }>("select saga._state($1::uuid) as saga", [id]);
  return rows[0]?.saga ?? null;
}
