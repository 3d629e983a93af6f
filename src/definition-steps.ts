/**
 * Building and checking the steps of a saga definition: plain steps, parallel groups and their `when`
 * conditions. Every check throws `SagaError("INVALID_DEFINITION")` before a definition exists.
 */
import { toMs } from "./duration.js";
import { SagaError } from "./errors.js";
import { DEFAULT_COMPENSATION_RETRY, type RetryPolicy, isRetryPolicy } from "./retry.js";
import type { NextData, StepDefinition, StepOptions, TransactionalStepOptions } from "./step-types.js";

export const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;

/** A branch of a `.parallel()` group: a step (not transactional: it would hold the saga's row while it runs). */
export interface BranchOptions<In, Out> extends StepOptions<In, Out> {
  transactional?: false;
}

/** The data a branch contributes to the step after its group: its output, or its input when it returns nothing. */
export type BranchOutput<In, B> = B extends { execute: (data: never, ctx: never) => infer R }
  ? NextData<In, Awaited<R>>
  : never;

/**
 * The data the step after a `.parallel()` group receives: one key per branch. A branch with a `when` may be
 * skipped, and then its key is absent, so its type includes `undefined`.
 */
export type GroupData<In, B> = {
  [K in keyof B]: B[K] extends { when: (data: never) => boolean }
    ? BranchOutput<In, B[K]> | undefined
    : BranchOutput<In, B[K]>;
};

/** Where a new step goes: its flat position, its group, and the names already taken. */
export interface StepPlace {
  saga: string;
  index: number;
  group: number;
  taken: ReadonlySet<string>;
  retry: RetryPolicy;
  kind?: StepDefinition["kind"];
}

const invalid = (message: string) => new SagaError("INVALID_DEFINITION", message);

/** Checks one step's options and freezes it into the definition the engine runs. */
export function buildStep(
  name: string,
  options: StepOptions<unknown, unknown> | TransactionalStepOptions<unknown, unknown>,
  place: StepPlace,
): StepDefinition {
  const where = `saga "${place.saga}" step "${name}"`;
  if (typeof name !== "string" || !NAME.test(name))
    throw invalid(`${where}: a step name is 1-100 letters, digits, ".", "_", ":" or "-"`);
  if (place.taken.has(name))
    throw invalid(`${where}: duplicate step name; each step of a saga (and each branch) needs its own name`);
  if (typeof options?.execute !== "function") throw invalid(`${where}: execute must be a function`);
  if (options.compensate !== undefined && typeof options.compensate !== "function")
    throw invalid(`${where}: compensate must be a function`);
  if (options.when !== undefined && typeof options.when !== "function")
    throw invalid(`${where}: when must be a function (data) => boolean`);
  for (const key of ["retry", "compensateRetry"] as const) {
    if (options[key] !== undefined && !isRetryPolicy(options[key]))
      throw invalid(`${where}: ${key} must come from retry.exponential/fixed/linear/none`);
  }
  return Object.freeze({
    name,
    index: place.index,
    group: place.group,
    kind: place.kind ?? "step",
    transactional: options.transactional === true,
    execute: options.execute as StepDefinition["execute"],
    compensate: options.compensate as StepDefinition["compensate"],
    when: options.when as StepDefinition["when"],
    timeoutMs: options.timeout === undefined ? undefined : toMs(options.timeout, `${where} timeout`),
    retry: options.retry ?? place.retry,
    compensateRetry: options.compensateRetry ?? DEFAULT_COMPENSATION_RETRY,
    retryable: options.retryable,
    description: options.description,
  });
}

/** Checks a `.parallel()` group and builds its branches, in declaration order. */
export function buildGroup(
  branches: Record<string, BranchOptions<unknown, unknown>>,
  place: StepPlace,
): StepDefinition[] {
  const where = `saga "${place.saga}" parallel group ${place.group}`;
  if (typeof branches !== "object" || branches === null || Array.isArray(branches))
    throw invalid(`${where}: parallel() takes an object of branches, { name: { execute, ... } }`);
  const names = Object.keys(branches);
  if (names.length === 0) throw invalid(`${where}: a parallel group needs at least one branch`);
  const taken = new Set(place.taken);
  return names.map((name, i) => {
    const options = branches[name];
    if ((options as { transactional?: unknown } | undefined)?.transactional === true) {
      throw invalid(
        `saga "${place.saga}" step "${name}": a parallel branch cannot be transactional (it would hold the saga's row lock while it runs, so its siblings could not run beside it); make it a plain step before or after the group`,
      );
    }
    const step = buildStep(name, options as BranchOptions<unknown, unknown>, {
      ...place,
      index: place.index + i,
      taken,
    });
    taken.add(name);
    return step;
  });
}

/** Steps by group, in order. */
export function groupSteps(steps: readonly StepDefinition[]): readonly (readonly StepDefinition[])[] {
  const groups: StepDefinition[][] = [];
  for (const step of steps) (groups[step.group] ??= []).push(step);
  return Object.freeze(groups.map((g) => Object.freeze(g)));
}

/**
 * The fingerprint's shape of a step: a plain step keeps the shape it always had (so a saga of plain steps keeps
 * its fingerprint); a branch, a conditional or a child step adds its group, kind and condition.
 */
export function stepShape(s: StepDefinition): unknown[] {
  const shape: unknown[] = [s.name, s.transactional, s.compensate !== undefined];
  if (s.group !== s.index || s.kind !== "step" || s.when !== undefined)
    shape.push(s.group, s.kind, s.when !== undefined);
  // A child step is also the saga it starts.
  if (s.child) shape.push(s.child.saga.key);
  return shape;
}
