import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, RetryableError, defineSaga, retry } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventPayloads, eventTrail, useEngine } from "./helpers/engine.js";

const db = useTestDatabase();

/** Handler calls seen in this process, per saga: "step:kind:attempt[:outcome]". */
const seen = new Map<string, string[]>();
const note = (id: string, entry: string) => seen.set(id, [...(seen.get(id) ?? []), entry]);
const aborted = new Set<string>();

const plan = z.object({
  failTimes: z.number().int().default(0),
  error: z.enum(["plain", "retryable", "business", "string", "circular", "not-retryable"]).default("plain"),
  hangMs: z.number().int().default(0),
  waitForAbort: z.boolean().default(false),
});

function failure(kind: z.infer<typeof plan>["error"]): unknown {
  switch (kind) {
    case "retryable":
      return new RetryableError(new Error("gateway busy"));
    case "business":
      return new BusinessError("CARD_DECLINED", "declined", { reason: "limit" });
    case "string":
      return "a string was thrown";
    case "circular": {
      const details: Record<string, unknown> = { n: 1 };
      details.self = details;
      return new BusinessError("CIRCULAR", "circular details", details);
    }
    case "not-retryable": {
      const err = new Error("bad request");
      (err as Error & { status: number }).status = 400;
      return err;
    }
    default:
      return new Error("flaky");
  }
}

const flaky = defineSaga({
  name: "flaky",
  input: plan,
  retry: retry.fixed({ maxAttempts: 3, delay: 20 }),
})
  .step("reserve", {
    execute: (data, ctx) => {
      note(ctx.sagaId, `reserve:execute:${ctx.attempt}`);
      return data;
    },
    compensate: (_data, ctx) => note(ctx.sagaId, `reserve:compensate:${ctx.attempt}:${ctx.outcome}`),
  })
  .step("charge", {
    retryable: (err) => (err as { status?: number }).status !== 400,
    execute: async (data, ctx) => {
      note(ctx.sagaId, `charge:execute:${ctx.attempt}`);
      if (ctx.attempt <= data.failTimes) throw failure(data.error);
      if (data.hangMs) await new Promise((r) => setTimeout(r, data.hangMs)); // ignores ctx.signal on purpose
      if (data.waitForAbort) {
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
        );
        aborted.add(ctx.sagaId);
      }
      return data;
    },
    compensate: (_data, ctx) => note(ctx.sagaId, `charge:compensate:${ctx.attempt}:${ctx.outcome}`),
  });

const patient = defineSaga({
  name: "patient",
  input: plan,
  retry: retry.fixed({ maxAttempts: 2, delay: 4_000 }),
}).step("charge", {
  execute: (data, ctx) => {
    if (ctx.attempt <= data.failTimes) throw new Error("not yet");
    return data;
  },
});

const timeouts = defineSaga({ name: "slow", input: plan, retry: retry.fixed({ maxAttempts: 2, delay: 10 }) })
  .step("reserve", {
    execute: (data, ctx) => {
      note(ctx.sagaId, "reserve:execute:1");
      return data;
    },
    compensate: (_d, ctx) => note(ctx.sagaId, `reserve:compensate:${ctx.attempt}:${ctx.outcome}`),
  })
  .step("charge", {
    timeout: 60,
    execute: async (data, ctx) => {
      note(ctx.sagaId, `charge:execute:${ctx.attempt}`);
      await new Promise((r) => setTimeout(r, data.hangMs)); // ignores the signal
      note(ctx.sagaId, `charge:late-return:${ctx.attempt}`);
      return data;
    },
    compensate: (_d, ctx) => note(ctx.sagaId, `charge:compensate:${ctx.attempt}:${ctx.outcome}`),
  });

const deadline = defineSaga({ name: "deadline", input: plan, timeout: 400 })
  .step("reserve", {
    execute: (data, ctx) => {
      note(ctx.sagaId, "reserve:execute:1");
      return data;
    },
    compensate: (_d, ctx) => note(ctx.sagaId, `reserve:compensate:${ctx.attempt}:${ctx.outcome}`),
  })
  .step("wait", {
    execute: async (data, ctx) => {
      note(ctx.sagaId, "wait:execute:1");
      await new Promise<void>((resolve) =>
        ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
      );
      aborted.add(ctx.sagaId);
      return data;
    },
    compensate: (_d, ctx) => note(ctx.sagaId, `wait:compensate:${ctx.attempt}:${ctx.outcome}`),
  });

const harness = useEngine(db, () => [flaky, patient, timeouts, deadline]);
const e = () => harness.engine;

describe("retries", () => {
  it("retries a failing step and then succeeds, writing saga.step.retrying with attempt and delay", async () => {
    const { id } = await e().start(flaky, { failTimes: 2 });
    const done = await e().waitFor(id);
    expect(done.state).toBe("completed");
    expect(seen.get(id)).toEqual([
      "reserve:execute:1",
      "charge:execute:1",
      "charge:execute:2",
      "charge:execute:3",
    ]);
    expect(done.steps[1]).toMatchObject({ status: "succeeded", attempt: 3, error: null });
    const retrying = await eventPayloads(db, id, "saga.step.retrying");
    expect(retrying.map((p) => [p.attempt, p.delayMs])).toEqual([
      [1, 20],
      [2, 20],
    ]);
    expect(await eventTrail(db, id)).toContain("saga.step.retrying:charge");
  });

  it("compensates once retries are exhausted", async () => {
    const { id } = await e().start(flaky, { failTimes: 9, error: "retryable" });
    const done = await e().waitFor(id);
    expect(done.state).toBe("compensated");
    expect(done.error).toMatchObject({
      code: "RETRYABLE",
      step: "charge",
      retryable: true,
      outcome: "failed",
    });
    expect(seen.get(id)).toEqual([
      "reserve:execute:1",
      "charge:execute:1",
      "charge:execute:2",
      "charge:execute:3",
      "reserve:compensate:1:succeeded",
    ]);
  });

  it("never retries a BusinessError, and stores its code and details", async () => {
    const { id } = await e().start(flaky, { failTimes: 1, error: "business" });
    const done = await e().waitFor(id);
    expect(done.state).toBe("compensated");
    expect(done.steps[1]).toMatchObject({ attempt: 1, status: "failed" });
    expect(done.steps[1]?.error).toEqual({
      code: "CARD_DECLINED",
      message: "declined",
      type: "BusinessError",
      retryable: false,
      details: { reason: "limit" },
      outcome: "failed",
    });
  });

  it("lets retryable(err) refuse a retry", async () => {
    const { id } = await e().start(flaky, { failTimes: 1, error: "not-retryable" });
    const done = await e().waitFor(id);
    expect(done.steps[1]).toMatchObject({ attempt: 1, status: "failed" });
    expect(done.state).toBe("compensated");
  });

  it("survives non-Error throws and circular details", async () => {
    const a = await e().start(flaky, { failTimes: 9, error: "string" });
    const b = await e().start(flaky, { failTimes: 1, error: "circular" });
    const [doneA, doneB] = await Promise.all([e().waitFor(a.id), e().waitFor(b.id)]);
    expect(doneA.error).toMatchObject({ code: "NON_ERROR_THROWN", message: "a string was thrown" });
    expect(doneB.error).toMatchObject({ code: "CIRCULAR", details: { n: 1, self: "[Circular]" } });
    // The worker is still alive and moving other sagas.
    const ok = await e().start(flaky, {});
    expect((await e().waitFor(ok.id)).state).toBe("completed");
  });

  it("waits for a retry as a job scheduled by the database clock, holding no worker slot, showing the next attempt's time", async () => {
    const { id } = await e().start(patient, { failTimes: 1 });
    let waiting = await e().get(id);
    for (
      let i = 0;
      i < 200 && !(waiting?.steps[0]?.attempt === 1 && waiting.steps[0].status === "pending");
      i++
    ) {
      await new Promise((r) => setTimeout(r, 10));
      waiting = await e().get(id);
    }
    expect(waiting?.steps[0]).toMatchObject({ status: "pending", attempt: 1 });
    const { rows } = await db.pool.query<{
      ahead: boolean;
      job_due: boolean;
      locked: boolean;
      same: boolean;
    }>(
      `select i.next_attempt_at > now() as ahead, s.next_attempt_at = i.next_attempt_at as same,
              j.run_at between i.next_attempt_at - interval '50 ms' and i.next_attempt_at + interval '50 ms' as job_due,
              j.locked_at is not null as locked
       from saga.instances i join saga.steps s on s.saga_id = i.id and s.index = 0
       join graphile_worker._private_jobs j on j.payload->>'id' = i.id::text
       where i.id = $1`,
      [id],
    );
    expect(rows).toEqual([{ ahead: true, same: true, job_due: true, locked: false }]);
    expect(waiting?.nextAttemptAt).toBeInstanceOf(Date);
    const done = await e().waitFor(id);
    expect(done.state).toBe("completed");
    expect(done.nextAttemptAt).toBeNull();
  });
});

describe("timeouts", () => {
  it("fails an attempt at its timeout without waiting for a handler that ignores the signal", async () => {
    const { id } = await e().start(timeouts, { hangMs: 400 });
    const done = await e().waitFor(id);
    expect(done.state).toBe("compensated");
    expect(done.steps[1]).toMatchObject({ status: "compensated", attempt: 2 });
    expect(done.error).toMatchObject({ code: "STEP_TIMEOUT", outcome: "unknown", retryable: true });
    // The step may have had its effect: it is compensated too, with outcome unknown, before step 1.
    const compensations = (seen.get(id) ?? []).filter((s) => s.includes(":compensate:"));
    expect(compensations).toEqual(["charge:compensate:1:unknown", "reserve:compensate:1:succeeded"]);
    // The late returns arrive after the saga moved on and change nothing.
    await new Promise((r) => setTimeout(r, 450));
    const after = await e().get(id);
    expect(after?.state).toBe("compensated");
    expect(after?.updatedAt).toEqual(done.updatedAt);
  });

  it("times a saga out at its deadline: the running step is aborted, completed steps compensated", async () => {
    const { id } = await e().start(deadline, {});
    const started = await e().get(id);
    expect(started?.deadline).toBeInstanceOf(Date);
    const done = await e().waitFor(id);
    expect(done.state).toBe("timed_out");
    expect(aborted.has(id)).toBe(true);
    expect((seen.get(id) ?? []).filter((s) => s.includes(":compensate:"))).toEqual([
      "wait:compensate:1:unknown",
      "reserve:compensate:1:succeeded",
    ]);
    const trail = await eventTrail(db, id);
    expect(trail.slice(-5)).toEqual([
      "compensation.started",
      "compensation.step.completed:wait",
      "compensation.step.completed:reserve",
      "compensation.completed",
      "saga.timed_out",
    ]);
    expect(trail).toContain("saga.step.failed:wait");
  });
});
