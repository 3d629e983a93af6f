/**
 * Aborting the handlers this worker runs when their saga is cancelled or times out. A `saga_control`
 * notification only says which saga to look at (any role can NOTIFY on any channel): what to abort, and why,
 * is read from the tables. The same check runs on every heartbeat, so a notification missed while the
 * listener reconnected delays an abort by a heartbeat at most.
 */
import type pg from "pg";
import { type Subscriber, createListener } from "../listen.js";
import type { Logger } from "../logger.js";
import { AbortError, isUuid } from "../model.js";

/** The claims this process runs: controller → `sagaId/kind/index`. */
export type ActiveClaims = ReadonlyMap<AbortController, string>;

// Primary keys of steps (saga_id prefix) and of cancel_requests. A step of ours marked failed by a cancel or a
// deadline (interrupt, in decide.ts) is still leased to us while its handler runs; a running step of a saga
// with a cancel request is one whose cancel could not take the instance row lock (a transactional step).
const INTERRUPTED_SQL = `
select s.saga_id, s.index, s.status, s.error->>'code' as code, r.reason as requested
from saga.steps s
left join saga.cancel_requests r on r.saga_id = s.saga_id
where s.saga_id = any($1::uuid[]) and s.lease_owner = $2 and s.status in ('running', 'failed')`;

interface Row {
  saga_id: string;
  index: number;
  status: string;
  code: string | null;
  requested: string | null;
}

/** Sagas this process runs a step of (execute claims only: compensations are not interrupted). */
export function runningSagas(active: ActiveClaims): string[] {
  const ids = new Set<string>();
  for (const key of active.values()) {
    const [sagaId, kind] = key.split("/");
    if (kind === "execute" && sagaId) ids.add(sagaId);
  }
  return [...ids];
}

/** Reads what the tables say about `sagaIds` and aborts the handlers that were cancelled or timed out. */
export async function abortInterrupted(
  pool: pg.Pool,
  workerId: string,
  active: ActiveClaims,
  sagaIds: readonly string[],
): Promise<void> {
  if (sagaIds.length === 0) return;
  const { rows } = await pool.query<Row>(INTERRUPTED_SQL, [sagaIds, workerId]);
  for (const row of rows) {
    let reason: AbortError | undefined;
    if (row.status === "failed" && (row.code === "CANCELLED" || row.code === "SAGA_TIMEOUT"))
      reason =
        row.code === "SAGA_TIMEOUT"
          ? new AbortError("SAGA_TIMEOUT", "the saga was timed out")
          : new AbortError("SAGA_CANCELLED", "the saga was cancelled");
    else if (row.status === "running" && row.requested !== null)
      reason = new AbortError("SAGA_CANCELLED", "the saga was cancelled", row.requested);
    if (!reason) continue;
    const key = `${row.saga_id}/execute/${row.index}`;
    for (const [controller, held] of active)
      if (held === key && !controller.signal.aborted) controller.abort(reason);
  }
}

/** Listens on `saga_control`; each notification naming a saga this process runs a step of is checked. */
export async function listenForControl(
  connection: pg.ClientConfig,
  pool: pg.Pool,
  workerId: string,
  active: ActiveClaims,
  logger: Logger,
): Promise<Subscriber> {
  const subscriber = createListener(connection, (err) =>
    logger.warn("control listener error", { error: String(err) }),
  );
  subscriber.notifications.on("saga_control", (message: unknown) => {
    const id = (message as { id?: unknown } | null)?.id;
    if (typeof id !== "string" || !isUuid(id) || !runningSagas(active).includes(id)) return;
    abortInterrupted(pool, workerId, active, [id]).catch((err: unknown) =>
      logger.warn("could not read a saga's cancel state; the next heartbeat checks again", {
        sagaId: id,
        error: String(err),
      }),
    );
  });
  await subscriber.connect();
  await subscriber.listenTo("saga_control");
  return subscriber;
}
