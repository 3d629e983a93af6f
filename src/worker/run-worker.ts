import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { type Runner, type TaskList, type WorkerEvents, type WorkerPool, run } from "graphile-worker";
import pg from "pg";
import type { AnySaga, StepDefinition } from "../definition.js";
import { type Connections, routeListen } from "../connections.js";
import { guardConnectionRejections, lossAware } from "../db.js";
import { SagaError } from "../errors.js";
import type { Subscriber } from "../listen.js";
import type { Logger } from "../logger.js";
import { quietWorkerLogger } from "../migrate.js";
import { type HealthCheck, observeWorker } from "../observability/worker-observability.js";
import { resolveRelay, resolveRetention } from "../relay/options.js";
import { type Relay, startRelay } from "../relay/relay.js";
import { MAX_TIMER_MS } from "../long-timer.js";
import { plainCodec } from "../codec/codec.js";
import { AbortError, type Claim, type SagaJobPayload } from "../model.js";
import { abortInterrupted, listenForControl, runningSagas } from "./control.js";
import { reap, reapOwn } from "./reaper.js";
import { runSagaJob } from "./saga-job.js";
import type { WorkerEnv } from "./worker-env.js";

export type { SagaWorker, WorkerOptions } from "./worker-options.js";
import type { SagaWorker, WorkerOptions } from "./worker-options.js";

export const sagaTask = (def: AnySaga) => `saga:${def.key}`;

/** Records each definition; refuses one whose steps changed under the same version number. */
async function registerDefinitions(pool: pg.Pool, sagas: readonly AnySaga[]): Promise<void> {
  for (const def of sagas) {
    const steps = def.steps.map((s) => ({
      name: s.name,
      transactional: s.transactional,
      compensates: s.compensate !== undefined,
    }));
    const { rows } = await pool.query<{ fingerprint: string }>(
      `insert into saga.definitions as d (name, version, fingerprint, steps, timeout_ms) values ($1, $2, $3, $4, $5)
       on conflict (name, version) do update set registered_at = now() where d.fingerprint = excluded.fingerprint
       returning d.fingerprint`,
      [def.name, def.version, def.fingerprint, JSON.stringify(steps), def.timeoutMs ?? null],
    );
    if (rows.length === 0) {
      throw new SagaError(
        "DEFINITION_MISMATCH",
        `saga "${def.name}" version ${def.version} is registered with other steps; bump its version (running instances keep the old one)`,
      );
    }
  }
}

/** @internal started through engine.runWorker(). */
export async function startWorker(
  pool: pg.Pool,
  connections: Connections,
  sagas: readonly AnySaga[],
  logger: Logger,
  options: WorkerOptions = {},
  health?: HealthCheck,
): Promise<Omit<SagaWorker, "ended">> {
  const concurrency = options.concurrency ?? 10;
  const heartbeatMs = options.heartbeatInterval ?? 2_000;
  const deadAfterMs = options.deadWorkerAfter ?? 15_000;
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const byKey = new Map(sagas.map((s) => [s.key, s]));
  const relayOptions = options.relay === false ? null : resolveRelay(options.relay);
  const retention = resolveRetention(options.retention);
  await registerDefinitions(pool, sagas);
  await pool.query("insert into saga.workers (id, hostname, pid, sagas) values ($1, $2, $3, $4)", [
    id,
    hostname(),
    process.pid,
    JSON.stringify([...byKey.keys()]),
  ]);

  // Every claim this process holds, by its controller: two decisions racing for the same step may both be
  // registered for a moment, and the loser's release must not unregister the winner.
  const active = new Map<AbortController, string>();
  const timers = new Set<NodeJS.Timeout>();
  const stats = { discarded: 0, reaped: 0 };
  const observed = observeWorker(pool, sagas, stats, options.metrics, health);
  let stopping = false;
  let workerPool: WorkerPool | undefined;
  const jobWorkerIds: string[] = [];
  // Every graphile-worker pool this process has run: jobs are locked under a pool's id.
  const poolIds: string[] = [];
  const activeKey = (sagaId: string, kind: Claim["kind"], index: number) => `${sagaId}/${kind}/${index}`;

  const env: WorkerEnv = {
    pool,
    db: lossAware(pool),
    logger,
    workerId: id,
    get stopping() {
      return stopping;
    },
    abortGraceMs: options.abortGrace ?? 5_000,
    codec: options.codec ?? plainCodec,
    leaseMs: (step: StepDefinition) => (step.timeoutMs ?? 300_000) + deadAfterMs,
    isActive: (sagaId, kind, index) => {
      const key = activeKey(sagaId, kind, index);
      for (const held of active.values()) if (held === key) return true;
      return false;
    },
    track(sagaId, kind, index, controller) {
      const key = activeKey(sagaId, kind, index);
      active.set(controller, key);
      return () => {
        active.delete(controller);
      };
    },
    wakeAfter(delays) {
      for (const delay of delays) {
        // Past a timer's range the job's run_at is found by graphile-worker's poll.
        if (delay + 5 > MAX_TIMER_MS) continue;
        const timer = setTimeout(() => {
          timers.delete(timer);
          workerPool?.nudge(1);
        }, delay + 5);
        timers.add(timer);
      }
    },
    onDiscarded() {
      stats.discarded++;
    },
    ...observed.hooks,
  };

  const events = new EventEmitter() as WorkerEvents;
  events.on("pool:create", ({ workerPool: created }) => {
    workerPool = created;
    // graphile-worker 0.17 locks jobs under the pool's id (locked_by), not each worker's.
    jobWorkerIds.push(created.id);
    poolIds.push(created.id);
  });
  // A pool that shuts down while the worker is not stopping does so on its own (a batch of job completions
  // could not be written): it takes no more jobs, so a new one starts at once (see supervise below).
  const onPoolShutdown = new Set<(poolId: string) => void>();
  events.on("pool:gracefulShutdown", ({ workerPool: closing }) => {
    if (!stopping) for (const notify of onPoolShutdown) notify(closing.id);
  });
  events.on("worker:create", ({ worker }) => {
    jobWorkerIds.push(worker.workerId);
  });
  // Jobs this process holds (in graphile-worker's local queue or running): a job locked by this pool and not
  // among them was left behind by a completion that could not be written.
  const heldJobs = new Set<string>();
  events.on("localQueue:getJobs:complete", ({ jobs }) => jobs.forEach((j) => heldJobs.add(j.id)));
  events.on("localQueue:returnJobs", ({ jobs }) => jobs.forEach((j) => heldJobs.delete(j.id)));
  events.on("job:start", ({ job }) => heldJobs.add(job.id));
  events.on("job:complete", ({ job }) => heldJobs.delete(job.id));
  const taskList: TaskList = {};
  for (const def of sagas) {
    taskList[sagaTask(def)] = async (payload, helpers) =>
      runSagaJob(env, def, payload as SagaJobPayload, helpers.job.id);
  }

  // graphile-worker's LISTEN client comes from a direct connection when the pool goes through a pooler.
  const listenPool = connections.separateListen
    ? new pg.Pool({ ...connections.listen, max: 2, application_name: "pg-saga job listener" })
    : null;
  listenPool?.on("error", (err) => logger.warn("job listener connection failed", { error: String(err) }));
  const jobPool = listenPool ? routeListen(pool, listenPool) : pool;
  let runner: Runner;
  let subscriber: Subscriber | undefined;
  let relay: Relay | null = null;
  const releaseGuard = guardConnectionRejections(logger);
  const startRunner = () =>
    run({
      pgPool: jobPool,
      noPreparedStatements: !connections.preparedStatements,
      concurrency,
      noHandleSignals: true,
      pollInterval: options.pollInterval ?? 1_000,
      taskList,
      logger: quietWorkerLogger,
      events,
      // A saga is one job however many steps it has, so graphile-worker's own commits (get_job, complete_job)
      // are a large share of each saga's: fetch up to `concurrency` jobs per get_job and complete the jobs
      // that finish in the same tick in one statement (docs/performance.md). A job completed late by a crash
      // only runs its saga again, which finds nothing to do; the reaper unlocks jobs held by the pool's id.
      preset: { worker: { localQueue: { size: concurrency }, completeJobBatchDelay: 0 } },
    });
  try {
    await observed.listen();
    runner = await startRunner();
    subscriber = await listenForControl(connections.listen, pool, id, active, logger);
    if (relayOptions)
      relay = startRelay({
        connection: connections.query,
        listen: connections.listen,
        pool,
        logger,
        relay: relayOptions,
        retention,
      });
    // A finished job committed outbox rows: wake the active relay now rather than at its next poll.
    events.on("job:complete", () => relay?.hint());
  } catch (err) {
    releaseGuard();
    // Not awaited: a runner that did start may still hold its listen client.
    void listenPool?.end().catch(() => {});
    await observed.close();
    await pool.query("delete from saga.workers where id = $1", [id]).catch(() => {});
    throw err;
  }

  // graphile-worker shuts its pool down when it cannot write a batch of job completions (Postgres went away at
  // that moment). A worker must never wedge: a new pool starts as soon as the old one begins to shut down, not
  // once it has finished: its graceful shutdown waits for every running job (one slow step would keep this
  // worker from taking any job until it returns), and in 0.17 it may never finish at all (see stop()). The old
  // pool's running jobs finish in the background (for that time more than `concurrency` jobs may run); jobs it
  // leaves locked are unlocked by reapOwn.
  const retired = new Set<Promise<void>>();
  const supervise = (current: Runner, poolId: string | undefined) => {
    let replaced = false;
    const replace = async (reason: unknown) => {
      if (replaced || stopping) return;
      replaced = true;
      onPoolShutdown.delete(onShutdown);
      const drained = current.promise.catch(() => {});
      retired.add(drained);
      void drained.then(() => {
        retired.delete(drained);
        logger.info("the old job runner finished", { poolId });
      });
      logger.warn("job runner stopped on its own; starting a new one", { reason: String(reason) });
      for (let delay = 250; !stopping; delay = Math.min(delay * 2, 5_000)) {
        try {
          const next = await startRunner();
          runner = next;
          supervise(next, workerPool?.id);
          if (stopping) await next.stop().catch(() => {});
          return;
        } catch (err) {
          logger.warn("job runner could not start; will try again", { error: String(err), retryInMs: delay });
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    };
    const onShutdown = (closing: string) => {
      if (closing === poolId) void replace("its pool began to shut down");
    };
    onPoolShutdown.add(onShutdown);
    current.promise.then(
      () => replace("the pool exited"),
      (err: unknown) => replace(err),
    );
  };
  supervise(runner, workerPool?.id);

  // While stopping, a worker keeps its heartbeat (its running steps are still its own) but reaps no more.
  const every = (ms: number, task: () => Promise<void>, whileStopping = false) => {
    let running = false;
    const timer = setInterval(() => {
      if (running || (stopping && !whileStopping)) return;
      running = true;
      task()
        .catch((err: unknown) =>
          logger.warn("background task failed; will try again", { error: String(err) }),
        )
        .finally(() => {
          running = false;
        });
    }, ms);
    timers.add(timer);
  };
  // After an outage (or a pause of this process) every heartbeat is stale: reap dead workers only once the
  // others have had two heartbeats' time to show they are alive.
  let troubleAt = performance.now();
  let lastBeat = performance.now();
  every(
    heartbeatMs,
    async () => {
      // A worker presumed dead (paused past the threshold) comes back with a new row: its old leases are gone.
      await pool
        .query(
          `insert into saga.workers (id, hostname, pid, sagas, job_worker_ids) values ($1, $2, $3, $4, $5)
       on conflict (id) do update set heartbeat_at = now(), job_worker_ids = excluded.job_worker_ids`,
          [id, hostname(), process.pid, JSON.stringify([...byKey.keys()]), jobWorkerIds],
        )
        .then(
          () => {
            if (performance.now() - lastBeat > 2 * heartbeatMs) troubleAt = performance.now();
            lastBeat = performance.now();
          },
          (err: unknown) => {
            troubleAt = performance.now();
            throw err;
          },
        );
    },
    true,
  );
  // A missed saga_control notification delays a cancel's abort by one heartbeat at most (see control.ts).
  every(heartbeatMs, () => abortInterrupted(pool, id, active, runningSagas(active)), true);
  every(options.reapInterval ?? 5_000, async () => {
    const own = await reapOwn(pool, byKey, {
      workerId: id,
      isActive: env.isActive,
      jobPoolIds: poolIds,
      activeJobIds: () => [...heldJobs],
      codec: env.codec,
    });
    if (own.steps > 0 || own.jobs > 0)
      logger.info("recovered work this worker lost to a database error", own);
    if (performance.now() - troubleAt < 2 * heartbeatMs) return;
    const result = await reap(pool, byKey, deadAfterMs, env.codec);
    stats.reaped += result.steps;
    if (result.steps > 0 || result.workers > 0) logger.info("recovered work of dead workers", result);
  });

  return {
    id,
    stats,
    metrics: observed.handle,
    async stop({ timeoutMs = 10_000 } = {}) {
      if (stopping) return;
      stopping = true;
      const grace = setTimeout(() => {
        for (const controller of active.keys())
          controller.abort(new AbortError("WORKER_SHUTDOWN", "worker shutting down"));
      }, timeoutMs);
      try {
        // A runner that died on its own is already stopped. Retired ones finish their running jobs; graphile-worker
        // 0.17 may never settle a pool whose completion batch failed (its batcher's count of pending writes goes
        // below zero), so what is waited for is this worker's own running steps (aborted at `timeoutMs`).
        await runner.stop().catch((err: unknown) => logger.debug("runner stop", { error: String(err) }));
        while (retired.size > 0 && active.size > 0) await new Promise((r) => setTimeout(r, 50));
      } finally {
        clearTimeout(grace);
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        await relay?.stop();
        await subscriber?.close().catch(() => {});
        await observed.close();
        await pool.query("delete from saga.workers where id = $1", [id]).catch(() => {});
        await listenPool?.end().catch(() => {});
        releaseGuard();
      }
    },
  };
}
