import { escapeLiteral } from "pg";
import type { Executor } from "../executor.js";

/** A saga as a transition sees it, instance row locked. Step outputs are not loaded: they can be large. */
export interface LockedSaga {
  id: string;
  /** The instance row's version (its xmin): every transition changes it. */
  xmin: string;
  name: string;
  version: number;
  state: SagaState;
  /** The current data: the input of the step at `current_step`. */
  data: unknown;
  current_step: number;
  compensation_cause: CompensationCause | null;
  seq: number;
  error: Record<string, unknown> | null;
  steps: StepRow[];
  /** The children of `.child()` steps; null when none (src/worker/children.ts). */
  children?: ChildRow[] | null;
}

/** A child saga as its parent's transitions see it. */
export interface ChildRow {
  id: string;
  /** The parent step's index. */
  step: number;
  state: SagaState;
  error: Record<string, unknown> | null;
  /** Only while the parent step waits for it (and the child completed). */
  result: unknown;
}

/** Every saga state, in the order a saga can reach them: the one list the CLI, list() and the views share. */
export const SAGA_STATES = [
  "running",
  "compensating",
  "completed",
  "compensated",
  "cancelled",
  "timed_out",
  "failed",
  "compensation_failed",
] as const;

export type SagaState = (typeof SAGA_STATES)[number];

export type StepStatus =
  | "pending"
  | "running"
  | "succeeded"
  | "failed"
  | "compensating"
  | "compensated"
  | "compensation_failed"
  | "skipped";

export type CompensationCause = "failure" | "cancel" | "timeout";

export interface StepRow {
  index: number;
  name: string;
  status: StepStatus;
  attempt: number;
  attempt_base: number;
  compensation_attempt: number;
  compensation_attempt_base: number;
  lease_owner: string | null;
  /** Whether a scheduled retry is due by the database clock (true when none is scheduled). */
  due: boolean;
  error: { code?: string; outcome?: string } | null;
}

export const TERMINAL_STATES: ReadonlySet<SagaState> = new Set(
  SAGA_STATES.filter((s) => s !== "running" && s !== "compensating"),
);

// Primary keys of instances and steps. Locks the instance row only (invariant 2: instance first); step rows
// are locked by the updates that follow, in the same transaction. saga._lock (sql/functions.sql) reads
// after the lock is granted, so a transition never decides on step rows older than the lock.
const LOCK_SQL = "select saga._lock($1::uuid) as saga";

/** Locks and reads one saga; `null` when it does not exist. */
export async function lockInstance(db: Executor, id: string): Promise<LockedSaga | null> {
  const { rows } = await db.query<{ saga: LockedSaga | null }>(LOCK_SQL, [id]);
  return rows[0]?.saga ?? null;
}

/** {@link lockInstance} as SQL text (the id as a literal), to send with BEGIN in one message. */
export function lockInstanceSql(id: string): string {
  return LOCK_SQL.replace("$1", escapeLiteral(id));
}

/** Reads one saga without locking it, for an optimistic transition (see Transition.commit). */
export async function readSaga(db: Executor, id: string): Promise<LockedSaga | null> {
  const { rows } = await db.query<{ saga: LockedSaga | null }>("select saga._state($1::uuid) as saga", [id]);
  return rows[0]?.saga ?? null;
}
