import type { Executor } from "../executor.js";
import type { Cursor } from "./outbox-read.js";

/**
 * Takes a durable subscription's lease when it is free, expired or already ours, bumping the epoch that
 * fences the previous holder; creates the subscription at the oldest retained event, or at the watermark
 * with `fromNow`. Primary key of saga.subscriptions. Null while another process holds the lease.
 */
export async function acquireLease(
  db: Executor,
  args: { name: string; owner: string; leaseMs: number; fromNow: boolean; filter: string },
): Promise<{ epoch: number; cursor: Cursor } | null> {
  const { rows } = await db.query<{ epoch: string; cursor_xid: string; cursor_id: string }>(
    `insert into saga.subscriptions as s (name, cursor_xid, cursor_id, epoch, owner, lease_expires_at, filter)
     values ($1, case when $4::boolean then pg_snapshot_xmin(pg_current_snapshot()) else '0'::xid8 end, 0, 1, $2,
             now() + $3 * interval '1 millisecond', $5::jsonb)
     on conflict (name) do update
       set epoch = s.epoch + 1, owner = excluded.owner, lease_expires_at = excluded.lease_expires_at,
           filter = excluded.filter, updated_at = now()
       where s.owner is null or s.lease_expires_at is null or s.lease_expires_at < now() or s.owner = excluded.owner
     returning s.epoch, s.cursor_xid::text as cursor_xid, s.cursor_id`,
    [args.name, args.owner, args.leaseMs, args.fromNow, args.filter],
  );
  const row = rows[0];
  return row
    ? { epoch: Number(row.epoch), cursor: { xid: row.cursor_xid, id: Number(row.cursor_id) } }
    : null;
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
 * Moves the cursor past a handled batch and renews the lease; false when fenced out. Primary key.
 * The commit does not wait for the WAL flush: after a server crash the cursor may be a batch behind, and
 * at-least-once delivery allows exactly that, while every batch saves one fsync.
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
     set cursor_xid = $3::xid8, cursor_id = $4, updated_at = now(), lease_expires_at = now() + $5 * interval '1 millisecond'
     where name = $1 and epoch = $2 and set_config('synchronous_commit', 'off', true) is not null`,
    [name, epoch, cursor.xid, cursor.id, leaseMs],
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
