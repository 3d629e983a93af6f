/**
 * The types of a saga's steps: what handlers receive (contexts), the options of a step, and a step as the
 * engine runs it. definition.ts builds sagas from them; definition-steps.ts checks and freezes steps.
 */
import type { Duration } from "./duration.js";
import type { StoredError } from "./errors.js";
import type { Executor } from "./executor.js";
import type { Logger } from "./logger.js";
import type { RetryPolicy } from "./retry.js";

/** What every step handler receives besides its data. */
export interface StepContext {
  readonly sagaId: string;
  readonly sagaName: string;
  readonly step: string;
  /** 1-based; counts every try of this step, including those before a manual `retry`. */
  readonly attempt: number;
  /** Stable across retries of the same step of the same saga: hand it to the service you call. */
  readonly idempotencyKey: string;
  /** Aborts on the step timeout, on cancel, on the saga deadline and on worker shutdown. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** The context of a `transactional: true` step: `tx` is the engine's own transaction. */
export interface TransactionalStepContext extends StepContext {
  /** Commits exactly once, together with the step's record; a throw rolls both back. */
  readonly tx: Executor;
}

/** What a compensation receives besides the step's data. */
export interface CompensateContext<In> extends StepContext {
  /**
   * `succeeded`: the step finished and `data` is its output. `unknown`: the step may have had its effect
   * (it timed out, its worker died, or the saga was cancelled mid-call) and `data` is the step's input.
   * Compensations must tolerate "nothing to undo".
   */
  readonly outcome: "succeeded" | "unknown";
  /** The data the step was given. */
  readonly input: In;
  /** Why the saga is compensating: the step error, or the cancel/timeout reason. */
  readonly error: StoredError | null;
}

export type Awaitable<T> = T | Promise<T>;
/** A step that returns nothing passes its input on unchanged. */
export type NextData<In, Out> = [Out] extends [void | undefined] ? In : Out;

export interface StepOptionsBase<In, Out> {
  compensate?: (data: NextData<In, Out>, ctx: CompensateContext<In>) => unknown;
  /** Per-attempt timeout; the attempt fails with `STEP_TIMEOUT` (retryable). */
  timeout?: Duration;
  /** Overrides the saga's retry policy for this step. */
  retry?: RetryPolicy;
  /** Policy for this step's compensation; default: exponential, 10 attempts. */
  compensateRetry?: RetryPolicy;
  /** Decides for errors that are neither `BusinessError` nor `RetryableError`; default: retryable. */
  retryable?: (error: unknown) => boolean;
  /** Runs the step only when this returns true; otherwise it is `skipped`, passes its input on, is never compensated. */
  when?: (data: In) => boolean;
  description?: string;
}

/** A step whose handler calls the outside world: at least once, with `ctx.idempotencyKey`. */
export interface StepOptions<In, Out> extends StepOptionsBase<In, Out> {
  transactional?: false;
  execute: (data: In, ctx: StepContext) => Awaitable<Out>;
}

/** A step whose handler only writes to this database, on `ctx.tx`: exactly once. */
export interface TransactionalStepOptions<In, Out> extends StepOptionsBase<In, Out> {
  transactional: true;
  execute: (data: In, ctx: TransactionalStepContext) => Awaitable<Out>;
}

/** @internal a step as the engine runs it. */
export interface StepDefinition {
  readonly name: string;
  /** The flat position in the saga: the step row's key. */
  readonly index: number;
  /** The position of its group: a plain step is a group of one; the branches of a `.parallel()` share one. */
  readonly group: number;
  readonly kind: "step" | "child";
  readonly when: ((data: unknown) => boolean) | undefined;
  readonly transactional: boolean;
  readonly execute: (data: unknown, ctx: TransactionalStepContext) => Awaitable<unknown>;
  readonly compensate: ((data: unknown, ctx: CompensateContext<unknown>) => unknown) | undefined;
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPolicy;
  readonly compensateRetry: RetryPolicy;
  readonly retryable: ((error: unknown) => boolean) | undefined;
  readonly description: string | undefined;
}
