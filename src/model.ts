/**
 * The saga model: the states a saga and its steps can be in, the saga as a transition sees it, the claims a
 * worker takes, how an attempt ends, and what a saga id looks like. Types, constants and one check: this
 * module imports nothing of the worker, so the decision code, the transitions and the queries all depend on
 * it and never on each other for these.
 */
import type { StepDefinition } from "./definition.js";
import type { StoredError } from "./errors.js";

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

/** Whether `value` is a saga id: a uuid in its hyphenated form (as saga.instances.id prints). */
export const isUuid = (value: string): boolean => UUID.test(value);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const TERMINAL_STATES: ReadonlySet<SagaState> = new Set(
  SAGA_STATES.filter((s) => s !== "running" && s !== "compensating"),
);

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
}

/** A `.child()` step's child saga as its parent's transitions see it (src/worker/children.ts). */
export interface ChildRow {
  /** Null: the step has no child (it never started one). */
  id: string | null;
  state: SagaState;
  error: Record<string, unknown> | null;
  /** Only while the parent step waits for it (and the child completed). */
  result: unknown;
}

/** A step row as a transition sees it (saga._lock / saga._state in sql/functions.sql). */
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
  /**
   * A `.child()` step's child: read only while the step waits for it, or while the saga compensates; null or
   * absent when not read.
   */
  child?: ChildRow | null;
}

/** @internal A step handler this worker now holds the lease for. */
export interface Claim {
  kind: "execute" | "compensate";
  index: number;
  /** The execution attempt, or the compensation attempt: the fence of the record. */
  attempt: number;
  step: StepDefinition;
  /** For execute: the step's input data. */
  data?: unknown;
  /** For compensate: whether the step finished or may have had its effect. */
  outcome?: "succeeded" | "unknown";
  error?: StoredError | null;
  /** Branches of the same group claimed in the same transition, to run in this process beside this one. */
  together?: Claim[];
}

/** Why an attempt ended without a result. */
export type FailureKind = "error" | "timeout" | "released" | "lost";

/** @internal What the decisions need from the worker that takes them. */
export interface DecideEnv {
  workerId: string;
  /** Lease length in ms written on the step: informational; the reaper goes by worker heartbeats. */
  leaseMs: (step: StepDefinition) => number;
  /** Whether this process is running the claim right now (a lease of ours that is not is a lost one). */
  isActive: (sagaId: string, kind: Claim["kind"], index: number) => boolean;
  /** How many more claims this process can run now (its concurrency less its claims); absent: none. */
  spareSlots?: () => number;
}

/** How a handler call ended: its value, or its error and why. */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown; kind: FailureKind };

/** Why a running handler's signal was aborted; `signal.reason` is an {@link AbortError} with this code. */
export type AbortCode =
  "STEP_TIMEOUT" | "WORKER_SHUTDOWN" | "SAGA_CANCELLED" | "SAGA_TIMEOUT" | "SIBLING_FAILED";

export class AbortError extends Error {
  override readonly name = "AbortError";
  constructor(
    readonly code: AbortCode,
    message: string,
    /** A cancel asked for while the step held the saga's row: its reason, read from saga.cancel_requests. */
    readonly requested?: string,
  ) {
    super(message);
  }
}

/** The payload of a saga job: `step` targets one compensation (parallel strategy). */
export interface SagaJobPayload {
  id: string;
  step?: number;
  deadline?: boolean;
  validate?: boolean;
  cancel?: string;
  /** Who asked for the cancel (saga.cancel() in SQL: the session's role). */
  by?: string;
  /** A retry asked for from SQL (saga.retry()): its request is in saga.retry_requests. */
  retry?: boolean;
  /** A completed child saga whose parent compensates: why (src/worker/children.ts). */
  compensate?: string;
}
