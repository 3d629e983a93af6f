import type pg from "pg";
import type { AnySaga } from "../definition.js";
import { withTransaction } from "../db.js";
import { lockInstance } from "../sql/lock-instance.js";
import { type Claim, type DecideEnv, lostError, recordFailure } from "./decide.js";
import { Transition } from "./transition.js";

/** Any reaper in any process: one at a time, by a transaction-scoped advisory lock (never a session lock). */
const REAPER_LOCK = 727_274_002;

// Served by steps_lease_owner_idx (only leased steps) and the workers primary key.
const ORPHANS_SQL = `
select s.saga_id, s.index, s.status, s.attempt, s.compensation_attempt, s.lease_owner
from saga.steps s
join saga.instances i on i.id = s.saga_id
where s.lease_owner is not null
  and i.name || '@' || i.version = any($2::text[])
  and not exists (select 1 from saga.workers w
                  where w.id = s.lease_owner and w.heartbeat_at >= now() - $1 * interval '1 millisecond')
limit 100`;

const DEAD_WORKERS_SQL = `
delete from saga.workers
where heartbeat_at < now() - $1 * interval '1 millisecond'
returning id, job_worker_ids`;

interface Orphan {
  saga_id: string;
  index: number;
  status: string;
  attempt: number;
  compensation_attempt: number;
  lease_owner: string;
}

/**
 * Recovers the work of workers whose heartbeat went silent: each leased step's attempt is written off as
 * lost (a retry while attempts remain; the late result of the old attempt is fenced out), a job is queued
 * for the saga, and the dead worker's graphile-worker jobs are unlocked at once instead of after 4 hours.
 */
export async function reap(
  pool: pg.Pool,
  sagas: ReadonlyMap<string, AnySaga>,
  deadAfterMs: number,
): Promise<{ steps: number; workers: number }> {
  const orphans = await withTransaction(pool, async (db) => {
    const { rows } = await db.query<{ ok: boolean }>("select pg_try_advisory_xact_lock($1) as ok", [
      REAPER_LOCK,
    ]);
    if (!rows[0]?.ok) return null;
    const dead = await db.query<{ id: string; job_worker_ids: string[] }>(DEAD_WORKERS_SQL, [deadAfterMs]);
    const jobWorkerIds = dead.rows.flatMap((r) => r.job_worker_ids);
    if (jobWorkerIds.length > 0)
      await db.query("select graphile_worker.force_unlock_workers($1::text[])", [jobWorkerIds]);
    const found = await db.query<Orphan>(ORPHANS_SQL, [deadAfterMs, [...sagas.keys()]]);
    return { steps: found.rows, workers: dead.rowCount ?? 0 };
  });
  if (!orphans) return { steps: 0, workers: 0 };

  let steps = 0;
  for (const orphan of orphans.steps) {
    const recovered = await withTransaction(pool, async (db) => {
      const saga = await lockInstance(db, orphan.saga_id);
      const def = saga && sagas.get(`${saga.name}@${saga.version}`);
      if (!saga || !def) return false;
      const t = new Transition(saga);
      const row = t.step(orphan.index);
      const step = def.steps[orphan.index];
      if (!row || !step || row.lease_owner !== orphan.lease_owner) return false;
      const kind: Claim["kind"] = row.status === "running" ? "execute" : "compensate";
      const attempt = kind === "execute" ? row.attempt : row.compensation_attempt;
      const env: DecideEnv = { workerId: orphan.lease_owner, leaseMs: () => 0, isActive: () => false };
      if (!recordFailure(t, def, env, { kind, index: row.index, attempt, step }, lostError(), "lost"))
        return false;
      t.job(
        kind === "compensate" && def.compensation.concurrent
          ? { id: saga.id, step: row.index }
          : { id: saga.id },
      );
      await t.flush(db);
      return true;
    });
    if (recovered) steps++;
  }
  return { steps, workers: orphans.workers };
}
