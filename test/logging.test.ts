/**
 * Logging: the library never writes to the console, with or without a logger, through successes, retries,
 * failures, compensations, failed compensations, timeouts and cancels; an injected logger gets lines scoped
 * by saga id and step.
 */
import { Writable } from "node:stream";
import pino from "pino";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  BusinessError,
  RetryableError,
  createSagaEngine,
  defineSaga,
  retry,
  type Logger,
  type SagaEngine,
  type SagaWorker,
} from "../src/index.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { type TestDatabase, useTestDatabase } from "./helpers/database.js";

const CONSOLE_METHODS = ["log", "info", "warn", "error", "debug", "trace", "dir", "table"] as const;
const spies = CONSOLE_METHODS.map((m) => vi.spyOn(console, m));

interface Line {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

function recordingLogger(lines: Line[]): Logger {
  const at =
    (level: Line["level"]) =>
    (message: string, fields: Record<string, unknown> = {}) =>
      lines.push({ level, message, fields });
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

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

/** Its compensation always throws: the saga ends compensation_failed. */
const brokenUndo = defineSaga({ name: "broken-undo", input: z.object({ n: z.number() }) })
  .step("reserve", {
    execute: async (data) => data,
    compensate: async () => {
      throw new Error("inventory service down");
    },
    compensateRetry: retry.none(),
  })
  .step("charge", {
    execute: async () => {
      throw new BusinessError("CARD_DECLINED", "declined");
    },
  });

/** Its only step outlives its timeout. */
const sluggish = defineSaga({
  name: "sluggish",
  input: z.object({ n: z.number() }),
  retry: retry.none(),
}).step("wait", {
  timeout: "50ms",
  execute: async (data, ctx) => {
    await new Promise((r) => setTimeout(r, 300));
    ctx.logger.info("handler finished late");
    return data;
  },
});

interface Scenario {
  ids: Record<string, string>;
}

/** Runs every kind of saga ending on the engine's worker and waits for all of them. */
async function runScenarios(engine: SagaEngine, order: ReturnType<typeof orderSaga>): Promise<Scenario> {
  const started = {
    completed: await engine.start(order, { customerId: "c1", amount: 1 }),
    compensated: await engine.start(order, { customerId: "c2", amount: 2, failAt: "process-payment" }),
    failed: await engine.start(order, { customerId: "c3", amount: 3, failAt: "create-order" }),
    retried: await engine.start(flaky, { failures: 2 }),
    compensationFailed: await engine.start(brokenUndo, { n: 1 }),
    timedOut: await engine.start(sluggish, { n: 1 }),
    cancelled: await engine.start(order, { customerId: "c4", amount: 4, delayMs: 2_000 }),
  };
  await engine.waitFor(started.cancelled.id, { states: ["running"], timeoutMs: 5_000 });
  await new Promise((r) => setTimeout(r, 200));
  await engine.cancel(started.cancelled.id, "changed my mind");
  const ids = Object.fromEntries(Object.entries(started).map(([k, v]) => [k, v.id]));
  const states = Object.fromEntries(
    await Promise.all(
      Object.entries(ids).map(async ([k, id]) => [
        k,
        (await engine.waitFor(id, { timeoutMs: 20_000 })).state,
      ]),
    ),
  );
  expect(states).toEqual({
    completed: "completed",
    compensated: "compensated",
    failed: "failed",
    retried: "completed",
    compensationFailed: "compensation_failed",
    timedOut: "failed",
    cancelled: "cancelled",
  });
  return { ids };
}

function useScenario(db: TestDatabase, logger?: Logger) {
  const handle = {} as { engine: SagaEngine; worker: SagaWorker; order: ReturnType<typeof orderSaga> };
  beforeAll(async () => {
    await db.pool.query(CALLS_TABLE);
    handle.order = orderSaga(db.pool);
    handle.engine = createSagaEngine({
      connectionString: db.url,
      sagas: [handle.order, flaky, brokenUndo, sluggish],
      ...(logger ? { logger } : {}),
    });
    handle.worker = await handle.engine.runWorker({ concurrency: 4, pollInterval: 50 });
  });
  afterAll(async () => {
    await handle.worker?.stop();
    await handle.engine?.close();
  });
  return handle;
}

const silentDb = useTestDatabase();
const silent = useScenario(silentDb);
const loggedDb = useTestDatabase();
const lines: Line[] = [];
const logged = useScenario(loggedDb, recordingLogger(lines));

afterAll(() => {
  for (const spy of spies) expect(spy, `console.${spy.getMockName()}`).not.toHaveBeenCalled();
});

describe("logging", () => {
  it("never writes to the console without a logger, whatever happens to the sagas", async () => {
    await runScenarios(silent.engine, silent.order);
    for (const [i, spy] of spies.entries())
      expect(spy, `console.${CONSOLE_METHODS[i]}`).not.toHaveBeenCalled();
  });

  it("gives an injected logger lines scoped by saga id and step, and nothing to the console", async () => {
    const { ids } = await runScenarios(logged.engine, logged.order);
    for (const [i, spy] of spies.entries())
      expect(spy, `console.${CONSOLE_METHODS[i]}`).not.toHaveBeenCalled();

    const about = (id: string) => lines.filter((l) => l.fields.sagaId === id);
    // Every line about a saga names its step and attempt too.
    for (const l of lines.filter((x) => x.fields.sagaId !== undefined)) {
      expect(l.fields).toMatchObject({
        step: expect.any(String),
        attempt: expect.any(Number),
        saga: expect.any(String),
      });
    }

    const payment = about(ids.compensated!).filter((l) => l.message === "step attempt failed");
    expect(payment).toHaveLength(1);
    expect(payment[0]).toMatchObject({
      level: "warn",
      fields: {
        sagaId: ids.compensated,
        saga: "order-processing",
        step: "process-payment",
        attempt: 1,
        error: { code: "PAYMENT_DECLINED", message: "card declined" },
      },
    });

    const retries = about(ids.retried!).filter((l) => l.message === "step attempt failed");
    expect(
      retries.map((l) => [l.fields.step, l.fields.attempt, (l.fields.error as { code: string }).code]),
    ).toEqual([
      ["call-api", 1, "UPSTREAM_503"],
      ["call-api", 2, "UPSTREAM_503"],
    ]);

    const undo = about(ids.compensationFailed!).filter((l) => l.message === "step attempt failed");
    expect(undo.map((l) => [l.fields.step, (l.fields.error as { message: string }).message])).toEqual([
      ["charge", "declined"],
      ["reserve", "inventory service down"],
    ]);

    // A handler's own ctx.logger lines carry the same scope.
    await vi.waitFor(
      () => expect(about(ids.timedOut!).map((l) => l.message)).toContain("handler finished late"),
      {
        timeout: 5_000,
      },
    );
    expect(about(ids.timedOut!).find((l) => l.message === "handler finished late")).toMatchObject({
      level: "info",
      fields: { sagaId: ids.timedOut, saga: "sluggish", step: "wait", attempt: 1 },
    });
    expect(about(ids.completed!)).toEqual([]);
  });

  it("works with pino through a four-line adapter, writing JSON lines to the stream it is given", async () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    const log = pino({ level: "debug" }, sink);
    const logger: Logger = {
      debug: (msg, fields) => log.debug(fields ?? {}, msg),
      info: (msg, fields) => log.info(fields ?? {}, msg),
      warn: (msg, fields) => log.warn(fields ?? {}, msg),
      error: (msg, fields) => log.error(fields ?? {}, msg),
    };
    const engine = createSagaEngine({ connectionString: loggedDb.url, sagas: [logged.order], logger });
    const worker = await engine.runWorker({ concurrency: 1, pollInterval: 50 });
    try {
      // Only this worker may take the job: stop the file's worker for order-processing jobs first.
      await logged.worker.stop();
      delete (logged as { worker?: SagaWorker }).worker;
      const { id } = await engine.start(logged.order, {
        customerId: "c9",
        amount: 9,
        failAt: "reserve-inventory",
      });
      expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("compensated");
    } finally {
      await worker.stop();
      await engine.close();
    }
    const json = chunks
      .join("")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: "step attempt failed",
        step: "reserve-inventory",
        saga: "order-processing",
        attempt: 1,
      }),
    );
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  });
});
