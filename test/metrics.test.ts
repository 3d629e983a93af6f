/**
 * Prometheus metrics: real sagas run by an in-process worker, scraped over real HTTP, asserted by value.
 */
import { Registry } from "prom-client";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  RetryableError,
  createSagaEngine,
  defineSaga,
  retry,
  type SagaEngine,
  type SagaWorker,
} from "../src/index.js";
import { serveMetrics } from "../src/observability/metrics-server.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
let engine: SagaEngine;
let worker: SagaWorker;
let order: ReturnType<typeof orderSaga>;

/** Fails its first `failures` attempts with a retryable error. */
const flaky = defineSaga({
  name: "flaky-call",
  input: z.object({ failures: z.number().int() }),
  retry: retry.fixed({ maxAttempts: 5, delay: "10ms" }),
}).step("call-api", {
  execute: async (data, ctx) => {
    if (ctx.attempt <= data.failures) throw new RetryableError(new Error("503 from the api"));
    return data;
  },
});

/**
 * A saga whose deadline passes while its only step waits. On a loaded machine the deadline may pass before the
 * step was even claimed: `renderCalls` says which case the test got.
 */
let renderCalls = 0;
const slow = defineSaga({ name: "slow-report", input: z.object({ ms: z.number() }), timeout: "300ms" }).step(
  "render",
  {
    execute: async (data, ctx) => {
      renderCalls++;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, data.ms);
        ctx.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve(undefined);
        });
      });
      return data;
    },
    compensate: async () => {},
  },
);

/** `{ "name{labels}": value }` of a Prometheus text exposition. */
function parse(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

const series = (name: string, labels: Record<string, string> = {}) => {
  const inner = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(",");
  return inner ? `${name}{${inner}}` : name;
};

async function scrape(url = worker.metrics!.url!): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return parse(await res.text());
}

beforeAll(async () => {
  await db.pool.query(CALLS_TABLE);
  order = orderSaga(db.pool);
  engine = createSagaEngine({ connectionString: db.url, sagas: [order, flaky, slow] });
  worker = await engine.runWorker({
    concurrency: 4,
    pollInterval: 50,
    metrics: { port: 0, host: "127.0.0.1" },
  });
});

afterAll(async () => {
  await worker?.stop();
  await engine?.close();
});

describe("prometheus metrics over HTTP", () => {
  it("serves /metrics from the worker's own registry, with the database reachable", async () => {
    expect(worker.metrics?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(worker.metrics?.registry).toBeInstanceOf(Registry);
    const m = await scrape();
    expect(m.get("pg_saga_database_up")).toBe(1);
    expect(m.get(series("pg_saga_sagas", { saga: "order-processing", state: "running" }))).toBe(0);
    expect(m.get("pg_saga_discarded_results_total")).toBe(0);
  });

  it("counts started and finished sagas by state, retries, failures and durations", async () => {
    const ids = await Promise.all([
      engine.start(order, { customerId: "c1", amount: 10 }),
      engine.start(order, { customerId: "c2", amount: 20 }),
      engine.start(order, { customerId: "c3", amount: 30, failAt: "process-payment" }),
      engine.start(order, { customerId: "c4", amount: 40, failAt: "create-order" }),
      engine.start(flaky, { failures: 2 }),
      engine.start(slow, { ms: 5_000 }),
    ]);
    const states = await Promise.all(ids.map(({ id }) => engine.waitFor(id, { timeoutMs: 20_000 })));
    expect(states.map((s) => s.state)).toEqual([
      "completed",
      "completed",
      "compensated",
      "failed",
      "completed",
      "timed_out",
    ]);
    const cancelled = await engine.start(order, { customerId: "c5", amount: 50, delayMs: 5_000 });
    await engine.waitFor(cancelled.id, { states: ["running"], timeoutMs: 5_000 });
    await waitForCall(cancelled.id);
    await engine.cancel(cancelled.id, "customer changed their mind");
    expect((await engine.waitFor(cancelled.id, { timeoutMs: 20_000 })).state).toBe("cancelled");

    const m = await scrape();
    const o = { saga: "order-processing" };
    expect(m.get(series("pg_saga_sagas_started_total", o))).toBe(5);
    expect(m.get(series("pg_saga_sagas_started_total", { saga: "flaky-call" }))).toBe(1);
    expect(m.get(series("pg_saga_sagas_started_total", { saga: "slow-report" }))).toBe(1);
    const finished = (saga: string, state: string) =>
      m.get(series("pg_saga_sagas_finished_total", { saga, state }));
    expect(finished("order-processing", "completed")).toBe(2);
    expect(finished("order-processing", "compensated")).toBe(1);
    expect(finished("order-processing", "failed")).toBe(1);
    expect(finished("order-processing", "cancelled")).toBe(1);
    expect(finished("flaky-call", "completed")).toBe(1);
    expect(finished("slow-report", "timed_out")).toBe(1);

    expect(m.get(series("pg_saga_step_retries_total", { saga: "flaky-call", step: "call-api" }))).toBe(2);
    expect(m.get(series("pg_saga_step_failures_total", { ...o, step: "process-payment" }))).toBe(1);
    // The cancel's own transition (step failed, compensation started) ran in the engine, not in a worker.
    expect(m.get(series("pg_saga_step_failures_total", { ...o, step: "create-order" }))).toBe(1);
    expect(m.get(series("pg_saga_events_total", { ...o, type: "saga.completed" }))).toBe(2);
    expect(m.get(series("pg_saga_events_total", { ...o, type: "compensation.started" }))).toBe(1);
    expect(m.get(series("pg_saga_events_total", { ...o, type: "saga.cancelled" }))).toBe(1);

    // Every handler call is observed once, by outcome: 4 + 4 + 3 + 1 + 1 executions of the order saga.
    const steps = (step: string, outcome: string, name = "pg_saga_step_duration_seconds_count") =>
      m.get(series(name, { ...o, step, outcome }));
    expect(steps("create-order", "succeeded")).toBe(3);
    expect(steps("create-order", "failed")).toBe(1);
    expect(steps("process-payment", "failed")).toBe(1);
    expect(steps("confirm-order", "succeeded")).toBe(2);
    expect(steps("create-order", "cancelled")).toBe(1);
    expect(
      m.get(
        series("pg_saga_step_duration_seconds_count", {
          saga: "slow-report",
          step: "render",
          outcome: "deadline",
        }),
      ) ?? 0,
    ).toBe(renderCalls);
    // The late results of the attempts the cancel and the deadline interrupted were fenced out.
    expect(m.get("pg_saga_discarded_results_total")).toBe(worker.stats.discarded);
    expect(worker.stats.discarded).toBeGreaterThanOrEqual(1 + renderCalls);
    expect(
      m.get(
        series("pg_saga_step_duration_seconds_count", {
          saga: "flaky-call",
          step: "call-api",
          outcome: "failed",
        }),
      ),
    ).toBe(2);
    // c3 compensated create-order and reserve-inventory; the cancelled saga compensated create-order.
    const comp = (step: string) => steps(step, "succeeded", "pg_saga_compensation_duration_seconds_count");
    expect(comp("create-order")).toBe(2);
    expect(comp("reserve-inventory")).toBe(1);
    expect(comp("process-payment")).toBeUndefined();
    expect(
      m.get(
        series("pg_saga_compensation_duration_seconds_count", {
          saga: "slow-report",
          step: "render",
          outcome: "succeeded",
        }),
      ) ?? 0,
    ).toBe(renderCalls);
    const sum = m.get(
      series("pg_saga_step_duration_seconds_sum", { ...o, step: "create-order", outcome: "succeeded" }),
    );
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10);
  });

  it("reports active sagas from the database on scrape", async () => {
    const { id } = await engine.start(order, { customerId: "c6", amount: 60, delayMs: 600 });
    await waitForCall(id);
    const during = await scrape();
    expect(during.get(series("pg_saga_sagas", { saga: "order-processing", state: "running" }))).toBe(1);
    await engine.waitFor(id, { timeoutMs: 20_000 });
    const after = await scrape();
    expect(after.get(series("pg_saga_sagas", { saga: "order-processing", state: "running" }))).toBe(0);
    expect(
      after.get(series("pg_saga_sagas", { saga: "order-processing", state: "compensation_failed" })),
    ).toBe(0);
  });

  it("reports dead letters and relay lag per durable subscription", async () => {
    await db.pool.query("insert into saga.subscriptions (name) values ('billing'), ('audit')");
    // audit has consumed everything; billing nothing yet.
    await db.pool.query("update saga.subscriptions set tick = pg_current_snapshot() where name = 'audit'");
    await db.pool.query(
      `insert into saga.dead_letters (subscription, event_id, event, error, attempts)
       select 'billing', id, '{}', '{"code":"X"}', 5 from saga.outbox order by id limit 3`,
    );
    await db.pool.query(
      "update saga.dead_letters set redriven_at = now() where id = (select min(id) from saga.dead_letters)",
    );
    const m = await scrape();
    expect(m.get(series("pg_saga_dead_letters", { subscription: "billing" }))).toBe(2);
    const { rows: age } = await db.pool.query<{ s: number }>(
      "select extract(epoch from now() - min(created_at))::float8 as s from saga.outbox",
    );
    const billingLag = m.get(series("pg_saga_relay_lag_seconds", { subscription: "billing" }))!;
    expect(billingLag).toBeGreaterThan(0);
    expect(Math.abs(billingLag - age[0]!.s)).toBeLessThan(2);
    expect(m.get(series("pg_saga_relay_lag_seconds", { subscription: "audit" }))).toBe(0);
  });

  it("answers /healthz with 200 and JSON, and 404 elsewhere", async () => {
    const res = await fetch(`${worker.metrics!.url}/healthz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { healthy: boolean; workers: { live: number } };
    // engine.health(): database, migrations, live workers.
    expect(body).toMatchObject({ healthy: true, database: { ok: true }, migrations: { ok: true } });
    expect(body.workers.live).toBeGreaterThanOrEqual(1);
    expect((await fetch(`${worker.metrics!.url}/nope`)).status).toBe(404);
    expect((await fetch(`${worker.metrics!.url}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("answers /healthz with 503 when the check says unhealthy or fails", async () => {
    const reports = [
      async () => ({ healthy: false, problems: ["migrations pending"] }),
      async (): Promise<{ healthy: boolean }> => {
        throw new Error("database unreachable");
      },
    ];
    for (const health of reports) {
      const server = await serveMetrics({ port: 0, host: "127.0.0.1", registry: new Registry(), health });
      try {
        const res = await fetch(`${server.url}/healthz`);
        expect(res.status).toBe(503);
        expect(await res.json()).toMatchObject({ healthy: false });
      } finally {
        await server.close();
      }
    }
  });

  it("refuses a taken port before the worker starts, leaving no worker row behind", async () => {
    const port = Number(new URL(worker.metrics!.url!).port);
    const before = await workerRows();
    await expect(engine.runWorker({ metrics: { port, host: "127.0.0.1" } })).rejects.toMatchObject({
      code: "EADDRINUSE",
    });
    expect(await workerRows()).toBe(before);
  });

  it("has no registry without `metrics`, and fills a registry you pass without serving it", async () => {
    const plain = await engine.runWorker({ concurrency: 1 });
    expect(plain.metrics).toBeNull();
    await plain.stop();

    const registry = new Registry();
    const side = createSagaEngine({ connectionString: db.url, sagas: [flaky] });
    const own = await side.runWorker({ concurrency: 2, pollInterval: 50, metrics: { registry } });
    try {
      expect(own.metrics?.url).toBeNull();
      expect(own.metrics?.registry).toBe(registry);
      const { id } = await side.start(flaky, { failures: 0 });
      await side.waitFor(id, { timeoutMs: 20_000 });
      // Both workers compete for flaky-call jobs: the registry counts what this one ran.
      const text = await registry.metrics();
      expect(text).toContain("# TYPE pg_saga_sagas_started_total counter");
      expect(text).toContain("pg_saga_database_up 1");
    } finally {
      await own.stop();
      await side.close();
    }
  });
});

async function workerRows(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>("select count(*)::int as n from saga.workers");
  return rows[0]!.n;
}

/** Waits until the saga's first handler call was recorded: its step is running. */
async function waitForCall(sagaId: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await db.pool.query("select 1 from test_calls where saga_id = $1", [sagaId]);
    if (rows.length > 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`saga ${sagaId} never called a handler`);
}
