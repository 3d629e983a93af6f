import type { AnySaga, TransactionalStepContext } from "../definition.js";
import { BusinessError, SagaError, toStoredError } from "../errors.js";
import type { Executor } from "../executor.js";
import { fromJsonbText, toJsonb } from "../jsonb.js";
import { type Logger, scopedLogger } from "../logger.js";
import { isTransientDbError } from "../db.js";
import { loadCompensationData } from "../sql/compensation-data.js";
import { decodeValue } from "../codec/codec.js";
import { AbortError, type Claim, type Outcome, type SagaJobPayload } from "../model.js";
import { callHandler } from "./call-handler.js";
import { cancelAbort, stopQueries } from "./aborted.js";
import { readCancelRequest, takeCancelRequest } from "../sql/cancel-requests.js";
import type { WorkerEnv } from "./worker-env.js";
import { endInterrupted, fenceHolds, interrupt, planNext, recordFailure, recordSuccess } from "./decide.js";
import type { Transition } from "./transition.js";
import { compensateCompleted } from "./children.js";
import { childStarter } from "./start-child.js";
import { beginCompensation, compensable } from "./compensation-plan.js";
import { type TrackedClaim, lockedTransition, transition } from "./commit-transition.js";

/** PostgreSQL's largest statement_timeout, in ms (an int). */
const MAX_STATEMENT_TIMEOUT_MS = 2_147_483_647;

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
    const reason =
      payload.cancel === undefined ? undefined : ((await readCancelRequest(env.db, id)) ?? payload.cancel);
    await transition(
      env,
      id,
      (t) => {
        interrupt(
          t,
          def,
          payload.deadline ? "timeout" : "cancel",
          reason ?? "the saga deadline passed",
          payload.by,
        );
      },
      undefined,
      jobId,
    );
    if (payload.cancel !== undefined) await takeCancelRequest(env.db, id);
    return;
  }
  let claim = await transition(
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
      return planNext(t, def, env, payload.step);
    },
    undefined,
    jobId,
  );
  while (claim) claim = await runClaim(env, def, id, claim, jobId);
}

/** Input started from SQL is checked against the zod schema before any step runs. */
function validateInput(t: Transition, def: AnySaga): boolean {
  if (t.saga.state !== "running" || t.saga.steps.length > 0) return true;
  const parsed = def.inputSchema.safeParse(t.saga.data);
  // The parsed input (defaults, transforms) is stored, so it is what the first step gets wherever it runs.
  const json = parsed.success ? toJsonb(parsed.data ?? null) : null;
  if (json?.ok && json.text !== undefined) {
    t.setInstance({ data: fromJsonbText(json.text) });
    return true;
  }
  const issues = parsed.success
    ? [
        {
          path: [],
          code: "custom",
          message: `the parsed input ${json?.ok === false ? json.message : "is not JSON"}`,
        },
      ]
    : parsed.error.issues.map((i) => ({
        path: i.path.map(String),
        code: i.code,
        message: i.message,
      }));
  const error = toStoredError(
    new SagaError(
      "INVALID_INPUT",
      `input of saga "${def.name}" is invalid: ${issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`,
      { details: { issues } },
    ),
    false,
  );
  t.setState("failed", { error, finished: true });
  t.event("saga.failed", undefined, { error });
  return false;
}

async function runClaim(
  env: WorkerEnv,
  def: AnySaga,
  id: string,
  claim: TrackedClaim,
  jobId: string | undefined,
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
    const next = await transition(
      env,
      id,
      (t) => {
        // A cancel asked for while the step ran (the handler was aborted for it): performed here.
        if (requested !== null && fenceHolds(t, claim, env.workerId)) interrupt(t, def, "cancel", requested);
        else applied = record(t, def, env, claim, outcome, durationMs);
        // Interrupted by a cancel or a deadline: the attempt has ended, its compensation may go on.
        if (!applied || requested !== null) endInterrupted(t, env, claim);
        return env.stopping
          ? handOver(t)
          : planNext(
              t,
              def,
              env,
              claim.kind === "compensate" && def.compensation.concurrent ? claim.index : undefined,
            );
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

function record(
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

function context(
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

/**
 * A transactional step runs on the record transaction: its writes and the step's record commit together.
 * A savepoint keeps the failure record when the handler's writes roll back.
 */
async function runTransactional(
  env: WorkerEnv,
  def: AnySaga,
  id: string,
  claim: Claim,
  controller: AbortController,
  logger: Logger,
  jobId: string | undefined,
): Promise<TrackedClaim | null> {
  // The statement timeout bounds the handler's queries; the savepoint keeps the failure record when the
  // handler's writes roll back. Both go with BEGIN and the lock, and end with the record and COMMIT.
  // statement_timeout is an int of ms: a longer step timeout caps each statement at its maximum (about 24.8
  // days), while the step as a whole is still bounded by its own timer (callHandler).
  const timeoutMs = claim.step.timeoutMs;
  const statementMs =
    timeoutMs === undefined ? undefined : Math.min(Math.max(1, timeoutMs), MAX_STATEMENT_TIMEOUT_MS);
  const prelude = `${statementMs === undefined ? "" : `set local statement_timeout = ${statementMs};\n`}savepoint saga_step`;
  return lockedTransition(
    env,
    id,
    async (t, db, close) => {
      if (!recordable(t, env, claim)) {
        env.onDiscarded(claim);
        return null;
      }
      const started = performance.now();
      let settled = false;
      const inFlight = new Set<Promise<unknown>>();
      const tx: Executor = {
        query: <R>(text: string, values?: readonly unknown[]) => {
          if (settled)
            return Promise.reject(
              new SagaError(
                "INVALID_STATE",
                "ctx.tx used after the step ended; await every query inside execute",
              ),
            );
          const query = db.query<R>(text, values);
          inFlight.add(query);
          void query.then(
            () => inFlight.delete(query),
            () => inFlight.delete(query),
          );
          return query;
        },
      };
      const ctx = { ...context(env, def, id, claim, controller.signal, logger, tx), tx };
      const call = () => claim.step.execute(claim.data, ctx);
      const probe = env.observeStep?.(def, id, claim, db);
      const outcome = outputAsStored(
        claim,
        await callHandler(probe ? () => probe.run(call) : call, controller, claim.step.timeoutMs),
      );
      settled = true;
      if (!outcome.ok && outcome.error instanceof AbortError) await stopQueries(env.pool, db, inFlight);
      const durationMs = Math.round(performance.now() - started);
      probe?.end(outcome, durationMs);
      // A cancel asked for while this step held the row lock (the handler was aborted for it): performed in
      // this transaction, the handler's writes rolled back.
      let requested: string | null = null;
      if (cancelAbort(outcome)) {
        await db.query("rollback to savepoint saga_step");
        requested = await takeCancelRequest(db, id);
      } else close.push(outcome.ok ? "release savepoint saga_step" : "rollback to savepoint saga_step");
      if (timeoutMs !== undefined) close.push("set local statement_timeout = default");
      if (requested !== null) interrupt(t, def, "cancel", requested);
      else record(t, def, env, claim, outcome, durationMs);
      return env.stopping ? handOver(t) : planNext(t, def, env);
    },
    jobId,
    prelude,
  );
}

/** A stopping worker takes no next claim: a job hands the saga's next piece of work to another worker. */
function handOver(t: Transition): null {
  if (t.saga.state === "running" || t.saga.state === "compensating") t.job({ id: t.saga.id });
  return null;
}

/**
 * A step's output as the database gives it back: the next step receives this whether it runs in this process
 * or after a reload (Dates become strings, Maps `{}`, undefined fields vanish; see docs/data.md). An output
 * jsonb cannot store (see jsonb.ts: a NUL character, a lone surrogate, a cycle, a BigInt, too deep) fails the
 * attempt for good with `INVALID_OUTPUT`, instead of failing the record transaction on every retry.
 */
function outputAsStored(claim: Claim, outcome: Outcome): Outcome {
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

function recordable(t: Transition, env: WorkerEnv, claim: Claim): boolean {
  const row = t.step(claim.index);
  return (
    !!row && row.lease_owner === env.workerId && row.status === "running" && row.attempt === claim.attempt
  );
}
