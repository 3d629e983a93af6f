/**
 * Where conditions and child sagas meet failure: a `when` that throws after a compensable step, an operator's
 * retry of a condition that threw, and a child that could not undo its own steps. Real engine, real worker.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, defineSaga, retry } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const input = z.object({ n: z.number() });
const calls: string[] = [];
let condition: "throw" | "false" = "throw";

const throwsAfterStep = defineSaga({ name: "edge-when-throws-after", input })
  .step("a", { execute: (d) => (calls.push("a"), d), compensate: () => void calls.push("undo-a") })
  .step("b", {
    when: () => {
      throw new Error("condition broke");
    },
    execute: (d) => (calls.push("b"), d),
  });

const throwsFirst = defineSaga({ name: "edge-when-throws-first", input }).step("only", {
  when: () => {
    if (condition === "throw") throw new Error("condition broke");
    return false;
  },
  execute: (d) => (calls.push("only-ran"), d),
});

// A child whose first step cannot be undone and whose second step fails: it ends compensation_failed.
const stubborn = defineSaga({ name: "edge-stubborn-child", input })
  .step("c1", {
    execute: (d) => d,
    compensate: () => {
      throw new BusinessError("CANNOT_UNDO", "c1 cannot be undone");
    },
    compensateRetry: retry.none(),
  })
  .step("c2", {
    execute: () => {
      throw new BusinessError("C2_REFUSED", "c2 refused");
    },
  });
const parent = defineSaga({ name: "edge-parent", input })
  .step("p1", { execute: (d) => d, compensate: () => void calls.push("undo-p1") })
  .child("kid", { saga: stubborn, input: (d) => d });

const t = useEngine(db, () => [throwsAfterStep, throwsFirst, stubborn, parent]);

describe("conditions and children at their failure edges", () => {
  it("a when that throws after a compensable step fails it for good and compensates the step before", async () => {
    const { id } = await t.engine.start(throwsAfterStep, { n: 1 });
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("compensated");
    expect(done.steps[1]).toMatchObject({ name: "b", status: "failed" });
    expect(calls.filter((c) => c.endsWith("a"))).toEqual(["a", "undo-a"]);
    expect(calls).not.toContain("b");
  });

  it("an operator's retry of a condition that threw evaluates the condition again", async () => {
    const { id } = await t.engine.start(throwsFirst, { n: 1 });
    expect((await t.engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("failed");
    condition = "false";
    await t.engine.retry(id);
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("completed");
    expect(done.steps[0]?.status).toBe("skipped");
    expect(calls).not.toContain("only-ran");
  });

  it("a child left compensation_failed leaves its parent compensation_failed, not compensated", async () => {
    const { id } = await t.engine.start(parent, { n: 2 });
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    const { rows } = await db.pool.query<{ state: string }>(
      "select state from saga.instances where parent_id = $1",
      [id],
    );
    expect(rows).toEqual([{ state: "compensation_failed" }]);
    expect(done.state).toBe("compensation_failed");
    expect(done.steps[1]).toMatchObject({
      name: "kid",
      status: "compensation_failed",
      error: { code: "CHILD_FAILED", details: { state: "compensation_failed" } },
    });
  });
});
