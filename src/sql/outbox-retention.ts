import type { Executor } from "../executor.js";
import { TERMINAL_STATES } from "../model.js";

// An event every cursor has passed: visible in the tick of every durable subscription and of the relay's own
// row, or consumed in its batch in progress (up to its position, or delivered ahead). An event of a
// transaction that was still running at a cursor's tick is not, until that cursor moves past it. Below the
// lowest snapshot xmax, so the scan is a range of outbox_xid_id_idx from its start.
const PASSED = `o.xid < (select min(pg_snapshot_xmax(coalesce(t.batch_tick, t.tick))) from saga.subscriptions t)
  and not exists (
    select 1 from saga.subscriptions t
    where not (pg_visible_in_snapshot(o.xid, t.tick)
               or (t.batch_tick is not null and pg_visible_in_snapshot(o.xid, t.batch_tick)
                   and (o.xid, o.id) <= (t.cursor_xid, t.cursor_id))
               or o.id = any(t.ahead)))`;

/**
 * Deletes up to `limit` events older than `ageMs` that every cursor has passed, oldest first.
 * outbox_xid_id_idx: a range scan from the start of the (xid, id) order up to the slowest tick.
 */
export async function deleteOldEvents(db: Executor, ageMs: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `with doomed as (
       select o.id from saga.outbox o
       where ${PASSED} and o.created_at < now() - $1 * interval '1 millisecond'
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
    `with doomed as (
       select i.id from saga.instances i
       where i.state = any($1::text[]) and i.created_at < now() - $2 * interval '1 millisecond'
         and i.finished_at < now() - $2 * interval '1 millisecond'
       order by i.created_at limit $3
       for update skip locked),
     events as (
       delete from saga.outbox o using doomed d
       where o.saga_id = d.id and ${PASSED}),
     gone as (delete from saga.instances i using doomed d where i.id = d.id returning i.id)
     select count(*)::int as sagas from gone`,
    [[...TERMINAL_STATES], ageMs, limit],
  );
  return rows[0]?.sagas ?? 0;
}
