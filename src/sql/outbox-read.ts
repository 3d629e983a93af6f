import type { Executor } from "../executor.js";
import type { ResolvedFilter } from "../relay/options.js";

/** A position in the outbox's (xid, id) order; `xid` is xid8 as text. */
export interface Cursor {
  xid: string;
  id: number;
}

export interface OutboxRow {
  id: string;
  xid: string;
  saga_id: string | null;
  seq: number | null;
  type: string;
  step: string | null;
  name: string | null;
  key: string | null;
  payload: unknown;
  created_at: Date;
  matches: boolean;
}

/**
 * The rows after `cursor` below the watermark, in (xid, id) order, up to the `batchSize`-th that passes the
 * filter and at most `scanLimit` in all. Rows the filter rejects come without payload: they only let the cursor
 * move past them. outbox_xid_id_idx: a range scan from the cursor, stopped by the watermark and the limit;
 * the payloads by primary key.
 */
export async function readOutbox(
  db: Executor,
  cursor: Cursor,
  filter: ResolvedFilter,
  batchSize: number,
  scanLimit: number,
): Promise<OutboxRow[]> {
  const { rows } = await db.query<OutboxRow>(
    `select o.id, o.xid::text as xid, o.saga_id, o.seq, o.type, o.step, o.name, o.key, o.created_at, s.matches,
            case when s.matches then o.payload end as payload
     from (select s.id, s.xid, s.matches, count(*) filter (where s.matches) over (order by s.xid, s.id) as k
           from (select o.id, o.xid,
                        ($4::text[] is null or o.type = any($4::text[]))
                        and ($5::text[] is null or o.name = any($5::text[]))
                        and ($6::uuid[] is null or o.saga_id = any($6::uuid[])) as matches
                 from saga.outbox o
                 where (o.xid, o.id) > ($1::xid8, $2::bigint) and o.xid < pg_snapshot_xmin(pg_current_snapshot())
                 order by o.xid, o.id
                 limit $3) s) s
     join saga.outbox o on o.id = s.id
     where s.k < $7 or (s.k = $7 and s.matches)
     order by s.xid, s.id`,
    [cursor.xid, cursor.id, scanLimit, filter.types, filter.names, filter.sagaIds, batchSize],
  );
  return rows;
}

/** Whether committed rows wait above the watermark (an older transaction is still open). outbox_xid_id_idx. */
export async function hasPending(db: Executor, cursor: Cursor): Promise<boolean> {
  const { rows } = await db.query<{ pending: boolean }>(
    "select exists (select 1 from saga.outbox o where (o.xid, o.id) > ($1::xid8, $2::bigint)) as pending",
    [cursor.xid, cursor.id],
  );
  return rows[0]?.pending ?? false;
}

/** One event by id, for a notification that came without its payload. Primary key of saga.outbox. */
export async function readPayload(db: Executor, id: number): Promise<{ found: boolean; payload: unknown }> {
  const { rows } = await db.query<{ payload: unknown }>("select payload from saga.outbox where id = $1", [
    id,
  ]);
  return rows[0] ? { found: true, payload: rows[0].payload } : { found: false, payload: null };
}

/**
 * Age in ms of the oldest event a cursor has not passed, 0 when none; null for an unknown subscription.
 * Primary key of saga.subscriptions, then outbox_xid_id_idx for the first row after the cursor.
 */
export async function cursorLag(db: Executor, name: string): Promise<number | null> {
  const { rows } = await db.query<{ lag_ms: number | null; known: boolean }>(
    `select true as known,
            (select greatest(0, extract(epoch from now() - o.created_at) * 1000)::float8 from saga.outbox o
             where (o.xid, o.id) > (s.cursor_xid, s.cursor_id) order by o.xid, o.id limit 1) as lag_ms
     from saga.subscriptions s where s.name = $1`,
    [name],
  );
  const row = rows[0];
  return row ? (row.lag_ms ?? 0) : null;
}
