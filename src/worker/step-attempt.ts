/**
 * What every step attempt shares, plain or transactional: the handler's context, its output as the database
 * will give it back, the record of its outcome, and the hand-over of a stopping worker.
 */
import type { AnySaga } from "../definition.js";
import { BusinessError } from "../errors.js";
import { fromJsonbText, toJsonb } from "../jsonb.js";
import type { Executor } from "../executor.js";
import type { Logger } from "../logger.js";
import type { Claim, Outcome } from "../model.js";
import { recordFailure, recordSuccess } from "./decide.js";
import { childStarter } from "./start-child.js";
import type { Transition } from "./transition.js";
import type { WorkerEnv } from "./worker-env.js";

export function record(
  t: Transition,
  def: AnySaga,
  env: WorkerEnv,
  claim: Claim,
  outcome: Outcome,
  durationMs: number,
): boolean {
  return outcome.ok
    ? recordSuccess(t, def, env, claim, outcome.value, durationMs)
    : recordFailure(t, def, env, claim, outcome.error, outcome.kind);
}

/** `db`: where `ctx.startChild` starts children (a transactional step's own transaction). */
export function context(
  env: WorkerEnv,
  def: AnySaga,
  id: string,
  claim: Claim,
  signal: AbortSignal,
  logger: Logger,
  db: Executor = env.db,
) {
  const idempotencyKey = `${id}:${claim.step.name}${claim.kind === "compensate" ? ":compensate" : ""}`;
  return {
    sagaId: id,
    sagaName: def.name,
    step: claim.step.name,
    attempt: claim.attempt,
    idempotencyKey,
    signal,
    logger,
    startChild: childStarter(db, env.codec, id, idempotencyKey),
  };
}

/** A stopping worker takes no next claim: a job hands the saga's next piece of work to another worker. */
export function handOver(t: Transition): null {
  if (t.saga.state === "running" || t.saga.state === "compensating") t.job({ id: t.saga.id });
  return null;
}

/**
 * A step's output as the database gives it back: the next step receives this whether it runs in this process
 * or after a reload (Dates become strings, Maps `{}`, undefined fields vanish; see docs/data.md). An output
 * jsonb cannot store (see jsonb.ts: a NUL character, a lone surrogate, a cycle, a BigInt, too deep) fails the
 * attempt for good with `INVALID_OUTPUT`, instead of failing the record transaction on every retry.
 */
export function outputAsStored(claim: Claim, outcome: Outcome): Outcome {
  if (!outcome.ok || claim.kind !== "execute" || outcome.value === undefined) return outcome;
  const json = toJsonb(outcome.value);
  if (!json.ok) {
    const message = `step "${claim.step.name}" returned an output that ${json.message}`;
    return {
      ok: false,
      kind: "error",
      error: new BusinessError("INVALID_OUTPUT", message, { problem: json.problem }),
    };
  }
  return { ok: true, value: json.text === undefined ? undefined : fromJsonbText(json.text) };
}
