/**
 * Properties of the saga state machine (worker/decide.ts, worker/compensation-plan.ts), with no database: an
 * in-memory saga is driven the way a worker drives it (jobs that plan the next claim, handlers that return,
 * throw, time out or are lost, cancels and deadlines at any point, retried jobs, late duplicate results), each
 * decision taken on a Transition over the saga as the last one left it. Whatever happens: one terminal state,
 * reached once and kept; compensations only of the steps that may have had an effect and have a handler, in
 * reverse order when sequential; no claim after the end; event seqs strictly increasing; stale results refused.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, RetryableError, compensation, defineSaga, retry } from "../src/index.js";
import type { AnySaga } from "../src/definition.js";
import type { EventRow } from "../src/sql/apply-transition.js";
import {
  type Claim,
  type DecideEnv,
  type LockedSaga,
  type SagaState,
  TERMINAL_STATES,
} from "../src/model.js";
import { planNext, recordFailure, recordSuccess } from "../src/worker/decide.js";
import { endInterrupted, interrupt } from "../src/worker/interrupt.js";
import { Transition } from "../src/worker/transition.js";

type Strategy = "sequential" | "parallel" | "bestEffort";
type Outcome = "success" | "retryable" | "business" | "timeout" | "lost";

interface Shape {
  strategy: Strategy;
  steps: { compensate: boolean; transactional: boolean; maxAttempts: number }[];
}

type Action =
  /** A saga job runs: `only` is the step of a parallel compensation's job. */
  | { kind: "job"; only: number | null }
  /** The handler of one held claim ends. */
  | { kind: "finish"; pick: number; outcome: Outcome }
  | { kind: "cancel" }
  | { kind: "deadline" }
  /** Time passes: scheduled retries are due. */
  | { kind: "tick" }
  /** A late duplicate of an earlier result, or a result of an older attempt of a held claim. */
  | { kind: "stale"; pick: number; success: boolean };

const shapeArb: fc.Arbitrary<Shape> = fc.record({
  strategy: fc.constantFrom<Strategy>("sequential", "parallel", "bestEffort"),
  steps: fc.array(
    fc.record({
      compensate: fc.boolean(),
      transactional: fc.boolean(),
      maxAttempts: fc.integer({ min: 1, max: 3 }),
    }),
    { minLength: 1, maxLength: 6 },
  ),
});

/** `success`: how many times likelier a handler succeeds than it ends in each other way. */
const workArb = (success: number): fc.Arbitrary<Action> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("job" as const), only: fc.option(fc.nat(5)) }) },
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant("finish" as const),
        pick: fc.nat(3),
        outcome: fc.oneof(
          { weight: success, arbitrary: fc.constant<Outcome>("success") },
          fc.constantFrom<Outcome>("retryable", "business", "timeout", "lost"),
        ),
      }),
    },
    { weight: 2, arbitrary: fc.constant({ kind: "tick" as const }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("stale" as const), pick: fc.nat(10), success: fc.boolean() }),
    },
  );

/** Work, with a cancel or a deadline (or two: a second one finds the first done) at random points, or none. */
const actionsArb = (maxLength: number, success = 3): fc.Arbitrary<Action[]> =>
  fc
    .tuple(
      fc.array(workArb(success), { maxLength }),
      fc.oneof(
        fc.constant([]),
        fc.array(
          fc.record({ at: fc.nat(maxLength), kind: fc.constantFrom("cancel" as const, "deadline" as const) }),
          { minLength: 1, maxLength: 2 },
        ),
      ),
    )
    .map(([work, interrupts]) => {
      const actions = [...work];
      for (const { at, kind } of interrupts) actions.splice(Math.min(at, actions.length), 0, { kind });
      return actions;
    });

/**
 * Sagas sent into compensation on purpose: `k` steps succeed, then a cancel, a deadline (while the next step
 * runs, or between steps) or a failure for good; then random outcomes (compensations fail too).
 */
const compensatingArb: fc.Arbitrary<[Shape, Action[]]> = shapeArb.chain((shape) =>
  fc
    .tuple(
      fc.integer({ min: 0, max: shape.steps.length - 1 }),
      fc.constantFrom("cancel", "deadline", "cancel-running", "deadline-running", "business", "timeout"),
      fc.array(workArb(2), { maxLength: 30 }),
    )
    .map(([k, end, rest]): [Shape, Action[]] => {
      const actions: Action[] = [];
      for (let i = 0; i < k; i++)
        actions.push({ kind: "job", only: null }, { kind: "finish", pick: 0, outcome: "success" });
      if (end === "cancel" || end === "deadline") actions.push({ kind: end });
      else if (end === "cancel-running" || end === "deadline-running")
        actions.push({ kind: "job", only: null }, { kind: end === "cancel-running" ? "cancel" : "deadline" });
      else actions.push({ kind: "job", only: null }, { kind: "finish", pick: 0, outcome: end });
      return [shape, [...actions, ...rest]];
    }),
);

/** Random runs, and twice as many sent into compensation. */
const scenarioArb: fc.Arbitrary<[Shape, Action[]]> = fc.oneof(
  { weight: 1, arbitrary: fc.tuple(shapeArb, actionsArb(40)) },
  { weight: 2, arbitrary: compensatingArb },
);

function define(shape: Shape): AnySaga {
  const strategy = {
    sequential: compensation.sequential(),
    parallel: compensation.parallel(),
    bestEffort: compensation.bestEffort(),
  }[shape.strategy];
  let saga: AnySaga = defineSaga({ name: "prop", input: z.object({}), compensation: strategy });
  shape.steps.forEach((s, i) => {
    const options = {
      execute: (d: unknown) => d,
      ...(s.compensate ? { compensate: () => undefined } : {}),
      retry: retry.fixed({ maxAttempts: s.maxAttempts, delay: "1s" }),
      compensateRetry: retry.fixed({ maxAttempts: 2, delay: "1s" }),
    };
    saga = s.transactional
      ? saga.step(`s${i}`, { ...options, transactional: true })
      : saga.step(`s${i}`, options);
  });
  return saga;
}

const ENDING_EVENT: Record<string, string> = {
  completed: "saga.completed",
  failed: "saga.failed",
  cancelled: "saga.cancelled",
  timed_out: "saga.timed_out",
  compensation_failed: "compensation.failed",
};

/** One saga, one worker: the database is `saga` as the last committed transition left it. */
class Simulation {
  saga: LockedSaga = {
    id: "00000000-0000-4000-8000-000000000001",
    xmin: "1",
    name: "prop",
    version: 1,
    state: "running",
    data: {},
    current_step: 0,
    compensation_cause: null,
    seq: 1,
    error: null,
    steps: [],
  };
  readonly events: EventRow[] = [{ seq: 1, type: "saga.started" }];
  /** Claims whose handler runs now, and those whose result was recorded (for late duplicates). */
  readonly held: Claim[] = [];
  readonly recorded: Claim[] = [];
  readonly active = new Set<string>();
  /** Every claim, with the state the saga was in when it was taken. */
  readonly claims: { claim: Claim; before: SagaState }[] = [];
  /** Transitions that moved the saga into a terminal state. */
  endings = 0;
  /** The steps compensable when the saga began compensating (null: it never did). */
  compensable: number[] | null = null;
  readonly env: DecideEnv;

  constructor(readonly def: AnySaga) {
    this.env = {
      workerId: "w1",
      leaseMs: () => 30_000,
      isActive: (_id, kind, index) => this.active.has(`${kind}/${index}`),
    };
  }

  /** One transition: decided on a copy of the saga, committed whole. */
  commit(decide: (t: Transition) => Claim | null | void): Transition {
    const before = this.saga.state;
    const statuses = this.saga.steps.map((s) => s.status);
    const t = new Transition(structuredClone(this.saga));
    const claim = decide(t) ?? null;
    if (TERMINAL_STATES.has(before)) {
      // Nothing moves a saga that has ended: no claim, no event, no status. (An interrupted attempt that ends
      // afterwards still gives its lease back.)
      expect(claim).toBeNull();
      expect(t.writtenEvents).toEqual([]);
      expect(t.saga.state).toBe(before);
      expect(t.saga.steps.map((s) => s.status)).toEqual(statuses);
    }
    for (const event of t.writtenEvents) {
      expect(event.seq).toBeGreaterThan(this.events[this.events.length - 1]!.seq);
      this.events.push(event);
    }
    this.saga = t.saga;
    if (!TERMINAL_STATES.has(before) && TERMINAL_STATES.has(this.saga.state)) this.endings += 1;
    if (before !== "compensating" && this.saga.state === "compensating" && this.compensable === null)
      this.compensable = this.saga.steps
        .filter(
          (r) =>
            this.def.steps[r.index]?.compensate !== undefined &&
            // "compensating": claimed in the very transition that began compensating.
            (r.status === "succeeded" ||
              r.status === "compensating" ||
              (r.status === "failed" && r.error?.outcome === "unknown")),
        )
        .map((r) => r.index);
    if (claim) this.take(claim, before);
    return t;
  }

  private take(claim: Claim, before: SagaState): void {
    this.claims.push({ claim, before });
    this.held.push(claim);
    this.active.add(`${claim.kind}/${claim.index}`);
    // One advancer: at most one step executing; one compensation at a time unless the strategy is parallel.
    expect(this.held.filter((c) => c.kind === "execute").length).toBeLessThanOrEqual(1);
    if (!this.def.compensation.concurrent)
      expect(this.held.filter((c) => c.kind === "compensate").length).toBeLessThanOrEqual(1);
  }

  private release(claim: Claim): void {
    this.held.splice(this.held.indexOf(claim), 1);
    this.active.delete(`${claim.kind}/${claim.index}`);
  }

  job(only: number | undefined): void {
    this.commit((t) => planNext(t, this.def, this.env, only));
  }

  /** The handler of `claim` ended with `outcome`; like runClaim, the next claim is taken in the same commit. */
  finish(claim: Claim, outcome: Outcome): void {
    this.release(claim);
    if (outcome === "lost") return; // the process died: no record; the next transition finds the lease
    this.recorded.push(claim);
    const { def, env } = this;
    this.commit((t) => {
      const applied = record(t, def, env, claim, outcome);
      if (!applied) endInterrupted(t, env, claim);
      return planNext(
        t,
        def,
        env,
        claim.kind === "compensate" && def.compensation.concurrent ? claim.index : undefined,
      );
    });
  }

  stale(pick: number, success: boolean): void {
    const candidates = [
      ...this.recorded,
      ...this.held.filter((c) => c.attempt > 1).map((c) => ({ ...c, attempt: c.attempt - 1 })),
    ];
    const claim = candidates[pick % Math.max(1, candidates.length)];
    if (!claim) return;
    const t = this.commit((t) => {
      expect(record(t, this.def, this.env, claim, success ? "success" : "retryable")).toBe(false);
    });
    expect(t.empty).toBe(true);
  }

  tick(): void {
    for (const row of this.saga.steps) row.due = true;
  }

  run(action: Action): void {
    switch (action.kind) {
      case "job":
        return this.job(action.only === null ? undefined : action.only);
      case "finish": {
        const claim = this.held[action.pick % Math.max(1, this.held.length)];
        return claim ? this.finish(claim, action.outcome) : this.job(undefined);
      }
      case "cancel":
        return void this.commit((t) => void interrupt(t, this.def, "cancel", "changed my mind", "ops"));
      case "deadline":
        return void this.commit((t) => void interrupt(t, this.def, "timeout", "the saga deadline passed"));
      case "tick":
        return this.tick();
      case "stale":
        return this.stale(action.pick, action.success);
    }
  }

  /** Every handler succeeds from here on, jobs run for each step, time passes: the saga must end. */
  drain(): void {
    for (let i = 0; i < 500; i++) {
      this.tick();
      const claim = this.held[0];
      if (claim) this.finish(claim, "success");
      else if (TERMINAL_STATES.has(this.saga.state)) return;
      else if (this.def.compensation.concurrent && this.saga.state === "compensating")
        for (let only = 0; only < this.def.steps.length; only++) this.job(only);
      else this.job(undefined);
    }
    throw new Error(`the saga did not end: ${JSON.stringify(this.saga)}`);
  }
}

function record(t: Transition, def: AnySaga, env: DecideEnv, claim: Claim, outcome: Outcome): boolean {
  switch (outcome) {
    case "success":
      return recordSuccess(t, def, env, claim, { [`${claim.kind}-${claim.index}`]: claim.attempt }, 1);
    case "retryable":
      return recordFailure(t, def, env, claim, new RetryableError(new Error("upstream down")), "error");
    case "business":
      return recordFailure(t, def, env, claim, new BusinessError("DECLINED", "declined"), "error");
    case "timeout":
      return recordFailure(t, def, env, claim, new Error("step timed out"), "timeout");
    case "lost":
      throw new Error("a lost attempt records nothing");
  }
}

function simulate(shape: Shape, actions: Action[]): Simulation {
  const sim = new Simulation(define(shape));
  for (const action of actions) sim.run(action);
  sim.drain();
  return sim;
}

const RUNS = { numRuns: 400 };

describe("the saga state machine, property-tested without a database", () => {
  it("every sequence of outcomes, cancels and deadlines ends in exactly one terminal state, kept", () => {
    fc.assert(
      fc.property(scenarioArb, ([shape, actions]) => {
        const sim = simulate(shape, actions);
        const final = sim.saga.state;
        expect(TERMINAL_STATES.has(final)).toBe(true);
        expect(sim.endings).toBe(1);
        // After the end nothing is claimed, whatever job runs.
        for (const only of [undefined, ...shape.steps.keys()]) sim.job(only);
        expect(sim.claims.every((c) => !TERMINAL_STATES.has(c.before))).toBe(true);
        // The events say the same ending, once.
        const count = (type: string) => sim.events.filter((e) => e.type === type).length;
        for (const [state, type] of Object.entries(ENDING_EVENT))
          expect(count(type), type).toBe(state === final ? 1 : 0);
        const undone =
          final === "compensated" || (sim.compensable !== null && final !== "compensation_failed");
        expect(count("compensation.completed")).toBe(undone ? 1 : 0);
        if (final === "completed") expect(sim.saga.steps.every((s) => s.status === "succeeded")).toBe(true);
      }),
      RUNS,
    );
  });

  it("compensates only completed-or-unknown steps with a handler, in reverse order when not parallel", () => {
    fc.assert(
      fc.property(scenarioArb, ([shape, actions]) => {
        const sim = simulate(shape, actions);
        const compensations = sim.claims.filter((c) => c.claim.kind === "compensate").map((c) => c.claim);
        if (sim.compensable === null) {
          expect(compensations).toEqual([]);
          return;
        }
        const compensable = new Set(sim.compensable);
        // Every step that reported success and has a handler is among them; none never claimed is.
        const executed = new Set(
          sim.claims.filter((c) => c.claim.kind === "execute").map((c) => c.claim.index),
        );
        for (const e of sim.events)
          if (e.type === "saga.step.completed") {
            const index = Number(e.step!.slice(1));
            if (shape.steps[index]!.compensate) expect(compensable.has(index)).toBe(true);
          }
        for (const index of compensable) {
          expect(executed.has(index)).toBe(true);
          expect(shape.steps[index]!.compensate).toBe(true);
        }
        for (const c of compensations) {
          expect(compensable.has(c.index)).toBe(true);
          // An attempt that never ran the step's effect (a transactional one that did not commit) is not undone.
          expect(c.outcome === "unknown" && shape.steps[c.index]!.transactional).toBe(false);
        }
        if (shape.strategy !== "parallel") {
          const order = compensations.map((c) => c.index);
          for (let i = 1; i < order.length; i++) expect(order[i]).toBeLessThanOrEqual(order[i - 1]!);
        }
        const final = sim.saga.state;
        if (final !== "compensation_failed") {
          expect(new Set(compensations.map((c) => c.index))).toEqual(compensable);
          for (const index of compensable)
            expect(sim.saga.steps.find((s) => s.index === index)?.status).toBe("compensated");
        } else {
          expect(sim.saga.steps.some((s) => s.status === "compensation_failed")).toBe(true);
        }
      }),
      RUNS,
    );
  });

  it("event seqs strictly increase, one by one, and the saga's seq is the last one", () => {
    fc.assert(
      fc.property(scenarioArb, ([shape, actions]) => {
        const sim = simulate(shape, actions);
        const seqs = sim.events.map((e) => e.seq);
        for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1);
        expect(sim.saga.seq).toBe(seqs[seqs.length - 1]);
      }),
      RUNS,
    );
  });

  it("a result recorded with a stale attempt is refused and writes nothing", () => {
    fc.assert(
      fc.property(scenarioArb, fc.boolean(), ([shape, actions], success) => {
        const sim = new Simulation(define(shape));
        // After every step of the run: every result already recorded, and an older attempt of every claim
        // held, once more.
        const late = () => {
          const count = sim.recorded.length + sim.held.filter((c) => c.attempt > 1).length;
          for (let pick = 0; pick < count; pick++) sim.stale(pick, success);
        };
        for (const action of actions) {
          sim.run(action);
          late();
        }
        sim.drain();
        late();
        expect(TERMINAL_STATES.has(sim.saga.state)).toBe(true);
      }),
      RUNS,
    );
  });
});
