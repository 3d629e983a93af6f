/** What `engine.runWorker()` takes and returns, and its defaults (the worker itself is run-worker.ts). */
import type { MetricsOptions, WorkerMetricsHandle } from "../observability/worker-observability.js";
import type { RelayOptions, RetentionOptions } from "../relay/types.js";
import {
  type ResolvedRelay,
  type ResolvedRetention,
  resolveRelay,
  resolveRetention,
} from "../relay/options.js";
import type { Bridge } from "../bridges/bridge.js";
import { type PayloadCodec, plainCodec } from "../codec/codec.js";
import type { SagaError } from "../errors.js";
import { checkWorkerOptions } from "../options.js";
import { WORKER_DEFAULTS } from "./worker-defaults.js";

export { WORKER_DEFAULTS };

export interface WorkerOptions {
  /** Jobs run at once by this process. Default 10. */
  concurrency?: number;
  /**
   * Connections of the worker's pool (its steps, transitions, heartbeats and graphile-worker's queries), at
   * most. Default `concurrency + 4`; fewer makes job slots wait for a connection.
   */
  poolSize?: number;
  /** How often graphile-worker looks for jobs scheduled for later, in ms. Default 1000. */
  pollInterval?: number;
  /** Heartbeat period in ms. Default 2000. */
  heartbeatInterval?: number;
  /** A worker silent this long is dead: its steps are retried elsewhere. Default 15000. */
  deadWorkerAfter?: number;
  /** How often this worker looks for dead workers, in ms. Default 5000. */
  reapInterval?: number;
  /**
   * How long a step handler aborted by a cancel or the saga deadline may take to return, in ms: its step's
   * compensation waits for it (a handler that honours `ctx.signal` returns at once). Default 5000.
   */
  abortGrace?: number;
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
  /**
   * How often the worker looks whether a newer pg-saga migrated the database, in ms; it then stops taking work
   * (`ended` resolves with a SCHEMA_NEWER error). Default 10000.
   */
  schemaCheckInterval?: number;
  /**
   * Bridges from the outbox to brokers, each a durable subscription (one active per name across workers).
   *
   * @example
   * await engine.runWorker({ bridges: [natsBridge({ servers: "nats://127.0.0.1:4222" })] });
   */
  bridges?: readonly Bridge[];
  /** @internal the engine's codec. */
  codec?: PayloadCodec;
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
  /**
   * Resolves once the worker has stopped: with `null` after `stop()`, with a SCHEMA_NEWER {@link SagaError}
   * when it stopped on its own because a newer release migrated the database.
   */
  readonly ended: Promise<SagaError | null>;
}

/** {@link WorkerOptions} checked and with every default filled in. */
export interface ResolvedWorkerOptions {
  readonly concurrency: number;
  readonly poolSize: number;
  readonly pollInterval: number;
  readonly heartbeatInterval: number;
  readonly deadWorkerAfter: number;
  readonly reapInterval: number;
  readonly abortGrace: number;
  readonly schemaCheckInterval: number;
  /** `null`: this worker runs no relay. */
  readonly relay: ResolvedRelay | null;
  readonly retention: ResolvedRetention;
  readonly metrics: MetricsOptions | undefined;
  readonly bridges: readonly Bridge[];
  readonly codec: PayloadCodec;
}

/**
 * Checks worker options (a SagaError INVALID_OPTIONS before anything starts) and fills in the defaults.
 *
 * @example
 * resolveWorkerOptions({ concurrency: 4 }).poolSize; // 8
 */
export function resolveWorkerOptions(options: WorkerOptions = {}): ResolvedWorkerOptions {
  checkWorkerOptions(options);
  const d = WORKER_DEFAULTS;
  const concurrency = options.concurrency ?? d.concurrency;
  return Object.freeze({
    concurrency,
    poolSize: options.poolSize ?? concurrency + d.poolHeadroom,
    pollInterval: options.pollInterval ?? d.pollInterval,
    heartbeatInterval: options.heartbeatInterval ?? d.heartbeatInterval,
    deadWorkerAfter: options.deadWorkerAfter ?? d.deadWorkerAfter,
    reapInterval: options.reapInterval ?? d.reapInterval,
    abortGrace: options.abortGrace ?? d.abortGrace,
    schemaCheckInterval: options.schemaCheckInterval ?? d.schemaCheckInterval,
    relay: options.relay === false ? null : resolveRelay(options.relay),
    retention: resolveRetention(options.retention),
    metrics: options.metrics,
    bridges: options.bridges ?? [],
    codec: options.codec ?? plainCodec,
  });
}
