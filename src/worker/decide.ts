/**
 * The saga state machine: pure decisions over a locked saga, written into a {@link Transition}.
 * Every function here runs while the instance row is locked, so what it reads cannot change under it.
 */
import type { AnySaga, StepDefinition } from "../definition.js";
import { BusinessError, RetryableError, type StoredError, toStoredError } from "../errors.js";
import { delayFor } from "../retry.js";
import type { StepFence } from "../sql/apply-transition.js";
import type { Claim, DecideEnv, FailureKind, StepRow } from "../model.js";
import { advanceChild } from "./children.js";
import { beginCompensation, planCompensation } from "./compensation-plan.js";
import { type GroupOutputs, isBranch, isGraph, moveOn, planGroup, retryJob, stopGroup } from "./groups.js";
import { releaseInterrupted } from "./interrupt.js";
import type { Transition } from "./transition.js";

const fenceOf = (row: StepRow, claim: Claim, workerId: string): StepFence =>
  claim.kind === "execute"
    ? { status: "running", attempt: claim.attempt, lease_owner: workerId }
    : { status: "compensating", compensation_attempt: claim.attempt, lease_owner: workerId };

/** Whether the claimed attempt still owns its step (invariant 3). */
export function fenceHolds(t: Transition, claim: Claim, workerId: string): boolean {
  const row = t.step(claim.index);
  if (!row || row.lease_owner !== workerId) return false;
  return claim.kind === "execute"
    ? row.status === "running" && row.attempt === claim.attempt
    : row.status === "compensating" && row.compensation_attempt === claim.attempt;
}

/**
 * Decides and claims the next piece of work of this saga, or schedules it, or finishes the saga. `only`: the
 * branch or concurrent compensation a job is for; `outputs`: the current group's outputs, to join it.
 */
export function planNext(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  only?: number,
  outputs?: GroupOutputs,
): Claim | null {
  const saga = t.saga;
  recoverOwnLostLeases(t, def, env);
  if (saga.state === "running" && isGraph(def)) {
    const claim = planGroup(t, def, env, only, outputs);
    // A condition that threw may have begun compensation: that is planned below, in this transition.
    if (claim !== undefined && t.saga.state === "running") return claim;
  }
  if (saga.state === "running") {
    const step = def.steps[saga.current_step];
    if (!step) return null;
    if (step.kind === "child")
      return advanceChild(t, def, env, step, { recordSuccess, recordFailure, planNext });
    const row = t.step(step.index);
    if (row && (row.status !== "pending" || !row.due)) return null;
    const attempt = (row?.attempt ?? 0) + 1;
    t.patchStep({
      index: step.index,
      name: step.name,
      ...(step.group === step.index ? {} : { group: step.group }),
      status: "running",
      attempt,
      lease_owner: env.workerId,
      lease_ms: env.leaseMs(step),
      started: true,
      // Claims are fenced too: the row must still be what this decision read.
      ...(row ? { fence: { status: row.status, attempt: row.attempt, lease_owner: row.lease_owner } } : {}),
    });
    t.event("saga.step.started", step.name, { attempt });
    return { kind: "execute", index: step.index, attempt, step, data: saga.data };
  }
  if (saga.state === "compensating") return planCompensation(t, def, env, only);
  return null;
}

/** A lease this worker holds on a step it is not running (its record failed): the attempt is lost. */
function recoverOwnLostLeases(t: Transition, def: AnySaga, env: DecideEnv): void {
  for (const row of t.saga.steps) {
    if (row.lease_owner !== env.workerId) continue;
    if (row.status === "failed") {
      // An interrupted attempt of ours whose end was not recorded: its compensation need not wait for it.
      if (!env.isActive(t.saga.id, "execute", row.index)) releaseInterrupted(t, row);
      continue;
    }
    const kind = row.status === "running" ? "execute" : row.status === "compensating" ? "compensate" : null;
    const step = def.steps[row.index];
    if (!kind || !step || env.isActive(t.saga.id, kind, row.index)) continue;
    const attempt = kind === "execute" ? row.attempt : row.compensation_attempt;
    recordFailure(t, def, env, { kind, index: row.index, attempt, step }, lostError(), "lost");
  }
}

export function lostError(): Error {
  const err = new Error("the worker running this attempt stopped before recording its result");
  (err as Error & { code: string }).code = "WORKER_LOST";
  return err;
}

/** Whether an error thrown by a step may be retried. */
export function isRetryable(step: StepDefinition, err: unknown): boolean {
  if (err instanceof BusinessError) return false;
  if (err instanceof RetryableError) return true;
  if (step.retryable) {
    try {
      return step.retryable(err);
    } catch {
      return false;
    }
  }
  return true;
}

/** Records a result; `false` when the attempt no longer owns the step (the result is discarded). */
export function recordSuccess(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  claim: Claim,
  output: unknown,
  durationMs: number,
): boolean {
  const row = t.step(claim.index);
  if (!row || !fenceHolds(t, claim, env.workerId)) return false;
  const fence = fenceOf(row, claim, env.workerId);
  if (claim.kind === "compensate") {
    t.patchStep({
      index: claim.index,
      name: row.name,
      status: "compensated",
      lease_owner: null,
      compensation_finished: true,
      fence,
    });
    t.event("compensation.step.completed", row.name, {
      attempt: claim.attempt,
      outcome: claim.outcome,
      durationMs,
    });
    return true;
  }
  const data = output === undefined ? claim.data : output;
  t.patchStep({
    index: claim.index,
    name: row.name,
    status: "succeeded",
    lease_owner: null,
    output: data ?? null,
    error: null,
    finished: true,
    fence,
  });
  t.event("saga.step.completed", row.name, { attempt: claim.attempt, durationMs });
  // A branch: the group moves on once its last branch is done (planGroup joins it).
  if (isBranch(def, claim.step)) return true;
  moveOn(t, def, claim.index + 1, data);
  return true;
}

/** Records a failed attempt: a retry (now or later) while attempts remain, else the step fails for good. */
export function recordFailure(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  claim: Claim,
  err: unknown,
  kind: FailureKind,
  /** "unknown": the attempt may have had an effect whatever `kind` says (a child left compensation_failed). */
  effect?: "unknown",
): boolean {
  const row = t.step(claim.index);
  if (!row || !fenceHolds(t, claim, env.workerId)) return false;
  const fence = fenceOf(row, claim, env.workerId);
  const base = { index: claim.index, name: row.name, lease_owner: null, fence };
  const concurrent = def.compensation.concurrent;

  if (kind === "released") {
    // Shutdown: the attempt does not count; another worker takes the step at once.
    const shift =
      claim.kind === "execute"
        ? { attempt_base: row.attempt_base + 1 }
        : { compensation_attempt_base: row.compensation_attempt_base + 1 };
    t.patchStep({ ...base, status: claim.kind === "execute" ? "pending" : "compensating", ...shift });
    if (claim.kind === "execute")
      t.event("saga.step.retrying", row.name, {
        attempt: claim.attempt,
        delayMs: 0,
        reason: "worker shutdown",
      });
    t.job(
      claim.kind === "compensate" && concurrent ? { id: t.saga.id, step: claim.index } : { id: t.saga.id },
    );
    return true;
  }

  if (claim.kind === "compensate") {
    const retryable = !(err instanceof BusinessError);
    const stored = toStoredError(err, retryable);
    const used = row.compensation_attempt - row.compensation_attempt_base;
    if (retryable && used < claim.step.compensateRetry.maxAttempts) {
      const delayMs = delayFor(claim.step.compensateRetry, used);
      t.patchStep({ ...base, status: "compensating", compensation_error: stored, next_attempt_ms: delayMs });
      t.event("compensation.step.failed", row.name, {
        attempt: claim.attempt,
        error: stored,
        willRetry: true,
        delayMs,
      });
      if (delayMs > 0) t.job(concurrent ? { id: t.saga.id, step: claim.index } : { id: t.saga.id }, delayMs);
    } else {
      t.patchStep({
        ...base,
        status: "compensation_failed",
        compensation_error: stored,
        compensation_finished: true,
      });
      t.event("compensation.step.failed", row.name, {
        attempt: claim.attempt,
        error: stored,
        willRetry: false,
      });
    }
    return true;
  }

  const retryable = kind !== "error" || isRetryable(claim.step, err);
  const stored: StoredError = {
    ...toStoredError(err, retryable),
    outcome: effect === undefined && (kind === "error" || claim.step.transactional) ? "failed" : "unknown",
  };
  const used = row.attempt - row.attempt_base;
  if (retryable && used < claim.step.retry.maxAttempts) {
    const delayMs = delayFor(claim.step.retry, used);
    t.patchStep({ ...base, status: "pending", error: stored, next_attempt_ms: delayMs });
    t.event("saga.step.retrying", row.name, { attempt: claim.attempt, delayMs, error: stored });
    if (delayMs > 0) t.setInstance({ next_attempt_ms: delayMs });
    retryJob(t, def, claim.step, delayMs);
    return true;
  }
  t.patchStep({ ...base, status: "failed", error: stored, finished: true });
  t.event("saga.step.failed", row.name, { attempt: claim.attempt, error: stored });
  if (isBranch(def, claim.step)) {
    // Its siblings still running are aborted and their outcome is unknown; those not started never start.
    const message = `branch "${row.name}" of its group failed`;
    if (stopGroup(t, def, { code: "SIBLING_FAILED", message }, claim.index) !== undefined)
      t.notifyControl({ abort: "sibling" });
  }
  beginCompensation(t, def, "failure", { ...stored, step: row.name });
  return true;
}
