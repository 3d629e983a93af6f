import pg from "pg";
import { type AnySaga, assertRunnable } from "./definition.js";
import { explainConnectError, resolveConnections } from "./connections.js";
import { sqlState, withTransaction } from "./db.js";
import { SagaError, maskConnectionString } from "./errors.js";
import { type Executor, toExecutor } from "./executor.js";
import { type Logger, silentLogger } from "./logger.js";
import { redactingLogger, secretsOf } from "./secrets.js";
import { decodeRow, decodeStep, encodeInput } from "./codec/rows.js";
import { migrate } from "./migrate.js";
import { assertSchemaCurrent, watchSchema } from "./schema-check.js";
import { trackClients } from "./pool-end.js";
import { traceStart } from "./observability/tracing.js";
import { toInstance } from "./instance-view.js";
import { getSaga, listSagas } from "./sql/read-sagas.js";
import { type SagaState, TERMINAL_STATES } from "./model.js";
import { lockInstance } from "./sql/lock-instance.js";
import { sagaMetrics } from "./sql/saga-metrics.js";
import { checkHealth } from "./health.js";
import { startSaga } from "./sql/start-saga.js";
import { cancelBySql, mayWriteSagas, retryBySql } from "./sql/operator-calls.js";
import { interrupt } from "./worker/decide.js";
import { resume } from "./worker/resume.js";
import { startWorker } from "./worker/run-worker.js";
import { assertChildrenRegistered } from "./worker/children.js";
import { Wakeups } from "./wakeups.js";
import { type EventBus, createEventBus } from "./relay/event-bus.js";
import { type RunningBridges, startBridges } from "./bridges/outbound.js";
import { Transition } from "./worker/transition.js";
import { createDashboard } from "./dashboard/index.js";
import {
  checkStart,
  checkWorkerOptions,
  decodeCursor,
  encodeCursor,
  resolveEngineOptions,
  resolveListOptions,
  type EngineOptions,
  checkReason,
} from "./options.js";

export type { SagaState };
export type { SagaInstance, SagaStepView } from "./instance-view.js";

export type { SagaEngine, SagaPage } from "./engine-api.js";
import type { SagaEngine } from "./engine-api.js";

const CANCEL_LOCK_TIMEOUT = "set local lock_timeout = 1000";

/** The saga's row lock was not granted in time. */
class RowLocked extends Error {}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Creates an engine over a connection string or your own `pg.Pool`.
 *
 * @example
 * const engine = createSagaEngine({ connectionString: process.env.DATABASE_URL, sagas: [orderSaga] });
 * await engine.migrate();
 * const worker = await engine.runWorker({ concurrency: 10 });
 * const { id } = await engine.start(orderSaga, { customerId: "c1", amount: 42 }, { idempotencyKey: "order-1" });
 * const done = await engine.waitFor(id, { timeoutMs: 10_000 });
 */
export function createSagaEngine(options: EngineOptions): SagaEngine {
  const config = resolveEngineOptions(options);
  for (const saga of config.sagas) assertRunnable(saga);
  assertChildrenRegistered(config.sagas);
  const byKey = new Map<string, AnySaga>();
  const latest = new Map<string, AnySaga>();
  for (const saga of config.sagas) {
    byKey.set(`${saga.name}@${saga.version}`, saga);
    if ((latest.get(saga.name)?.version ?? 0) < saga.version) latest.set(saga.name, saga);
  }
  const ownPool = options.pool === undefined;
  // Every connection the engine opens starts from these settings (TLS included); LISTEN may go elsewhere.
  const connections = resolveConnections(
    ownPool
      ? {
          connectionString: config.connectionString,
          ...(config.ssl === undefined ? {} : { ssl: config.ssl }),
        }
      : ((options.pool as pg.Pool).options as pg.ClientConfig),
    config,
  );
  const pool = options.pool ?? new pg.Pool({ ...connections.query, max: config.poolSize });
  const logger: Logger = redactingLogger(
    options.logger ?? silentLogger,
    // The LISTEN connection's password too (docs/deployment.md).
    [
      ...secretsOf(config.connectionString, options.pool),
      ...secretsOf(config.listenConnectionString, undefined),
    ],
  );
  let closed = false;
  // After close() a connection that the server ends is expected (a stop, a DROP DATABASE … WITH (FORCE)).
  const onPoolError = (err: Error) => {
    const fields = { error: maskConnectionString(err.message) };
    if (closed) logger.debug("database connection failed", fields);
    else logger.warn("database connection failed", fields);
  };
  // A connection killed under a checked-out client must not crash the process: the query fails instead.
  const onConnect = (client: pg.PoolClient) => client.on("error", onPoolError);
  // Pools the engine opened keep these listeners for life and end only once their sockets are closed.
  const guard = (p: pg.Pool) => {
    p.on("error", onPoolError).on("connect", onConnect);
    return trackClients(p);
  };
  const ownClosing = ownPool ? guard(pool) : null;
  if (!ownPool) pool.on("error", onPoolError).on("connect", onConnect);
  // Running workers started by this engine, each by its idempotent stop.
  const workers = new Set<() => Promise<void>>();
  const codec = config.codec;
  const bus: EventBus = createEventBus(pool, logger, config.maxPayloadBytes, codec, connections.listen);
  const wakeups = new Wakeups(pool, logger);

  const alive = () => {
    if (closed) throw new SagaError("ENGINE_CLOSED", "this engine was closed; create a new one");
  };
  const definitionOf = (name: string, version: number) => byKey.get(`${name}@${version}`);
  // saga_app may not write the saga tables: its cancel and retry go through the SQL API (sql/operator.sql).
  let writer: Promise<boolean> | undefined;
  // Audit: an operator action without an explicit `by` is recorded as the session's database role.
  let sessionRole: Promise<string> | undefined;
  const sessionUser = () =>
    (sessionRole ??= pool
      .query<{ u: string }>("select session_user as u")
      .then((r) => r.rows[0]!.u)
      .catch((err: unknown) => ((sessionRole = undefined), Promise.reject(err))));
  const writes = () =>
    (writer ??= mayWriteSagas(pool).catch((err: unknown) => ((writer = undefined), Promise.reject(err))));

  async function operate<T>(
    id: string,
    fn: (t: Transition, def: AnySaga | undefined) => T,
    open?: string,
  ): Promise<T> {
    alive();
    if (typeof id !== "string" || !UUID.test(id))
      throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${JSON.stringify(id)} (not a uuid)`);
    return withTransaction(
      pool,
      async (db) => {
        const saga = await lockInstance(db, id).catch((err: unknown) => {
          throw sqlState(err) === "55P03" ? new RowLocked() : err;
        });
        if (!saga) throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${id}`);
        const t = new Transition(saga, codec);
        const result = fn(t, definitionOf(saga.name, saga.version));
        await t.flush(db);
        return result;
      },
      10,
      open,
    );
  }

  const engine: SagaEngine = {
    pool,
    async migrate() {
      alive();
      await migrate(pool).catch((err: unknown) => {
        throw explainConnectError(err);
      });
    },

    async start(saga, input, startOptions = {}) {
      alive();
      const named = saga as unknown;
      const def = typeof named === "string" ? latest.get(named) : definitionOf(saga?.name, saga?.version);
      if (!def) {
        const name = typeof named === "string" ? named : saga?.name;
        throw new SagaError(
          "UNKNOWN_SAGA",
          `saga ${JSON.stringify(name)} is not one of this engine's sagas; pass it in createSagaEngine({ sagas })`,
        );
      }
      const args = checkStart(def, input, startOptions, config.maxPayloadBytes);
      const own = startOptions.client === undefined;
      const db: Executor = own ? pool : toExecutor(startOptions.client);
      // The saga.start span's traceparent is stored: every step span of the saga becomes its child.
      const started = await traceStart(def.name, args.traceContext, (traceContext) =>
        startSaga(db, { ...args, input: encodeInput(codec, args.input), traceContext }),
      );
      if (started.created) {
        if (own) wakeups.committed();
        else wakeups.commitSoon();
      }
      return started;
    },

    async get(id) {
      alive();
      if (!UUID.test(id)) return null;
      const row = await getSaga(pool, id);
      return row
        ? toInstance(
            decodeRow(codec, row),
            row.steps.map((s) => decodeStep(codec, s)),
            definitionOf(row.name, row.version),
            row.children,
          )
        : null;
    },

    async list(listOptions = {}) {
      alive();
      const filter = resolveListOptions(listOptions, decodeCursor);
      const rows = await listSagas(pool, filter);
      const items = rows.map((r) => {
        const {
          steps: _steps,
          children: _children,
          ...rest
        } = toInstance(decodeRow(codec, r), [], undefined);
        return rest;
      });
      const last = rows[rows.length - 1];
      const nextCursor = last && rows.length === filter.limit ? encodeCursor(last) : null;
      return Object.assign(items, { nextCursor });
    },

    async waitFor(id, { timeoutMs = 30_000, states } = {}) {
      alive();
      const until = Date.now() + timeoutMs;
      const wanted = (s: SagaState) => (states ? states.includes(s) : TERMINAL_STATES.has(s));
      for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
        const saga = await engine.get(id);
        if (!saga) throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${id}`);
        if (wanted(saga.state)) return saga;
        if (Date.now() >= until) {
          throw new SagaError(
            "WAIT_TIMEOUT",
            `saga ${id} is still ${saga.state} after ${timeoutMs} ms; is a worker running? see saga.stuck`,
            {
              details: { state: saga.state },
            },
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(1, until - Date.now()))));
      }
    },

    async cancel(id, reason = "cancelled", who = {}) {
      alive();
      checkReason(reason);
      if (UUID.test(id) && !(await writes())) return cancelBySql(pool, id, reason);
      const by = who.by ?? (UUID.test(id) ? await sessionUser() : undefined);
      const cancel = (t: Transition, def: AnySaga | undefined) => {
        if (TERMINAL_STATES.has(t.saga.state)) {
          throw new SagaError("SAGA_TERMINAL", `saga ${id} already ended ${t.saga.state}; nothing to cancel`);
        }
        if (t.saga.state !== "running") return { state: t.saga.state };
        // Without the definition here, the worker that has it performs the cancel.
        if (!def) t.job({ id, cancel: reason, ...(by === undefined ? {} : { by }) });
        else interrupt(t, def, "cancel", reason, by);
        return { state: t.saga.state };
      };
      try {
        return await operate(id, cancel, CANCEL_LOCK_TIMEOUT);
      } catch (err) {
        if (!(err instanceof RowLocked)) throw err;
        // A transactional step holds the row while its handler runs: the request is read by its worker,
        // which aborts it (saga.cancel, sql/operator.sql).
        return cancelBySql(pool, id, reason);
      }
    },

    async retry(id, who = {}) {
      alive();
      if (who.by !== undefined) checkReason(who.by, "retry: by");
      if (who.reason !== undefined) checkReason(who.reason, "retry: reason");
      if (UUID.test(id) && !(await writes())) return retryBySql(pool, id, who.reason);
      const by = who.by ?? (UUID.test(id) ? await sessionUser() : undefined);
      return operate(id, (t) => {
        if (!resume(t, { ...who, ...(by === undefined ? {} : { by }) })) {
          throw new SagaError(
            "INVALID_STATE",
            `saga ${id} is ${t.saga.state}; only failed and compensation_failed sagas can be retried`,
          );
        }
        return { state: t.saga.state };
      });
    },

    async metrics({ name } = {}) {
      alive();
      return sagaMetrics(pool, name ?? null);
    },

    async health(healthOptions = {}) {
      alive();
      return checkHealth(pool, healthOptions);
    },

    subscribe(filter, handler, subscribeOptions) {
      alive();
      return bus.subscribe(filter, handler, subscribeOptions);
    },
    async publish(events, publishOptions) {
      alive();
      return bus.publish(events, publishOptions);
    },
    async deadLetters(subscription, listOptions) {
      alive();
      return bus.deadLetters(subscription, listOptions);
    },
    async redrive(target) {
      alive();
      return bus.redrive(target);
    },
    async subscriptionMetrics(name) {
      alive();
      return bus.subscriptionMetrics(name);
    },

    dashboard(dashboardOptions) {
      alive();
      return createDashboard(engine, dashboardOptions);
    },

    async runWorker(workerOptions = {}) {
      alive();
      checkWorkerOptions(workerOptions);
      const concurrency = workerOptions.concurrency ?? 10;
      // The worker gets its own pool, sized so every job slot has a connection for its transitions.
      const workerPool = ownPool
        ? new pg.Pool({ ...connections.query, max: workerOptions.poolSize ?? concurrency + 4 })
        : null;
      const workerClosing = workerPool ? guard(workerPool) : null;
      try {
        await assertSchemaCurrent(workerPool ?? pool);
        // /healthz next to /metrics answers with engine.health().
        const worker = await startWorker(
          workerPool ?? pool,
          connections,
          config.sagas,
          logger,
          { retention: options.retention, ...workerOptions, codec },
          () => engine.health(),
        );
        let stopped: Promise<void> | undefined;
        let bridges: RunningBridges | null = null;
        let endedWith: SagaError | null = null;
        let resolveEnded: (reason: SagaError | null) => void = () => {};
        const ended = new Promise<SagaError | null>((r) => (resolveEnded = r));
        // Idempotent: every caller (and close()) waits for the same shutdown.
        const stop = (stopOptions?: { timeoutMs?: number }) =>
          (stopped ??= (async () => {
            workers.delete(stop);
            unwatch();
            await bridges?.stop();
            await worker.stop(stopOptions);
            await workerClosing?.end();
            resolveEnded(endedWith);
          })());
        // A newer release migrated the database: its workers advance the sagas from now on.
        const unwatch = watchSchema(
          workerPool ?? pool,
          workerOptions.schemaCheckInterval ?? 10_000,
          (err) => {
            endedWith = err;
            logger.error(err.message, { code: err.code });
            void stop();
          },
        );
        workers.add(stop);
        try {
          if (workerOptions.bridges?.length)
            bridges = engine.startBridges(workerOptions.bridges, worker.metrics?.registry);
        } catch (err) {
          await stop();
          throw err;
        }
        return {
          id: worker.id,
          stats: worker.stats,
          metrics: worker.metrics,
          stop,
          ended,
        };
      } catch (err) {
        await workerClosing?.end();
        throw explainConnectError(err);
      }
    },

    startBridges(bridges, registry) {
      alive();
      return startBridges({ pool, logger, subscribe: bus.subscribe, registry }, bridges);
    },

    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...workers].map((stop) => stop()));
      await wakeups.close();
      await bus.close();
      if (ownClosing) await ownClosing.end();
      // A pool of the application's own stays in use: it gets its listeners back.
      else pool.off("error", onPoolError).off("connect", onConnect);
    },
  };
  return engine;
}
