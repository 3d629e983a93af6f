/**
 * Groups of steps: the branches of a `.parallel()` group run side by side, each as its own job with its own
 * claim → call → record, lease and fence; the record that finishes the group's last branch assembles
 * `{ [branch]: output }` and moves the saga to the next group. `when` conditions skip steps. A saga of plain
 * steps without conditions never comes here (see {@link isGraph}).
 */
import type { AnySaga, StepDefinition } from "../definition.js";
import { type StoredError, toStoredError } from "../errors.js";
import { beginCompensation } from "./compensation-plan.js";
import type { Claim, DecideEnv, StepRow } from "../model.js";
import type { Transition } from "./transition.js";

/** Outputs of a group's succeeded branches, decoded, by step index: the step rows hold them, LockedSaga does not. */
export type GroupOutputs = ReadonlyMap<number, unknown>;

const graphs = new WeakMap<AnySaga, boolean>();

/** Whether a saga has a group of several branches or a `when` condition: plain sagas take the plain path. */
export function isGraph(def: AnySaga): boolean {
  let graph = graphs.get(def);
  if (graph === undefined) {
    graph = def.groups.some((g) => g.length > 1) || def.steps.some((s) => s.when !== undefined);
    graphs.set(def, graph);
  }
  return graph;
}

export const groupOf = (def: AnySaga, step: StepDefinition): readonly StepDefinition[] =>
  def.groups[step.group] ?? [step];

/** A branch of a group of several: it runs as its own job and does not move the saga on by itself. */
export const isBranch = (def: AnySaga, step: StepDefinition): boolean => groupOf(def, step).length > 1;

/** The job payload `step` a claim's next decision is about: its branch, or its concurrent compensation. */
export function onlyFor(def: AnySaga, claim: Claim): number | undefined {
  if (claim.kind === "compensate") return def.compensation.concurrent ? claim.index : undefined;
  return isBranch(def, claim.step) ? claim.index : undefined;
}

/** The job that runs a step's retry: a branch its own, a plain step the saga's. */
export function retryJob(t: Transition, def: AnySaga, step: StepDefinition, delayMs: number): void {
  if (isBranch(def, step)) t.job({ id: t.saga.id, step: step.index }, delayMs);
  else if (delayMs > 0) t.job({ id: t.saga.id }, delayMs);
}

export const done = (row: StepRow | undefined) => row?.status === "succeeded" || row?.status === "skipped";

/**
 * The running saga's next move when it is at a group or a conditional step: skip what its condition rules out,
 * join a finished group, claim a branch (`only`, or the first due one, fanning the others out as jobs).
 * `undefined`: a plain step to claim the plain way.
 */
export function planGroup(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  only: number | undefined,
  outputs: GroupOutputs | undefined,
): Claim | null | undefined {
  for (;;) {
    const saga = t.saga;
    const first = def.steps[saga.current_step];
    if (!first || saga.state !== "running") return null;
    const group = groupOf(def, first);
    for (const step of group) {
      // Evaluated once, before the step first runs; again only after a retry of a condition that threw
      // (its row pending, never attempted).
      const row = t.step(step.index);
      if (step.when === undefined || (row && !(row.status === "pending" && row.attempt === 0))) continue;
      const run = condition(t, def, step);
      if (run === "failed") return null;
      if (!run) skip(t, step, group.length === 1);
    }
    if (group.length === 1) {
      if (t.step(first.index)?.status !== "skipped") return undefined;
      advance(t, def, group, saga.data);
      continue;
    }
    if (group.every((s) => done(t.step(s.index)))) {
      const data = assemble(t, group, outputs);
      if (data === undefined) {
        // A sibling finished after this job read the outputs: a fresh job reads them again.
        t.job({ id: saga.id });
        return null;
      }
      advance(t, def, group, data);
      continue;
    }
    const due = group.filter((s) => {
      const row = t.step(s.index);
      return !row || (row.status === "pending" && row.due);
    });
    if (only !== undefined && group.some((s) => s.index === only)) {
      const step = due.find((s) => s.index === only);
      return step ? claimBranch(t, env, step) : null;
    }
    const [next, ...rest] = due;
    if (!next) return null;
    // This process claims as many branches as it has spare slots for, in this one commit, and runs them side
    // by side; the others are fanned out as jobs, so the worker pool shares them.
    const here = rest.slice(0, Math.max(0, env.spareSlots?.() ?? 0));
    for (const step of rest.slice(here.length)) t.job({ id: saga.id, step: step.index });
    const claim = claimBranch(t, env, next);
    if (here.length > 0) claim.together = here.map((s) => claimBranch(t, env, s));
    return claim;
  }
}

/** Evaluates a step's `when`; a throwing condition fails the step for good. */
function condition(t: Transition, def: AnySaga, step: StepDefinition): boolean | "failed" {
  try {
    return step.when?.(t.saga.data) !== false;
  } catch (err) {
    const stored: StoredError = { ...toStoredError(err, false), outcome: "failed" };
    t.patchStep({
      index: step.index,
      name: step.name,
      group: step.group,
      status: "failed",
      error: stored,
      started: true,
      finished: true,
    });
    t.event("saga.step.failed", step.name, { attempt: 0, error: stored });
    beginCompensation(t, def, "failure", { ...stored, step: step.name });
    return "failed";
  }
}

function skip(t: Transition, step: StepDefinition, passOn: boolean): void {
  // A skipped plain step keeps the data it passes on as its output: the input of the step after it.
  t.patchStep({
    index: step.index,
    name: step.name,
    group: step.group,
    status: "skipped",
    ...(passOn ? { output: t.saga.data ?? null } : {}),
    started: true,
    finished: true,
  });
  t.event("saga.step.skipped", step.name, {});
}

/** `{ [branch]: output }` of a finished group (skipped branches absent); `undefined` when an output is missing. */
function assemble(t: Transition, group: readonly StepDefinition[], outputs: GroupOutputs | undefined) {
  const data: Record<string, unknown> = {};
  for (const step of group) {
    if (t.step(step.index)?.status !== "succeeded") continue;
    if (!outputs?.has(step.index)) return undefined;
    data[step.name] = outputs.get(step.index);
  }
  return data;
}

/** Moves the saga past `group` with `data`, or completes it after the last group. */
function advance(t: Transition, def: AnySaga, group: readonly StepDefinition[], data: unknown): void {
  moveOn(t, def, (group[group.length - 1]?.index ?? t.saga.current_step) + 1, data);
}

/** The saga goes on at step `next` with `data`, or completes with it when there is none. */
export function moveOn(t: Transition, def: AnySaga, next: number, data: unknown): void {
  if (next >= def.steps.length) {
    t.setState("completed", {
      data: data ?? null,
      result: data ?? null,
      current_step: next,
      finished: true,
      error: null,
    });
    t.event("saga.completed", undefined, {});
  } else t.setInstance({ data: data ?? null, current_step: next });
}

function claimBranch(t: Transition, env: DecideEnv, step: StepDefinition): Claim {
  const row = t.step(step.index);
  const attempt = (row?.attempt ?? 0) + 1;
  t.patchStep({
    index: step.index,
    name: step.name,
    group: step.group,
    status: "running",
    attempt,
    lease_owner: env.workerId,
    lease_ms: env.leaseMs(step),
    started: true,
    ...(row ? { fence: { status: row.status, attempt: row.attempt, lease_owner: row.lease_owner } } : {}),
  });
  t.event("saga.step.started", step.name, { attempt });
  return { kind: "execute", index: step.index, attempt, step, data: t.saga.data };
}

/** How long an interrupted attempt's lease shows as live in saga.stuck (the reaper goes by heartbeats). */
export const INTERRUPTED_LEASE_MS = 60_000;

/**
 * Stops the current group's attempts without waiting for them (a cancel, a deadline, a branch that failed for
 * good): each one in flight is marked failed with an unknown outcome and stays leased to its worker until it
 * has ended (see releaseInterrupted), a branch waiting for its retry is failed and never started again.
 * Returns the index of the first attempt in flight, whose worker is to be told to abort it; `undefined` when
 * none was.
 */
export function stopGroup(
  t: Transition,
  def: AnySaga,
  error: { code: string; message: string },
  except?: number,
): number | undefined {
  let notify: number | undefined;
  for (const row of currentRows(t, def)) {
    if (row.index === except) continue;
    if (row.status === "running") {
      // A transactional attempt has no effect until it commits: its outcome is known to be nothing.
      const transactional = def.steps[row.index]?.transactional === true;
      const outcome = transactional ? "failed" : "unknown";
      t.patchStep({
        index: row.index,
        name: row.name,
        status: "failed",
        ...(transactional
          ? { lease_owner: null }
          : { lease_owner: row.lease_owner, lease_ms: INTERRUPTED_LEASE_MS }),
        finished: true,
        error: { ...error, type: "SagaError", retryable: false, outcome },
      });
      t.event("saga.step.failed", row.name, { attempt: row.attempt, error: { ...error, outcome } });
      notify ??= row.index;
    } else if (row.status === "pending" && row.attempt > 0) {
      t.patchStep({ index: row.index, name: row.name, status: "failed", finished: true });
    }
  }
  return notify;
}

/** Rows of the saga's current group (one for a plain step). */
export function currentRows(t: Transition, def: AnySaga): StepRow[] {
  const first = def.steps[t.saga.current_step];
  const indices = first ? groupOf(def, first).map((s) => s.index) : [t.saga.current_step];
  return indices.flatMap((i) => t.step(i) ?? []);
}
