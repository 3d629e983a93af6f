import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, compensation, defineSaga, retry } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventTrail, useEngine } from "./helpers/engine.js";

const db = useTestDatabase();

/** Compensation calls in this process, per saga, in the order they started and finished. */
const log = new Map<string, string[]>();
const note = (id: string, entry: string) => log.set(id, [...(log.get(id) ?? []), entry]);

const input = z.object({
  failCompensationOf: z.array(z.string()).default([]),
  fixed: z.boolean().default(false),
});
type Input = z.infer<typeof input>;

/** Three compensable steps a, b, c; step "d" fails for good. */
function threeSteps(
  name: string,
  strategy: ReturnType<typeof compensation.sequential>,
  onCompensate?: (id: string, step: string) => Promise<void>,
) {
  const comp = (step: string) => async (data: Input, ctx: { sagaId: string }) => {
    note(ctx.sagaId, `start:${step}`);
    await onCompensate?.(ctx.sagaId, step);
    if (data.failCompensationOf.includes(step) && !fixes.has(ctx.sagaId))
      throw new Error(`cannot undo ${step}`);
    note(ctx.sagaId, `end:${step}`);
  };
  let saga = defineSaga({ name, input, compensation: strategy });
  for (const step of ["a", "b", "c"]) {
    saga = saga.step(step, {
      execute: (d) => d,
      compensate: comp(step),
      compensateRetry: retry.fixed({ maxAttempts: 2, delay: 5 }),
    });
  }
  return saga.step("d", {
    execute: () => {
      throw new BusinessError("D_FAILED", "d failed for good");
    },
  });
}

const fixes = new Set<string>();

/** All three compensations must have started before any may finish: proves they run at once. */
const barrier = new Map<string, { started: number; open: () => void; opened: Promise<void> }>();
async function waitForAll(id: string) {
  let entry = barrier.get(id);
  if (!entry) {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    entry = { started: 0, open, opened };
    barrier.set(id, entry);
  }
  entry.started++;
  if (entry.started === 3) entry.open();
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error("barrier: not all compensations started")), 5_000),
  );
  await Promise.race([entry.opened, timeout]);
}

const sequential = threeSteps("comp-sequential", compensation.sequential());
const parallel = threeSteps("comp-parallel", compensation.parallel({ timeout: "10s" }), waitForAll);
const bestEffort = threeSteps("comp-best-effort", compensation.bestEffort());
const forwardOrder = threeSteps(
  "comp-custom",
  compensation.custom({
    order: (steps) => [...steps].sort((x, y) => x.index - y.index),
    shouldCompensate: (e) => e?.code !== "NO_UNDO",
  }),
);
const noUndo = defineSaga({
  name: "comp-custom-skip",
  input,
  compensation: compensation.custom({ shouldCompensate: (e) => e?.code !== "NO_UNDO" }),
})
  .step("a", { execute: (d) => d, compensate: (_d, ctx) => note(ctx.sagaId, "start:a") })
  .step("b", {
    execute: () => {
      throw new BusinessError("NO_UNDO", "leave it");
    },
  });

const harness = useEngine(db, () => [sequential, parallel, bestEffort, forwardOrder, noUndo], {
  concurrency: 8,
});
const e = () => harness.engine;

describe("compensation strategies", () => {
  it("sequential: reverse order, one at a time", async () => {
    const { id } = await e().start(sequential, {});
    expect((await e().waitFor(id)).state).toBe("compensated");
    expect(log.get(id)).toEqual(["start:c", "end:c", "start:b", "end:b", "start:a", "end:a"]);
  });

  it("parallel: all compensations run at once as separate jobs", async () => {
    const { id } = await e().start(parallel, {});
    const done = await e().waitFor(id);
    expect(done.state).toBe("compensated");
    const entries = log.get(id) ?? [];
    // Every compensation started before any finished (the barrier would have thrown otherwise).
    expect(entries.slice(0, 3).every((x) => x.startsWith("start:"))).toBe(true);
    expect(entries.filter((x) => x.startsWith("end:")).sort()).toEqual(["end:a", "end:b", "end:c"]);
    expect(done.steps.slice(0, 3).map((s) => [s.status, s.compensationAttempt])).toEqual([
      ["compensated", 1],
      ["compensated", 1],
      ["compensated", 1],
    ]);
    expect((await eventTrail(db, id)).at(-1)).toBe("compensation.completed");
  });

  it("bestEffort: a compensation that runs out of attempts does not stop the others", async () => {
    const { id } = await e().start(bestEffort, { failCompensationOf: ["b"] });
    const done = await e().waitFor(id);
    expect(done.state).toBe("compensation_failed");
    expect(done.error).toMatchObject({ code: "COMPENSATION_FAILED", details: { failedSteps: ["b"] } });
    expect(done.steps.slice(0, 3).map((s) => s.status)).toEqual([
      "compensated",
      "compensation_failed",
      "compensated",
    ]);
    expect(log.get(id)).toEqual(["start:c", "end:c", "start:b", "start:b", "start:a", "end:a"]);
  });

  it("custom: its own order, and shouldCompensate can refuse (ending failed)", async () => {
    const ordered = await e().start(forwardOrder, {});
    expect((await e().waitFor(ordered.id)).state).toBe("compensated");
    expect(log.get(ordered.id)?.filter((x) => x.startsWith("start:"))).toEqual([
      "start:a",
      "start:b",
      "start:c",
    ]);

    const skipped = await e().start(noUndo, {});
    const done = await e().waitFor(skipped.id);
    expect(done.state).toBe("failed");
    expect(done.error).toMatchObject({ code: "NO_UNDO" });
    expect(log.get(skipped.id)).toBeUndefined();
  });

  it("sequential: an exhausted compensation stops in compensation_failed; retry() resumes it to compensated", async () => {
    const { id } = await e().start(sequential, { failCompensationOf: ["b"] });
    const stuck = await e().waitFor(id);
    expect(stuck.state).toBe("compensation_failed");
    expect(stuck.error).toMatchObject({ code: "COMPENSATION_FAILED", step: "b" });
    // c undone, b failed twice, a untouched: the operator must act.
    expect(log.get(id)).toEqual(["start:c", "end:c", "start:b", "start:b"]);
    expect(stuck.steps.slice(0, 3).map((s) => s.status)).toEqual([
      "succeeded",
      "compensation_failed",
      "compensated",
    ]);
    expect((await eventTrail(db, id)).at(-1)).toBe("compensation.failed");

    fixes.add(id);
    await expect(e().retry(id, { by: "ops", reason: "refund service fixed" })).resolves.toEqual({
      state: "compensating",
    });
    const done = await e().waitFor(id);
    expect(done.state).toBe("compensated");
    expect(log.get(id)?.slice(4)).toEqual(["start:b", "end:b", "start:a", "end:a"]);
    expect(done.steps[1]).toMatchObject({ status: "compensated", compensationAttempt: 3 });
    const { rows } = await db.pool.query(
      "select payload from saga.events where saga_id = $1 and type = 'compensation.started' order by seq",
      [id],
    );
    expect(rows[1].payload).toMatchObject({
      manual: true,
      by: "ops",
      reason: "refund service fixed",
      resumed: true,
    });
  });
});
