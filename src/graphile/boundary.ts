/**
 * Everything pg-saga relies on in graphile-worker (0.17), in one module; its SQL side is sql/graphile.sql. Only
 * this module imports graphile-worker. Beyond the documented API (run, runMigrations, add_job,
 * force_unlock_workers) pg-saga relies on:
 *
 * - its private tables `_private_jobs` (id, task_id, payload, run_at, locked_by, locked_at, attempts,
 *   max_attempts, last_error) and `_private_tasks` (id, identifier): the job unlocks below, and in SQL the
 *   enqueue without a NOTIFY, the delete of the job a transition ends, and the saga.stuck view's job counts;
 * - its `jobs:insert` channel, whose `{"count": n}` makes a listening pool fetch jobs;
 * - 0.17's pools locking jobs under the pool's id (`locked_by`), which the `pool:create` event gives;
 * - its own stack frames, by which the worker's rejection guard knows graphile-worker's unawaited writes.
 *
 * test/graphile-boundary.test.ts fails, naming what changed, when an upgrade of graphile-worker changes any of
 * them.
 *
 * The schema is graphile-worker's default, passed explicitly so that a GRAPHILE_WORKER_SCHEMA environment
 * variable cannot move graphile-worker away from the SQL. It is not configurable: sql/graphile.sql names it in
 * plain SQL (no dynamic SQL on the transition path), so another schema would mean rewriting those functions
 * at migrate time.
 */
import { EventEmitter } from "node:events";
import {
  Logger,
  type Runner,
  type TaskList,
  type WorkerEvents,
  type WorkerPool,
  run,
  runMigrations,
} from "graphile-worker";
import type pg from "pg";
import type { Executor } from "../executor.js";

export type { Runner, TaskList };

/** graphile-worker's schema. */
export const GRAPHILE_SCHEMA = "graphile_worker";
/** {@link GRAPHILE_SCHEMA} as an SQL identifier: the one place it is escaped. */
export const GRAPHILE_SCHEMA_SQL = `"${GRAPHILE_SCHEMA.replace(/"/g, '""')}"`;

/** graphile-worker's channel for new jobs; its listening pools fetch `count` jobs. */
export const JOBS_CHANNEL = "jobs:insert";

/** The payload of a {@link JOBS_CHANNEL} wake-up for `count` new jobs. */
export const jobsInserted = (count: number): string => JSON.stringify({ count });

/** graphile-worker logs to the console by default; the library never does. */
export const quietWorkerLogger = new Logger(() => () => {});

/** Brings graphile-worker's schema up to date (after pg-saga's: sql/graphile.sql does not need it). */
export async function migrateJobQueue(pool: pg.Pool): Promise<void> {
  await runMigrations({ pgPool: pool, schema: GRAPHILE_SCHEMA, logger: quietWorkerLogger });
}

/** What {@link startJobRunner} needs. */
export interface JobRunnerOptions {
  pool: pg.Pool;
  preparedStatements: boolean;
  concurrency: number;
  pollInterval: number;
  taskList: TaskList;
  events: WorkerEvents;
}

/** A graphile-worker runner over `pool`, with no signal handlers and no console logging. */
export function startJobRunner(o: JobRunnerOptions): Promise<Runner> {
  return run({
    pgPool: o.pool,
    schema: GRAPHILE_SCHEMA,
    noPreparedStatements: !o.preparedStatements,
    concurrency: o.concurrency,
    noHandleSignals: true,
    pollInterval: o.pollInterval,
    taskList: o.taskList,
    logger: quietWorkerLogger,
    events: o.events,
    // A saga is one job however many steps it has, so graphile-worker's own commits (get_job, complete_job)
    // are a large share of each saga's: fetch up to `concurrency` jobs per get_job and complete the jobs
    // that finish in the same tick in one statement (docs/performance.md). A job completed late by a crash
    // only runs its saga again, which finds nothing to do; the reaper unlocks jobs held by the pool's id.
    preset: { worker: { localQueue: { size: o.concurrency }, completeJobBatchDelay: 0 } },
  });
}

/**
 * What a process's graphile-worker runners hold, from their events: the ids their jobs are locked under and
 * the jobs they have fetched. One tracker outlives the runners a worker starts one after another.
 */
export class JobTracker {
  readonly events = new EventEmitter() as WorkerEvents;
  /** The newest pool (the one to nudge). */
  current: WorkerPool | undefined;
  /** Every pool this process has run: 0.17 locks jobs under the pool's id (`locked_by`), not each worker's. */
  readonly poolIds: string[] = [];
  /** Pool and worker ids, for force_unlock_workers when this process is found dead. */
  readonly lockIds: string[] = [];
  /**
   * Jobs in a pool's local queue or running: a job locked by one of this process's pools and not among them
   * was left behind by a completion that could not be written.
   */
  readonly held = new Set<string>();
  readonly #onShutdown = new Set<(poolId: string) => void>();

  constructor() {
    const e = this.events;
    e.on("pool:create", ({ workerPool }) => {
      this.current = workerPool;
      this.lockIds.push(workerPool.id);
      this.poolIds.push(workerPool.id);
    });
    e.on("pool:gracefulShutdown", ({ workerPool }) => {
      for (const notify of this.#onShutdown) notify(workerPool.id);
    });
    e.on("worker:create", ({ worker }) => this.lockIds.push(worker.workerId));
    e.on("localQueue:getJobs:complete", ({ jobs }) => jobs.forEach((j) => this.held.add(j.id)));
    e.on("localQueue:returnJobs", ({ jobs }) => jobs.forEach((j) => this.held.delete(j.id)));
    e.on("job:start", ({ job }) => this.held.add(job.id));
    e.on("job:complete", ({ job }) => this.held.delete(job.id));
  }

  /** Calls `listener` with a pool's id when that pool begins to shut down. Returns the unsubscriber. */
  onPoolShutdown(listener: (poolId: string) => void): () => void {
    this.#onShutdown.add(listener);
    return () => this.#onShutdown.delete(listener);
  }

  /** Calls `listener` after each job a pool completed. */
  onJobComplete(listener: () => void): void {
    this.events.on("job:complete", listener);
  }

  /** Asks the newest pool to look for `count` jobs now. */
  nudge(count: number): void {
    this.current?.nudge(count);
  }
}

/** Unlocks the jobs of dead processes' pools and workers at once instead of after graphile-worker's 4 hours. */
export async function forceUnlockWorkers(db: Executor, lockIds: readonly string[]): Promise<void> {
  if (lockIds.length > 0)
    await db.query(`select ${GRAPHILE_SCHEMA_SQL}.force_unlock_workers($1::text[])`, [lockIds]);
}

// Served by graphile-worker's jobs primary key scan over the (few) locked jobs.
const OWN_STALE_JOBS_SQL = `
update ${GRAPHILE_SCHEMA_SQL}._private_jobs j set locked_by = null, locked_at = null
where j.locked_by = any($1::text[]) and not (j.id = any($2::bigint[]))
  and j.locked_at < now() - $3 * interval '1 millisecond'
returning j.id`;

/**
 * Unlocks the jobs locked by this process's pools (`poolIds`) for `staleMs` that it does not hold: their
 * completion or failure could not be written (Postgres went away at that moment). Returns how many.
 */
export async function unlockOwnStaleJobs(
  db: Executor,
  poolIds: readonly string[],
  heldJobIds: readonly string[],
  staleMs: number,
): Promise<number> {
  if (poolIds.length === 0) return 0;
  const { rowCount } = await db.query(OWN_STALE_JOBS_SQL, [poolIds, heldJobIds, staleMs]);
  return rowCount ?? 0;
}

// Saga jobs only (task `saga:…`, see saga._task): an application's own jobs in the same schema are not ours.
const UNOWNED_SAGA_JOBS_SQL = `
update ${GRAPHILE_SCHEMA_SQL}._private_jobs j set locked_by = null, locked_at = null
where j.locked_by is not null
  and j.locked_at < now() - $1 * interval '1 millisecond'
  and not exists (select 1 from saga.workers w where j.locked_by = any(w.job_worker_ids))
  and j.task_id in (select t.id from ${GRAPHILE_SCHEMA_SQL}._private_tasks t where t.identifier like 'saga:%')`;

/**
 * Unlocks saga jobs locked for `staleMs` by a pool no registered worker owns (a worker killed before its first
 * heartbeat recorded its pool id): nobody will finish them.
 */
export async function unlockUnownedSagaJobs(db: Executor, staleMs: number): Promise<void> {
  await db.query(UNOWNED_SAGA_JOBS_SQL, [staleMs]);
}

// graphile-worker's own frames (its package folder in a stack trace).
const GRAPHILE_FRAME = /[\\/]graphile-worker[\\/]/;

/**
 * Whether an error was thrown inside graphile-worker. 0.17 leaves some of its writes unawaited (failing a job;
 * returning a local queue's jobs when its pool shuts down); the worker's rejection guard (db.ts) logs those.
 */
export function isFromGraphileWorker(reason: unknown): boolean {
  return reason instanceof Error && GRAPHILE_FRAME.test(reason.stack ?? "");
}
