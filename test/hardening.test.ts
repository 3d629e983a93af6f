/**
 * Every value a handler can produce is stored or refused with its own error, and every bad input gets a typed
 * one with nothing written: values jsonb cannot store, what survives a step boundary, long timeouts, forged
 * cursors, prototype keys, unknown options, versions out of range.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  BusinessError,
  SagaError,
  createSagaEngine,
  defineSaga,
  retry,
  type SagaInstance,
} from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();

/** What each case's first step returns or throws, by the input's `case`. */
const cases = new Map<string, () => unknown>();
/** What the second step received, by saga id. */
const received = new Map<string, unknown>();

class Money {
  constructor(
    readonly amount: number,
    readonly currency: string,
  ) {}
  get display() {
    return `${this.amount} ${this.currency}`;
  }
}

const produce = defineSaga({
  name: "produce",
  input: z.object({ case: z.string(), note: z.string().optional() }),
  retry: retry.none(),
})
  .step("make", {
    execute: (data) => {
      const make = cases.get(data.case);
      return make ? make() : data;
    },
    compensate: () => {
      throw new BusinessError("UNDO_FAILED", "undo\u0000failed", { why: "\udfff" });
    },
    compensateRetry: retry.none(),
  })
  .step("next", {
    execute: (data, ctx) => {
      received.set(ctx.sagaId, data);
      if ((data as { failNext?: boolean } | null)?.failNext)
        throw new BusinessError("NEXT_FAILED", "next failed");
      return data;
    },
  });

const longTimeouts = defineSaga({ name: "long-timeouts", input: z.object({}) })
  .step("plain", {
    timeout: "30d",
    execute: async () => {
      await new Promise((r) => setTimeout(r, 50));
      return { plain: "done" };
    },
  })
  .step("in-tx", {
    transactional: true,
    timeout: "30d",
    execute: async (data, ctx) => {
      const { rows } = await ctx.tx.query<{ t: string }>("select current_setting('statement_timeout') as t");
      return { ...data, statementTimeout: rows[0]?.t };
    },
  });

const harness = useEngine(db, () => [produce, longTimeouts]);
const e = () => harness.engine;

const count = async (table: string) =>
  (await db.pool.query<{ n: number }>(`select count(*)::int as n from ${table}`)).rows[0]?.n;
/** Counts once every saga of the file has ended and its jobs are gone (so only the call under test writes). */
async function snapshot() {
  for (let i = 0; i < 200; i++) {
    const busy = await db.pool.query<{ n: number }>(
      "select (select count(*) from saga.instances where state in ('running', 'compensating')) + (select count(*) from graphile_worker._private_jobs) as n",
    );
    if (Number(busy.rows[0]?.n) === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return counts();
}
const counts = async () => ({
  instances: await count("saga.instances"),
  events: await count("saga.events"),
  jobs: await count("graphile_worker._private_jobs"),
});

async function code(promise: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    expect(err).toBeInstanceOf(SagaError);
    return (err as SagaError).code;
  }
  throw new Error("expected a SagaError");
}

async function run(which: string, make: () => unknown): Promise<SagaInstance> {
  cases.set(which, make);
  const { id } = await e().start(produce, { case: which });
  return e().waitFor(id, { timeoutMs: 20_000 });
}

describe("values jsonb cannot store, produced by a handler", () => {
  it("a thrown string with a NUL is stored sanitised, the step failed (not unknown), never WORKER_LOST", async () => {
    const done = await run("throw-nul", () => {
      throw "bad\u0000";
    });
    expect(done.state).toBe("failed");
    expect(done.error).toMatchObject({ code: "NON_ERROR_THROWN", message: "bad\ufffd", step: "make" });
    expect(done.steps[0]).toMatchObject({ status: "failed", attempt: 1 });
    expect(done.steps[0]?.error).toMatchObject({
      code: "NON_ERROR_THROWN",
      message: "bad\ufffd",
      outcome: "failed",
      sanitized: { nul: 1 },
    });
  });

  it("an Error with a lone surrogate, a BusinessError with NULs in its details: stored, replacements said", async () => {
    const lone = await run("throw-surrogate", () => {
      throw new Error("x\ud800y");
    });
    expect(lone.steps[0]?.error).toMatchObject({
      code: "STEP_ERROR",
      message: "x\ufffdy",
      outcome: "failed",
      sanitized: { loneSurrogates: 1 },
    });
    const business = await run("throw-details", () => {
      throw new BusinessError("DECLINED", "card declined", { note: "a\u0000b", "k\u0000": ["\udc00"] });
    });
    expect(business.state).toBe("failed");
    expect(business.steps[0]?.error).toMatchObject({
      code: "DECLINED",
      details: { note: "a\ufffdb", "k\ufffd": ["\ufffd"] },
      outcome: "failed",
      sanitized: { nul: 2, loneSurrogates: 1 },
    });
    const events = await db.pool.query<{ payload: { error: { message: string } } }>(
      "select payload from saga.events where saga_id = $1 and type = 'saga.step.failed'",
      [business.id],
    );
    expect(events.rows[0]?.payload.error).toMatchObject({ details: { note: "a\ufffdb" } });
  });

  it("an output with a lone surrogate is INVALID_OUTPUT, failed; a compensation's unstorable error is stored too", async () => {
    const output = await run("output-surrogate", () => ({ v: "\udc00" }));
    expect(output.state).toBe("failed");
    expect(output.error).toMatchObject({ code: "INVALID_OUTPUT", step: "make" });
    expect(output.steps[0]?.error).toMatchObject({ code: "INVALID_OUTPUT", outcome: "failed" });
    expect(output.steps[0]?.output).toBeNull();

    const undo = await run("undo-fails", () => ({ case: "undo-fails", failNext: true }));
    expect(undo.state).toBe("compensation_failed");
    expect(undo.steps[0]).toMatchObject({ status: "compensation_failed" });
    expect(undo.steps[0]?.compensationError).toMatchObject({
      code: "UNDO_FAILED",
      message: "undo\ufffdfailed",
      details: { why: "\ufffd" },
      sanitized: { nul: 1, loneSurrogates: 1 },
    });
  });
});

describe("a step receives what the database gives back", () => {
  it("Date, Map, Set, class instances, undefined fields, -0, NaN and key order, in-process as after a reload", async () => {
    const done = await run("shapes", () => ({
      zebra: 1,
      at: new Date("2026-01-02T03:04:05.678Z"),
      map: new Map([["a", 1]]),
      set: new Set([1, 2]),
      money: new Money(5, "EUR"),
      missing: undefined,
      list: [undefined, () => 1, -0, NaN, Infinity],
      negativeZero: -0,
      nan: NaN,
      "10": "ten",
      "2": "two",
      aa: { b: 2, a: 1 },
    }));
    expect(done.state).toBe("completed");
    const got = received.get(done.id);
    // What step 2 got in-process is exactly the stored output, keys in jsonb's order.
    expect(JSON.stringify(got)).toBe(JSON.stringify(done.steps[0]?.output));
    expect(got).toEqual({
      zebra: 1,
      at: "2026-01-02T03:04:05.678Z",
      map: {},
      set: {},
      money: { amount: 5, currency: "EUR" },
      list: [null, null, 0, null, null],
      negativeZero: 0,
      nan: null,
      "10": "ten",
      "2": "two",
      aa: { a: 1, b: 2 },
    });
    expect(Object.keys(got as object)).toEqual([
      "2",
      "10",
      "aa",
      "at",
      "map",
      "nan",
      "set",
      "list",
      "money",
      "zebra",
      "negativeZero",
    ]);
    expect(Object.is((got as { negativeZero: number }).negativeZero, 0)).toBe(true);
    expect(Object.getPrototypeOf((got as { money: object }).money)).toBe(Object.prototype);
  });

  it("an input or output holding the six characters \\u0000 (not a NUL) is accepted and kept as is", async () => {
    const { id } = await e().start(produce, { case: "literal", note: "\\u0000 and \\\\u0000" });
    const done = await e().waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("completed");
    expect(done.input).toEqual({ case: "literal", note: "\\u0000 and \\\\u0000" });
    const out = await run("literal-output", () => ({ text: "\\u0000" }));
    expect(out.result).toEqual({ text: "\\u0000" });
  });
});

describe("timeouts past Node's timer limit", () => {
  it("a 30-day step timeout works, plain and transactional (statement_timeout capped at its maximum)", async () => {
    const { id } = await e().start(longTimeouts, {});
    const done = await e().waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("completed");
    expect(done.result).toEqual({ plain: "done", statementTimeout: "2147483647ms" });
  });

  it("a duration past 100 years is refused at definition with INVALID_DEFINITION naming the limit", () => {
    const define = () =>
      defineSaga({ name: "forever", input: z.object({}) }).step("s", { timeout: "40000d", execute: () => 1 });
    expect(define).toThrow(/at most 3155760000000 ms \(100 years\)/);
    try {
      define();
    } catch (err) {
      expect((err as SagaError).code).toBe("INVALID_DEFINITION");
    }
  });
});

describe("bad input gets a typed error and nothing is written", () => {
  it("lone surrogates in input and metadata, NUL or lone surrogates in an idempotency key", async () => {
    const before = await snapshot();
    expect(await code(e().start(produce, { case: "x", note: "\ud800" }))).toBe("INVALID_INPUT");
    expect(await code(e().start(produce, { case: "x" }, { metadata: { k: "\udc00" } }))).toBe(
      "INVALID_OPTIONS",
    );
    expect(await code(e().start(produce, { case: "x" }, { metadata: { "\ud800": 1 } }))).toBe(
      "INVALID_OPTIONS",
    );
    expect(await code(e().start(produce, { case: "x" }, { idempotencyKey: "a\u0000" }))).toBe(
      "INVALID_OPTIONS",
    );
    expect(await code(e().start(produce, { case: "x" }, { idempotencyKey: "\ud800" }))).toBe(
      "INVALID_OPTIONS",
    );
    let deep: unknown = 1;
    for (let i = 0; i < 1_500; i++) deep = [deep];
    expect(await code(e().start(produce, { case: "x" }, { metadata: { deep } }))).toBe("INVALID_OPTIONS");
    expect(await snapshot()).toEqual(before);
  });

  it("a forged or truncated list() cursor, an unknown state, a NUL in a name: INVALID_OPTIONS", async () => {
    for (let i = 0; i < 3; i++) await e().start(produce, { case: `page-${i}` });
    const page = await e().list({ limit: 2, order: "asc" });
    expect(page.nextCursor).not.toBeNull();
    const next = await e().list({ limit: 2, order: "asc", cursor: page.nextCursor });
    expect(next.map((s) => s.id)).not.toContain(page[0]?.id);
    const forge = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const bad = [
      page.nextCursor!.slice(0, -3),
      "not a cursor",
      forge(["2024-13-45 99:99:99+00", "00000000-0000-0000-0000-000000000000"]),
      forge(["1", "not-a-uuid"]),
      forge(["99999999999999999999", "00000000-0000-0000-0000-000000000000"]),
      forge({ a: 1 }),
    ];
    for (const cursor of bad) expect(await code(e().list({ cursor }))).toBe("INVALID_OPTIONS");
    expect(await code(e().list({ states: ["bogus" as never] }))).toBe("INVALID_OPTIONS");
    expect(await code(e().list({ name: "a\u0000" }))).toBe("INVALID_OPTIONS");
    expect(await code(e().list({ metadata: { k: "\u0000" } }))).toBe("INVALID_OPTIONS");
  });

  it("list({ metadata }) with a __proto__ key matches only the sagas that have it", async () => {
    const proto = JSON.parse('{"__proto__": {"tenant": "p1"}}') as Record<string, unknown>;
    const { id } = await e().start(produce, { case: "proto" }, { metadata: proto });
    await e().start(produce, { case: "no-proto" }, { metadata: { other: 1 } });
    const stored = await db.pool.query("select metadata from saga.instances where id = $1", [id]);
    expect(stored.rows[0].metadata).toEqual(proto);
    const found = await e().list({
      metadata: JSON.parse('{"__proto__": {"tenant": "p1"}}') as Record<string, unknown>,
    });
    expect(found.map((s) => s.id)).toEqual([id]);
  });

  it("version 2**31 in defineSaga is INVALID_DEFINITION naming the limit", () => {
    for (const version of [2 ** 31, 0, 1.5]) {
      try {
        defineSaga({ name: "big-version", version, input: z.object({}) });
        throw new Error("accepted");
      } catch (err) {
        expect((err as SagaError).code).toBe("INVALID_DEFINITION");
        expect((err as SagaError).message).toMatch(/1 to 2147483647/);
      }
    }
  });

  it("unknown engine, start and list options are refused with INVALID_OPTIONS", async () => {
    const before = await snapshot();
    expect(
      await code(() => createSagaEngine({ connectionString: db.url, sagas: [], codec: {} } as never)),
    ).toBe("INVALID_OPTIONS");
    expect(await code(e().start(produce, { case: "x" }, { idempotency_key: "k" } as never))).toBe(
      "INVALID_OPTIONS",
    );
    expect(await code(e().list({ state: ["failed"] } as never))).toBe("INVALID_OPTIONS");
    expect(await code(e().cancel("00000000-0000-0000-0000-000000000000", "a\u0000"))).toBe("INVALID_OPTIONS");
    expect(await snapshot()).toEqual(before);
  });
});
