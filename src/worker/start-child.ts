/**
 * `ctx.startChild(saga, input)`: a fire-and-forget child saga started from inside a step. The parent does not
 * wait for it; the child's parent_id is the step's saga (saga.children shows it). Idempotent per step: the n-th
 * child of a saga name that an attempt starts has a key derived from the step's idempotency key, so a retried
 * attempt finds the children its earlier try started. A transactional step starts it on `ctx.tx`: the child
 * exists exactly when the step's record commits.
 */
import { type AnySaga, assertRunnable } from "../definition.js";
import type { Executor } from "../executor.js";
import type { StepContext } from "../step-types.js";
import { type PayloadCodec } from "../codec/codec.js";
import { encodeInput } from "../codec/rows.js";
import { checkStart } from "../start-options.js";
import { startSaga } from "../sql/start-saga.js";

/** The same ceiling as engine.start()'s default maxPayloadBytes. */
const MAX_CHILD_INPUT_BYTES = 1_048_576;

export type StartChild = StepContext["startChild"];

export function childStarter(
  db: Executor,
  codec: PayloadCodec,
  parentId: string,
  idempotencyKey: string,
): StartChild {
  const started = new Map<string, number>();
  return async (ref, input) => {
    // Any defineSaga() result; anything else is refused by assertRunnable.
    const saga = ref as unknown as AnySaga;
    assertRunnable(saga);
    const n = started.get(saga.name) ?? 0;
    started.set(saga.name, n + 1);
    const args = checkStart(
      saga,
      input,
      { idempotencyKey: `${idempotencyKey}:child:${saga.name}:${n}`, parentId },
      MAX_CHILD_INPUT_BYTES,
    );
    return startSaga(db, { ...args, input: encodeInput(codec, args.input) });
  };
}
