/**
 * Leased steps the reaper recovers: those of workers gone silent, and those a live worker holds but lost track
 * of. Both are served by steps_lease_owner_idx (only leased steps are in it).
 */
import type { Executor } from "../executor.js";

/** Any reaper in any process: one at a time, by a transaction-scoped advisory lock (never a session lock). */
const REAPER_LOCK = 727_274_002;

/** A leased step as the reaper reads it. */
export interface LeasedStep {
  saga_id: string;
  index: number;
  status: string;
  attempt: number;
  compensation_attempt: number;
  lease_owner: string;
}

/** Inside a transaction: whether this one is the reaper now (no other reaper's transaction is open). */
export async function tryReaperLock(db: Executor): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>("select pg_try_advisory_xact_lock($1) as ok", [
    REAPER_LOCK,
  ]);
  return rows[0]?.ok === true;
}

// And the workers primary key for the liveness check.
const ORPHANS_SQL = `
select s.saga_id, s.index, s.status, s.attempt, s.compensation_attempt, s.lease_owner
from saga.steps s
join saga.instances i on i.id = s.saga_id
where s.lease_owner is not null
  and i.name || '@' || i.version = any($2::text[])
  and not exists (select 1 from saga.workers w
                  where w.id = s.lease_owner and w.heartbeat_at >= now() - $1 * interval '1 millisecond')
limit 100`;

/** Up to 100 steps of the definitions `sagaKeys` (`name@version`) leased by no worker heard from in `deadAfterMs`. */
export async function readOrphanedLeases(
  db: Executor,
  deadAfterMs: number,
  sagaKeys: readonly string[],
): Promise<LeasedStep[]> {
  return (await db.query<LeasedStep>(ORPHANS_SQL, [deadAfterMs, sagaKeys])).rows;
}

/** Up to 100 steps leased by `workerId`. */
export async function readOwnLeases(db: Executor, workerId: string): Promise<LeasedStep[]> {
  const { rows } = await db.query<LeasedStep>(
    `select s.saga_id, s.index, s.status, s.attempt, s.compensation_attempt, s.lease_owner
     from saga.steps s where s.lease_owner = $1 limit 100`,
    [workerId],
  );
  return rows;
}
