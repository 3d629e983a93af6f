import type { Executor } from "../executor.js";
import type { OutboxRow } from "./outbox-read.js";

/**
 * The outbox rows of some notified event ids: what a LISTEN-only subscriber delivers instead of the
 * notification itself, which any connected role could have sent. One query per batch of notifications;
 * primary key of saga.outbox.
 */
export async function readEventsById(db: Executor, ids: readonly number[]): Promise<Map<number, OutboxRow>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<OutboxRow>(
    `select o.id, o.xid::text as xid, o.saga_id, o.seq, o.type, o.step, o.name, o.key, o.payload, o.created_at,
            true as matches
     from saga.outbox o where o.id = any($1::bigint[])`,
    [ids],
  );
  return new Map(rows.map((r) => [Number(r.id), r]));
}
