/**
 * OpenTelemetry: an in-memory exporter registered in this process, real sagas run by an in-process worker;
 * one trace per saga across start, every step attempt and every compensation.
 */
import { SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RetryableError, SagaError, defineSaga, retry } from "../src/index.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager().enable();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

const db = useTestDatabase();
let order: ReturnType<typeof orderSaga>;

const flaky = defineSaga({
  name: "flaky-call",
  input: z.object({ failures: z.number().int() }),
  retry: retry.fixed({ maxAttempts: 4, delay: "10ms" }),
}).step("call-api", {
  execute: async (data, ctx) => {
    if (ctx.attempt <= data.failures) throw new RetryableError(new Error("503 from the api"), "UPSTREAM_503");
    return data;
  },
});

/** A transactional step whose handler opens a span of its own: it must be a child of the step span. */
const ledger = defineSaga({ name: "ledger", input: z.object({ amount: z.number() }) }).step("book", {
  transactional: true,
  execute: async (data, ctx) => {
    const inner = trace.getTracer("app").startSpan("app.insert-ledger-row");
    await ctx.tx.query("select $1::numeric", [data.amount]);
    inner.end();
    return data;
  },
});

const engineHandle = useEngine(db, () => [(order = orderSaga(db.pool)), flaky, ledger], {
  concurrency: 4,
  pollInterval: 50,
});

beforeAll(async () => {
  // Registered before the engine exists and before any saga runs, as an application would.
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(contextManager);
  await db.pool.query(CALLS_TABLE);
});

afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
});

beforeEach(() => exporter.reset());

const spans = () => exporter.getFinishedSpans();
const byName = (name: string) => spans().filter((s) => s.name === name);
const one = (name: string): ReadableSpan => {
  const found = byName(name);
  expect(found, name).toHaveLength(1);
  return found[0]!;
};
const traceparentOf = (s: ReadableSpan) => `00-${s.spanContext().traceId}-${s.spanContext().spanId}-01`;

async function storedTraceContext(id: string): Promise<string | null> {
  const { rows } = await db.pool.query<{ trace_context: string | null }>(
    "select trace_context from saga.instances where id = $1",
    [id],
  );
  return rows[0]!.trace_context;
}

describe("tracing", () => {
  it("links start (under the caller's active span) and every step into one trace", async () => {
    const { engine } = engineHandle;
    const app = trace.getTracer("app");
    const id = await app.startActiveSpan("POST /orders", async (request) => {
      try {
        return (await engine.start(order, { customerId: "c1", amount: 42 })).id;
      } finally {
        request.end();
      }
    });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");

    const request = one("POST /orders");
    const start = one("saga.start order-processing");
    expect(start.kind).toBe(SpanKind.PRODUCER);
    expect(start.instrumentationScope.name).toBe("pg-saga");
    expect(start.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
    expect(start.attributes).toMatchObject({
      "saga.id": id,
      "saga.name": "order-processing",
      "saga.created": true,
    });
    expect(await storedTraceContext(id)).toBe(traceparentOf(start));

    const steps = ["create-order", "reserve-inventory", "process-payment", "confirm-order"].map((s) =>
      one(`saga.step ${s}`),
    );
    for (const [index, step] of steps.entries()) {
      expect(step.spanContext().traceId).toBe(request.spanContext().traceId);
      expect(step.parentSpanContext?.spanId).toBe(start.spanContext().spanId);
      expect(step.kind).toBe(SpanKind.CONSUMER);
      expect(step.status.code).not.toBe(SpanStatusCode.ERROR);
      expect(step.attributes).toMatchObject({
        "saga.id": id,
        "saga.name": "order-processing",
        "saga.step": step.name.slice("saga.step ".length),
        "saga.step.index": index,
        "saga.attempt": 1,
        "saga.operation": "execute",
        "saga.outcome": "succeeded",
      });
    }
    // Steps run one after another: their spans do not overlap.
    for (let i = 1; i < steps.length; i++) {
      expect(hrMs(steps[i]!.startTime)).toBeGreaterThanOrEqual(hrMs(steps[i - 1]!.endTime));
    }
  });

  it("puts a failed step and its compensations in the saga's trace, with the error recorded", async () => {
    const { engine } = engineHandle;
    expect(trace.getActiveSpan()).toBeUndefined();
    const { id } = await engine.start(order, { customerId: "c2", amount: 7, failAt: "process-payment" });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("compensated");

    const start = one("saga.start order-processing");
    expect(start.parentSpanContext).toBeUndefined(); // no active span: a new root
    const traceId = start.spanContext().traceId;
    const failed = one("saga.step process-payment");
    expect(failed.status).toMatchObject({ code: SpanStatusCode.ERROR, message: "card declined" });
    expect(failed.attributes).toMatchObject({
      "saga.outcome": "failed",
      "saga.error.code": "PAYMENT_DECLINED",
    });
    expect(failed.events.map((e) => e.name)).toEqual(["exception"]);
    expect(failed.events[0]!.attributes).toMatchObject({ "exception.message": "card declined" });

    const compensations = spans().filter((s) => s.name.startsWith("saga.compensate "));
    expect(compensations.map((s) => s.name)).toEqual([
      "saga.compensate reserve-inventory",
      "saga.compensate create-order",
    ]);
    for (const c of compensations) {
      expect(c.attributes).toMatchObject({
        "saga.id": id,
        "saga.operation": "compensate",
        "saga.outcome": "succeeded",
      });
    }
    const all = spans();
    expect(all).toHaveLength(1 + 3 + 2);
    for (const s of all) expect(s.spanContext().traceId).toBe(traceId);
    for (const s of all.filter((x) => x !== start))
      expect(s.parentSpanContext?.spanId).toBe(start.spanContext().spanId);
  });

  it("gives each attempt of a retried step its own span with its attempt number", async () => {
    const { engine } = engineHandle;
    const { id } = await engine.start(flaky, { failures: 2 });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
    const attempts = byName("saga.step call-api").sort((a, b) => hrMs(a.startTime) - hrMs(b.startTime));
    expect(attempts.map((s) => [s.attributes["saga.attempt"], s.attributes["saga.outcome"]])).toEqual([
      [1, "failed"],
      [2, "failed"],
      [3, "succeeded"],
    ]);
    expect(attempts[0]!.attributes["saga.error.code"]).toBe("UPSTREAM_503");
    const start = one("saga.start flaky-call");
    for (const s of attempts) expect(s.parentSpanContext?.spanId).toBe(start.spanContext().spanId);
  });

  it("makes the step span active inside the handler, also for a transactional step", async () => {
    const { engine } = engineHandle;
    const { id } = await engine.start(ledger, { amount: 5 });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
    const step = one("saga.step book");
    const inner = one("app.insert-ledger-row");
    expect(inner.parentSpanContext?.spanId).toBe(step.spanContext().spanId);
    expect(inner.spanContext().traceId).toBe(one("saga.start ledger").spanContext().traceId);
  });

  it("parents the saga on an explicit traceContext, and rejects a malformed one", async () => {
    const { engine } = engineHandle;
    const remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const { id } = await engine.start(order, { customerId: "c3", amount: 1 }, { traceContext: remote });
    await engine.waitFor(id, { timeoutMs: 20_000 });
    const start = one("saga.start order-processing");
    expect(start.spanContext().traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(start.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    expect(one("saga.step confirm-order").spanContext().traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");

    const err = await engine
      .start(order, { customerId: "c4", amount: 1 }, { traceContext: "not-a-traceparent" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SagaError);
    expect((err as SagaError).code).toBe("INVALID_OPTIONS");
  });

  it("links the steps of a saga started from SQL with a traceparent to that trace", async () => {
    const { engine } = engineHandle;
    const remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const { rows } = await db.pool.query<{ id: string }>(
      `select saga.start('order-processing', '{"customerId":"sql","amount":3}', jsonb_build_object('traceparent', $1::text)) as id`,
      [remote],
    );
    const id = rows[0]!.id;
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
    expect(byName("saga.start order-processing")).toEqual([]); // started in SQL: no start span
    const steps = spans().filter((s) => s.attributes["saga.id"] === id);
    expect(steps.map((s) => s.name)).toEqual([
      "saga.step create-order",
      "saga.step reserve-inventory",
      "saga.step process-payment",
      "saga.step confirm-order",
    ]);
    for (const s of steps) {
      expect(s.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
      expect(s.parentSpanContext).toMatchObject({ spanId: "b7ad6b7169203331", isRemote: true });
    }
  });

  it("keeps the first trace for an idempotent start that matched an existing saga", async () => {
    const { engine } = engineHandle;
    const first = await engine.start(order, { customerId: "c5", amount: 1 }, { idempotencyKey: "trace-k1" });
    await engine.waitFor(first.id, { timeoutMs: 20_000 });
    const stored = await storedTraceContext(first.id);
    exporter.reset();
    const again = await engine.start(order, { customerId: "c5", amount: 1 }, { idempotencyKey: "trace-k1" });
    expect(again).toEqual({ id: first.id, created: false });
    expect(one("saga.start order-processing").attributes["saga.created"]).toBe(false);
    expect(await storedTraceContext(first.id)).toBe(stored);
  });
});

const hrMs = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
