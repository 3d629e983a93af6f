/**
 * Prometheus metrics of one worker, in a registry of its own (never prom-client's global one).
 *
 * Counters and histograms are in memory, fed by the events each committed transition wrote and by the
 * handler calls this worker made: no SQL on the hot path. Gauges that describe the whole database (active
 * sagas, dead letters, relay lag) are read with one query when the registry is scraped.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type pg from "pg";
import type { AnySaga } from "../definition.js";
import type { Transition } from "../worker/transition.js";
import type { StepInfo, StepOutcome } from "./step-observer.js";

/**
 * `runWorker({ metrics })`: serve on `port`, or only fill `registry` for your own endpoint.
 *
 * @example
 * await engine.runWorker({ metrics: { port: 9464 } }); // GET :9464/metrics, :9464/healthz
 * await engine.runWorker({ metrics: { registry: appRegistry } }); // served by your app's /metrics
 */
export interface MetricsOptions {
  /** Serves `/metrics` and `/healthz` on this port (0 picks a free one: see `worker.metrics.url`). */
  port?: number;
  /** Interface to listen on. Default: all interfaces. */
  host?: string;
  /** Registers into this registry instead of a new one (e.g. the one your app already serves). */
  registry?: Registry;
}

/** Seconds: from a fast local step to a slow remote call. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** Events after which the saga is in a terminal state. */
const TERMINAL_EVENTS = new Set([
  "saga.completed",
  "saga.failed",
  "saga.cancelled",
  "saga.timed_out",
  "compensation.completed",
  "compensation.failed",
]);

const GAUGE_STATES = ["running", "compensating", "compensation_failed"] as const;

// One round trip per scrape. Active sagas: instances_state_created_at_idx. Relay lag: one probe of
// outbox_xid_id_idx per subscription (the first event past its cursor). Dead letters are few by nature.
const SNAPSHOT_SQL = `
select 'sagas' as kind, name as label, state as state, count(*)::float8 as value
  from saga.instances where state in ('running', 'compensating', 'compensation_failed') group by name, state
union all
select 'dead_letters', subscription, null, count(*)::float8
  from saga.dead_letters where redriven_at is null group by subscription
union all
select 'lag', s.name, null, coalesce(extract(epoch from now() - (
    select o.created_at from saga.outbox o where (o.xid, o.id) > (s.cursor_xid, s.cursor_id)
    order by o.xid, o.id limit 1)), 0)::float8
  from saga.subscriptions s`;

interface SnapshotRow {
  kind: "sagas" | "dead_letters" | "lag";
  label: string;
  state: string | null;
  value: number;
}

/** The metrics of one worker. @internal */
export interface WorkerMetrics {
  readonly registry: Registry;
  /** After each applied transition of this worker (a transactional step's: just before its commit). */
  onTransition(t: Transition): void;
  /** After each handler call of this worker. */
  onStepEnd(info: StepInfo, outcome: StepOutcome, durationMs: number): void;
}

/**
 * Creates the worker's metrics. Metric names are the contract documented in docs/observability.md.
 * @internal
 */
export function createWorkerMetrics(
  pool: pg.Pool,
  sagas: readonly AnySaga[],
  stats: { readonly discarded: number; readonly reaped: number },
  registry: Registry = new Registry(),
): WorkerMetrics {
  const registers = [registry];
  const started = new Counter({
    name: "pg_saga_sagas_started_total",
    help: "Sagas this worker began running (its first transition after saga.started)",
    labelNames: ["saga"] as const,
    registers,
  });
  const finished = new Counter({
    name: "pg_saga_sagas_finished_total",
    help: "Sagas this worker brought to a terminal state, by state (completed, compensated, failed, cancelled, timed_out, compensation_failed)",
    labelNames: ["saga", "state"] as const,
    registers,
  });
  const events = new Counter({
    name: "pg_saga_events_total",
    help: "Outbox events written by this worker's transitions, by type",
    labelNames: ["saga", "type"] as const,
    registers,
  });
  const retries = new Counter({
    name: "pg_saga_step_retries_total",
    help: "Step attempts that failed and will be retried (saga.step.retrying)",
    labelNames: ["saga", "step"] as const,
    registers,
  });
  const stepFailures = new Counter({
    name: "pg_saga_step_failures_total",
    help: "Steps that failed for good (saga.step.failed)",
    labelNames: ["saga", "step"] as const,
    registers,
  });
  const compensationRetries = new Counter({
    name: "pg_saga_compensation_retries_total",
    help: "Compensation attempts that failed and will be retried",
    labelNames: ["saga", "step"] as const,
    registers,
  });
  const compensationFailures = new Counter({
    name: "pg_saga_compensation_failures_total",
    help: "Compensations that ran out of attempts (an operator must act)",
    labelNames: ["saga", "step"] as const,
    registers,
  });
  const stepDuration = new Histogram({
    name: "pg_saga_step_duration_seconds",
    help: "Duration of step execution attempts, by outcome (succeeded, failed, timeout, released)",
    labelNames: ["saga", "step", "outcome"] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const compensationDuration = new Histogram({
    name: "pg_saga_compensation_duration_seconds",
    help: "Duration of compensation attempts, by outcome",
    labelNames: ["saga", "step", "outcome"] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  new Counter({
    name: "pg_saga_discarded_results_total",
    help: "Late or duplicate step results this worker discarded (fencing)",
    registers,
    collect() {
      this.reset();
      this.inc(stats.discarded);
    },
  });
  new Counter({
    name: "pg_saga_reaped_steps_total",
    help: "Steps of dead workers this worker put back to work",
    registers,
    collect() {
      this.reset();
      this.inc(stats.reaped);
    },
  });

  // Database-wide gauges: the same in every worker; aggregate them with max(), not sum().
  const snapshot = databaseSnapshot(pool);
  const names = [...new Set(sagas.map((s) => s.name))];
  new Gauge({
    name: "pg_saga_database_up",
    help: "1 when the last scrape could read the database, else 0",
    registers,
    async collect() {
      this.set((await snapshot()) ? 1 : 0);
    },
  });
  new Gauge({
    name: "pg_saga_sagas",
    help: "Sagas not finished (running, compensating) or waiting for an operator (compensation_failed), by state",
    labelNames: ["saga", "state"] as const,
    registers,
    async collect() {
      const rows = await snapshot();
      if (!rows) return;
      this.reset();
      for (const saga of names) for (const state of GAUGE_STATES) this.set({ saga, state }, 0);
      for (const r of rows)
        if (r.kind === "sagas") this.set({ saga: r.label, state: r.state ?? "" }, r.value);
    },
  });
  new Gauge({
    name: "pg_saga_dead_letters",
    help: "Events a durable subscription gave up on and that were not redriven",
    labelNames: ["subscription"] as const,
    registers,
    async collect() {
      const rows = await snapshot();
      if (!rows) return;
      this.reset();
      for (const r of rows) if (r.kind === "dead_letters") this.set({ subscription: r.label }, r.value);
    },
  });
  new Gauge({
    name: "pg_saga_relay_lag_seconds",
    help: "Age of the oldest event a durable subscription has not consumed yet; 0 when caught up",
    labelNames: ["subscription"] as const,
    registers,
    async collect() {
      const rows = await snapshot();
      if (!rows) return;
      this.reset();
      for (const r of rows) if (r.kind === "lag") this.set({ subscription: r.label }, r.value);
    },
  });

  return {
    registry,
    onTransition(t) {
      const written = t.writtenEvents;
      if (written.length === 0) return;
      const saga = t.saga.name;
      // saga.started (seq 1) is written by start(); the first transition after it is where a worker begins.
      if (t.saga.seq - written.length === 1) started.inc({ saga });
      let terminal = false;
      for (const e of written) {
        events.inc({ saga, type: e.type });
        const step = e.step ?? "";
        switch (e.type) {
          case "saga.step.retrying":
            retries.inc({ saga, step });
            break;
          case "saga.step.failed":
            stepFailures.inc({ saga, step });
            break;
          case "compensation.step.failed":
            if ((e.payload as { willRetry?: boolean } | undefined)?.willRetry)
              compensationRetries.inc({ saga, step });
            else compensationFailures.inc({ saga, step });
            break;
          default:
            if (TERMINAL_EVENTS.has(e.type)) terminal = true;
        }
      }
      if (terminal) finished.inc({ saga, state: t.saga.state });
    },
    onStepEnd(info, outcome, durationMs) {
      const histogram = info.kind === "execute" ? stepDuration : compensationDuration;
      histogram.observe({ saga: info.sagaName, step: info.step, outcome }, durationMs / 1000);
    },
  };
}

/**
 * The gauges' query, shared by every gauge of one scrape (prom-client collects them concurrently).
 * `null` when the database could not be read: the in-memory metrics are still served.
 */
function databaseSnapshot(pool: pg.Pool): () => Promise<SnapshotRow[] | null> {
  let inflight: Promise<SnapshotRow[] | null> | null = null;
  return () =>
    (inflight ??= pool
      .query<SnapshotRow>(SNAPSHOT_SQL)
      .then(
        (r) => r.rows,
        () => null,
      )
      .finally(() => {
        inflight = null;
      }));
}
