-- Operator SQL API: saga.start/cancel/retry callable from psql, triggers and any language, and the saga.stuck
-- view. Source of the custom migration of the same name (scripts/sync-custom-migrations.ts).
-- Errors carry their own SQLSTATEs (class SG): SG400 bad argument, SG404 no saga with that id, SG406 saga name or
-- version that no worker registered, SG410 saga already ended, SG412 saga not in a retryable state, SG413 input
-- or metadata over 1 MB.

-- A worker whose heartbeat is older than this is not live. `set saga.worker_stale_after = '30s'` per session or
-- `alter database ... set` to match the workers' deadWorkerAfter (default 15 s).
create or replace function saga._stale_after() returns interval
language sql stable as $$
  select coalesce(nullif(current_setting('saga.worker_stale_after', true), '')::interval, interval '15 seconds')
$$;
--> statement-breakpoint

-- Starts a saga of the latest version the workers registered (or options.version). The input is checked by the
-- worker against the zod schema before any step runs: invalid input ends the saga `failed` with INVALID_INPUT.
-- Options: idempotencyKey (text, 1 to 255 characters), metadata (object), version (int), parentId (uuid),
-- traceparent (text), tenant (text; default the session's saga.tenant).
create or replace function saga.start(p_name text, p_input jsonb, p_options jsonb default '{}'::jsonb)
returns uuid
language plpgsql as $$
declare
  v_options jsonb := coalesce(p_options, '{}'::jsonb);
  v_unknown text;
  v_version int;
  v_timeout bigint;
  v_parent uuid;
  v_registered text;
  v_id uuid;
begin
  if p_name is null or p_name = '' then
    raise exception 'saga.start: name is required' using errcode = 'SG400';
  end if;
  if p_input is null or jsonb_typeof(p_input) = 'null' then
    raise exception 'saga.start(%): input is required (pass ''{}''::jsonb for none)', p_name using errcode = 'SG400';
  end if;
  -- The same ceiling as engine.start()'s default maxPayloadBytes.
  if octet_length(p_input::text) > 1048576 or octet_length(coalesce(v_options->'metadata', '{}'::jsonb)::text) > 1048576 then
    raise exception 'saga.start(%): input or metadata is larger than 1 MB; store large data elsewhere and pass a reference',
      p_name using errcode = 'SG413';
  end if;
  if jsonb_typeof(v_options) <> 'object' then
    raise exception 'saga.start(%): options must be a json object', p_name using errcode = 'SG400';
  end if;
  select string_agg(k, ', ' order by k) into v_unknown from jsonb_object_keys(v_options) k
  where k not in ('idempotencyKey', 'metadata', 'version', 'parentId', 'traceparent', 'tenant');
  if v_unknown is not null then
    raise exception 'saga.start(%): unknown option(s) %; expected idempotencyKey, metadata, version, parentId, traceparent, tenant',
      p_name, v_unknown using errcode = 'SG400';
  end if;
  if coalesce(jsonb_typeof(v_options->'idempotencyKey'), 'string') not in ('string', 'null')
     or coalesce(jsonb_typeof(v_options->'traceparent'), 'string') not in ('string', 'null')
     or coalesce(jsonb_typeof(v_options->'tenant'), 'string') not in ('string', 'null') then
    raise exception 'saga.start(%): options.idempotencyKey, options.traceparent and options.tenant must be strings', p_name
      using errcode = 'SG400';
  end if;
  if coalesce(jsonb_typeof(v_options->'metadata'), 'object') not in ('object', 'null') then
    raise exception 'saga.start(%): options.metadata must be a json object', p_name using errcode = 'SG400';
  end if;
  if coalesce(jsonb_typeof(v_options->'idempotencyKey'), 'null') <> 'null'
     and length(v_options->>'idempotencyKey') not between 1 and 255 then
    raise exception 'saga.start(%): options.idempotencyKey must be 1 to 255 characters', p_name using errcode = 'SG400';
  end if;
  if coalesce(jsonb_typeof(v_options->'version'), 'null') <> 'null' then
    -- 1.0 and 1e0 are the integer 1; the range is that of the int column.
    if jsonb_typeof(v_options->'version') <> 'number'
       or (v_options->>'version')::numeric <> trunc((v_options->>'version')::numeric)
       or (v_options->>'version')::numeric not between 1 and 2147483647 then
      raise exception 'saga.start(%): options.version must be an integer from 1 to 2147483647', p_name
        using errcode = 'SG400';
    end if;
  end if;
  begin
    v_parent := (v_options->>'parentId')::uuid;
  exception when invalid_text_representation then
    raise exception 'saga.start(%): options.parentId is not a uuid', p_name using errcode = 'SG400';
  end;

  -- Primary key of saga.definitions (name, version).
  select d.version, d.timeout_ms into v_version, v_timeout
  from saga.definitions d
  where d.name = p_name and (v_options->'version' is null or jsonb_typeof(v_options->'version') = 'null'
                             or d.version = (v_options->>'version')::numeric::int)
  order by d.version desc limit 1;
  if v_version is null then
    select string_agg(distinct d.name, ', ' order by d.name) into v_registered from saga.definitions d;
    if exists (select 1 from saga.definitions d where d.name = p_name) then
      raise exception 'saga.start: saga "%" has no registered version %', p_name, v_options->>'version'
        using errcode = 'SG406';
    end if;
    raise exception 'saga.start: unknown saga "%"; no worker has registered it (registered: %)',
      p_name, coalesce(v_registered, 'none') using errcode = 'SG406',
      hint = 'start a worker that runs this saga once: it registers its definitions';
  end if;

  select s.id into v_id from saga._start(p_name, v_version, p_input, v_options->>'idempotencyKey',
    coalesce(nullif(v_options->'metadata', 'null'::jsonb), '{}'::jsonb), v_timeout, v_options->>'traceparent',
    v_parent, false, v_options->>'tenant') s;
  return v_id;
end $$;
--> statement-breakpoint

-- Asks for a cancel: the worker that has the saga's definition performs it (compensation runs there), ahead
-- of other jobs. Returns the saga's state now: `running` (cancel queued) or `compensating` (already undoing).
-- Takes no row lock: a transactional step holds the instance row lock while its handler runs, so the request
-- is a row of saga.cancel_requests, and the worker running the step reads it (woken by saga_control) and
-- aborts the step. The first reason asked for is the one recorded.
create or replace function saga.cancel(p_id uuid, p_reason text default 'cancelled') returns text
language plpgsql as $$
declare
  v record;
begin
  -- A SECURITY DEFINER function is past row-level security: another tenant's saga is not found.
  select i.id, i.name, i.version, i.state into v from saga.instances i where i.id = p_id and saga._tenant_visible(i.tenant);
  if not found then
    raise exception 'saga.cancel: no saga with id %', p_id using errcode = 'SG404';
  end if;
  if v.state not in ('running', 'compensating') then
    raise exception 'saga.cancel: saga % already ended %; nothing to cancel', p_id, v.state using errcode = 'SG410';
  end if;
  if v.state = 'running' then
    insert into saga.cancel_requests (saga_id, reason, requested_by) values (p_id, coalesce(p_reason, 'cancelled'), session_user)
    on conflict (saga_id) do nothing;
    perform saga._add_job(saga._task(v.name, v.version),
      -- session_user: the caller's login role (current_user is this SECURITY DEFINER function's owner).
      json_build_object('id', p_id, 'cancel', coalesce(p_reason, 'cancelled'), 'by', session_user), p_priority => -10);
    perform pg_notify('saga_control', json_build_object('id', p_id)::text);
  end if;
  return v.state;
end $$;
--> statement-breakpoint

-- Asks for an operator's retry: the worker that has the saga's definition performs it, with the code
-- engine.retry() runs (src/worker/resume.ts), so the retry is decided in one place: `failed` resumes forward
-- from the failed step with a fresh attempt budget; `compensation_failed` resumes the compensations that ran
-- out of attempts. Takes no instance row lock: it reads the state, records the request in saga.retry_requests
-- (who asked: the session's login role; why; the saga's seq, so a request for a saga that has moved on since is
-- dropped) and queues a job. Returns the state the retry moves the saga to: `running` or `compensating`.
create or replace function saga.retry(p_id uuid, p_reason text default null) returns text
language plpgsql as $$
declare
  v record;
  v_queued boolean;
begin
  -- A SECURITY DEFINER function is past row-level security: another tenant's saga is not found.
  select i.id, i.name, i.version, i.state, i.seq into v from saga.instances i
  where i.id = p_id and saga._tenant_visible(i.tenant);
  if not found then
    raise exception 'saga.retry: no saga with id %', p_id using errcode = 'SG404';
  end if;
  if v.state not in ('failed', 'compensation_failed') then
    raise exception 'saga.retry: saga % is %; only failed and compensation_failed sagas can be retried', p_id, v.state
      using errcode = 'SG412';
  end if;
  -- One request per saga state: a second retry of the same state is refused, as it would be once the worker
  -- performed the first; a request left from an earlier state (retried another way since) is replaced.
  insert into saga.retry_requests as r (saga_id, seq, reason, requested_by)
  -- session_user: the caller's login role (current_user is this SECURITY DEFINER function's owner).
  values (p_id, v.seq, p_reason, session_user)
  on conflict (saga_id) do update
    set seq = excluded.seq, reason = excluded.reason, requested_by = excluded.requested_by, requested_at = now()
    where r.seq <> excluded.seq
  returning true into v_queued;
  if v_queued is null then
    raise exception 'saga.retry: saga % is %, and a retry of it is already queued for its worker', p_id, v.state
      using errcode = 'SG412';
  end if;
  perform saga._add_job(saga._task(v.name, v.version), json_build_object('id', p_id, 'retry', true));
  return case v.state when 'failed' then 'running' else 'compensating' end;
end $$;
--> statement-breakpoint

-- graphile-worker's jobs of each saga (saga._job_counts, sql/graphile.sql). plpgsql, so that the view below can
-- be created before that file is applied and before graphile-worker's schema exists (it is migrated after
-- pg-saga's).
create or replace function saga._saga_jobs()
returns table (saga_id text, runnable bigint, exhausted bigint, last_error text)
language plpgsql stable as $$
begin
  return query select * from saga._job_counts();
end $$;
--> statement-breakpoint

-- Every saga that has not ended and is not moving, with the first reason that applies:
--   no_worker_for_version  no live worker (by heartbeat) runs name@version
--   lease_expired          a step is leased by a worker that went silent, or its lease ran out
--   waiting_child          a .child() step waits for its child saga to end (the child's own row says why it is not)
--   no_job                 nothing will run it: no job for it (or only jobs that failed for good)
--   retry_scheduled        a step failed and waits for its next attempt at retry_at
--   waiting_compensation   a compensation failed and waits for its next attempt at retry_at
-- A saga with a step leased by a live worker, or with a runnable job and a live worker, is moving: not listed.
create or replace view saga.stuck as
with live as (
  select w.id, w.sagas from saga.workers w where w.heartbeat_at >= now() - saga._stale_after()
),
served as (select distinct k.key from live, jsonb_array_elements_text(live.sagas) k(key)),
jobs as (select * from saga._saga_jobs()),
leases as (
  select s.saga_id,
    bool_or(l.id is not null and s.lease_expires_at > now()) as live_lease,
    (array_agg(s.name order by s.index) filter (where l.id is null or s.lease_expires_at <= now()))[1] as lost_step,
    (array_agg(s.lease_owner order by s.index) filter (where l.id is null or s.lease_expires_at <= now()))[1] as lost_owner
  from saga.steps s left join live l on l.id = s.lease_owner
  -- 'failed': an attempt interrupted by a cancel or a deadline, whose compensation waits for it to end.
  where s.lease_owner is not null and s.status in ('running', 'compensating', 'failed')
  group by s.saga_id
),
waits as (
  select s.saga_id, min(s.next_attempt_at) filter (where s.status = 'pending') as retry_at,
    (array_agg(s.name order by s.next_attempt_at) filter (where s.status = 'pending'))[1] as retry_step,
    min(s.next_attempt_at) filter (where s.status = 'compensating') as compensation_at,
    (array_agg(s.name order by s.next_attempt_at) filter (where s.status = 'compensating'))[1] as compensation_step
  from saga.steps s
  where s.next_attempt_at > now()
  group by s.saga_id
),
candidates as (
  select i.id, i.name, i.version, i.state, i.current_step, i.updated_at,
    exists (select 1 from served where served.key = i.name || '@' || i.version) as served,
    l.live_lease, l.lost_step, l.lost_owner, j.runnable, j.exhausted, j.last_error,
    coalesce(w.retry_at, case when i.next_attempt_at > now() then i.next_attempt_at end) as retry_at, w.retry_step,
    w.compensation_at, w.compensation_step,
    coalesce((select s.name from saga.steps s where s.saga_id = i.id and s.index = i.current_step),
      (select d.steps->i.current_step->>'name' from saga.definitions d where d.name = i.name and d.version = i.version))
      as current_name,
    wc.id as child_id, wc.step as child_step
  from saga.instances i
  -- instances_parent_id_parent_step_key: the child of a .child() step that has not ended.
  left join lateral (
    select c.id, s.name as step from saga.instances c join saga.steps s on s.saga_id = i.id and s.index = c.parent_step
    where c.parent_id = i.id and c.parent_step is not null
      -- A completed child the parent asked to compensate, until its worker takes the request.
      and (c.state in ('running', 'compensating') or (c.state = 'completed' and s.status = 'compensating'))
    order by c.parent_step limit 1) wc on true
  left join leases l on l.saga_id = i.id
  left join jobs j on j.saga_id = i.id::text
  left join waits w on w.saga_id = i.id
  -- instances_state_created_at_idx: only the sagas that have not ended.
  where i.state in ('running', 'compensating') and l.live_lease is not true and saga._tenant_visible(i.tenant)
)
select c.id, c.name, c.version, c.state, r.step, r.reason, r.retry_at, r.detail, c.updated_at as since
from candidates c
cross join lateral (
  select * from (values
    (1, 'no_worker_for_version', c.current_name, null::timestamptz,
     format('no live worker runs %s@%s', c.name, c.version), not c.served),
    (2, 'lease_expired', c.lost_step, null::timestamptz,
     format('step %s is leased by worker %s, which went silent or let the lease run out', c.lost_step, c.lost_owner),
     c.lost_step is not null),
    (3, 'waiting_child', c.child_step, null::timestamptz, format('waiting for child %s', c.child_id),
     c.child_id is not null),
    (4, 'no_job', c.current_name, null::timestamptz,
     case when coalesce(c.exhausted, 0) > 0 then format('its job failed for good: %s', c.last_error)
          else 'no job will run it' end,
     coalesce(c.runnable, 0) = 0),
    (5, 'retry_scheduled', c.retry_step, c.retry_at,
     format('step %s retries at %s', c.retry_step, c.retry_at),
     c.state = 'running' and c.retry_at is not null),
    (6, 'waiting_compensation', c.compensation_step, c.compensation_at,
     format('compensation of step %s retries at %s', c.compensation_step, c.compensation_at),
     c.state = 'compensating' and c.compensation_at is not null)
  ) v(rank, reason, step, retry_at, detail, applies)
  where v.applies
  order by v.rank limit 1
) r;
