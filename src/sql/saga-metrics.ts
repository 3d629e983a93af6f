import type { Executor } from "../executor.js";

export interface SagaMetrics {
  total: number;
  active: number;
  completed: number;
  compensated: number;
  failed: number;
  cancelled: number;
  timedOut: number;
  compensationFailed: number;
  totalSteps: number;
  completedSteps: number;
  failedSteps: number;
  averageSagaDurationMs: number | null;
  averageStepDurationMs: number | null;
  totalRetries: number;
  totalCompensations: number;
}

// A full aggregate: fine for operators and tests; Prometheus counters are the cheap path for dashboards.
const SQL = `
with i as (select * from saga.instances where $1::text is null or name = $1),
     s as (select s.* from saga.steps s join i on i.id = s.saga_id)
select
  (select count(*) from i)::int as "total",
  (select count(*) from i where state in ('running', 'compensating'))::int as "active",
  (select count(*) from i where state = 'completed')::int as "completed",
  (select count(*) from i where state = 'compensated')::int as "compensated",
  (select count(*) from i where state = 'failed')::int as "failed",
  (select count(*) from i where state = 'cancelled')::int as "cancelled",
  (select count(*) from i where state = 'timed_out')::int as "timedOut",
  (select count(*) from i where state = 'compensation_failed')::int as "compensationFailed",
  (select count(*) from s)::int as "totalSteps",
  (select count(*) from s where status in ('succeeded', 'compensating', 'compensated', 'compensation_failed') and output is not null)::int as "completedSteps",
  (select count(*) from s where status = 'failed')::int as "failedSteps",
  (select avg(extract(epoch from finished_at - created_at) * 1000) from i where finished_at is not null)::float8 as "averageSagaDurationMs",
  (select avg(extract(epoch from finished_at - started_at) * 1000) from s where finished_at is not null and started_at is not null)::float8 as "averageStepDurationMs",
  (select coalesce(sum(greatest(attempt - 1, 0)), 0) from s)::int as "totalRetries",
  (select count(*) from s where compensation_attempt > 0)::int as "totalCompensations"`;

export async function sagaMetrics(db: Executor, name: string | null): Promise<SagaMetrics> {
  const { rows } = await db.query<SagaMetrics>(SQL, [name]);
  return rows[0] as SagaMetrics;
}
