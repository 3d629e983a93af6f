import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { type Runner, type TaskList, type WorkerEvents, type WorkerPool, run } from "graphile-worker";
import type pg from "pg";
import type { AnySaga, StepDefinition } from "../definition.js";
import { SagaError } from "../errors.js";
import { type Subscriber, createListener } from "../listen.js";
import type { Logger } from "../logger.js";
import { quietWorkerLogger } from "../migrate.js";
import {
  type HealthCheck,
  type MetricsOptions,
  type WorkerMetricsHandle,
  observeWorker,
} from "../observability/worker-observability.js";
import { resolveRelay, resolveRetention } from "../relay/options.js";
import { type Relay, startRelay } from "../relay/relay.js";
import type { RelayOptions, RetentionOptions } from "../relay/types.js";
import { AbortError } from "./call-handler.js";
import type { Claim } from "./decide.js";
import { reap } from "./reaper.js";
import { type SagaJobPayload, type WorkerEnv, runSagaJob } from "./saga-job.js";

export interface WorkerOptions {
  /** Jobs run at once by this process. Default 10. */
  concurrency?: number;
  /** How often graphile-worker looks for jobs scheduled for later, in ms. Default 1000. */
  pollInterval?: number;
  /** Heartbeat period in ms. Default 2000. */
  heartbeatInterval?: number;
  /** A worker silent this long is dead: its steps are retried elsewhere. Default 15000. */
  deadWorkerAfter?: number;
  /** How often this worker looks for dead workers, in ms. Default 5000. */
  reapInterval?: number;
  /**
   * Prometheus metrics in a registry of this worker's own; with `port`, served at `/metrics` (and `/healthz`).
   * Off by default: then counting costs nothing.
   *
   * @example
   * const worker = await engine.runWorker({ metrics: { port: 9464 } }); // curl localhost:9464/metrics
   */
  metrics?: MetricsOptions;
  /** The outbox relay this worker runs (one worker per database is active). `false`: none here. */
  relay?: RelayOptions | false;
  /** Retention, run by the active relay; overrides the engine's `retention`. */
  retention?: RetentionOptions | undefined;
}

/** A running worker process's handle. */
export interface SagaWorker {
  readonly id: string;
  /** Counters since start: results discarded by the fence, steps recovered from dead workers. */
  readonly stats: { discarded: number; reaped: number };
  /** The worker's Prometheus registry and endpoint; `null` unless started with `metrics`. */
  readonly metrics: WorkerMetricsHandle | null;
  /**
   * Stops taking work, waits up to `timeoutMs` (default 10 s) for running steps, then aborts their signals
   * and releases them, so another worker retries them at once.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>;
}

export const sagaTask = (def: AnySaga) => `saga:${def.name}@${def.version}`;

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
  connection: pg.ClientConfig,
  sagas: readonly AnySaga[],
  logger: Logger,
  options: WorkerOptions = {},
  health?: HealthCheck,
): Promise<SagaWorker> {
  const concurrency = options.concurrency ?? 10;
  const heartbeatMs = options.heartbeatInterval ?? 2_000;
  const deadAfterMs = options.deadWorkerAfter ?? 15_000;
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const byKey = new Map(sagas.map((s) => [`${s.name}@${s.version}`, s]));
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
  const activeKey = (sagaId: string, kind: Claim["kind"], index: number) => `${sagaId}/${kind}/${index}`;

  const env: WorkerEnv = {
    pool,
    logger,
    workerId: id,
    get stopping() {
      return stopping;
    },
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
  });
  events.on("worker:create", ({ worker }) => {
    jobWorkerIds.push(worker.workerId);
  });
  const taskList: TaskList = {};
  for (const def of sagas) {
    taskList[sagaTask(def)] = async (payload) => runSagaJob(env, def, payload as SagaJobPayload);
  }

  let runner: Runner;
  let subscriber: Subscriber | undefined;
  let relay: Relay | null = null;
  try {
    await observed.listen();
    runner = await run({
      pgPool: pool,
      concurrency,
      noHandleSignals: true,
      pollInterval: options.pollInterval ?? 1_000,
      taskList,
      logger: quietWorkerLogger,
      events,
    });
    subscriber = await listenForControl(connection, active, logger);
    if (relayOptions) relay = startRelay({ connection, pool, logger, relay: relayOptions, retention });
    // A finished job committed outbox rows: wake the active relay now rather than at its next poll.
    events.on("job:complete", () => relay?.hint());
  } catch (err) {
    await observed.close();
    await pool.query("delete from saga.workers where id = $1", [id]).catch(() => {});
    throw err;
  }

  const every = (ms: number, task: () => Promise<void>) => {
    let running = false;
    const timer = setInterval(() => {
      if (running || stopping) return;
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
  every(heartbeatMs, async () => {
    // A worker presumed dead (paused past the threshold) comes back with a new row: its old leases are gone.
    await pool.query(
      `insert into saga.workers (id, hostname, pid, sagas, job_worker_ids) values ($1, $2, $3, $4, $5)
       on conflict (id) do update set heartbeat_at = now(), job_worker_ids = excluded.job_worker_ids`,
      [id, hostname(), process.pid, JSON.stringify([...byKey.keys()]), jobWorkerIds],
    );
  });
  every(options.reapInterval ?? 5_000, async () => {
    const result = await reap(pool, byKey, deadAfterMs);
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
        await runner.stop();
      } finally {
        clearTimeout(grace);
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        await relay?.stop();
        await subscriber?.close().catch(() => {});
        await observed.close();
        await pool.query("delete from saga.workers where id = $1", [id]).catch(() => {});
      }
    },
  };
}

/** Cancel and deadline transitions NOTIFY `saga_control`; the worker running that saga's step aborts it. */
async function listenForControl(
  connection: pg.ClientConfig,
  active: Map<AbortController, string>,
  logger: Logger,
): Promise<Subscriber> {
  const subscriber = createListener(connection, (err) =>
    logger.warn("control listener error", { error: String(err) }),
  );
  subscriber.notifications.on("saga_control", (message: { id?: string; abort?: string; step?: number }) => {
    if (!message?.id) return;
    const code = message.abort === "timeout" ? "SAGA_TIMEOUT" : "SAGA_CANCELLED";
    for (const [controller, key] of active) {
      if (key.startsWith(`${message.id}/execute/`))
        controller.abort(
          new AbortError(code, `the saga was ${message.abort === "timeout" ? "timed out" : "cancelled"}`),
        );
    }
  });
  await subscriber.connect();
  await subscriber.listenTo("saga_control");
  return subscriber;
}
