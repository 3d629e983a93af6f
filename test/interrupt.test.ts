/**
 * A cancel (or deadline) while a step runs: the step's compensation waits for the aborted attempt to end, so
 * an undo never runs before the call it undoes has stopped. A handler that ignores its signal holds the
 * compensation back for the worker's `abortGrace` only.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const trail = new Map<string, string[]>();
const note = (sagaId: string, what: string) => trail.set(sagaId, [...(trail.get(sagaId) ?? []), what]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const saga = defineSaga({
  name: "interrupted",
  input: z.object({ cleanupMs: z.number().int(), ignoreSignal: z.boolean() }),
})
  .step("reserve", {
    execute: (data, ctx) => {
      note(ctx.sagaId, "reserve");
      return data;
    },
    compensate: (_data, ctx) => {
      note(ctx.sagaId, "undo reserve");
    },
  })
  .step("charge", {
    execute: async (data, ctx) => {
      note(ctx.sagaId, "charge started");
      if (data.ignoreSignal) await sleep(3_000);
      else
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener("abort", () => void sleep(data.cleanupMs).then(() => resolve())),
        );
      note(ctx.sagaId, "charge returned");
      return data;
    },
    compensate: (_data, ctx) => {
      note(ctx.sagaId, `undo charge (${ctx.outcome})`);
    },
  });

const harness = useEngine(db, () => [saga], { abortGrace: 1_000 });

async function cancelWhileCharging(input: { cleanupMs: number; ignoreSignal: boolean }) {
  const { engine } = harness;
  const { id } = await engine.start(saga, input);
  for (let i = 0; i < 400 && !trail.get(id)?.includes("charge started"); i++) await sleep(10);
  await engine.cancel(id, "customer changed their mind");
  // While its compensation waits for the aborted attempt, the saga is moving, not stuck.
  const stuck = await engine.pool.query("select reason from saga.stuck where id = $1", [id]);
  expect(stuck.rows).toEqual([]);
  const done = await engine.waitFor(id, { timeoutMs: 20_000 });
  return { done, trail: () => trail.get(id) ?? [] };
}

describe("a step interrupted by a cancel", () => {
  it("is compensated only after its aborted handler returned", async () => {
    const { done, trail } = await cancelWhileCharging({ cleanupMs: 300, ignoreSignal: false });
    expect(done.state).toBe("cancelled");
    expect(trail()).toEqual([
      "reserve",
      "charge started",
      "charge returned",
      "undo charge (unknown)",
      "undo reserve",
    ]);
    // The attempt's lease was kept until it ended, then released: nothing is left leased.
    const { rows } = await harness.engine.pool.query(
      "select count(*)::int as n from saga.steps where saga_id = $1 and lease_owner is not null",
      [done.id],
    );
    expect(rows[0]).toEqual({ n: 0 });
  });

  it("whose handler ignores its signal holds the compensation back for abortGrace only", async () => {
    const { done, trail } = await cancelWhileCharging({ cleanupMs: 0, ignoreSignal: true });
    expect(done.state).toBe("cancelled");
    // Compensated once the grace passed, while the handler was still running.
    expect(trail()).toEqual(["reserve", "charge started", "undo charge (unknown)", "undo reserve"]);
    await sleep(3_500);
    expect(trail().at(-1)).toBe("charge returned");
  });
});
