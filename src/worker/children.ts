/**
 * Child sagas (`.child()` steps). Reaching a child step starts the child in the same transition (saga._child_job,
 * sql/children.sql) and parks the parent: the step is `running` with no lease and no job, so it holds no worker
 * slot, the reaper ignores it, and saga.stuck shows it waiting for its child. The child's terminal transition
 * queues a job for the parent in the same commit; that job finds the child ended and records the step.
 * Compensating the step asks a completed child to run its own compensation and waits for it the same way.
 *
 * Decisions here run under the parent's row lock (or its version check) like the rest of decide.ts; they take
 * decide.ts's record functions as arguments so that the two modules do not import each other.
 */
import type { AnySaga, StepDefinition } from "../definition.js";
import { SagaError, type StoredError, toStoredError } from "../errors.js";
import { toJsonb } from "../jsonb.js";
import {
  type ChildRow,
  type Claim,
  type DecideEnv,
  type FailureKind,
  type StepRow,
  TERMINAL_STATES,
} from "../model.js";
import type { Transition } from "./transition.js";

/** What a child step needs of decide.ts. */
export interface StepRecorder {
  recordSuccess(
    t: Transition,
    def: AnySaga,
    env: DecideEnv,
    claim: Claim,
    output: unknown,
    ms: number,
  ): boolean;
  recordFailure(
    t: Transition,
    def: AnySaga,
    env: DecideEnv,
    claim: Claim,
    err: unknown,
    kind: FailureKind,
    effect?: "unknown",
  ): boolean;
  planNext(t: Transition, def: AnySaga, env: DecideEnv): Claim | null;
}

/** The step's child as read with the saga; undefined when it was not read (see saga._state). */
const childOf = (t: Transition, index: number): ChildRow | undefined => t.step(index)?.child ?? undefined;

/** The saga's current step is a child step: start its child, wait for it, or record how it ended. */
export function advanceChild(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  step: StepDefinition,
  rec: StepRecorder,
): Claim | null {
  const row = t.step(step.index);
  if (!row || (row.status === "pending" && row.due)) return startChild(t, def, env, step, row, rec);
  // Parked: running without a lease. Anything else (a retry not due yet) is not this decision's.
  if (row.status !== "running" || row.lease_owner !== null) return null;
  const child = childOf(t, step.index);
  if (!child?.id || !TERMINAL_STATES.has(child.state)) return null;
  const claim = adopt(t, env, step, row);
  if (child.state === "completed") rec.recordSuccess(t, def, env, claim, child.result ?? null, 0);
  // A child that could not undo its own steps leaves an effect: unknown, so the parent's compensation waits on it.
  else {
    const left = child.state === "compensation_failed" ? "unknown" : undefined;
    rec.recordFailure(t, def, env, claim, childFailed(step, child), "error", left);
  }
  return rec.planNext(t, def, env);
}

function startChild(
  t: Transition,
  def: AnySaga,
  env: DecideEnv,
  step: StepDefinition,
  row: StepRow | undefined,
  rec: StepRecorder,
): Claim | null {
  const spec = step.child;
  if (!spec) throw new SagaError("INVALID_DEFINITION", `step "${step.name}" is a child step without a saga`);
  const attempt = (row?.attempt ?? 0) + 1;
  t.patchStep({
    index: step.index,
    name: step.name,
    status: "running",
    attempt,
    // No lease: nothing runs for this step until its child ends.
    lease_owner: null,
    started: true,
    ...(row ? { fence: { status: row.status, attempt: row.attempt, lease_owner: row.lease_owner } } : {}),
  });
  t.event("saga.step.started", step.name, { attempt, child: spec.saga.key });
  const input = childInput(step, t.saga.data);
  if (input instanceof Error) {
    const parked = t.step(step.index)!;
    rec.recordFailure(t, def, env, adopt(t, env, step, parked), input, "error");
    return rec.planNext(t, def, env);
  }
  t.childJob({
    op: "start",
    step: step.index,
    name: spec.saga.name,
    version: spec.saga.version,
    input,
    ...(spec.timeoutMs === undefined ? {} : { timeout_ms: spec.timeoutMs }),
  });
  return null;
}

/** The child's input, parsed by its schema and storable as jsonb; an Error (never retried) when it is not. */
function childInput(step: StepDefinition, data: unknown): unknown {
  const spec = step.child!;
  let parsed: ReturnType<typeof spec.saga.inputSchema.safeParse>;
  try {
    parsed = spec.saga.inputSchema.safeParse(spec.input(data));
  } catch (err) {
    return new SagaError("INVALID_INPUT", `input() of child step "${step.name}" threw: ${String(err)}`, {
      cause: err,
    });
  }
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    return new SagaError(
      "INVALID_INPUT",
      `input of child saga "${spec.saga.name}" (step "${step.name}") is invalid: ${issues.join("; ")}`,
      {
        details: {
          issues: parsed.error.issues.map((i) => ({
            path: i.path.map(String),
            code: i.code,
            message: i.message,
          })),
        },
      },
    );
  }
  const json = toJsonb(parsed.data ?? null);
  if (!json.ok) return new SagaError("INVALID_INPUT", `input of child step "${step.name}" ${json.message}`);
  return json.text === undefined ? null : (JSON.parse(json.text) as unknown);
}

/**
 * Takes the parked step as this worker's claim in memory, so decide.ts records it like a handler's result. The
 * write stays fenced on what was read: running, no lease (the first patch's fence is the one kept).
 */
function adopt(t: Transition, env: DecideEnv, step: StepDefinition, row: StepRow): Claim {
  t.patchStep({
    index: row.index,
    name: row.name,
    status: "running",
    lease_owner: env.workerId,
    fence: { status: "running", attempt: row.attempt, lease_owner: null },
  });
  return { kind: "execute", index: row.index, attempt: row.attempt, step, data: t.saga.data };
}

/** Never retried: a child step's `retryable` says no (definition-child.ts); a retry would find the same child. */
function childFailed(step: StepDefinition, child: ChildRow): SagaError {
  const cause = child.error as StoredError | null;
  return new SagaError(
    "CHILD_FAILED",
    `child saga ${child.id} of step "${step.name}" ended ${child.state}${cause ? `: ${cause.message}` : ""}`,
    { details: { childId: child.id, state: child.state, error: cause } },
  );
}

/** A cancel or a deadline of the parent while a child step waits: the child is cancelled through its own path. */
export function cancelChildren(t: Transition, def: AnySaga, index: number, reason: string): void {
  if (def.steps[index]?.kind === "child") t.childJob({ op: "cancel", reason });
}

/**
 * The compensation of a child step: a completed child is asked to compensate itself and the step waits,
 * `compensating` with no lease; a child still running (cancelled with its parent) is waited for; a child that
 * ended without completing has nothing left to undo. `replan` goes on with the saga's compensation once the
 * step is settled.
 */
export function compensateChild(
  t: Transition,
  row: StepRow,
  replan: () => Claim | null,
  only?: number,
): Claim | null {
  const child = childOf(t, row.index);
  const fence = {
    status: row.status,
    compensation_attempt: row.compensation_attempt,
    lease_owner: row.lease_owner,
  };
  const settle = (failed: StoredError | null) => {
    t.patchStep({
      index: row.index,
      name: row.name,
      status: failed ? "compensation_failed" : "compensated",
      lease_owner: null,
      compensation_finished: true,
      ...(failed ? { compensation_error: failed } : {}),
      fence,
    });
    if (failed)
      t.event("compensation.step.failed", row.name, {
        attempt: row.compensation_attempt,
        error: failed,
        willRetry: false,
      });
    else
      t.event("compensation.step.completed", row.name, {
        attempt: row.compensation_attempt,
        child: child?.id,
      });
    return replan();
  };
  // Not read with the saga (it began compensating in this transition): decide again from a fresh read.
  if (!child) {
    t.job({ id: t.saga.id, ...(only === undefined ? {} : { step: only }) });
    return null;
  }
  if (child.id === null) return settle(null);
  switch (child.state) {
    case "running":
    case "compensating":
      return null;
    case "completed": {
      if (row.status === "compensating") return null;
      const error = t.saga.error as StoredError | null;
      t.patchStep({
        index: row.index,
        name: row.name,
        status: "compensating",
        compensation_attempt: row.compensation_attempt + 1,
        lease_owner: null,
        compensation_started: true,
        fence,
      });
      t.childJob({
        op: "compensate",
        id: child.id,
        reason: error?.message ?? "the parent saga is compensating",
      });
      return null;
    }
    case "compensation_failed":
      return settle(
        toStoredError(
          new SagaError("CHILD_COMPENSATION_FAILED", `child saga ${child.id} ended compensation_failed`, {
            details: { childId: child.id, error: child.error },
          }),
          false,
        ),
      );
    default:
      return settle(null);
  }
}

/**
 * A completed child whose parent compensates the step that started it (a `{ id, compensate }` job): it undoes its
 * own steps and ends `compensated` (at once when it has nothing to undo); its end wakes the parent.
 */
export function compensateCompleted(
  t: Transition,
  def: AnySaga,
  reason: string,
  begin: (error: StoredError) => void,
  compensable: () => number,
): void {
  if (t.saga.state !== "completed") return;
  const error: StoredError = toStoredError(new SagaError("PARENT_COMPENSATING", reason), false);
  // No longer finished: its compensation runs now.
  t.setInstance({ finished: false });
  if (compensable() === 0 || !def.compensation.shouldCompensate(error)) {
    t.setInstance({ error, compensation_cause: "failure" });
    t.setState("compensated", { finished: true });
    t.event("compensation.started", undefined, { cause: "failure", error, steps: [] });
    t.event("compensation.completed", undefined, {});
    return;
  }
  begin(error);
}

/** A parent referencing a child saga the engine does not run would wait forever: refused when the engine is made. */
export function assertChildrenRegistered(sagas: readonly AnySaga[]): void {
  const byKey = new Map(sagas.map((s) => [s.key, s]));
  for (const saga of sagas)
    for (const step of saga.steps) {
      const child = step.child?.saga;
      if (!child) continue;
      const registered = byKey.get(child.key);
      if (!registered || registered.fingerprint !== child.fingerprint)
        throw new SagaError(
          "UNKNOWN_SAGA",
          `saga "${saga.name}" step "${step.name}" starts child saga "${child.key}", which is not one of this engine's sagas${registered ? " (another definition has that name and version)" : ""}; add it to createSagaEngine({ sagas })`,
        );
    }
}
