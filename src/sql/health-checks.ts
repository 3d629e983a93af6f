/**
 * The reads of a health check (src/health.ts): workers and the versions they serve, relay lag, the oldest open
 * transaction, dead letters and stuck sagas. Each is small: a scan of saga.workers, of the sagas not ended,
 * of the subscriptions.
 */
import type { Executor } from "../executor.js";

export interface WorkerHealth {
  id: string;
  hostname: string;
  pid: number;
  /** `name@version` of every definition it runs. */
  sagas: string[];
  heartbeatAt: Date;
  ageMs: number;
  live: boolean;
}

export interface SubscriptionLag {
  name: string;
  /** Events past its cursor (counted up to 100000). */
  pendingEvents: number;
  /** Age of the oldest event it has not consumed; 0 when caught up. */
  lagMs: number;
}

/** A transaction open on the server (any database): a risk for vacuum, never a stall of event delivery. */
export interface OpenTransaction {
  pid: number;
  database: string | null;
  application: string;
  state: string | null;
  ageMs: number;
}

const WORKERS_SQL = `
select id, hostname, pid, sagas, heartbeat_at as "heartbeatAt",
  (extract(epoch from now() - heartbeat_at) * 1000)::float8 as "ageMs",
  heartbeat_at >= now() - $1::bigint * interval '1 millisecond' as live
from saga.workers order by hostname, pid, id`;

// instances_state_created_at_idx: only the sagas that have not ended.
const ACTIVE_VERSIONS_SQL = `
select name || '@' || version as saga, count(*)::int as active
from saga.instances where state in ('running', 'compensating') group by 1 order by 1`;

// Each subscription's first unconsumed events (saga._cursor_pending: outbox_xid_id_idx from its position).
const RELAY_SQL = `
select s.name, p.pending::int as "pendingEvents",
  coalesce((extract(epoch from now() - p.oldest) * 1000)::float8, 0) as "lagMs"
from saga.subscriptions s
cross join lateral (select count(*) as pending, min(c.created_at) as oldest
                    from saga._cursor_pending(s.name, 100000) c) p
order by s.name`;

// The oldest transaction on the whole server that holds a transaction id or a snapshot: it delays no event
// delivery (cursors read by snapshot ticks), but it keeps vacuum from removing dead rows everywhere.
const OLDEST_TRANSACTION_SQL = `
select pid, datname as database, application_name as application, state,
  (extract(epoch from now() - xact_start) * 1000)::float8 as "ageMs"
from pg_stat_activity
where xact_start is not null and (backend_xid is not null or backend_xmin is not null) and pid <> pg_backend_pid()
order by xact_start limit 1`;

export async function readAppliedMigrations(db: Executor): Promise<{ created_at: string }[]> {
  return (await db.query<{ created_at: string }>("select created_at from saga.__drizzle_migrations")).rows;
}

/** Every registered worker, live when heard from within `staleAfterMs`. */
export async function readWorkers(db: Executor, staleAfterMs: number): Promise<WorkerHealth[]> {
  return (await db.query<WorkerHealth>(WORKERS_SQL, [staleAfterMs])).rows;
}

/** `name@version` of the sagas that have not ended, with how many. */
export async function readActiveVersions(db: Executor): Promise<{ saga: string; active: number }[]> {
  return (await db.query<{ saga: string; active: number }>(ACTIVE_VERSIONS_SQL)).rows;
}

export async function readRelayLag(db: Executor): Promise<SubscriptionLag[]> {
  return (await db.query<SubscriptionLag>(RELAY_SQL)).rows;
}

export async function readOldestTransaction(db: Executor): Promise<OpenTransaction | undefined> {
  return (await db.query<OpenTransaction>(OLDEST_TRANSACTION_SQL)).rows[0];
}

/** Dead letters not delivered yet (redrive requested or not). */
export async function countDeadLetters(db: Executor): Promise<number> {
  // Read through to_jsonb so older schemas without the column count every row.
  const { rows } = await db.query<{ n: number }>(
    "select count(*)::int as n from saga.dead_letters d where to_jsonb(d)->>'delivered_at' is null",
  );
  return rows[0]?.n ?? 0;
}

export async function countStuck(db: Executor): Promise<number> {
  const { rows } = await db.query<{ n: number }>("select count(*)::int as n from saga.stuck");
  return rows[0]?.n ?? 0;
}
