/**
 * `engine.runWorker()`: the worker's own pool, the schema check before it starts and while it runs, the
 * bridges it carries, and one idempotent stop that the engine's close() waits for.
 */
import pg from "pg";
import type { RunningBridges } from "./bridges/outbound.js";
import type { PayloadCodec } from "./codec/codec.js";
import { type Connections, explainConnectError } from "./connections.js";
import type { AnySaga } from "./definition.js";
import type { SagaEngine } from "./engine-api.js";
import type { SagaError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { RetentionOptions } from "./relay/types.js";
import { assertSchemaCurrent, watchSchema } from "./schema-check.js";
import { startWorker } from "./worker/run-worker.js";
import { type SagaWorker, type WorkerOptions, resolveWorkerOptions } from "./worker/worker-options.js";

export interface EngineWorkerDeps {
  /** The engine's pool; with `ownPool`, the worker gets a pool of its own from `connections`. */
  pool: pg.Pool;
  ownPool: boolean;
  connections: Connections;
  /** Adds the engine's error listeners to a pool it opened; `end()` closes it once its sockets are closed. */
  guard: (pool: pg.Pool) => { end(): Promise<void> };
  sagas: readonly AnySaga[];
  codec: PayloadCodec;
  retention: RetentionOptions | undefined;
  logger: Logger;
  /** Running workers, each by its stop: close() stops them all. */
  workers: Set<() => Promise<void>>;
  engine: Pick<SagaEngine, "health" | "startBridges">;
}

export async function runEngineWorker(
  { pool, ownPool, connections, guard, sagas, codec, retention, logger, workers, engine }: EngineWorkerDeps,
  workerOptions: WorkerOptions,
): Promise<SagaWorker> {
  const resolved = resolveWorkerOptions(workerOptions);
  // The worker gets its own pool, sized so every job slot has a connection for its transitions.
  const workerPool = ownPool ? new pg.Pool({ ...connections.query, max: resolved.poolSize }) : null;
  const workerClosing = workerPool ? guard(workerPool) : null;
  try {
    await assertSchemaCurrent(workerPool ?? pool);
    // /healthz next to /metrics answers with engine.health().
    const worker = await startWorker(
      workerPool ?? pool,
      connections,
      sagas,
      logger,
      { retention, ...workerOptions, codec },
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
    const unwatch = watchSchema(workerPool ?? pool, resolved.schemaCheckInterval, (err) => {
      endedWith = err;
      logger.error(err.message, { code: err.code });
      void stop();
    });
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
}
