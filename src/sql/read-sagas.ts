import type { Executor } from "../executor.js";

export interface InstanceRow {
  id: string;
  name: string;
  version: number;
  state: string;
  input: unknown;
  data: unknown;
  result: unknown;
  error: unknown;
  current_step: number;
  idempotency_key: string | null;
  parent_id: string | null;
  metadata: Record<string, unknown>;
  deadline: Date | null;
  next_attempt_at: Date | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

/** A child saga as engine.get() lists it (saga.children in SQL). */
export interface ChildReadRow {
  id: string;
  name: string;
  state: string;
  parent_step: number | null;
}

export interface StepReadRow {
  index: number;
  group: number;
  name: string;
  status: string;
  attempt: number;
  compensation_attempt: number;
  output: unknown;
  error: unknown;
  compensation_error: unknown;
  next_attempt_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  compensation_started_at: Date | null;
  compensation_finished_at: Date | null;
}

const COLUMNS = `i.id, i.name, i.version, i.state, i.input, coalesce(i.data, i.input) as data, i.result, i.error,
  i.current_step, i.idempotency_key, i.parent_id, i.metadata, i.deadline, i.next_attempt_at, i.created_at, i.updated_at,
  i.finished_at`;

// Primary key of instances; steps by their primary key prefix (saga_id).
const GET_SQL = `
select ${COLUMNS},
  coalesce((select json_agg(json_build_object('index', s.index, 'group', coalesce(s."group", s.index), 'name', s.name, 'status', s.status, 'attempt', s.attempt,
      'compensation_attempt', s.compensation_attempt, 'output', s.output, 'error', s.error,
      'compensation_error', s.compensation_error, 'next_attempt_at', s.next_attempt_at, 'started_at', s.started_at,
      'finished_at', s.finished_at, 'compensation_started_at', s.compensation_started_at,
      'compensation_finished_at', s.compensation_finished_at) order by s.index)
    from saga.steps s where s.saga_id = i.id), '[]'::json) as steps,
  -- instances_parent_id_idx.
  coalesce((select json_agg(json_build_object('id', c.id, 'name', c.name, 'state', c.state,
      'parent_step', c.parent_step) order by c.created_at, c.id)
    from saga.instances c where c.parent_id = i.id), '[]'::json) as children
from saga.instances i where i.id = $1`;

export async function getSaga(
  db: Executor,
  id: string,
): Promise<(InstanceRow & { steps: StepReadRow[]; children: ChildReadRow[] }) | null> {
  const { rows } = await db.query<InstanceRow & { steps: StepReadRow[]; children: ChildReadRow[] }>(GET_SQL, [
    id,
  ]);
  return rows[0] ?? null;
}

export interface ListFilter {
  states: string[] | null;
  names: string[] | null;
  createdAfter: Date | null;
  createdBefore: Date | null;
  metadata: string | null;
  /** Where the previous page ended: created_at in microseconds since the epoch (exact), and id. */
  cursor: { createdMicros: string; id: string } | null;
  limit: number;
  order: "asc" | "desc";
}

/**
 * Keyset pagination over (created_at, id): served by instances_created_at_id_idx, or by
 * instances_state_created_at_idx when states are given (one index range per state).
 */
export async function listSagas(
  db: Executor,
  f: ListFilter,
): Promise<(InstanceRow & { created_key: string })[]> {
  const cmp = f.order === "asc" ? ">" : "<";
  const { rows } = await db.query<InstanceRow & { created_key: string }>(
    `select ${COLUMNS}, round(extract(epoch from i.created_at) * 1000000)::bigint::text as created_key
     from saga.instances i
     where ($1::text[] is null or i.state = any($1))
       and ($2::text[] is null or i.name = any($2))
       and ($3::timestamptz is null or i.created_at >= $3)
       and ($4::timestamptz is null or i.created_at < $4)
       and ($5::jsonb is null or i.metadata @> $5)
       and ($6::bigint is null
         or (i.created_at, i.id) ${cmp} (timestamptz 'epoch' + $6::bigint * interval '1 microsecond', $7::uuid))
     order by i.created_at ${f.order}, i.id ${f.order}
     limit $8`,
    [
      f.states,
      f.names,
      f.createdAfter,
      f.createdBefore,
      f.metadata,
      f.cursor?.createdMicros ?? null,
      f.cursor?.id ?? null,
      f.limit,
    ],
  );
  return rows;
}
