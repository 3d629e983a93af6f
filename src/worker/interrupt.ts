/**
 * Interrupting a saga from outside its steps: a cancel or a deadline stops every step in flight and begins
 * compensation; an interrupted attempt keeps its lease until its handler has ended, and this releases it.
 */
import type { AnySaga } from "../definition.js";
import { type Claim, type DecideEnv, type StepRow, TERMINAL_STATES } from "../model.js";
import { cancelChildren } from "./children.js";
import { beginCompensation } from "./compensation-plan.js";
import { stopGroup } from "./groups.js";
import type { Transition } from "./transition.js";

/**
 * A cancel or a deadline fails the step in flight at once but leaves it leased to the worker running it: its
 * compensation waits for that attempt to end (the handler returned or its grace passed, see callHandler), or
 * for its worker to be found dead. This ends that wait.
 */
export function releaseInterrupted(t: Transition, row: StepRow): void {
  t.patchStep({
    index: row.index,
    name: row.name,
    status: "failed",
    lease_owner: null,
    fence: { status: "failed", attempt: row.attempt, lease_owner: row.lease_owner },
  });
}

/** The interrupted attempt `claim` has ended: its step's compensation may go on. `false` when not ours. */
export function endInterrupted(t: Transition, env: DecideEnv, claim: Claim): boolean {
  const row = t.step(claim.index);
  if (
    claim.kind !== "execute" ||
    !row ||
    row.status !== "failed" ||
    row.lease_owner !== env.workerId ||
    row.attempt !== claim.attempt
  )
    return false;
  releaseInterrupted(t, row);
  return true;
}

/**
 * Cancel or deadline: a running saga stops moving forward and compensates. A step in flight is marked failed
 * with an unknown outcome (its late result is fenced out) and its worker is told to abort its signal; its
 * compensation starts once that attempt has ended (see releaseInterrupted).
 *
 * A transactional step's attempt that did not commit had no effect at all: its writes and its record share
 * one transaction, which runs under the instance row lock and checks the lease first. So a lost, timed-out
 * or interrupted transactional attempt is `failed`, never `unknown`, and is not compensated.
 */
export function interrupt(
  t: Transition,
  def: AnySaga,
  cause: "cancel" | "timeout",
  reason: string,
  by?: string,
): "interrupted" | "terminal" | "already" {
  const saga = t.saga;
  if (TERMINAL_STATES.has(saga.state)) return "terminal";
  if (saga.state !== "running") return "already";
  const code = cause === "cancel" ? "CANCELLED" : "SAGA_TIMEOUT";
  const step = stopGroup(t, def, { code, message: reason });
  if (step !== undefined) {
    t.notifyControl({ abort: cause, step });
    // A child step's child is cancelled through its own cancel path, and so on down.
    cancelChildren(t, def, step, reason);
  }
  // Audit: who cancelled travels in the error's details, into compensation.started and saga.cancelled.
  beginCompensation(t, def, cause, {
    code,
    message: reason,
    type: "SagaError",
    retryable: false,
    ...(by === undefined ? {} : { details: { by } }),
  });
  if (t.saga.state === "compensating") t.job({ id: saga.id });
  return "interrupted";
}
