import type { Executor } from "../executor.js";

/**
 * Takes the relay lease when it is free or expired, bumping the epoch that fences the previous holder.
 * Primary key of saga.subscriptions. Returns the new epoch, or null while another relay holds the lease.
 */
export async function acquireRelayLease(
  db: Executor,
  name: string,
  owner: string,
  leaseMs: number,
): Promise<number | null> {
  await db.query("insert into saga.subscriptions (name) values ($1) on conflict (name) do nothing", [name]);
  const { rows } = await db.query<{ epoch: string }>(
    `update saga.subscriptions
     set epoch = epoch + 1, owner = $2, lease_expires_at = now() + $3 * interval '1 millisecond', updated_at = now()
     where name = $1 and (owner is null or lease_expires_at is null or lease_expires_at < now())
     returning epoch`,
    [name, owner, leaseMs],
  );
  return rows[0] ? Number(rows[0].epoch) : null;
}

/** One batch: NOTIFY and cursor move in one round trip (sql/relay.sql). `published` is -1 when fenced out. */
export async function publishBatch(
  db: Executor,
  name: string,
  epoch: number,
  limit: number,
  leaseMs: number,
): Promise<{ published: number; pending: boolean }> {
  const { rows } = await db.query<{ published: number; pending: boolean }>(
    "select published, pending from saga._relay_publish($1, $2, $3, $4)",
    [name, epoch, limit, leaseMs],
  );
  return rows[0] ?? { published: -1, pending: false };
}
