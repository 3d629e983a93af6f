/**
 * Child steps: `.child(name, { saga, input })` starts another saga and parks the parent until it ends (see
 * src/worker/children.ts). The types a child step needs of a saga are structural (step-types.ts), so this module
 * does not import the class that uses it.
 */
import { toMs } from "./duration.js";
import { SagaError } from "./errors.js";
import { DEFAULT_COMPENSATION_RETRY } from "./retry.js";
import { NAME, type StepPlace } from "./definition-steps.js";
import type { ChildSagaRef, ChildSpec, ChildStepOptions, StepDefinition } from "./step-types.js";

/** A child step never runs a handler of its own: the worker starts the child instead (children.ts). */
const noHandler = () => {
  throw new SagaError("INVALID_STATE", "a child step has no handler: its child saga does the work");
};

/** @internal checks a `.child()` step's options and freezes it into the definition the engine runs. */
export function childStep(
  name: string,
  options: ChildStepOptions<unknown, ChildSagaRef>,
  place: StepPlace,
): StepDefinition {
  const where = `saga "${place.saga}" step "${name}"`;
  if (typeof name !== "string" || !NAME.test(name))
    throw new SagaError(
      "INVALID_DEFINITION",
      `${where}: a step name is 1-100 letters, digits, ".", "_", ":" or "-"`,
    );
  if (place.taken.has(name))
    throw new SagaError(
      "INVALID_DEFINITION",
      `${where}: duplicate step name; each step of a saga needs its own name`,
    );
  const saga = options?.saga as unknown as ChildSpec["saga"] | undefined;
  if (
    typeof saga !== "object" ||
    saga === null ||
    typeof saga.key !== "string" ||
    typeof (saga as { steps?: unknown }).steps !== "object"
  )
    throw new SagaError("INVALID_DEFINITION", `${where}: saga must be a saga from defineSaga()`);
  if ((saga as unknown as { steps: unknown[] }).steps.length === 0)
    throw new SagaError("INVALID_DEFINITION", `${where}: child saga "${saga.name}" has no steps`);
  if (typeof options.input !== "function")
    throw new SagaError("INVALID_DEFINITION", `${where}: input must be a function (data) => child input`);
  if (options.when !== undefined && typeof options.when !== "function")
    throw new SagaError("INVALID_DEFINITION", `${where}: when must be a function`);
  const timeoutMs = options.timeout === undefined ? undefined : toMs(options.timeout, `${where} timeout`);
  const child: ChildSpec = Object.freeze({
    saga,
    input: options.input,
    timeoutMs: timeoutMs ?? saga.timeoutMs,
  });
  return Object.freeze({
    name,
    index: place.index,
    group: place.group,
    kind: "child",
    child,
    transactional: false,
    execute: noHandler,
    // Present so the step is compensable like any other: its compensation is the child's (children.ts).
    compensate: noHandler,
    when: options.when as ((data: unknown) => boolean) | undefined,
    // The step's timeout bounds the child (its deadline), not a handler.
    timeoutMs: undefined,
    retry: place.retry,
    compensateRetry: DEFAULT_COMPENSATION_RETRY,
    // A child step's failure is its child's end: trying again would find the same child.
    retryable: () => false,
    description: options.description,
  });
}
