/**
 * A worker: its definitions and row registered, its claims ({@link ClaimRegistry}), a supervised
 * graphile-worker runner ({@link RunnerSupervisor}), its heartbeat and reaper ({@link startLiveness}), its
 * control listener and, when it is the active one, the outbox relay.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type pg from "pg";
import type { AnySaga } from "../definition.js";
import type { Connections } from "../connections.js";
import { guardConnectionRejections, lossAware } from "../db.js";
import { JobTracker, type TaskList } from "../graphile/boundary.js";
import type { Subscriber } from "../listen.js";
import type { Logger } from "../logger.js";
import { type HealthCheck, observeWorker } from "../observability/worker-observability.js";
import { type Relay, startRelay } from "../relay/relay.js";
import { MAX_TIMER_MS } from "../long-timer.js";
import { deleteWorker, insertWorker } from "../sql/workers.js";
import { AbortError, type SagaJobPayload } from "../model.js";
import { Slots } from "./slots.js";
import { ClaimRegistry } from "./claim-registry.js";
import { listenForControl } from "./control.js";
import { Background, startLiveness } from "./heartbeat.js";
import { registerDefinitions, sagaTask } from "./registration.js";
import { runSagaJob } from "./saga-job.js";
import type { WorkerEnv } from "./worker-env.js";
import { RunnerSupervisor } from "./supervisor.js";
import { WORKER_DEFAULTS, resolveWorkerOptions } from "./worker-options.js";

export { sagaTask };
export type { SagaWorker, WorkerOptions } from "./worker-options.js";
import type { SagaWorker, WorkerOptions } from "./worker-options.js";

/** @internal started through engine.runWorker(). */
export async function startWorker(
  pool: pg.Pool,
  connections: Connections,
  sagas: readonly AnySaga[],
  logger: Logger,
  options: WorkerOptions = {},
  health?: HealthCheck,
): Promise<Omit<SagaWorker, "ended">> {
  const o = resolveWorkerOptions(options);
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const byKey = new Map(sagas.map((s) => [s.key, s]));
  const row = { id, hostname: hostname(), pid: process.pid, sagas: [...byKey.keys()] };
  await registerDefinitions(pool, sagas);
  await insertWorker(pool, row);

  const claims = new ClaimRegistry();
  const slots = new Slots(o.concurrency);
  const stats = { discarded: 0, reaped: 0 };
  const observed = observeWorker(pool, sagas, stats, o.metrics, health);
  let stopping = false;
  const background = new Background(logger, () => stopping);
  const jobs = new JobTracker();
  const env: WorkerEnv = {
    pool,
    db: lossAware(pool),
    logger,
    workerId: id,
    get stopping() {
      return stopping;
    },
    abortGraceMs: o.abortGrace,
    codec: o.codec,
    leaseMs: (step) => (step.timeoutMs ?? WORKER_DEFAULTS.stepTimeout) + o.deadWorkerAfter,
    isActive: claims.isActive,
    track: claims.track,
    // A stopping worker claims no branches beside a job: they would only be handed over at once.
    spareSlots: () => (stopping ? 0 : slots.spare),
    extraSlot: slots.extra,
    wakeAfter(delays) {
      // Past a timer's range the job's run_at is found by graphile-worker's poll.
      for (const delay of delays)
        if (delay + 5 <= MAX_TIMER_MS) background.after(delay + 5, () => jobs.nudge(1));
    },
    onDiscarded() {
      stats.discarded++;
    },
    ...observed.hooks,
  };
  const taskList: TaskList = {};
  for (const def of sagas)
    taskList[sagaTask(def)] = async (payload, helpers) =>
      slots.job(
        () => runSagaJob(env, def, payload as SagaJobPayload, helpers.job.id),
        () => stopping,
      );

  const supervisor = new RunnerSupervisor({
    pool,
    connections,
    concurrency: o.concurrency,
    pollInterval: o.pollInterval,
    taskList,
    jobs,
    logger,
    stopping: () => stopping,
  });
  let subscriber: Subscriber | undefined;
  let relay: Relay | null = null;
  const releaseGuard = guardConnectionRejections(logger);
  try {
    await observed.listen();
    await supervisor.start();
    subscriber = await listenForControl(connections.listen, pool, id, claims.claims, logger);
    if (o.relay)
      relay = startRelay({
        connection: connections.query,
        listen: connections.listen,
        pool,
        logger,
        relay: o.relay,
        retention: o.retention,
      });
    // A finished job committed outbox rows: wake the active relay now rather than at its next poll.
    jobs.onJobComplete(() => relay?.hint());
  } catch (err) {
    releaseGuard();
    // Not awaited: a runner that did start may still hold its listen client.
    void supervisor.close();
    await observed.close();
    await deleteWorker(pool, id).catch(() => {});
    throw err;
  }

  startLiveness(background, {
    pool,
    row,
    sagas: byKey,
    claims,
    jobs,
    codec: o.codec,
    logger,
    heartbeatInterval: o.heartbeatInterval,
    deadWorkerAfter: o.deadWorkerAfter,
    reapInterval: o.reapInterval,
    onReaped: (steps) => (stats.reaped += steps),
  });

  return {
    id,
    stats,
    metrics: observed.handle,
    async stop({ timeoutMs = WORKER_DEFAULTS.stopTimeout } = {}) {
      if (stopping) return;
      stopping = true;
      const grace = setTimeout(
        () => claims.abortAll(new AbortError("WORKER_SHUTDOWN", "worker shutting down")),
        timeoutMs,
      );
      try {
        await supervisor.stop(() => claims.size > 0);
      } finally {
        clearTimeout(grace);
        background.clear();
        await relay?.stop();
        await subscriber?.close().catch(() => {});
        await observed.close();
        await deleteWorker(pool, id).catch(() => {});
        await supervisor.close();
        releaseGuard();
      }
    },
  };
}
