import type { Executor } from "../executor.js";

/** Why a saga that has not ended is not moving; see the `saga.stuck` view (sql/operator.sql). */
export type StuckReason =
  "no_worker_for_version" | "lease_expired" | "no_job" | "retry_scheduled" | "waiting_compensation";

/** One row of `saga.stuck`. */
export interface StuckSaga {
  id: string;
  name: string;
  version: number;
  state: string;
  step: string | null;
  reason: StuckReason;
  retryAt: Date | null;
  detail: string;
  since: Date;
}

// The view scans the sagas that have not ended (instances_state_created_at_idx) and joins the live workers,
// leased steps and graphile-worker jobs once each.
const SQL = `
select id, name, version, state, step, reason, retry_at as "retryAt", detail, since
from saga.stuck
where ($1::text is null or name = $1) and ($2::text[] is null or reason = any($2))
order by since, id
limit $3`;

/**
 * The sagas that are not moving, oldest first.
 *
 * @example
 * const stuck = await readStuck(pool, { reasons: ["no_worker_for_version"] });
 */
export async function readStuck(
  db: Executor,
  filter: { name?: string; reasons?: StuckReason[]; limit?: number } = {},
): Promise<StuckSaga[]> {
  const { rows } = await db.query<StuckSaga>(SQL, [
    filter.name ?? null,
    filter.reasons ?? null,
    filter.limit ?? 1000,
  ]);
  return rows;
}
