import pg from "pg";
import { type AnySaga, assertRunnable, sagaKey } from "./definition.js";
import { explainConnectError, resolveConnections } from "./connections.js";
import { SagaError, maskConnectionString } from "./errors.js";
import { type Executor, toExecutor } from "./executor.js";
import { type Logger, silentLogger } from "./logger.js";
import { redactingLogger, secretsOf } from "./secrets.js";
import { decodeRow, decodeStep, encodeInput } from "./codec/rows.js";
import { migrate } from "./migrate.js";
import { trackClients } from "./pool-end.js";
import { traceStart } from "./observability/tracing.js";
import { toInstance } from "./instance-view.js";
import { getSaga, listSagas } from "./sql/read-sagas.js";
import { type SagaState, TERMINAL_STATES, isUuid } from "./model.js";
import { sagaMetrics } from "./sql/saga-metrics.js";
import { checkHealth } from "./health.js";
import { startSaga } from "./sql/start-saga.js";
import { retryQueued } from "./sql/retry-requests.js";
import { assertChildrenRegistered } from "./worker/children.js";
import { Wakeups } from "./wakeups.js";
import { type EventBus, createEventBus } from "./relay/event-bus.js";
import { startBridges } from "./bridges/outbound.js";
import { createDashboard } from "./dashboard/index.js";
import { resolveEngineOptions, type EngineOptions } from "./options.js";
import { decodeCursor, encodeCursor, resolveListOptions } from "./list-options.js";
import { checkStart } from "./start-options.js";
import { operatorActions } from "./engine-operations.js";
import { runEngineWorker } from "./engine-worker.js";

export type { SagaState };
export type { SagaInstance, SagaStepView } from "./instance-view.js";

export type { SagaEngine, SagaPage } from "./engine-api.js";
import type { SagaEngine } from "./engine-api.js";

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
    byKey.set(saga.key, saga);
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
  const definitionOf = (name: string, version: number) => byKey.get(sagaKey(name, version));
  const operator = operatorActions({ pool, codec, alive, definitionOf });

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
      if (!isUuid(id)) return null;
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
        let saga = await engine.get(id);
        if (!saga) throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${id}`);
        // A retry queued from SQL (saga.retry) is not performed yet: the saga is not where it rests. Read
        // after the request, the saga shows a retry that was performed meanwhile.
        let queued = false;
        if (wanted(saga.state) && (saga.state === "failed" || saga.state === "compensation_failed")) {
          queued = await retryQueued(pool, id);
          if (!queued) saga = await engine.get(id);
          if (!saga) throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${id}`);
        }
        if (!queued && wanted(saga.state)) return saga;
        if (Date.now() >= until) {
          throw new SagaError(
            "WAIT_TIMEOUT",
            queued
              ? `saga ${id} is still ${saga.state} after ${timeoutMs} ms, its retry queued for a worker of ${sagaKey(saga.name, saga.version)}; is one running?`
              : `saga ${id} is still ${saga.state} after ${timeoutMs} ms; is a worker running? see saga.stuck`,
            {
              details: { state: saga.state },
            },
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(1, until - Date.now()))));
      }
    },

    cancel: operator.cancel,
    retry: operator.retry,

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
      const retention = options.retention;
      const deps = {
        pool,
        ownPool,
        connections,
        guard,
        sagas: config.sagas,
        codec,
        retention,
        logger,
        workers,
        engine,
      };
      return runEngineWorker(deps, workerOptions);
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
