/**
 * A transition's instance and step patches are typed by the keys saga._apply reads: a misspelt key does not
 * compile (the `@ts-expect-error` lines below fail `tsc` the day it compiles again), and what is patched is
 * what is written and what the next decision of the same transition sees. No database: the writes are read
 * from the SQL text the transition would send.
 */
import { describe, expect, it } from "vitest";
import type { LockedSaga } from "../src/model.js";
import { Transition } from "../src/worker/transition.js";

const saga = (): LockedSaga => ({
  id: "00000000-0000-4000-8000-000000000001",
  xmin: "1",
  name: "order",
  version: 1,
  state: "running",
  data: { a: 1 },
  current_step: 0,
  compensation_cause: null,
  seq: 0,
  error: null,
  steps: [],
});

/** The JSON arguments of the saga._apply call the transition would send. */
function written(t: Transition): { instance: Record<string, unknown>; steps: Record<string, unknown>[] } {
  const sql = t.flushSql() ?? "";
  const literals = [...sql.matchAll(/'((?:[^']|'')*)'::jsonb/g)].map((m) =>
    (m[1] ?? "").replaceAll("''", "'"),
  );
  return {
    instance: JSON.parse(literals[0] ?? "null") as Record<string, unknown>,
    steps: JSON.parse(literals[1] ?? "null") as Record<string, unknown>[],
  };
}

describe("typed transition patches", () => {
  it("writes what is patched and keeps the in-memory saga in step", () => {
    const t = new Transition(saga());
    t.setInstance({ data: { b: 2 }, current_step: 1 });
    t.patchStep({ index: 0, name: "reserve", status: "succeeded", attempt: 1, finished: true });
    t.setState("compensating", { compensation_cause: "cancel", error: { code: "CANCELLED" } });
    expect(t.saga).toMatchObject({
      state: "compensating",
      data: { b: 2 },
      current_step: 1,
      compensation_cause: "cancel",
      error: { code: "CANCELLED" },
    });
    expect(t.step(0)).toMatchObject({ status: "succeeded", attempt: 1 });
    expect(written(t)).toEqual({
      instance: {
        data: { b: 2 },
        current_step: 1,
        compensation_cause: "cancel",
        error: { code: "CANCELLED" },
        state: "compensating",
      },
      steps: [{ index: 0, name: "reserve", status: "succeeded", attempt: 1, finished: true }],
    });
  });

  it("refuses a misspelt key or an unknown status at compile time", () => {
    const t = new Transition(saga());
    const misspelt = () => {
      // @ts-expect-error: saga._apply reads current_step, not curent_step
      t.setInstance({ curent_step: 1 });
      // @ts-expect-error: the state is its own argument, and `finshed` is no column
      t.setState("completed", { finshed: true });
      // @ts-expect-error: no such step status
      t.patchStep({ index: 0, name: "reserve", status: "done" });
      // @ts-expect-error: lease_ms, not lease
      t.patchStep({ index: 0, name: "reserve", status: "running", lease: 1_000 });
    };
    expect(typeof misspelt).toBe("function");
    expect(t.empty).toBe(true);
  });

  it("fences a row only by its first patch in the transition: the row as read, not this transition's own write", () => {
    // A row this transition inserts (a claim of a step never run) has no fence, though a later decision of the
    // same transition (its failure recorded at once) patches it with one: saga._apply would refuse it (SG409).
    const inserted = new Transition(saga());
    inserted.patchStep({ index: 0, name: "reserve", status: "running", attempt: 1, lease_owner: null });
    inserted.patchStep({
      index: 0,
      name: "reserve",
      status: "failed",
      finished: true,
      fence: { status: "running", attempt: 1, lease_owner: null },
    });
    expect(written(inserted).steps[0]).not.toHaveProperty("fence");

    // A row read under lock keeps the fence of its first patch.
    const read = saga();
    read.steps.push({
      index: 0,
      name: "reserve",
      status: "pending",
      attempt: 1,
      attempt_base: 0,
      compensation_attempt: 0,
      compensation_attempt_base: 0,
      lease_owner: null,
      due: true,
      error: null,
    });
    const existing = new Transition(read);
    const first = { status: "pending" as const, attempt: 1, lease_owner: null };
    existing.patchStep({ index: 0, name: "reserve", status: "running", attempt: 2, fence: first });
    existing.patchStep({
      index: 0,
      name: "reserve",
      status: "failed",
      fence: { status: "running", attempt: 2, lease_owner: null },
    });
    expect(written(existing).steps[0]).toMatchObject({ status: "failed", fence: first });
  });
});
