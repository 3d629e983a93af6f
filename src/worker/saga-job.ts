import type { AnySaga, TransactionalStepContext } from "../definition.js";
import { toStoredError } from "../errors.js";
import { scopedLogger } from "../logger.js";
import { isTransientDbError } from "../db.js";
import { loadCompensationData } from "../sql/compensation-data.js";
import { decodeValue } from "../codec/codec.js";
import { AbortError, type SagaJobPayload } from "../model.js";
import { callHandler } from "./call-handler.js";
import { cancelAbort } from "./aborted.js";
import { readCancelRequest, takeCancelRequest } from "../sql/cancel-requests.js";
import { takeRetryRequest } from "../sql/retry-requests.js";
import { resume } from "./resume.js";
import type { WorkerEnv } from "./worker-env.js";
import { fenceHolds, planNext } from "./decide.js";
import { endInterrupted, interrupt } from "./interrupt.js";
import { type TrackedClaim, lockedTransition, transition } from "./commit-transition.js";
import type { Transition } from "./transition.js";
import { context, handOver, outputAsStored, record } from "./step-attempt.js";
import { runTransactional } from "./transactional-step.js";
import { RecordBatch, batchable } from "./record-batch.js";
import { validateInput } from "./validate-input.js";
import { type GroupOutputs, isGraph, onlyFor } from "./groups.js";
import { loadStepInput, outputsToFinish, outputsToJoin } from "./group-data.js";
import { readSaga } from "../sql/lock-instance.js";
import { compensateCompleted } from "./children.js";
import { beginCompensation, compensable } from "./compensation-plan.js";

/** How long a saga job keeps trying through database errors before it hands the job back to graphile-worker. */
const JOB_RETRY_FAILURES = 30;

/**
 * A saga job: claim → call → record, and on to the next step in the same process while there is one: the
 * record of step N and the claim of step N+1 commit together, so a healthy saga needs no job per step.
 *
 * A database error (by SQLSTATE/errno) does not fail the job: graphile-worker would retry it only after its
 * exponential backoff (e^attempts seconds: 20 s by the third failure, 2.5 min by the fifth), stalling the saga
 * long after Postgres is back. The job runs again here, with a backoff capped at 5 s, deciding from what the
 * database holds: a step whose record could not be written is found leased and not running, and written off
 * as lost. After about two minutes of failures, or when the worker stops, the error goes to graphile-worker.
 */
export async function runSagaJob(
  env: WorkerEnv,
  def: AnySaga,
  payload: SagaJobPayload,
  jobId?: string,
): Promise<void> {
  for (let failures = 0; ;) {
    try {
      await runSagaJobOnce(env, def, payload, jobId);
      return;
    } catch (err) {
      if (env.stopping || !isTransientDbError(err) || ++failures > JOB_RETRY_FAILURES) throw err;
      const delayMs = Math.round(Math.min(5_000, 100 * 2 ** failures) * (0.5 + Math.random() / 2));
      env.logger.warn("saga job hit a database error; running it again", {
        sagaId: payload.id,
        error: String(err),
        failures,
        retryInMs: delayMs,
      });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

async function runSagaJobOnce(
  env: WorkerEnv,
  def: AnySaga,
  payload: SagaJobPayload,
  jobId: string | undefined,
): Promise<void> {
  const { id } = payload;
  if (payload.deadline || payload.cancel !== undefined) {
    // A cancel asked for from SQL: the first reason recorded is the one the saga keeps.
    const request = payload.cancel === undefined ? null : await readCancelRequest(env.db, id);
    const reason = request?.reason ?? payload.cancel;
    await transition(
      env,
      id,
      (t) => {
        interrupt(
          t,
          def,
          payload.deadline ? "timeout" : "cancel",
          reason ?? "the saga deadline passed",
          request?.by ?? payload.by,
        );
      },
      undefined,
      jobId,
    );
    if (payload.cancel !== undefined) await takeCancelRequest(env.db, id);
    return;
  }
  if (payload.retry) {
    await performRetry(env, id, jobId);
    return;
  }
  // A saga with groups: a job may be the one to join a group whose branches are all done (see groups.ts).
  const branch = isGraph(def) && payload.step !== undefined;
  const known = isGraph(def) && !branch ? await readSaga(env.db, id) : null;
  const outputs = known ? await outputsToJoin(env.db, env.codec, def, known) : undefined;
  const claim = await commitFor(branch)(
    env,
    id,
    (t) => {
      if (payload.compensate !== undefined)
        compensateCompleted(
          t,
          def,
          payload.compensate,
          (error) => beginCompensation(t, def, "failure", error),
          () => compensable(t, def).length,
        );
      else if (payload.validate && !validateInput(t, def)) return null;
      return planNext(t, def, env, payload.step, outputs);
    },
    known ?? undefined,
    jobId,
  );
  await drive(env, def, id, claim, jobId);
}

/**
 * Runs a claim and whatever it leads to. Branches claimed together run side by side in this process, each to
 * its own record; the job ends with the last of them (its commit does not end the job: graphile-worker does).
 */
async function drive(
  env: WorkerEnv,
  def: AnySaga,
  id: string,
  claim: TrackedClaim | null,
  jobId: string | undefined,
  batch?: RecordBatch,
): Promise<void> {
  while (claim) {
    const { together, ...first } = claim;
    if (together && together.length > 0) {
      const records = new RecordBatch(env, def, id, claim.next);
      const others = together.map(async (c) => {
        try {
          await drive(env, def, id, c, undefined, records);
        } finally {
          c.release?.();
        }
      });
      // Every branch ends before the job does (stop() waits for jobs): a record that threw is rethrown after.
      const settled = await Promise.allSettled([drive(env, def, id, first, undefined, records), ...others]);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      return;
    }
    claim = await runClaim(env, def, id, claim, jobId, batch);
  }
}

/**
 * A retry asked for from SQL, performed by engine.retry()'s code (resume) under the instance row lock, which
 * consumes the request in the same transaction. A request for a saga that has moved on since (retried another
 * way, by its seq) is dropped: the saga is no longer in the state the operator saw.
 */
async function performRetry(env: WorkerEnv, id: string, jobId: string | undefined): Promise<void> {
  await lockedTransition(
    env,
    id,
    async (t, db) => {
      const request = await takeRetryRequest(db, id);
      if (!request) return null;
      const who = {
        by: request.requested_by,
        ...(request.reason === null ? {} : { reason: request.reason }),
      };
      if (request.seq !== t.saga.seq || !resume(t, who))
        env.logger.info("retry request dropped: the saga moved on since it was asked for", {
          sagaId: id,
          state: t.saga.state,
          ...who,
        });
      return null;
    },
    jobId,
  );
}

async function runClaim(
  env: WorkerEnv,
  def: AnySaga,
  id: string,
  claim: TrackedClaim,
  jobId: string | undefined,
  batch?: RecordBatch,
): Promise<TrackedClaim | null> {
  const { controller, untrack } = claim;
  const logger = scopedLogger(env.logger, {
    sagaId: id,
    saga: def.name,
    step: claim.step.name,
    attempt: claim.attempt,
  });
  try {
    if (env.stopping) controller.abort(new AbortError("WORKER_SHUTDOWN", "worker shutting down"));
    if (claim.kind === "execute" && claim.step.transactional)
      return await runTransactional(env, def, id, claim, controller, logger, jobId);
    const started = performance.now();
    const data =
      claim.kind === "execute"
        ? claim.data
        : claim.outcome !== "succeeded" && isGraph(def)
          ? await loadStepInput(env.db, env.codec, def, id, claim.step)
          : decodeValue(
              env.codec,
              await loadCompensationData(env.db, id, claim.index, claim.outcome === "succeeded"),
            );
    const ctx = context(env, def, id, claim, controller.signal, logger);
    const timeoutMs =
      claim.kind === "execute" ? claim.step.timeoutMs : (def.compensation.timeoutMs ?? claim.step.timeoutMs);
    const call = () =>
      claim.kind === "execute"
        ? claim.step.execute(data, ctx as TransactionalStepContext)
        : claim.step.compensate?.(data, {
            ...ctx,
            outcome: claim.outcome ?? "succeeded",
            input: data,
            error: claim.error ?? null,
          });
    const probe = env.observeStep?.(def, id, claim);
    const outcome = outputAsStored(
      claim,
      await callHandler(
        probe ? () => probe.run(call) : call,
        controller,
        timeoutMs,
        claim.kind === "execute" ? env.abortGraceMs : 0,
      ),
    );
    const durationMs = Math.round(performance.now() - started);
    probe?.end(outcome, durationMs);
    if (!outcome.ok && outcome.kind === "error")
      logger.warn("step attempt failed", { error: toStoredError(outcome.error, true) });
    let applied = true;
    const requested = cancelAbort(outcome) ? await readCancelRequest(env.db, id) : null;
    const recordIt = (t: Transition) => {
      // A cancel asked for while the step ran (the handler was aborted for it): performed here.
      if (requested !== null && fenceHolds(t, claim, env.workerId))
        interrupt(t, def, "cancel", requested.reason, requested.by);
      else applied = record(t, def, env, claim, outcome, durationMs);
      // Interrupted by a cancel or a deadline: the attempt has ended, its compensation may go on.
      if (!applied || requested !== null) endInterrupted(t, env, claim);
    };
    const plan = (t: Transition, outputs?: GroupOutputs) =>
      env.stopping ? handOver(t) : planNext(t, def, env, onlyFor(def, claim), outputs);
    // A branch records under the row lock; the one that finishes its group reads the outputs to join it there.
    const next =
      batch && batchable(def, claim)
        ? await batch.record({ claim, outcome, write: (t) => (recordIt(t), applied && requested === null) })
        : onlyFor(def, claim) !== undefined && isGraph(def)
          ? await lockedTransition(
              env,
              id,
              async (t, db) => {
                recordIt(t);
                const join = applied && requested === null;
                return plan(
                  t,
                  join ? await outputsToFinish(db, env.codec, def, t, [{ claim, outcome }]) : undefined,
                );
              },
              jobId,
            )
          : await transition(
              env,
              id,
              (t) => {
                recordIt(t);
                return plan(t);
              },
              claim.next,
              jobId,
            );
    if (!applied) {
      env.onDiscarded(claim);
      logger.warn("late or duplicate result discarded: the attempt no longer owns the step", {
        outcome: outcome.ok ? "success" : outcome.kind,
      });
    }
    return next;
  } finally {
    untrack();
  }
}

/**
 * The branches of a group (and its concurrent compensations) commit on the same instance row at once: they
 * queue on its row lock, instead of each retrying an optimistic commit every time another branch came first.
 */
function commitFor(contended: boolean): typeof transition {
  if (!contended) return transition;
  return (env, id, decide, _known, jobId) => lockedTransition(env, id, async (t) => decide(t), jobId);
}
