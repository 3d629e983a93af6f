/**
 * The dashboard's own reads. Each is bounded by an index so the overview and list stay fast with millions of
 * finished sagas: counts are capped (exact below the cap, the planner's estimate above it).
 */
import type { Executor } from "../executor.js";
import type { InstanceRow } from "../sql/read-sagas.js";

export const STATES = [
  "running",
  "compensating",
  "failed",
  "compensation_failed",
  "completed",
  "compensated",
  "cancelled",
  "timed_out",
] as const;

/** Rows counted per state before the count becomes "at least". */
export const COUNT_CAP = 10_000;

export interface StateCount {
  state: string;
  count: number;
  /** True when `count` hit the cap; `estimate` is then the statistics' figure. */
  capped: boolean;
  estimate: number | null;
}

// instances_state_created_at_idx, index only: the ORDER BY keeps the planner on the index even for a state
// its statistics call common (a plain LIMIT would pick a sequential scan).
const STATE_COUNTS_SQL = `
select st.state, (select count(*) from (select 1 from saga.instances i where i.state = st.state
                                        order by i.state, i.created_at limit $2) x)::int as count
from unnest($1::text[]) st(state)`;

// The planner's statistics: how common each state is, times the table's row estimate.
const STATE_ESTIMATES_SQL = `
select u.v as state, (u.f * greatest(c.reltuples, 0))::float8 as estimate
from pg_stats s
cross join lateral unnest(s.most_common_vals::text::text[], s.most_common_freqs) as u(v, f)
cross join (select reltuples from pg_class where oid = 'saga.instances'::regclass) c
where s.schemaname = 'saga' and s.tablename = 'instances' and s.attname = 'state'`;

export async function stateCounts(db: Executor): Promise<StateCount[]> {
  const [counts, estimates] = await Promise.all([
    db.query<{ state: string; count: number }>(STATE_COUNTS_SQL, [STATES, COUNT_CAP + 1]),
    db.query<{ state: string; estimate: number }>(STATE_ESTIMATES_SQL),
  ]);
  const estimateOf = new Map(estimates.rows.map((r) => [r.state, Math.round(r.estimate)]));
  return counts.rows.map((r) => {
    const capped = r.count > COUNT_CAP;
    return {
      state: r.state,
      count: capped ? COUNT_CAP : r.count,
      capped,
      estimate: capped ? (estimateOf.get(r.state) ?? null) : null,
    };
  });
}

// A loose index scan over instances_name_idempotency_key_key: one probe per distinct name.
const NAMES_SQL = `
with recursive n(name) as (
  select min(name) from saga.instances
  union all
  select (select min(i.name) from saga.instances i where i.name > n.name) from n where n.name is not null
)
select name from n where name is not null limit $1`;

export async function sagaNames(db: Executor, limit = 200): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(NAMES_SQL, [limit]);
  return rows.map((r) => r.name);
}

// instances_state_created_at_idx (a bitmap scan of the given states). The caller passes only states whose
// capped count stayed under the cap, so this reads at most a few times COUNT_CAP rows.
const BY_NAME_SQL = `
select name, state, count(*)::int as count from saga.instances where state = any($1::text[])
group by 1, 2 order by 1, 2`;

export async function countsByName(
  db: Executor,
  states: readonly string[],
): Promise<{ name: string; state: string; count: number }[]> {
  if (states.length === 0) return [];
  const { rows } = await db.query<{ name: string; state: string; count: number }>(BY_NAME_SQL, [states]);
  return rows;
}

export interface ChartBucket {
  minute: string;
  completed: number;
  failed: number;
}

// The outbox's ids grow with time: a binary search on outbox_pkey finds the first event of the last hour
// (about 25 probes).
const HOUR_START_SQL = `
with recursive b(lo, hi, n) as (
  select (select min(id) from saga.outbox), (select max(id) from saga.outbox) + 1, 0
  union all
  select case when m.at < now() - interval '1 hour' then p.mid + 1 else p.lo end,
         case when m.at < now() - interval '1 hour' then p.hi else p.mid end, p.n + 1
  from (select lo, hi, n, lo + (hi - lo) / 2 as mid from b where lo < hi and n < 64) p
  cross join lateral (select coalesce((select o.created_at from saga.outbox o where o.id >= p.mid
                                       order by o.id limit 1), now()) as at) m
)
select coalesce((select lo from b order by n desc limit 1), 0)::text as id`;

// Then only that hour's events, from outbox_pkey (a separate statement, so the plan sees the bound).
const CHART_SQL = `
select to_char(date_trunc('minute', o.created_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"') as minute,
  count(*) filter (where o.type = 'saga.completed')::int as completed,
  count(*) filter (where o.type <> 'saga.completed')::int as failed
from saga.outbox o
where o.id >= $1::bigint and o.created_at >= now() - interval '1 hour'
  and o.type in ('saga.completed', 'saga.failed', 'saga.timed_out', 'saga.cancelled', 'compensation.completed',
                 'compensation.failed')
group by 1 order by 1`;

/** Sagas that ended per minute over the last hour: completed, and everything else (failed, compensated …). */
export async function lastHour(db: Executor): Promise<ChartBucket[]> {
  const start = await db.query<{ id: string }>(HOUR_START_SQL);
  const { rows } = await db.query<ChartBucket>(CHART_SQL, [start.rows[0]?.id ?? "0"]);
  return rows;
}

export interface EventRow {
  id: number;
  seq: number;
  type: string;
  step: string | null;
  payload: unknown;
  createdAt: Date;
}

// outbox_saga_id_seq_idx.
export async function sagaEvents(db: Executor, id: string, limit = 2000): Promise<EventRow[]> {
  const { rows } = await db.query<EventRow>(
    `select id::float8 as id, seq, type, step, payload, created_at as "createdAt"
     from saga.events where saga_id = $1 order by seq limit $2`,
    [id, limit],
  );
  return rows;
}

// instances_parent_id_idx.
export async function sagaChildren(
  db: Executor,
  id: string,
): Promise<{ id: string; name: string; state: string }[]> {
  const { rows } = await db.query<{ id: string; name: string; state: string }>(
    "select id, name, state from saga.instances where parent_id = $1 order by created_at, id limit 500",
    [id],
  );
  return rows;
}

/** Durable subscriptions with dead letters not yet delivered, and how many. */
export async function deadLetterCounts(db: Executor): Promise<{ subscription: string; count: number }[]> {
  const { rows } = await db.query<{ subscription: string; count: number }>(
    `select subscription, count(*)::int as count from saga.dead_letters where delivered_at is null
     group by 1 order by 1`,
  );
  return rows;
}

export interface ListQuery {
  states: string[] | null;
  names: string[] | null;
  version: number | null;
  createdAfter: Date | null;
  createdBefore: Date | null;
  metadata: string | null;
  idempotencyKey: string | null;
  cursor: { createdMicros: string; id: string } | null;
  limit: number;
  order: "asc" | "desc";
}

const LIST_COLUMNS = `i.id, i.name, i.version, i.state, i.input, coalesce(i.data, i.input) as data, i.result,
  i.error, i.current_step, i.idempotency_key, i.parent_id, i.metadata, i.deadline, i.next_attempt_at, i.created_at,
  i.updated_at, i.finished_at, round(extract(epoch from i.created_at) * 1000000)::bigint::text as created_key`;

/**
 * `engine.list()`'s keyset query (instances_created_at_id_idx, or instances_state_created_at_idx with states)
 * plus a version filter and an idempotency key, looked up per saga name through
 * instances_name_idempotency_key_key.
 */
export async function listPage(
  db: Executor,
  q: ListQuery,
): Promise<(InstanceRow & { created_key: string })[]> {
  const cmp = q.order === "asc" ? ">" : "<";
  const byKey =
    q.idempotencyKey === null
      ? ""
      : `and (i.name, i.idempotency_key) in (select n.name, $10::text from names n)`;
  const names =
    q.idempotencyKey === null
      ? ""
      : `with recursive names(name) as (
           select min(name) from saga.instances
           union all
           select (select min(x.name) from saga.instances x where x.name > names.name) from names
           where names.name is not null)`;
  const { rows } = await db.query<InstanceRow & { created_key: string }>(
    `${names}
     select ${LIST_COLUMNS} from saga.instances i
     where ($1::text[] is null or i.state = any($1))
       and ($2::text[] is null or i.name = any($2))
       and ($3::timestamptz is null or i.created_at >= $3)
       and ($4::timestamptz is null or i.created_at < $4)
       and ($5::jsonb is null or i.metadata @> $5)
       and ($6::bigint is null
         or (i.created_at, i.id) ${cmp} (timestamptz 'epoch' + $6::bigint * interval '1 microsecond', $7::uuid))
       and ($9::int is null or i.version = $9)
       and ($10::text is null or true) ${byKey}
     order by i.created_at ${q.order}, i.id ${q.order}
     limit $8`,
    [
      q.states,
      q.names,
      q.createdAfter,
      q.createdBefore,
      q.metadata,
      q.cursor?.createdMicros ?? null,
      q.cursor?.id ?? null,
      q.limit,
      q.version,
      q.idempotencyKey,
    ],
  );
  return rows;
}
