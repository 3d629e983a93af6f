import type { Transition } from "./transition.js";

export interface ResumeOptions {
  by?: string;
  reason?: string;
}

/**
 * An operator's retry: `failed` resumes forward from the failed step with a fresh attempt budget;
 * `compensation_failed` resumes compensation where it stopped. Returns false for any other state.
 */
export function resume(t: Transition, who: ResumeOptions): boolean {
  const saga = t.saga;
  const note = {
    manual: true,
    ...(who.by === undefined ? {} : { by: who.by }),
    ...(who.reason === undefined ? {} : { reason: who.reason }),
  };
  if (saga.state === "failed") {
    // The failed step, or the failed branches of the current group (a sibling aborted by a branch's failure
    // included): each resumes with a fresh budget; a branch that never started starts then.
    const rows = saga.steps.filter((r) => r.index >= saga.current_step && r.status === "failed");
    for (const row of rows) {
      t.patchStep({
        index: row.index,
        name: row.name,
        status: "pending",
        attempt_base: row.attempt,
        lease_owner: null,
        error: null,
        finished: false,
      });
    }
    const row = rows[0];
    t.setState("running", { error: null, compensation_cause: null, finished: false });
    if (rows.length === 0) t.event("saga.step.retrying", undefined, { ...note, attempt: 0, delayMs: 0 });
    for (const r of rows) t.event("saga.step.retrying", r.name, { ...note, attempt: r.attempt, delayMs: 0 });
    // No step row: it failed before its first step (invalid input from SQL): validate again.
    t.job(row ? { id: saga.id } : { id: saga.id, validate: true });
    return true;
  }
  if (saga.state === "compensation_failed") {
    const cause = (saga.error as { details?: { cause?: unknown } } | null)?.details?.cause ?? null;
    for (const row of saga.steps) {
      if (row.status !== "compensation_failed") continue;
      t.patchStep({
        index: row.index,
        name: row.name,
        status: "compensating",
        compensation_attempt_base: row.compensation_attempt,
        lease_owner: null,
        compensation_finished: false,
      });
    }
    t.setState("compensating", { error: cause, finished: false });
    t.event("compensation.started", undefined, { ...note, resumed: true, cause: saga.compensation_cause });
    t.job({ id: saga.id });
    return true;
  }
  return false;
}
