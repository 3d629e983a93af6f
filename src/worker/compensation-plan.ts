/**
 * Compensation decisions: which completed steps to undo, in which order, when the saga is done undoing, and
 * the terminal state it ends in. Pure functions over a locked (or version-checked) saga.
 */
import type { CompletedStep } from "../compensation.js";
import type { AnySaga } from "../definition.js";
import type { StoredError } from "../errors.js";
import type { Claim, CompensationCause, DecideEnv, StepRow } from "../model.js";
import { compensateChild } from "./children.js";
import type { Transition } from "./transition.js";

export const isUnknown = (row: StepRow) => row.error?.outcome === "unknown";

/** Steps whose effect must be undone: succeeded, or possibly succeeded, and with a compensate handler. */
export function compensable(t: Transition, def: AnySaga): StepRow[] {
  return t.saga.steps.filter((row) => {
    if (!def.steps[row.index]?.compensate) return false;
    switch (row.status) {
      case "succeeded":
      case "compensating":
      case "compensated":
      case "compensation_failed":
        return true;
      case "failed":
        return isUnknown(row);
      default:
        return false;
    }
  });
}

export function planCompensation(t: Transition, def: AnySaga, env: DecideEnv, only?: number): Claim | null {
  const strategy = def.compensation;
  const rows = compensable(t, def);
  // In flight: a compensation running, or an interrupted attempt that has not ended yet (still leased).
  const inFlight = rows.filter(
    (r) => (r.status === "compensating" || r.status === "failed") && r.lease_owner !== null,
  );
  const exhausted = rows.filter((r) => r.status === "compensation_failed");
  const waiting = (r: StepRow) =>
    r.status === "succeeded" ||
    ((r.status === "failed" || r.status === "compensating") && r.lease_owner === null);
  const completed: CompletedStep[] = rows.map((r) => ({
    name: r.name,
    index: r.index,
    outcome: isUnknown(r) ? "unknown" : "succeeded",
  }));
  const pending = strategy
    .order(completed)
    .map((c) => rows.find((r) => r.index === c.index))
    .filter((r): r is StepRow => r !== undefined && waiting(r));

  if (
    inFlight.length === 0 &&
    (pending.length === 0 || (exhausted.length > 0 && !strategy.continueOnFailure))
  ) {
    finishCompensation(t, exhausted);
    return null;
  }
  if (strategy.concurrent && def.groups.length < def.steps.length)
    return planLayer(t, def, env, only, pending, inFlight);
  if (strategy.concurrent) {
    if (only === undefined) {
      // Fan out: each compensation is its own job, so they run at once across the worker pool.
      for (const row of pending) if (row.due) t.job({ id: t.saga.id, step: row.index });
      return null;
    }
    const row = pending.find((r) => r.index === only);
    return row?.due ? claimCompensation(t, def, env, row, only) : null;
  }
  if (inFlight.length > 0 || (exhausted.length > 0 && !strategy.continueOnFailure)) return null;
  const next = pending[0];
  return next?.due ? claimCompensation(t, def, env, next) : null;
}

/**
 * Concurrent compensation of a saga with parallel groups: group by group in reverse order, the completed
 * branches of one group at once, each its own job. Nothing starts while an interrupted branch is still running.
 */
function planLayer(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  only: number | undefined,
  pending: StepRow[],
  inFlight: StepRow[],
): Claim | null {
  if (inFlight.some((r) => r.status === "failed")) return null;
  const groupOf = (r: StepRow) => def.steps[r.index]?.group ?? r.index;
  const layer = Math.max(...[...pending, ...inFlight].map(groupOf));
  const due = pending.filter((r) => groupOf(r) === layer && r.due);
  const row = due.find((r) => r.index === only);
  if (row) return claimCompensation(t, def, env, row, only);
  if (inFlight.some((r) => groupOf(r) === layer)) return null;
  for (const r of due) t.job({ id: t.saga.id, step: r.index });
  return null;
}

function claimCompensation(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  row: StepRow,
  only?: number,
): Claim | null {
  const step = def.steps[row.index];
  if (!step) return null;
  // A child step is undone by its child saga (children.ts); the compensation goes on once it has.
  if (step.kind === "child") return compensateChild(t, row, () => planCompensation(t, def, env, only), only);
  const attempt = row.compensation_attempt + 1;
  const outcome = isUnknown(row) ? "unknown" : "succeeded";
  t.patchStep({
    index: row.index,
    name: row.name,
    status: "compensating",
    compensation_attempt: attempt,
    lease_owner: env.workerId,
    lease_ms: env.leaseMs(step),
    compensation_started: true,
    fence: {
      status: row.status,
      compensation_attempt: row.compensation_attempt,
      lease_owner: row.lease_owner,
    },
  });
  return {
    kind: "compensate",
    index: row.index,
    attempt,
    step,
    outcome,
    error: t.saga.error as StoredError | null,
  };
}

function finishCompensation(t: Transition, exhausted: StepRow[]): void {
  const saga = t.saga;
  if (exhausted.length > 0) {
    const failedSteps = exhausted.map((r) => r.name);
    t.setState("compensation_failed", {
      finished: true,
      error: {
        code: "COMPENSATION_FAILED",
        message: `compensation of ${failedSteps.join(", ")} ran out of attempts; fix the cause and call retry()`,
        type: "SagaError",
        retryable: false,
        details: { failedSteps, cause: saga.error },
        step: failedSteps[0],
      },
    });
    t.event("compensation.failed", undefined, { failedSteps });
    return;
  }
  const cause = saga.compensation_cause ?? "failure";
  t.setState(terminalStateFor(cause), { finished: true });
  t.event("compensation.completed", undefined, {});
  if (cause === "cancel") {
    const by = (saga.error?.details as { by?: unknown } | undefined)?.by;
    t.event("saga.cancelled", undefined, {
      reason: saga.error?.message,
      ...(by === undefined ? {} : { by }),
    });
  }
  if (cause === "timeout") t.event("saga.timed_out", undefined, {});
}

const terminalStateFor = (cause: CompensationCause) =>
  cause === "cancel" ? "cancelled" : cause === "timeout" ? "timed_out" : "compensated";

/** Moves a saga into compensation, or straight to its terminal state when there is nothing to undo. */
export function beginCompensation(
  t: Transition,
  def: AnySaga,
  cause: CompensationCause,
  error: StoredError,
): void {
  t.setInstance({ error, compensation_cause: cause });
  const rows = compensable(t, def);
  if (rows.length === 0 || !def.compensation.shouldCompensate(error)) {
    const state = cause === "failure" ? "failed" : terminalStateFor(cause);
    t.setState(state, { finished: true });
    const type =
      cause === "failure" ? "saga.failed" : cause === "cancel" ? "saga.cancelled" : "saga.timed_out";
    const by = (error.details as { by?: unknown } | undefined)?.by;
    t.event(
      type,
      undefined,
      cause === "cancel" ? { reason: error.message, ...(by === undefined ? {} : { by }), error } : { error },
    );
    return;
  }
  t.setState("compensating");
  t.event("compensation.started", undefined, { cause, error, steps: rows.map((r) => r.name) });
}
