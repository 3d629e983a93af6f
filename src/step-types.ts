/**
 * The types of steps: what handlers receive (contexts), the options of `.step()` and `.child()`, and a step as
 * the engine runs it. Apart from definition.ts so that the modules that build steps (definition-steps.ts,
 * definition-child.ts) and the class that uses them do not import each other.
 */
import type { z } from "zod";
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
  /**
   * Starts a child saga that this step does not wait for (fire-and-forget; `.child()` waits). Its parent is this
   * saga; idempotent per step (a retry finds the children its earlier attempt started). In a transactional step
   * it starts on `ctx.tx`, so it exists exactly when the step commits. The child saga must be one the workers run.
   */
  startChild<C extends ChildSagaRef>(saga: C, input: C["$start"]): Promise<{ id: string; created: boolean }>;
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

/** A step as the engine runs it (internal: not part of the public surface, which `src/index.ts` is). */
export interface StepDefinition {
  readonly name: string;
  /** The flat position in the saga: the step row's key. */
  readonly index: number;
  /** The position of its group: a plain step is a group of one; the branches of a `.parallel()` share one. */
  readonly group: number;
  readonly kind: "step" | "child";
  readonly when: ((data: unknown) => boolean) | undefined;
  /** For a `child` step: the saga it starts (definition-child.ts). */
  readonly child?: ChildSpec;
  readonly transactional: boolean;
  readonly execute: (data: unknown, ctx: TransactionalStepContext) => Awaitable<unknown>;
  readonly compensate: ((data: unknown, ctx: CompensateContext<unknown>) => unknown) | undefined;
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPolicy;
  readonly compensateRetry: RetryPolicy;
  readonly retryable: ((error: unknown) => boolean) | undefined;
  readonly description: string | undefined;
}

/** What `.child()` needs of a saga definition: any `defineSaga(...)` result. */
export interface ChildSagaRef {
  readonly name: string;
  readonly version: number;
  /** Type-only: what the child's start accepts. */
  readonly $start: unknown;
  /** Type-only: the child's result, the parent step's output. */
  readonly $result: unknown;
}

/** The options of a `.child()` step. */
export interface ChildStepOptions<In, C extends ChildSagaRef> {
  /** The child saga; it must be one of the engine's sagas too (`createSagaEngine({ sagas })`). */
  saga: C;
  /** The child's input, from this step's data; checked against the child's schema before the child starts. */
  input: (data: In) => C["$start"];
  /** A deadline for the child (it ends `timed_out` and the step fails); default: the child saga's own timeout. */
  timeout?: Duration;
  /** Run the step only when this returns true; false skips it (its data passes on). */
  when?: (data: In) => boolean;
  description?: string;
}

/** A child step's saga as the worker starts it (internal). */
export interface ChildSpec {
  readonly saga: {
    readonly name: string;
    readonly version: number;
    readonly key: string;
    readonly fingerprint: string;
    readonly inputSchema: z.ZodType;
    readonly timeoutMs: number | undefined;
  };
  readonly input: (data: unknown) => unknown;
  /** The child's deadline: the step's timeout, else the child saga's timeout. */
  readonly timeoutMs: number | undefined;
}
