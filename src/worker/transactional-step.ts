import type { AnySaga } from "../definition.js";
import { SagaError } from "../errors.js";
import type { Executor } from "../executor.js";
import type { Logger } from "../logger.js";
import { AbortError, type Claim } from "../model.js";
import { type CancelRequest, takeCancelRequest } from "../sql/cancel-requests.js";
import { cancelAbort, stopQueries } from "./aborted.js";
import { callHandler } from "./call-handler.js";
import { type TrackedClaim, lockedTransition } from "./commit-transition.js";
import { planNext } from "./decide.js";
import { interrupt } from "./interrupt.js";
import { context, handOver, outputAsStored, record } from "./step-attempt.js";
import type { Transition } from "./transition.js";
import type { WorkerEnv } from "./worker-env.js";

/** PostgreSQL's largest statement_timeout, in ms (an int). */
const MAX_STATEMENT_TIMEOUT_MS = 2_147_483_647;

/**
 * A transactional step runs on the record transaction: its writes and the step's record commit together.
 * A savepoint keeps the failure record when the handler's writes roll back.
 */
export async function runTransactional(
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
      let requested: CancelRequest | null = null;
      if (cancelAbort(outcome)) {
        await db.query("rollback to savepoint saga_step");
        requested = await takeCancelRequest(db, id);
      } else close.push(outcome.ok ? "release savepoint saga_step" : "rollback to savepoint saga_step");
      if (timeoutMs !== undefined) close.push("set local statement_timeout = default");
      if (requested !== null) interrupt(t, def, "cancel", requested.reason, requested.by);
      else record(t, def, env, claim, outcome, durationMs);
      return env.stopping ? handOver(t) : planNext(t, def, env);
    },
    jobId,
    prelude,
  );
}

function recordable(t: Transition, env: WorkerEnv, claim: Claim): boolean {
  const row = t.step(claim.index);
  return (
    !!row && row.lease_owner === env.workerId && row.status === "running" && row.attempt === claim.attempt
  );
}
