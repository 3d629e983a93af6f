import type { Executor } from "../executor.js";
import type { ResolvedFilter } from "../relay/options.js";

/**
 * A snapshot-tick cursor (saga.subscriptions): every event visible in `tick` is consumed. While a batch is in
 * progress, `batchTick` is its snapshot and (`xid`, `id`) the last event consumed in its (xid, id) order;
 * `ahead` holds ids of the batch delivered early to keep a saga's events in seq order. Snapshots as text.
 */
export interface Cursor {
  tick: string;
  batchTick: string | null;
  xid: string;
  id: number;
  ahead: number[];
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
  /** Delivered ahead of its (xid, id) position (sql/relay.sql saga._batch_read). */
  pulled: boolean;
  /** The last row of the page in (xid, id) order: the cursor's next position. */
  page_end: boolean;
  more: boolean;
}

export interface Page {
  /** The batch's snapshot: the cursor's batchTick, or a new pg_current_snapshot() when none was open. */
  cur: string;
  /** In delivery order: (xid, id), each saga's events in seq order within its slots. */
  rows: OutboxRow[];
  /** The page did not reach the end of the batch. */
  more: boolean;
  /** The server's WAL insert position when the page was read: every event in it was committed before it. */
  lsn: string;
}

/**
 * The next page of the cursor's batch: the events visible in the batch's snapshot and not in the tick, after
 * the position, up to the `want`-th that passes the filter and at most `scan` in all, plus the lower seqs of
 * the page's sagas that sort after it. Rows the filter rejects come without payload: they only move the
 * position. saga._batch_read: outbox_xid_id_idx range scans from the position and per in-progress
 * transaction of the tick; the payloads by primary key.
 */
export async function readPage(
  db: Executor,
  cursor: Cursor,
  filter: ResolvedFilter,
  want: number,
  scan: number,
): Promise<Page> {
  const { rows } = await db.query<OutboxRow & { cur: string; lsn: string }>(
    `with b as (select coalesce($2::pg_snapshot, pg_current_snapshot()) as cur)
     select b.cur::text as cur, pg_current_wal_insert_lsn()::text as lsn, (r.r).id, (r.r).xid::text as xid, (r.r).saga_id, (r.r).seq, (r.r).type,
            (r.r).step, (r.r).name, (r.r).key, (r.r).created_at, r.matches, r.pulled, r.page_end, r.more,
            case when r.matches then (r.r).payload end as payload
     from b
     left join lateral saga._batch_read($1::pg_snapshot, b.cur, $3::xid8, $4::bigint, $5::bigint[], $6, $7,
                                        $8::text[], $9::text[], $10::uuid[]) r on true
     order by r.n`,
    [
      cursor.tick,
      cursor.batchTick,
      cursor.xid,
      cursor.id,
      cursor.ahead,
      scan,
      want,
      filter.types,
      filter.names,
      filter.sagaIds,
    ],
  );
  const cur = rows[0]?.cur ?? cursor.batchTick ?? cursor.tick;
  const page = rows.filter((r) => r.id !== null);
  return { cur, rows: page, more: page[0]?.more ?? false, lsn: rows[0]?.lsn ?? "0/0" };
}

/**
 * Whether the WAL up to `lsn` is on disk. A claim commits without waiting for the disk (Transition.claimOnly),
 * so its event can be read while a server crash could still take it back, and its outbox id with it: a handler
 * that published the event (a bridge's message id) would then hold an id a later event may get again. Usually
 * it is on disk already: every record commits synchronously. When not, any synchronous commit that wrote
 * something flushes the WAL up to its own commit record, past `lsn` (one that only took an xid does not).
 */
export async function walFlushedTo(db: Executor, lsn: string): Promise<boolean> {
  const { rows } = await db.query<{ flushed: boolean }>(
    "select pg_current_wal_flush_lsn() >= $1::pg_lsn as flushed",
    [lsn],
  );
  return rows[0]?.flushed === true;
}

/** One event by id, for a notification that came without its payload. Primary key of saga.outbox. */
export async function readPayload(db: Executor, id: number): Promise<{ found: boolean; payload: unknown }> {
  const { rows } = await db.query<{ payload: unknown }>("select payload from saga.outbox where id = $1", [
    id,
  ]);
  return rows[0] ? { found: true, payload: rows[0].payload } : { found: false, payload: null };
}

/**
 * Age in ms of the oldest of the first events a cursor has not consumed, 0 when none; null for an unknown
 * subscription. saga._cursor_pending: primary key of saga.subscriptions, then outbox_xid_id_idx.
 */
export async function cursorLag(db: Executor, name: string): Promise<number | null> {
  const { rows } = await db.query<{ lag_ms: number | null; known: boolean }>(
    `select true as known,
            (select greatest(0, extract(epoch from now() - min(p.created_at)) * 1000)::float8
             from saga._cursor_pending(s.name, 100) p) as lag_ms
     from saga.subscriptions s where s.name = $1`,
    [name],
  );
  const row = rows[0];
  return row ? (row.lag_ms ?? 0) : null;
}
