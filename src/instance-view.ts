import type { AnySaga } from "./definition.js";
import { type SagaState, TERMINAL_STATES } from "./model.js";
import type { ChildReadRow, InstanceRow, StepReadRow } from "./sql/read-sagas.js";

/** A step as `engine.get()` shows it, in step order. */
export interface SagaStepView {
  name: string;
  index: number;
  /** The step's group: a plain step is a group of one; the branches of a `.parallel()` group share one. */
  group: number;
  status: string;
  attempt: number;
  compensationAttempt: number;
  output: unknown;
  error: unknown;
  compensationError: unknown;
  nextAttemptAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  compensationStartedAt: Date | null;
  compensationFinishedAt: Date | null;
}

/** A child saga: of a `.child()` step (`parentStep` its index) or started by `ctx.startChild` (`parentStep` null). */
export interface SagaChildView {
  id: string;
  name: string;
  state: SagaState;
  parentStep: number | null;
}

/** A saga instance. `error` is `{ code, message, type, retryable, details?, step? }` or null. */
export interface SagaInstance {
  id: string;
  name: string;
  version: number;
  state: SagaState;
  input: unknown;
  data: unknown;
  result: unknown;
  error: { code: string; message: string; step?: string; [key: string]: unknown } | null;
  currentStep: number;
  idempotencyKey: string | null;
  parentId: string | null;
  metadata: Record<string, unknown>;
  deadline: Date | null;
  nextAttemptAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
  steps: SagaStepView[];
  /** Its child sagas, in the order they started. */
  children: SagaChildView[];
}

/** A saga instance as the API shows it: unreached steps as pending, or skipped once the saga ended. */
export function toInstance(
  row: InstanceRow,
  steps: StepReadRow[],
  def: AnySaga | undefined,
  children: ChildReadRow[] = [],
): SagaInstance {
  const state = row.state as SagaState;
  const views: SagaStepView[] = steps.map((s) => ({
    name: s.name,
    index: s.index,
    group: s.group ?? def?.steps[s.index]?.group ?? s.index,
    status: s.status,
    attempt: s.attempt,
    compensationAttempt: s.compensation_attempt,
    output: s.output,
    error: s.error,
    compensationError: s.compensation_error,
    nextAttemptAt: s.next_attempt_at ? new Date(s.next_attempt_at) : null,
    startedAt: s.started_at ? new Date(s.started_at) : null,
    finishedAt: s.finished_at ? new Date(s.finished_at) : null,
    compensationStartedAt: s.compensation_started_at ? new Date(s.compensation_started_at) : null,
    compensationFinishedAt: s.compensation_finished_at ? new Date(s.compensation_finished_at) : null,
  }));
  // Steps not reached yet have no row: shown as pending, or skipped once the saga has ended.
  for (const step of def?.steps ?? []) {
    if (views.some((v) => v.index === step.index)) continue;
    views.push({
      name: step.name,
      index: step.index,
      group: step.group,
      status: TERMINAL_STATES.has(state) ? "skipped" : "pending",
      attempt: 0,
      compensationAttempt: 0,
      output: null,
      error: null,
      compensationError: null,
      nextAttemptAt: null,
      startedAt: null,
      finishedAt: null,
      compensationStartedAt: null,
      compensationFinishedAt: null,
    });
  }
  views.sort((a, b) => a.index - b.index);
  return {
    id: row.id,
    name: row.name,
    version: row.version,
    state,
    input: row.input,
    data: row.data,
    result: row.result,
    error: row.error as SagaInstance["error"],
    currentStep: row.current_step,
    idempotencyKey: row.idempotency_key,
    parentId: row.parent_id,
    metadata: row.metadata,
    deadline: row.deadline,
    nextAttemptAt: row.next_attempt_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    steps: views,
    children: children.map((c) => ({
      id: c.id,
      name: c.name,
      state: c.state as SagaState,
      parentStep: c.parent_step,
    })),
  };
}
