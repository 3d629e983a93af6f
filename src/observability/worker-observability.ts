/**
 * What a worker adds for observability: the hooks its step loop calls, its metrics registry and the HTTP
 * endpoint that serves them. Creating it allocates nothing that needs closing; `listen()` opens the port.
 */
import type pg from "pg";
import type { Registry } from "prom-client";
import type { AnySaga } from "../definition.js";
import { maskConnectionString } from "../errors.js";
import type { Transition } from "../worker/transition.js";
import { type HealthReport, type MetricsServer, serveMetrics } from "./metrics-server.js";
import { type MetricsOptions, createWorkerMetrics } from "./prometheus.js";
import { type StepObserver, createStepObserver } from "./step-observer.js";

export type { HealthReport, MetricsOptions };

/**
 * `worker.metrics`: the registry this worker's metrics live in, and the URL it serves them at.
 *
 * @example
 * const worker = await engine.runWorker({ metrics: { port: 0 } });
 * const text = await fetch(`${worker.metrics!.url}/metrics`).then((r) => r.text());
 * collectDefaultMetrics({ register: worker.metrics!.registry }); // add Node.js process metrics
 */
export interface WorkerMetricsHandle {
  /** A prom-client `Registry`: merge it into your own with `Registry.merge([...])`, or read it in tests. */
  readonly registry: Registry;
  /** e.g. `http://127.0.0.1:9464` (`/metrics`, `/healthz`); `null` when `metrics.port` was not given. */
  readonly url: string | null;
}

/** What `/healthz` asks; a database ping when the engine gives nothing better. @internal */
export type HealthCheck = () => Promise<HealthReport>;

/** @internal */
export interface WorkerObservability {
  /** Spread into the step loop's environment. */
  readonly hooks: { observeStep: StepObserver; onTransition?: (t: Transition) => void };
  readonly handle: WorkerMetricsHandle | null;
  /** Opens the metrics port, if one was asked for; rejects when it is taken. */
  listen(): Promise<void>;
  close(): Promise<void>;
}

/** @internal */
export function observeWorker(
  pool: pg.Pool,
  sagas: readonly AnySaga[],
  stats: { readonly discarded: number; readonly reaped: number },
  options: MetricsOptions | undefined,
  health?: HealthCheck,
): WorkerObservability {
  if (!options)
    return { hooks: { observeStep: createStepObserver(pool) }, handle: null, listen, close: listen };
  const metrics = createWorkerMetrics(pool, sagas, stats, options.registry);
  let server: MetricsServer | null = null;
  return {
    hooks: {
      observeStep: createStepObserver(pool, metrics.onStepEnd),
      onTransition: metrics.onTransition,
    },
    handle: {
      registry: metrics.registry,
      get url() {
        return server?.url ?? null;
      },
    },
    async listen() {
      if (options.port === undefined || server) return;
      server = await serveMetrics({
        port: options.port,
        host: options.host,
        registry: metrics.registry,
        health: health ?? (() => ping(pool)),
      });
    },
    async close() {
      const s = server;
      server = null;
      await s?.close();
    },
  };
}

async function listen(): Promise<void> {}

async function ping(pool: pg.Pool): Promise<HealthReport & Record<string, unknown>> {
  const started = performance.now();
  try {
    await pool.query("select 1");
  } catch (err) {
    const error = maskConnectionString(err instanceof Error ? err.message : String(err));
    return { healthy: false, database: { reachable: false, error } };
  }
  return { healthy: true, database: { reachable: true, latencyMs: Math.round(performance.now() - started) } };
}
