import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, SagaError, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventTrail, useEngine } from "./helpers/engine.js";

const db = useTestDatabase();

const calls = new Map<string, string[]>();
const note = (id: string, entry: string) => calls.set(id, [...(calls.get(id) ?? []), entry]);
const abortedSignals = new Set<string>();
const healed = new Set<string>();

const input = z.object({
  hold: z.boolean().default(false),
  failFirst: z.boolean().default(false),
  tag: z.string().default(""),
});

const holdable = defineSaga({ name: "holdable", input })
  .step("reserve", {
    execute: (d, ctx) => {
      note(ctx.sagaId, "reserve");
      return d;
    },
    compensate: (_d, ctx) => note(ctx.sagaId, `undo-reserve:${ctx.outcome}`),
  })
  .step("ship", {
    execute: async (d, ctx) => {
      note(ctx.sagaId, `ship:${ctx.attempt}`);
      if (d.failFirst && !healed.has(ctx.sagaId)) throw new BusinessError("SHIP_BLOCKED", "blocked");
      if (d.hold) {
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
        );
        abortedSignals.add(ctx.sagaId);
        return { ...d, late: true };
      }
      return d;
    },
    compensate: (_d, ctx) => note(ctx.sagaId, `undo-ship:${ctx.outcome}`),
  });

const quick = defineSaga({ name: "quick", input })
  .step("one", { execute: (d) => d, compensate: (_d, ctx) => note(ctx.sagaId, "undo-one") })
  .step("two", { execute: (d) => d, compensate: (_d, ctx) => note(ctx.sagaId, "undo-two") })
  .step("three", { execute: (d) => d, compensate: (_d, ctx) => note(ctx.sagaId, "undo-three") });

const firstFails = defineSaga({ name: "first-fails", input }).step("charge", {
  execute: (d, ctx) => {
    note(ctx.sagaId, `charge:${ctx.attempt}`);
    if (!healed.has(ctx.sagaId)) throw new BusinessError("NOT_YET", "over the limit");
    return d;
  },
});

const harness = useEngine(db, () => [holdable, quick, firstFails], { concurrency: 10 });
const e = () => harness.engine;

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("cancel", () => {
  it("cancels a running saga mid-step: the signal aborts, the late result is discarded, completed steps are compensated", async () => {
    const { id } = await e().start(holdable, { hold: true });
    await waitUntil(async () => (await e().get(id))?.steps[1]?.status === "running");
    const discardedBefore = harness.worker.stats.discarded;
    await expect(e().cancel(id, "customer changed their mind")).resolves.toMatchObject({
      state: expect.stringMatching(/compensating|cancelled/),
    });
    const done = await e().waitFor(id);
    expect(done.state).toBe("cancelled");
    expect(done.error).toMatchObject({ code: "CANCELLED", message: "customer changed their mind" });
    await waitUntil(async () => abortedSignals.has(id));
    await waitUntil(async () => harness.worker.stats.discarded > discardedBefore);
    expect(calls.get(id)).toEqual(["reserve", "ship:1", "undo-ship:unknown", "undo-reserve:succeeded"]);
    expect(done.steps.map((s) => s.status)).toEqual(["compensated", "compensated"]);
    expect((await e().get(id))?.data).not.toHaveProperty("late");
    const trail = await eventTrail(db, id);
    expect(trail.at(-1)).toBe("saga.cancelled");
    expect(trail.filter((t) => t === "compensation.step.completed:ship")).toHaveLength(1);
  });

  it("is a no-op the second time, SAGA_TERMINAL on a finished saga, SAGA_NOT_FOUND on an unknown id", async () => {
    const { id } = await e().start(holdable, { hold: true });
    await waitUntil(async () => (await e().get(id))?.steps[1]?.status === "running");
    const first = await e().cancel(id, "first");
    const second = await e()
      .cancel(id, "second")
      .catch((err: unknown) => err);
    if (second instanceof SagaError) expect(second.code).toBe("SAGA_TERMINAL");
    else expect(second).toMatchObject({ state: expect.stringMatching(/compensating|cancelled/) });
    expect(first.state).toMatch(/compensating|cancelled/);
    await e().waitFor(id);
    await expect(e().cancel(id, "third")).rejects.toMatchObject({ code: "SAGA_TERMINAL" });
    await expect(e().cancel("00000000-0000-0000-0000-000000000000")).rejects.toMatchObject({
      code: "SAGA_NOT_FOUND",
    });
    await expect(e().cancel("not-a-uuid")).rejects.toMatchObject({ code: "SAGA_NOT_FOUND" });
    expect((await eventTrail(db, id)).filter((t) => t === "saga.cancelled")).toHaveLength(1);
  });

  it("50 concurrent cancels racing step completions: one terminal state each, no double compensation, no deadlock", async () => {
    const ids = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        e()
          .start(quick, { tag: `race-${i}` })
          .then((r) => r.id),
      ),
    );
    const outcomes = await Promise.all(
      ids.map(async (id, i) => {
        await new Promise((r) => setTimeout(r, i % 10));
        return e()
          .cancel(id, "race")
          .then(() => "cancel-accepted")
          .catch((err: unknown) =>
            err instanceof SagaError && err.code === "SAGA_TERMINAL" ? "already-done" : Promise.reject(err),
          );
      }),
    );
    expect(outcomes.every((o) => o === "cancel-accepted" || o === "already-done")).toBe(true);
    for (const id of ids) {
      const done = await e().waitFor(id);
      expect(["completed", "cancelled"]).toContain(done.state);
      const trail = await eventTrail(db, id);
      const terminal = trail.filter((t) =>
        ["saga.completed", "saga.cancelled", "saga.failed", "compensation.failed"].includes(t),
      );
      expect(terminal).toHaveLength(1);
      const undone = calls.get(id) ?? [];
      expect(new Set(undone).size).toBe(undone.length);
      if (done.state === "completed") expect(undone).toEqual([]);
    }
  });
});

describe("retry", () => {
  it("resumes a failed saga forward from the failed step with fresh attempts, recording who and why", async () => {
    const { id } = await e().start(firstFails, {});
    const failed = await e().waitFor(id);
    expect(failed.state).toBe("failed");
    expect(failed.error).toMatchObject({ code: "NOT_YET", step: "charge" });
    healed.add(id);
    await expect(e().retry(id, { by: "ops@example.com", reason: "limit raised" })).resolves.toEqual({
      state: "running",
    });
    const done = await e().waitFor(id);
    expect(done.state).toBe("completed");
    expect(done.error).toBeNull();
    expect(done.finishedAt).toBeInstanceOf(Date);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", attempt: 2 });
    expect(calls.get(id)).toEqual(["charge:1", "charge:2"]);
    const { rows } = await db.pool.query(
      "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
      [id],
    );
    expect(rows.map((r) => r.payload)).toEqual([
      { manual: true, by: "ops@example.com", reason: "limit raised", attempt: 1, delayMs: 0 },
    ]);
  });

  it("refuses any state but failed and compensation_failed with INVALID_STATE", async () => {
    const compensated = await e().start(holdable, { failFirst: true });
    expect((await e().waitFor(compensated.id)).state).toBe("compensated");
    await expect(e().retry(compensated.id)).rejects.toMatchObject({ code: "INVALID_STATE" });
    const completed = await e().start(quick, {});
    expect((await e().waitFor(completed.id)).state).toBe("completed");
    await expect(e().retry(completed.id)).rejects.toMatchObject({ code: "INVALID_STATE" });
    await expect(e().retry("00000000-0000-0000-0000-000000000001")).rejects.toMatchObject({
      code: "SAGA_NOT_FOUND",
    });
  });
});
