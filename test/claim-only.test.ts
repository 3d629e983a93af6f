/**
 * Which transitions commit without waiting for the disk (Transition.claimOnly): only those that write nothing but
 * claims. Decided by the real state machine (planNext, recordSuccess, recordFailure) on an in-memory saga; no
 * database. A record, a failure, a state change or a job in the same transition keeps the commit synchronous.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defineSaga, retry } from "../src/index.js";
import type { Claim, DecideEnv, LockedSaga, StepRow } from "../src/model.js";
import { planNext, recordFailure, recordSuccess } from "../src/worker/decide.js";
import { Transition } from "../src/worker/transition.js";

const def = defineSaga({
  name: "claims",
  input: z.object({}),
  retry: retry.fixed({ maxAttempts: 3, delay: 0 }),
})
  .step("one", { execute: () => {}, compensate: () => {} })
  .step("two", { execute: () => {}, compensate: () => {} });

const env: DecideEnv = { workerId: "w1", leaseMs: () => 60_000, isActive: () => true };

const row = (index: number, fields: Partial<StepRow>): StepRow => ({
  index,
  name: index === 0 ? "one" : "two",
  status: "pending",
  attempt: 0,
  attempt_base: 0,
  compensation_attempt: 0,
  compensation_attempt_base: 0,
  lease_owner: null,
  due: true,
  error: null,
  ...fields,
});

const saga = (fields: Partial<LockedSaga> = {}): LockedSaga => ({
  id: "00000000-0000-4000-8000-000000000002",
  xmin: "1",
  name: "claims",
  version: 1,
  state: "running",
  data: {},
  current_step: 0,
  compensation_cause: null,
  seq: 1,
  error: null,
  steps: [],
  ...fields,
});

const running = () => saga({ seq: 2, steps: [row(0, { status: "running", attempt: 1, lease_owner: "w1" })] });
const claimOfOne = (): Claim => ({ kind: "execute", index: 0, attempt: 1, step: def.steps[0]! });

describe("Transition.claimOnly", () => {
  it("a saga's first claim: nothing but the claim, so its commit need not wait for the disk", () => {
    const t = new Transition(saga());
    expect(planNext(t, def, env)).toMatchObject({ kind: "execute", index: 0, attempt: 1 });
    expect(t.claimOnly).toBe(true);
  });

  it("a claim after a retry delay, fenced on the pending row: still only a claim", () => {
    const t = new Transition(saga({ seq: 4, steps: [row(0, { status: "pending", attempt: 1 })] }));
    expect(planNext(t, def, env)).toMatchObject({ index: 0, attempt: 2 });
    expect(t.claimOnly).toBe(true);
  });

  it("a compensation claim: only a claim", () => {
    const t = new Transition(
      saga({
        state: "compensating",
        compensation_cause: "failure",
        current_step: 1,
        seq: 6,
        steps: [row(0, { status: "succeeded", attempt: 1 }), row(1, { status: "failed", attempt: 3 })],
      }),
    );
    expect(planNext(t, def, env)).toMatchObject({ kind: "compensate", index: 0 });
    expect(t.claimOnly).toBe(true);
  });

  it("the record of a step with the claim of the next: synchronous", () => {
    const t = new Transition(running());
    expect(recordSuccess(t, def, env, claimOfOne(), { ok: 1 }, 3)).toBe(true);
    expect(planNext(t, def, env)).toMatchObject({ index: 1 });
    expect(t.claimOnly).toBe(false);
  });

  it("a failure retried at once and claimed again in the same transition: synchronous", () => {
    const t = new Transition(running());
    expect(recordFailure(t, def, env, claimOfOne(), new Error("boom"), "error")).toBe(true);
    expect(planNext(t, def, env)).toMatchObject({ index: 0, attempt: 2 });
    expect(t.claimOnly).toBe(false);
  });

  it("a lease of this worker's that no longer runs, written off before the claim: synchronous", () => {
    const t = new Transition(running());
    const lost: DecideEnv = { ...env, isActive: () => false };
    expect(planNext(t, def, lost)).toMatchObject({ index: 0, attempt: 2 });
    expect(t.claimOnly).toBe(false);
  });

  it("the last record, which completes the saga: synchronous", () => {
    const t = new Transition(
      saga({
        current_step: 1,
        seq: 4,
        steps: [
          row(0, { status: "succeeded", attempt: 1 }),
          row(1, { status: "running", attempt: 1, lease_owner: "w1" }),
        ],
      }),
    );
    const claim: Claim = { kind: "execute", index: 1, attempt: 1, step: def.steps[1]! };
    expect(recordSuccess(t, def, env, claim, undefined, 1)).toBe(true);
    expect(planNext(t, def, env)).toBeNull();
    expect(t.saga.state).toBe("completed");
    expect(t.claimOnly).toBe(false);
  });
});
