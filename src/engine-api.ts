/** The engine's public interface (implemented by createSagaEngine in engine.ts). */
import type { AnySaga } from "./definition.js";
import type { SagaInstance } from "./instance-view.js";
import type { SagaState } from "./model.js";
import type { SagaMetrics } from "./sql/saga-metrics.js";
import type { HealthOptions, HealthReport } from "./health.js";
import type { ResumeOptions } from "./worker/resume.js";
import type { SagaWorker, WorkerOptions } from "./worker/worker-options.js";
import type { Registry } from "prom-client";
import type * as relay from "./relay/types.js";
import type { DashboardHandler, DashboardOptions } from "./dashboard/index.js";
import type { ListOptions } from "./list-options.js";
import type { StartOptions } from "./start-options.js";
import type pg from "pg";
import type { Bridge } from "./bridges/bridge.js";
import type { RunningBridges } from "./bridges/outbound.js";

/** A page of `engine.list()`: an array, plus the cursor of the next page (null on the last). */
export type SagaPage = Omit<SagaInstance, "steps" | "children">[] & { nextCursor: string | null };

/** The engine: start, read, operate, and run workers. Create one per process with {@link createSagaEngine}. */
export interface SagaEngine {
  /** Installs or upgrades schema `saga` and graphile-worker's schema. Idempotent; safe to run concurrently. */
  migrate(): Promise<void>;
  /** Starts a saga; with `client`, inside the caller's open transaction (rolled back with it). */
  start<S extends AnySaga>(
    saga: S,
    input: S["$start"],
    options?: StartOptions,
  ): Promise<{ id: string; created: boolean }>;
  get(id: string): Promise<SagaInstance | null>;
  list(options?: ListOptions): Promise<SagaPage>;
  /** Resolves when the saga reaches a terminal state (or one of `states`); `WAIT_TIMEOUT` after `timeoutMs`. */
  waitFor(id: string, options?: { timeoutMs?: number; states?: SagaState[] }): Promise<SagaInstance>;
  /** A running saga stops and compensates, ending `cancelled`. A second cancel is a no-op. */
  /** `who.by` is recorded in the saga.cancelled event (default: the session's database role). */
  cancel(id: string, reason?: string, who?: { by?: string }): Promise<{ state: SagaState }>;
  /**
   * `failed` → resumes forward; `compensation_failed` → resumes compensation. `queued: true` when the engine's
   * role may not write sagas: the retry went through saga.retry() and a worker performs it (waitFor waits).
   */
  retry(id: string, options?: ResumeOptions): Promise<{ state: SagaState; queued?: boolean }>;
  metrics(options?: { name?: string }): Promise<SagaMetrics>;
  /** Delivers events to `handler`: durable (at least once, with `durable: name`) or LISTEN-only (at most once). */
  subscribe(
    filter: relay.EventFilter,
    handler: relay.EventHandler,
    options?: relay.SubscribeOptions,
  ): relay.Subscription;
  /** Writes application events into the outbox; with `client`, inside the caller's open transaction. */
  publish(
    events: relay.AppEvent | readonly relay.AppEvent[],
    options?: { client?: unknown },
  ): Promise<{ ids: number[] }>;
  /** A durable subscription's dead letters, oldest first (without `includeDelivered`: those not redelivered). */
  deadLetters(
    subscription: string,
    options?: { includeDelivered?: boolean; limit?: number },
  ): Promise<relay.DeadLetter[]>;
  /** Queues dead letters for redelivery by their subscription's consumer: one by id, or all of a subscription. */
  redrive(target: number | { subscription: string }): Promise<{ redriven: number }>;
  /** A durable subscription's counters in this process and its lag; null for an unknown name. */
  subscriptionMetrics(name: string): Promise<relay.SubscriptionMetrics | null>;
  /** Database, migrations, live workers and the versions they serve, relay lag, dead letters. Never throws. */
  health(options?: HealthOptions): Promise<HealthReport>;
  /** The web dashboard as a Node `(req, res)` handler, to serve or mount under a path of your own server. */
  dashboard(options?: DashboardOptions): DashboardHandler;
  /** Runs a worker in this process for the engine's sagas. */
  runWorker(options?: WorkerOptions): Promise<SagaWorker>;
  /** Stops this engine's workers and closes the pools it opened. */
  close(): Promise<void>;
  /** @internal */
  readonly pool: pg.Pool;
  /** @internal `runWorker({ bridges })` and `pg-saga bridge`. */
  startBridges(bridges: readonly Bridge[], registry?: Registry | null): RunningBridges;
}

/** How long cancel() waits for the saga's row lock before it leaves a request instead. */
