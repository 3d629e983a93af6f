import type { Executor } from "../executor.js";
import { TERMINAL_STATES } from "./lock-instance.js";

// The slowest cursor of all: every durable subscription and the relay's own row. Primary key scan of a small table.
const SLOWEST = `select cursor_xid, cursor_id from saga.subscriptions order by cursor_xid, cursor_id limit 1`;

/**
 * Deletes up to `limit` events older than `ageMs` that every cursor has passed, oldest first.
 * outbox_xid_id_idx: a range scan from the start of the (xid, id) order up to the slowest cursor.
 */
export async function deleteOldEvents(db: Executor, ageMs: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `with slowest as (${SLOWEST}),
     doomed as (
       select o.id from saga.outbox o, slowest c
       where (o.xid, o.id) <= (c.cursor_xid, c.cursor_id) and o.created_at < now() - $1 * interval '1 millisecond'
       order by o.xid, o.id limit $2)
     delete from saga.outbox o using doomed d where o.id = d.id`,
    [ageMs, limit],
  );
  return rowCount ?? 0;
}

/**
 * Purges up to `limit` sagas that finished more than `ageMs` ago: instance, steps (foreign key cascade) and
 * the events every cursor has passed (later ones stay until consumed, then go with event retention).
 * instances_state_created_at_idx: terminal states, created before the cutoff (created_at <= finished_at);
 * outbox_saga_id_seq_idx for their events.
 */
export async function purgeFinishedSagas(db: Executor, ageMs: number, limit: number): Promise<number> {
  const { rows } = await db.query<{ sagas: number }>(
    `with slowest as (${SLOWEST}),
     doomed as (
       select i.id from saga.instances i
       where i.state = any($1::text[]) and i.created_at < now() - $2 * interval '1 millisecond'
         and i.finished_at < now() - $2 * interval '1 millisecond'
       order by i.created_at limit $3
       for update skip locked),
     events as (
       delete from saga.outbox o using doomed d, slowest c
       where o.saga_id = d.id and (o.xid, o.id) <= (c.cursor_xid, c.cursor_id)),
     gone as (delete from saga.instances i using doomed d where i.id = d.id returning i.id)
     select count(*)::int as sagas from gone`,
    [[...TERMINAL_STATES], ageMs, limit],
  );
  return rows[0]?.sagas ?? 0;
}
