/**
 * Runs this worker's graphile-worker runner and keeps one running. graphile-worker shuts its pool down when it
 * cannot write a batch of job completions (Postgres went away at that moment). A worker must never wedge: a
 * new runner starts as soon as the old pool begins to shut down, not once it has finished: its graceful
 * shutdown waits for every running job (one slow step would keep this worker from taking any job until it
 * returns), and in 0.17 it may never finish at all (see stop()). The old pool's running jobs finish in the
 * background (for that time more than `concurrency` jobs may run); jobs it leaves locked are unlocked by the
 * reaper (reapOwn).
 */
import pg from "pg";
import { type Connections, routeListen } from "../connections.js";
import { type JobTracker, type Runner, type TaskList, startJobRunner } from "../graphile/boundary.js";
import type { Logger } from "../logger.js";

export interface SupervisorOptions {
  pool: pg.Pool;
  connections: Connections;
  concurrency: number;
  pollInterval: number;
  taskList: TaskList;
  jobs: JobTracker;
  logger: Logger;
  /** True once the worker stops: no runner is replaced from then on. */
  stopping: () => boolean;
}

export class RunnerSupervisor {
  #runner: Runner | undefined;
  readonly #retired = new Set<Promise<void>>();
  readonly #listenPool: pg.Pool | null;
  readonly #jobPool: pg.Pool;

  constructor(private readonly o: SupervisorOptions) {
    // graphile-worker's LISTEN client comes from a direct connection when the pool goes through a pooler.
    this.#listenPool = o.connections.separateListen
      ? new pg.Pool({ ...o.connections.listen, max: 2, application_name: "pg-saga job listener" })
      : null;
    this.#listenPool?.on("error", (err) =>
      o.logger.warn("job listener connection failed", { error: String(err) }),
    );
    this.#jobPool = this.#listenPool ? routeListen(o.pool, this.#listenPool) : o.pool;
  }

  /** Starts the first runner; then supervises it. */
  async start(): Promise<void> {
    const runner = await this.#startRunner();
    this.#runner = runner;
    this.#supervise(runner, this.o.jobs.current?.id);
  }

  /** Stops the runner, then waits while retired runners still run steps of this worker (`running()`). */
  async stop(running: () => boolean): Promise<void> {
    // A runner that died on its own is already stopped. Retired ones finish their running jobs; graphile-worker
    // 0.17 may never settle a pool whose completion batch failed (its batcher's count of pending writes goes
    // below zero), so what is waited for is this worker's own running steps (aborted by the caller's grace).
    await this.#runner
      ?.stop()
      .catch((err: unknown) => this.o.logger.debug("runner stop", { error: String(err) }));
    while (this.#retired.size > 0 && running()) await new Promise((r) => setTimeout(r, 50));
  }

  /** Ends the listen connections; after stop(), or after a start() that failed. */
  async close(): Promise<void> {
    await this.#listenPool?.end().catch(() => {});
  }

  #startRunner(): Promise<Runner> {
    const { concurrency, pollInterval, taskList, jobs, connections } = this.o;
    return startJobRunner({
      pool: this.#jobPool,
      preparedStatements: connections.preparedStatements,
      concurrency,
      pollInterval,
      taskList,
      events: jobs.events,
    });
  }

  #supervise(current: Runner, poolId: string | undefined): void {
    const { logger, stopping } = this.o;
    let replaced = false;
    const replace = async (reason: unknown) => {
      if (replaced || stopping()) return;
      replaced = true;
      unsubscribe();
      const drained = current.promise.catch(() => {});
      this.#retired.add(drained);
      void drained.then(() => {
        this.#retired.delete(drained);
        logger.info("the old job runner finished", { poolId });
      });
      logger.warn("job runner stopped on its own; starting a new one", { reason: String(reason) });
      for (let delay = 250; !stopping(); delay = Math.min(delay * 2, 5_000)) {
        try {
          const next = await this.#startRunner();
          this.#runner = next;
          this.#supervise(next, this.o.jobs.current?.id);
          if (stopping()) await next.stop().catch(() => {});
          return;
        } catch (err) {
          logger.warn("job runner could not start; will try again", { error: String(err), retryInMs: delay });
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    };
    const unsubscribe = this.o.jobs.onPoolShutdown((closing) => {
      if (closing === poolId) void replace("its pool began to shut down");
    });
    current.promise.then(
      () => replace("the pool exited"),
      (err: unknown) => replace(err),
    );
  }
}
