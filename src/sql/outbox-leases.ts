import type { Executor } from "../executor.js";
import type { Cursor } from "./outbox-read.js";

const CURSOR_COLUMNS = `s.tick::text as tick, s.batch_tick::text as batch_tick, s.cursor_xid::text as cursor_xid,
  s.cursor_id, s.ahead`;

interface CursorRow {
  tick: string;
  batch_tick: string | null;
  cursor_xid: string;
  cursor_id: string;
  ahead: string[];
}

function cursorFromRow(row: CursorRow): Cursor {
  return {
    tick: row.tick,
    batchTick: row.batch_tick,
    xid: row.cursor_xid,
    id: Number(row.cursor_id),
    ahead: row.ahead.map(Number),
  };
}

/**
 * Takes a durable subscription's lease when it is free, expired or already ours, bumping the epoch that
 * fences the previous holder; creates the subscription before the oldest retained event (a tick in which
 * nothing is visible), or with `fromNow` at the current snapshot. Primary key of saga.subscriptions. Null
 * while another process holds the lease.
 */
export async function acquireLease(
  db: Executor,
  args: { name: string; owner: string; leaseMs: number; fromNow: boolean; filter: string },
): Promise<{ epoch: number; cursor: Cursor } | null> {
  const { rows } = await db.query<{ epoch: string } & CursorRow>(
    `insert into saga.subscriptions as s (name, tick, epoch, owner, lease_expires_at, filter)
     values ($1, case when $4::boolean then pg_current_snapshot() else '1:1:'::pg_snapshot end, 1, $2,
             now() + $3 * interval '1 millisecond', $5::jsonb)
     on conflict (name) do update
       set epoch = s.epoch + 1, owner = excluded.owner, lease_expires_at = excluded.lease_expires_at,
           filter = excluded.filter, updated_at = now()
       where s.owner is null or s.lease_expires_at is null or s.lease_expires_at < now() or s.owner = excluded.owner
     returning s.epoch, ${CURSOR_COLUMNS}`,
    [args.name, args.owner, args.leaseMs, args.fromNow, args.filter],
  );
  const row = rows[0];
  return row ? { epoch: Number(row.epoch), cursor: cursorFromRow(row) } : null;
}

/** Extends the lease; false when another process took it over (the epoch moved). Primary key. */
export async function renewLease(
  db: Executor,
  name: string,
  epoch: number,
  leaseMs: number,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `update saga.subscriptions set lease_expires_at = now() + $3 * interval '1 millisecond'
     where name = $1 and epoch = $2`,
    [name, epoch, leaseMs],
  );
  return rowCount === 1;
}

/**
 * Stores the cursor after a handled page and renews the lease; false when fenced out. Primary key.
 * The commit does not wait for the WAL flush: after a server crash the cursor may be a page behind, and
 * at-least-once delivery allows exactly that, while every page saves one fsync.
 */
export async function commitCursor(
  db: Executor,
  name: string,
  epoch: number,
  cursor: Cursor,
  leaseMs: number,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `update saga.subscriptions
     set tick = $3::pg_snapshot, batch_tick = $4::pg_snapshot, cursor_xid = $5::xid8, cursor_id = $6,
         ahead = $7::bigint[], updated_at = now(), lease_expires_at = now() + $8 * interval '1 millisecond'
     where name = $1 and epoch = $2 and set_config('synchronous_commit', 'off', true) is not null`,
    [name, epoch, cursor.tick, cursor.batchTick, cursor.xid, cursor.id, cursor.ahead, leaseMs],
  );
  return rowCount === 1;
}

/** Hands a lease over at once (graceful stop), only if it is still ours. Primary key of saga.subscriptions. */
export async function releaseLease(db: Executor, name: string, epoch: number): Promise<void> {
  await db.query(
    "update saga.subscriptions set owner = null, lease_expires_at = null where name = $1 and epoch = $2",
    [name, epoch],
  );
}
