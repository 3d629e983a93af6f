import { escapeLiteral } from "pg";
import type { Executor } from "../executor.js";
import type { CompensationCause, LockedSaga, SagaState, StepStatus } from "../model.js";

/**
 * The instance row's new values: exactly the keys saga._apply (sql/functions.sql) reads. A key left out keeps
 * its column; `next_attempt_ms` schedules the saga's next attempt (absent: none); `finished` sets or clears
 * finished_at.
 */
export interface InstancePatch {
  state?: SagaState;
  data?: unknown;
  result?: unknown;
  error?: unknown;
  current_step?: number;
  compensation_cause?: CompensationCause | null;
  seq?: number;
  next_attempt_ms?: number;
  finished?: boolean;
}

/** The step row a write is conditional on: the claimed attempt, as it was read. */
export interface StepFence {
  status: StepStatus;
  attempt?: number;
  compensation_attempt?: number;
  lease_owner: string | null;
}

/**
 * One step row's new values: exactly the keys saga._apply reads. A `fence` makes the write conditional on the
 * claimed attempt.
 */
export interface StepPatch {
  index: number;
  name: string;
  status: StepStatus;
  /** The step's group, written with the row's first patch; absent for a plain step (its group is its index). */
  group?: number;
  attempt?: number;
  attempt_base?: number;
  compensation_attempt?: number;
  compensation_attempt_base?: number;
  lease_owner?: string | null;
  lease_ms?: number;
  output?: unknown;
  error?: unknown;
  compensation_error?: unknown;
  next_attempt_ms?: number;
  started?: boolean;
  finished?: boolean;
  compensation_started?: boolean;
  compensation_finished?: boolean;
  fence?: StepFence;
}

export interface EventRow {
  seq: number;
  type: string;
  step?: string;
  payload?: unknown;
}

/**
 * A job to queue, or (`done`) the id of the running job this transition ends, or (`child`) a write on this
 * saga's children (saga._child_job, sql/children.sql).
 */
export type JobSpec =
  | { payload: Record<string, unknown>; delay_ms?: number }
  | { done: string }
  | { child: Record<string, unknown> };

/** Everything one transition writes, as saga._apply and saga._transition take it. */
export interface TransitionWrites {
  instance: InstancePatch;
  steps: StepPatch[];
  events: EventRow[];
  jobs: JobSpec[];
  notify: string | null;
}

const APPLY_SQL = "select saga._apply($1::uuid, $2::jsonb, $3::jsonb, $4::jsonb, $5::jsonb, $6::text)";

const applyValues = (id: string, w: TransitionWrites): (string | null)[] => [
  id,
  JSON.stringify(w.instance),
  JSON.stringify(w.steps),
  JSON.stringify(w.events),
  JSON.stringify(w.jobs),
  w.notify,
];

/** Writes a whole transition in one round trip (saga._apply, sql/functions.sql). */
export async function applyTransition(db: Executor, id: string, writes: TransitionWrites): Promise<void> {
  await db.query(APPLY_SQL, applyValues(id, writes));
}

/**
 * The same call as {@link applyTransition}, as SQL text with its values as literals: for a transaction that
 * sends it in one message with other statements (and COMMIT) to save round trips.
 */
export function applyTransitionSql(id: string, writes: TransitionWrites): string {
  const values = applyValues(id, writes);
  return APPLY_SQL.replace(/\$(\d)/g, (_, n: string) => {
    const value = values[Number(n) - 1];
    return value === null || value === undefined ? "null" : escapeLiteral(value);
  });
}

const TRANSITION_SQL =
  "select saga._transition($1::uuid, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb, $7::text) as result";

/**
 * The same statement with `synchronous_commit = off` for its own (implicit) transaction: the setting is
 * read when the transaction commits, and set_config(..., true) reverts it then.
 */
const TRANSITION_ASYNC_SQL = `${TRANSITION_SQL}, set_config('synchronous_commit', 'off', true) as sync`;

/**
 * One transition as one statement (saga._transition, sql/functions.sql): locks the instance row by its
 * primary key, applies only if its xmin is still `xmin`, and returns the state after it for the next decision.
 * `durable: false` (claims only, see Transition.claimOnly): the commit returns without waiting for its WAL
 * to reach the disk; the saga's next synchronous commit, or any other, flushes it.
 */
export async function commitTransition(
  db: Executor,
  id: string,
  xmin: string,
  writes: TransitionWrites,
  options: { durable?: boolean } = {},
): Promise<{ applied: boolean; saga: LockedSaga } | null> {
  const [, ...rest] = applyValues(id, writes);
  const { rows } = await db.query<{ result: { applied: boolean; saga: LockedSaga } | null }>(
    options.durable === false ? TRANSITION_ASYNC_SQL : TRANSITION_SQL,
    [id, xmin, ...rest],
  );
  return rows[0]?.result ?? null;
}
