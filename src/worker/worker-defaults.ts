/**
 * Every default of the worker options (WorkerOptions in worker-options.ts), written here only; a module of
 * its own so that health checks and the CLI read them without importing the worker. `deadWorkerAfter` is also
 * the default of `checkHealth({ staleAfterMs })` and `pg-saga health --stale-after`. SQL cannot import it:
 * `saga._stale_after()` (sql/operator.sql) repeats it, and test/worker-options.test.ts pins the two equal.
 */
export const WORKER_DEFAULTS = Object.freeze({
  concurrency: 10,
  /** Added to `concurrency` for the worker's own pool: heartbeats, the reaper and graphile-worker's queries. */
  poolHeadroom: 4,
  pollInterval: 1_000,
  heartbeatInterval: 2_000,
  deadWorkerAfter: 15_000,
  reapInterval: 5_000,
  abortGrace: 5_000,
  schemaCheckInterval: 10_000,
  /** `stop()`'s wait for running steps before it aborts them. */
  stopTimeout: 10_000,
  /** A step without `timeoutMs`: how long its lease lasts (plus `deadWorkerAfter`). */
  stepTimeout: 300_000,
});
