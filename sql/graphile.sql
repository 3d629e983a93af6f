-- graphile-worker behind one boundary, SQL side (the TS side is src/graphile/boundary.ts): every pg-saga
-- function, view and grant that touches graphile-worker's schema goes through the functions of this file, and
-- no other sql/ file names that schema. test/graphile-boundary.test.ts fails, naming what changed, when an
-- upgrade of graphile-worker changes what these rely on.
--
-- graphile-worker's public functions are used where one does what is needed: add_job (saga._add_job) and
-- force_unlock_workers (the reaper, in TS). Its private tables `_private_jobs` and `_private_tasks`, and its
-- `jobs:insert` channel, are used where none does:
--   saga._enqueue    add_job and add_jobs always NOTIFY "jobs:insert" (see saga._enqueue for why not here);
--   saga._job_done   complete_jobs deletes only jobs that are not locked, and the job is locked by the worker
--                    running the very transition that ends it;
--   saga._wake_jobs  graphile-worker has no function that only wakes its pools;
--   saga._job_counts there is no public view of the jobs.
--
-- The schema is graphile-worker's default, graphile_worker (src/graphile/boundary.ts passes it explicitly), and
-- is written in plain SQL here: a configurable one would need dynamic SQL on the transition path. Every function
-- is plpgsql: its body is not checked against graphile-worker's schema when it is created, so this file applies
-- before graphile-worker's own migrations (migrate() runs them after pg-saga's). For the same reason the
-- functions that call these are plpgsql too, so this file may apply after the others (src/repeatable.ts).

-- A graphile-worker job written without add_job's NOTIFY "jobs:insert". A NOTIFY inside a transaction holds a
-- cluster-wide lock from its commit until the commit's WAL flush ends, so every notifying transaction commits
-- one after another: in the caller's transaction of start() it would serialize the application's own writes.
-- The workers are woken after the commit instead: by the engine (its own transaction), or by the outbox relay
-- when it publishes the saga.started event (saga._relay_publish, saga._wake_jobs).
create or replace function saga._enqueue(p_task text, p_payload json, p_run_at timestamptz default null)
returns void
language plpgsql as $$
declare
  v_task_id int;
begin
  select t.id into v_task_id from graphile_worker._private_tasks t where t.identifier = p_task;
  if v_task_id is null then
    insert into graphile_worker._private_tasks as t (identifier) values (p_task) on conflict do nothing;
    select t.id into v_task_id from graphile_worker._private_tasks t where t.identifier = p_task;
  end if;
  insert into graphile_worker._private_jobs (task_id, payload, run_at)
  values (v_task_id, p_payload, coalesce(p_run_at, now()));
end $$;
--> statement-breakpoint

-- A job through graphile-worker's public add_job, which wakes its listening pools at commit: for transitions
-- (a worker's own transaction, never an application's) and saga.cancel. `p_priority`: lower runs first.
create or replace function saga._add_job(p_task text, p_payload json, p_run_at timestamptz default null,
  p_priority int default null)
returns void
language plpgsql as $$
begin
  perform graphile_worker.add_job(p_task, p_payload, run_at => p_run_at, priority => p_priority);
end $$;
--> statement-breakpoint

-- Ends the job running a transition in the transition's own commit, so graphile-worker's completion afterwards
-- deletes nothing (a commit without WAL), and a crash between the two leaves no job to run again.
create or replace function saga._job_done(p_job_id bigint) returns void
language plpgsql as $$
begin
  delete from graphile_worker._private_jobs where id = p_job_id;
end $$;
--> statement-breakpoint

-- Wakes graphile-worker's listening pools for `p_count` jobs queued without a NOTIFY (saga._enqueue), once
-- their transactions have committed.
create or replace function saga._wake_jobs(p_count int) returns void
language plpgsql as $$
begin
  perform pg_notify('jobs:insert', json_build_object('count', p_count)::text);
end $$;
--> statement-breakpoint

-- graphile-worker's jobs of each saga: how many can still run, how many failed for good, the last error. Read
-- through saga._saga_jobs() (sql/operator.sql, SECURITY DEFINER), which the saga.stuck view selects from.
create or replace function saga._job_counts()
returns table (saga_id text, runnable bigint, exhausted bigint, last_error text)
language plpgsql stable as $$
begin
  return query
  select j.payload->>'id', count(*) filter (where j.attempts < j.max_attempts),
    count(*) filter (where j.attempts >= j.max_attempts), max(j.last_error)
  from graphile_worker._private_jobs j
  join graphile_worker._private_tasks t on t.id = j.task_id
  where t.identifier like 'saga:%'
    -- Past row-level security (called by a SECURITY DEFINER function): only the jobs of the session's tenant's
    -- sagas.
    and (saga._tenant() is null or exists (select 1 from saga.instances i
                                           where i.id::text = j.payload->>'id' and i.tenant = saga._tenant()))
  group by 1;
end $$;
--> statement-breakpoint

-- saga_worker's grants on graphile-worker's schema, when both exist (called by saga._grant_roles, after
-- graphile-worker's own migrations).
create or replace function saga._grant_job_queue() returns void
language plpgsql as $$
declare
  t text;
begin
  if to_regnamespace('graphile_worker') is null or not exists (select 1 from pg_roles where rolname = 'saga_worker')
  then
    return;
  end if;
  grant usage on schema graphile_worker to saga_worker;
  grant select, insert, update, delete on all tables in schema graphile_worker to saga_worker;
  grant usage, select on all sequences in schema graphile_worker to saga_worker;
  grant execute on all functions in schema graphile_worker to saga_worker;
  -- graphile-worker enables row-level security on its tables without a policy: a role that does not own them
  -- sees no job at all (its worker starts and never runs one).
  for t in select c.relname from pg_class c
           where c.relnamespace = 'graphile_worker'::regnamespace and c.relkind = 'r' and c.relrowsecurity
             and not exists (select 1 from pg_policies p where p.schemaname = 'graphile_worker'
                             and p.tablename = c.relname and p.policyname = 'saga_worker') loop
    execute format('create policy saga_worker on graphile_worker.%I to saga_worker using (true) with check (true)', t);
  end loop;
end $$;
