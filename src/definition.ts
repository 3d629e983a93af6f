import { createHash } from "node:crypto";
import type { z } from "zod";
import { type CompensationStrategy, compensation as compensationStrategies } from "./compensation.js";
import { type Duration, toMs } from "./duration.js";
import { SagaError } from "./errors.js";
import { DEFAULT_STEP_RETRY, type RetryPolicy, isRetryPolicy } from "./retry.js";
import {
  type BranchOptions,
  type GroupData,
  NAME,
  buildGroup,
  buildStep,
  groupSteps,
  stepShape,
} from "./definition-steps.js";
import { childStep } from "./definition-child.js";
import type {
  ChildSagaRef,
  ChildStepOptions,
  NextData,
  StepDefinition,
  StepOptions,
  TransactionalStepOptions,
} from "./step-types.js";

export type { BranchOptions, BranchOutput, GroupData } from "./definition-steps.js";
export type {
  ChildSagaRef,
  ChildStepOptions,
  CompensateContext,
  NextData,
  StepContext,
  StepDefinition,
  StepOptions,
  TransactionalStepContext,
  TransactionalStepOptions,
} from "./step-types.js";

export interface SagaConfig<S extends z.ZodType> {
  /** Unique per application; instances are found by it. */
  name: string;
  /** Bump when the step list changes; running instances stay on the version they started with. Default 1. */
  version?: number;
  /** A zod schema; start() validates against it before anything is written. */
  input: S;
  /** Deadline for the whole saga: when it passes, the saga is compensated and ends `timed_out`. */
  timeout?: Duration;
  /** Default retry policy of every step. Default: one attempt. */
  retry?: RetryPolicy;
  /** Default: `compensation.sequential()`. */
  compensation?: CompensationStrategy;
  description?: string;
}

/** Versions are stored as a PostgreSQL int. */
const MAX_VERSION = 2_147_483_647;

/**
 * A saga definition: immutable; each `.step()` returns a new definition whose data type is the step's output.
 *
 * @example
 * const saga = defineSaga({ name: "order", input: z.object({ amount: z.number() }) })
 *   .step("reserve", { execute: async (d) => ({ ...d, reservationId: "r1" }) });
 */
export class SagaDefinition<Input, Data, Start = Input> {
  /** @internal */ readonly steps: readonly StepDefinition[];
  /** @internal the steps by group: a plain step is a group of one. */
  readonly groups: readonly (readonly StepDefinition[])[];
  readonly name: string;
  readonly version: number;
  /** @internal */ readonly inputSchema: z.ZodType;
  /** @internal */ readonly timeoutMs: number | undefined;
  /** @internal */ readonly retry: RetryPolicy;
  /** @internal */ readonly compensation: CompensationStrategy;
  readonly description: string | undefined;
  /** Type-only: the saga's input. */
  declare readonly $input: Input;
  /** Type-only: what `engine.start()` accepts (the schema's input type, before defaults and transforms). */
  declare readonly $start: Start;
  /** Type-only: the saga's result (the last step's data). */
  declare readonly $result: Data;

  /** @internal use {@link defineSaga}. */
  constructor(config: SagaConfig<z.ZodType>, steps: readonly StepDefinition[]) {
    this.name = config.name;
    this.version = config.version ?? 1;
    this.inputSchema = config.input;
    this.timeoutMs =
      config.timeout === undefined ? undefined : toMs(config.timeout, `saga "${config.name}" timeout`);
    this.retry = config.retry ?? DEFAULT_STEP_RETRY;
    this.compensation = config.compensation ?? compensationStrategies.sequential();
    this.description = config.description;
    this.steps = Object.freeze([...steps]);
    this.groups = groupSteps(this.steps);
    this.config = config;
  }

  private readonly config: SagaConfig<z.ZodType>;

  /** Appends a step; its `execute` receives the previous step's data. */
  step<Out>(
    name: string,
    options: TransactionalStepOptions<Data, Out> & { when: (data: Data) => boolean },
  ): SagaDefinition<Input, NextData<Data, Out> | Data, Start>;
  step<Out>(
    name: string,
    options: TransactionalStepOptions<Data, Out>,
  ): SagaDefinition<Input, NextData<Data, Out>, Start>;
  step<Out>(
    name: string,
    options: StepOptions<Data, Out> & { when: (data: Data) => boolean },
  ): SagaDefinition<Input, NextData<Data, Out> | Data, Start>;
  step<Out>(name: string, options: StepOptions<Data, Out>): SagaDefinition<Input, NextData<Data, Out>, Start>;
  step<Out>(
    name: string,
    options: StepOptions<Data, Out> | TransactionalStepOptions<Data, Out>,
  ): SagaDefinition<Input, NextData<Data, Out>, Start> {
    const step = buildStep(name, options as StepOptions<unknown, unknown>, this.place());
    return new SagaDefinition<Input, NextData<Data, Out>, Start>(this.config, [...this.steps, step]);
  }

  /**
   * Appends a group of branches that run side by side once the previous step is done: each receives the same
   * data, and the step after the group receives `{ [branch]: output }`. Branch names are step names.
   *
   * @example
   * saga.parallel({
   *   flight: { execute: async (d) => ({ flightId: "f1" }) },
   *   hotel: { execute: async (d) => ({ hotelId: "h1" }), when: (d) => d.nights > 0 },
   * }).step("confirm", { execute: async (d) => ({ flight: d.flight.flightId, hotel: d.hotel?.hotelId }) });
   */
  parallel<B extends Record<string, BranchOptions<Data, unknown>>>(
    branches: B,
  ): SagaDefinition<Input, GroupData<Data, B>, Start> {
    const steps = buildGroup(branches as Record<string, BranchOptions<unknown, unknown>>, this.place());
    return new SagaDefinition<Input, GroupData<Data, B>, Start>(this.config, [...this.steps, ...steps]);
  }

  /**
   * Appends a step that starts `options.saga` as a child of this saga and waits for it without holding a
   * worker: the step's output is the child's result; a child that does not complete fails the step.
   *
   * @example
   * const trip = defineSaga({ name: "trip", input: z.object({ city: z.string() }) })
   *   .child("book-hotel", { saga: hotelSaga, input: (d) => ({ city: d.city, nights: 2 }) });
   */
  child<C extends ChildSagaRef>(
    name: string,
    options: ChildStepOptions<Data, C> & { when: (data: Data) => boolean },
  ): SagaDefinition<Input, C["$result"] | Data, Start>;
  child<C extends ChildSagaRef>(
    name: string,
    options: ChildStepOptions<Data, C>,
  ): SagaDefinition<Input, C["$result"], Start>;
  child<C extends ChildSagaRef>(
    name: string,
    options: ChildStepOptions<Data, C>,
  ): SagaDefinition<Input, C["$result"], Start> {
    const step = childStep(
      name,
      options as unknown as ChildStepOptions<unknown, ChildSagaRef>,
      this.place("child"),
    );
    return new SagaDefinition<Input, C["$result"], Start>(this.config, [...this.steps, step]);
  }

  /** @internal where the next step or group goes. */
  place(kind?: StepDefinition["kind"]) {
    return {
      saga: this.name,
      index: this.steps.length,
      group: this.groups.length,
      taken: new Set(this.steps.map((s) => s.name)),
      retry: this.retry,
      ...(kind === undefined ? {} : { kind }),
    };
  }

  /** Identifies the step list: a worker refuses a definition whose steps changed under the same version. */
  get fingerprint(): string {
    const shape = this.steps.map(stepShape);
    return createHash("sha256")
      .update(JSON.stringify([this.name, this.version, shape]))
      .digest("hex")
      .slice(0, 16);
  }

  /** `name@version`: the graphile-worker task that runs this version (see {@link sagaKey}). */
  get key(): string {
    return sagaKey(this.name, this.version);
  }
}

/**
 * A saga version's key, `name@version`: how definitions are looked up by a row's name and version, and (as
 * `saga:<key>`) the graphile-worker task that runs them. saga._task in sql/functions.sql builds the same text.
 */
export const sagaKey = (name: string, version: number): string => `${name}@${version}`;

/** Any saga definition, whatever its data types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySaga = SagaDefinition<any, any, any>;

/**
 * Starts a saga definition; add steps with `.step()`.
 *
 * @example
 * export const orderSaga = defineSaga({
 *   name: "order-processing",
 *   input: z.object({ customerId: z.string(), amount: z.number().positive() }),
 *   timeout: "30m",
 *   retry: retry.exponential({ maxAttempts: 3, initialDelay: "1s", maxDelay: "10s" }),
 * })
 *   .step("create-order", {
 *     execute: async (data, ctx) => ({ ...data, orderId: await orders.create(data, ctx.idempotencyKey) }),
 *     compensate: async (data) => { await orders.cancel(data.orderId); },
 *   });
 */
export function defineSaga<S extends z.ZodType>(
  config: SagaConfig<S>,
): SagaDefinition<z.output<S>, z.output<S>, z.input<S>> {
  if (typeof config !== "object" || config === null)
    throw new SagaError("INVALID_DEFINITION", "defineSaga needs a config object");
  if (typeof config.name !== "string" || !NAME.test(config.name) || config.name.includes("@")) {
    throw new SagaError(
      "INVALID_DEFINITION",
      `saga name must be 1-100 letters, digits, ".", "_", ":" or "-"; got ${JSON.stringify(config.name)}`,
    );
  }
  const input = config.input as unknown;
  if (typeof input !== "object" || input === null || typeof (input as z.ZodType).safeParse !== "function") {
    throw new SagaError(
      "INVALID_DEFINITION",
      `saga "${config.name}": input must be a zod schema, e.g. z.object({ ... })`,
    );
  }
  if (
    config.version !== undefined &&
    !(Number.isInteger(config.version) && config.version >= 1 && config.version <= MAX_VERSION)
  ) {
    throw new SagaError(
      "INVALID_DEFINITION",
      `saga "${config.name}": version must be an integer from 1 to ${MAX_VERSION} (a PostgreSQL int); got ${String(config.version)}`,
    );
  }
  if (config.retry !== undefined && !isRetryPolicy(config.retry)) {
    throw new SagaError(
      "INVALID_DEFINITION",
      `saga "${config.name}": retry must come from retry.exponential/fixed/linear/none`,
    );
  }
  return new SagaDefinition(config, []);
}

/** An empty saga is refused when the engine or a worker is given it. */
export function assertRunnable(saga: AnySaga): void {
  if (!(saga instanceof SagaDefinition))
    throw new SagaError("INVALID_DEFINITION", "expected a saga from defineSaga()");
  if (saga.steps.length === 0) {
    throw new SagaError(
      "INVALID_DEFINITION",
      `saga "${saga.name}" has no steps; add at least one with .step(name, { execute })`,
    );
  }
}
