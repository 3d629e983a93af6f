import { type PayloadCodec, plainCodec } from "../codec/codec.js";
import type pg from "pg";
import { type AnySaga, sagaKey } from "../definition.js";
import { sqlState, withTransaction } from "../db.js";
import type { Executor } from "../executor.js";
import { lockInstance } from "../sql/lock-instance.js";
import type { Claim, DecideEnv } from "../model.js";
import { lostError, recordFailure, releaseInterrupted } from "./decide.js";
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

// Served by steps_lease_owner_idx. Leases this worker holds on steps it is not running.
const OWN_LEASES_SQL = `
select s.saga_id, s.index, s.status, s.attempt, s.compensation_attempt, s.lease_owner
from saga.steps s
where s.lease_owner = $1
limit 100`;

// A job of this worker's graphile-worker pool still locked although no local worker runs it: its completion
// or failure could not be written (Postgres went away at that moment). Without this it stays locked 4 hours.
// Served by graphile-worker's jobs primary key scan over the (few) locked jobs.
const OWN_STALE_JOBS_SQL = `
update graphile_worker._private_jobs j set locked_by = null, locked_at = null
where j.locked_by = any($1::text[]) and not (j.id = any($2::bigint[]))
  and j.locked_at < now() - $3 * interval '1 millisecond'
returning j.id`;

// Saga jobs locked by a graphile-worker pool no registered worker owns (a worker killed before its first
// heartbeat recorded its pool id), and for longer than the dead-worker threshold: nobody will finish them.
// Saga jobs only: an application's own graphile-worker jobs in the same schema are not ours to touch.
const UNOWNED_JOBS_SQL = `
update graphile_worker._private_jobs j set locked_by = null, locked_at = null
where j.locked_by is not null
  and j.locked_at < now() - $1 * interval '1 millisecond'
  and not exists (select 1 from saga.workers w where j.locked_by = any(w.job_worker_ids))
  and j.task_id in (select t.id from graphile_worker._private_tasks t where t.identifier like 'saga:%')`;

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
  codec: PayloadCodec = plainCodec,
): Promise<{ steps: number; workers: number }> {
  // Few retries: the reaper runs again at its next interval, and a stalled round would hold up the next.
  const orphans = await withTransaction(
    pool,
    async (db) => {
      const { rows } = await db.query<{ ok: boolean }>("select pg_try_advisory_xact_lock($1) as ok", [
        REAPER_LOCK,
      ]);
      if (!rows[0]?.ok) return null;
      const dead = await db.query<{ id: string; job_worker_ids: string[] }>(DEAD_WORKERS_SQL, [deadAfterMs]);
      const jobWorkerIds = dead.rows.flatMap((r) => r.job_worker_ids);
      if (jobWorkerIds.length > 0)
        await db.query("select graphile_worker.force_unlock_workers($1::text[])", [jobWorkerIds]);
      await db.query(UNOWNED_JOBS_SQL, [deadAfterMs]);
      const found = await db.query<Orphan>(ORPHANS_SQL, [deadAfterMs, [...sagas.keys()]]);
      return { steps: found.rows, workers: dead.rowCount ?? 0 };
    },
    1,
  );
  if (!orphans) return { steps: 0, workers: 0 };

  let steps = 0;
  for (const orphan of orphans.steps) if (await recoverStep(pool, sagas, orphan, codec)) steps++;
  return { steps, workers: orphans.workers };
}

/** What {@link reapOwn} needs to know about the worker that runs it. */
export interface ReaperSelf {
  workerId: string;
  /** Whether this process runs the step right now. */
  isActive: (sagaId: string, kind: Claim["kind"], index: number) => boolean;
  /** The graphile-worker pool ids jobs of this worker are locked under. */
  jobPoolIds: readonly string[];
  /** Ids of the jobs this worker's graphile-worker runs right now. */
  activeJobIds: () => string[];
  codec?: PayloadCodec;
}

/**
 * Recovers what this live worker lost track of after a database error: leases it holds on steps it is not
 * running (the record transaction failed after its retries), and its own jobs left locked because their
 * completion could not be written. Both would otherwise wait for graphile-worker's 4-hour lock expiry.
 *
 * @example
 * await reapOwn(pool, sagasByKey, { workerId, isActive, jobPoolIds: [poolId], activeJobIds: () => [] });
 */
export async function reapOwn(
  pool: pg.Pool,
  sagas: ReadonlyMap<string, AnySaga>,
  self: ReaperSelf,
  staleJobMs = 5_000,
): Promise<{ steps: number; jobs: number }> {
  const { rows } = await pool.query<Orphan>(OWN_LEASES_SQL, [self.workerId]);
  let steps = 0;
  for (const lease of rows) {
    const kind: Claim["kind"] = lease.status === "compensating" ? "compensate" : "execute";
    if (self.isActive(lease.saga_id, kind, lease.index)) continue;
    if (await recoverStep(pool, sagas, lease, self.codec ?? plainCodec, self)) steps++;
  }
  let jobs = 0;
  if (self.jobPoolIds.length > 0) {
    const unlocked = await pool.query(OWN_STALE_JOBS_SQL, [
      [...self.jobPoolIds],
      self.activeJobIds(),
      staleJobMs,
    ]);
    jobs = unlocked.rowCount ?? 0;
  }
  return { steps, jobs };
}

/**
 * Writes one leased attempt off as lost and queues a job for its saga. Under a short lock timeout: a worker
 * paused inside a transactional step holds the instance lock, and must not stall the recovery of the rest.
 */
async function recoverStep(
  pool: pg.Pool,
  sagas: ReadonlyMap<string, AnySaga>,
  orphan: Orphan,
  codec: PayloadCodec,
  self?: ReaperSelf,
): Promise<boolean> {
  try {
    return await withTransaction(
      pool,
      async (db) => {
        await db.query("set local lock_timeout = 2000");
        return recoverLocked(db, sagas, orphan, codec, self);
      },
      0,
    );
  } catch (err) {
    if (sqlState(err) === "55P03") return false; // locked by a live transaction: next round
    throw err;
  }
}

async function recoverLocked(
  db: pg.PoolClient & Executor,
  sagas: ReadonlyMap<string, AnySaga>,
  orphan: Orphan,
  codec: PayloadCodec,
  self?: ReaperSelf,
): Promise<boolean> {
  const saga = await lockInstance(db, orphan.saga_id);
  const def = saga && sagas.get(sagaKey(saga.name, saga.version));
  if (!saga || !def) return false;
  const t = new Transition(saga, codec);
  const row = t.step(orphan.index);
  const step = def.steps[orphan.index];
  if (!row || !step || row.lease_owner !== orphan.lease_owner) return false;
  const kind: Claim["kind"] = row.status === "compensating" ? "compensate" : "execute";
  // Checked again under the lock: a claim of ours is tracked before its commit.
  if (self?.isActive(saga.id, kind, row.index)) return false;
  // A failed step still leased: an attempt interrupted by a cancel or a deadline whose worker is gone (or lost
  // track of it). Its compensation waited for that attempt to end; it has.
  if (row.status === "failed") releaseInterrupted(t, row);
  else {
    const attempt = kind === "execute" ? row.attempt : row.compensation_attempt;
    const env: DecideEnv = { workerId: orphan.lease_owner, leaseMs: () => 0, isActive: () => false };
    if (!recordFailure(t, def, env, { kind, index: row.index, attempt, step }, lostError(), "lost"))
      return false;
  }
  t.job(
    kind === "compensate" && def.compensation.concurrent ? { id: saga.id, step: row.index } : { id: saga.id },
  );
  await t.flush(db);
  return true;
}
