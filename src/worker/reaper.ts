import { type PayloadCodec, plainCodec } from "../codec/codec.js";
import type pg from "pg";
import { type AnySaga, sagaKey } from "../definition.js";
import { isTransientDbError, sqlState, withTransaction } from "../db.js";
import type { Executor } from "../executor.js";
import { forceUnlockWorkers, unlockOwnStaleJobs, unlockUnownedSagaJobs } from "../graphile/boundary.js";
import { lockInstance } from "../sql/lock-instance.js";
import type { Claim, DecideEnv } from "../model.js";
import { type LeasedStep, readOrphanedLeases, readOwnLeases, tryReaperLock } from "../sql/step-leases.js";
import { deleteDeadWorkers } from "../sql/workers.js";
import { lostError, recordFailure } from "./decide.js";
import { releaseInterrupted } from "./interrupt.js";
import { Transition } from "./transition.js";

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
      if (!(await tryReaperLock(db))) return null;
      const dead = await deleteDeadWorkers(db, deadAfterMs);
      await forceUnlockWorkers(db, dead.jobLockIds);
      await unlockUnownedSagaJobs(db, deadAfterMs);
      const steps = await readOrphanedLeases(db, deadAfterMs, [...sagas.keys()]);
      return { steps, workers: dead.workers };
    },
    1,
  );
  if (!orphans) return { steps: 0, workers: 0 };

  const steps = await recoverEach(orphans.steps, (orphan) => recoverStep(pool, sagas, orphan, codec));
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
  const leases = await readOwnLeases(pool, self.workerId);
  const steps = await recoverEach(leases, (lease) => {
    const kind: Claim["kind"] = lease.status === "compensating" ? "compensate" : "execute";
    if (self.isActive(lease.saga_id, kind, lease.index)) return Promise.resolve(false);
    return recoverStep(pool, sagas, lease, self.codec ?? plainCodec, self);
  });
  const jobs = await unlockOwnStaleJobs(pool, self.jobPoolIds, self.activeJobIds(), staleJobMs);
  return { steps, jobs };
}

/**
 * Recovers each step; one that cannot be (a value its codec cannot read) does not hold back the others: its
 * error is thrown once the round is over. A database that went away ends the round at once.
 */
async function recoverEach(
  leases: readonly LeasedStep[],
  recover: (lease: LeasedStep) => Promise<boolean>,
): Promise<number> {
  let steps = 0;
  let failed: unknown;
  for (const lease of leases) {
    try {
      if (await recover(lease)) steps++;
    } catch (err) {
      if (isTransientDbError(err)) throw err;
      failed ??= err;
    }
  }
  if (failed !== undefined) throw failed;
  return steps;
}

/**
 * Writes one leased attempt off as lost and queues a job for its saga. Under a short lock timeout: a worker
 * paused inside a transactional step holds the instance lock, and must not stall the recovery of the rest.
 */
async function recoverStep(
  pool: pg.Pool,
  sagas: ReadonlyMap<string, AnySaga>,
  orphan: LeasedStep,
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
  orphan: LeasedStep,
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
