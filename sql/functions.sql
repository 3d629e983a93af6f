-- pg-saga functions. Source of the custom migration of the same name (scripts/sync-custom-migrations.ts).
-- Internal functions start with an underscore; saga.start/cancel/retry are the documented SQL API.

-- Opt-in tenant isolation: a session with `saga.tenant` set sees and acts only on that tenant's sagas and events;
-- a session without it (workers, operators) sees every tenant. Used by the row-level security policies
-- (sql/security.sql), the views and the SECURITY DEFINER functions, which run as the owner and so bypass them.
create or replace function saga._tenant() returns text
language sql stable parallel safe as $$ select nullif(current_setting('saga.tenant', true), '') $$;
--> statement-breakpoint

create or replace function saga._tenant_visible(p_tenant text) returns boolean
language sql stable parallel safe as $$ select saga._tenant() is null or p_tenant = saga._tenant() $$;
--> statement-breakpoint

-- The task that runs a saga version: workers only fetch the tasks of the versions they have.
create or replace function saga._task(p_name text, p_version int) returns text
language sql immutable parallel safe as $$ select 'saga:' || p_name || '@' || p_version $$;
--> statement-breakpoint

-- Writes a new instance, its saga.started event and its first job in the caller's transaction:
-- one round trip, and no NOTIFY (see saga._enqueue in sql/graphile.sql). An idempotency key that is taken returns the existing
-- id with created = false.
create or replace function saga._start(
  p_name text, p_version int, p_input jsonb, p_idempotency_key text, p_metadata jsonb,
  p_timeout_ms bigint, p_trace_context text, p_parent_id uuid, p_validated boolean, p_tenant text default null
) returns table (id uuid, created boolean)
language plpgsql as $$
declare
  v_id uuid;
  v_deadline timestamptz;
  v_task text := saga._task(p_name, p_version);
  -- The tenant given, else the session's, else the parent saga's (a child saga started by a worker).
  v_tenant text := coalesce(nullif(p_tenant, ''), saga._tenant(),
    (select p.tenant from saga.instances p where p.id = p_parent_id));
  v_other text;
begin
  if saga._tenant() is not null and v_tenant <> saga._tenant() then
    raise exception 'saga %: tenant % differs from this session''s saga.tenant %; a session acts for its own tenant only',
      p_name, v_tenant, saga._tenant() using errcode = 'SG400';
  end if;
  if p_timeout_ms is not null then
    v_deadline := now() + p_timeout_ms * interval '1 millisecond';
  end if;
  insert into saga.instances as i (name, version, state, input, idempotency_key, metadata, deadline, seq, trace_context,
    parent_id, tenant)
  values (p_name, p_version, 'running', p_input, p_idempotency_key, coalesce(p_metadata, '{}'::jsonb), v_deadline, 1,
          p_trace_context, p_parent_id, v_tenant)
  on conflict (name, idempotency_key) do nothing
  returning i.id into v_id;

  if v_id is null then
    -- The key is taken by a committed instance (ON CONFLICT waited for any open inserter).
    select i.id, i.tenant into v_id, v_other from saga.instances i
    where i.name = p_name and i.idempotency_key = p_idempotency_key;
    if v_id is null then
      raise exception 'idempotency key % of saga % is held by a transaction this snapshot cannot see', p_idempotency_key, p_name
        using errcode = '40001';
    end if;
    -- Another tenant's saga: its id is not this session's to see.
    if not saga._tenant_visible(v_other) then
      raise exception 'saga %: idempotency key % is taken by another tenant''s saga; choose keys per tenant', p_name,
        p_idempotency_key using errcode = 'SG409';
    end if;
    return query select v_id, false;
    return;
  end if;

  insert into saga.outbox (saga_id, seq, type, name, payload, tenant)
  values (v_id, 1, 'saga.started', p_name, jsonb_strip_nulls(jsonb_build_object(
    'version', p_version, 'idempotencyKey', p_idempotency_key, 'metadata', p_metadata, 'deadline', v_deadline)), v_tenant);

  perform saga._enqueue(v_task,
    case when p_validated then json_build_object('id', v_id) else json_build_object('id', v_id, 'validate', true) end);
  if v_deadline is not null then
    perform saga._enqueue(v_task, json_build_object('id', v_id, 'deadline', true), v_deadline);
  end if;
  return query select v_id, true;
end $$;
--> statement-breakpoint

-- Applies one transition decided by a worker that holds the instance row lock (taken by its
-- SELECT ... FOR UPDATE in the same transaction): instance fields, step rows, events, jobs, all at once.
-- A step patch with a fence applies only if the row still has the claimed attempt and status; otherwise
-- the whole transition is refused (SQLSTATE SG409), so a late result can never be half-applied.
create or replace function saga._apply(
  p_id uuid, p_instance jsonb, p_steps jsonb, p_events jsonb, p_jobs jsonb, p_notify text
) returns void
language plpgsql as $$
declare
  v_name text;
  v_version int;
  v_tenant text;
  v_parent uuid;
  s jsonb;
  j jsonb;
begin
  update saga.instances i set
    state = coalesce(p_instance->>'state', i.state),
    data = case when p_instance ? 'data' then p_instance->'data' else i.data end,
    result = case when p_instance ? 'result' then p_instance->'result' else i.result end,
    error = case when p_instance ? 'error' then nullif(p_instance->'error', 'null'::jsonb) else i.error end,
    current_step = coalesce((p_instance->>'current_step')::int, i.current_step),
    compensation_cause = case when p_instance ? 'compensation_cause' then p_instance->>'compensation_cause' else i.compensation_cause end,
    seq = coalesce((p_instance->>'seq')::int, i.seq),
    next_attempt_at = case when p_instance ? 'next_attempt_ms'
      then now() + (p_instance->>'next_attempt_ms')::bigint * interval '1 millisecond' else null end,
    finished_at = case when p_instance ? 'finished' then (case when (p_instance->>'finished')::boolean then now() end) else i.finished_at end,
    updated_at = now()
  where i.id = p_id
  returning i.name, i.version, i.tenant, case when i.parent_step is not null then i.parent_id end
    into v_name, v_version, v_tenant, v_parent;
  if not found then
    raise exception 'saga % not found', p_id using errcode = 'SG404';
  end if;
  -- A child saga that ends wakes the parent step waiting for it, in this commit (sql/children.sql).
  if v_parent is not null and (p_instance->>'finished')::boolean then
    perform saga._wake_parent(v_parent);
  end if;

  -- Each step patch updates its row in place, or inserts it when there is none (a first claim). Not INSERT ...
  -- ON CONFLICT DO UPDATE: that writes a speculative insertion and its confirmation for a new row, and a row lock
  -- before updating an existing one, two WAL records per step row that a plain UPDATE or INSERT does not.
  -- A patch with a fence applies only to the row it was decided from: still there, with the claimed attempt.
  for s in select * from jsonb_array_elements(coalesce(p_steps, '[]'::jsonb)) loop
    update saga.steps t set
      status = s->>'status',
      attempt = coalesce((s->>'attempt')::int, t.attempt),
      attempt_base = coalesce((s->>'attempt_base')::int, t.attempt_base),
      compensation_attempt = coalesce((s->>'compensation_attempt')::int, t.compensation_attempt),
      compensation_attempt_base = coalesce((s->>'compensation_attempt_base')::int, t.compensation_attempt_base),
      lease_owner = s->>'lease_owner',
      lease_expires_at = case when s ? 'lease_ms' then now() + (s->>'lease_ms')::bigint * interval '1 millisecond' end,
      output = case when s ? 'output' then s->'output' else t.output end,
      error = case when s ? 'error' then nullif(s->'error', 'null'::jsonb) else t.error end,
      compensation_error = case when s ? 'compensation_error' then nullif(s->'compensation_error', 'null'::jsonb)
        else t.compensation_error end,
      next_attempt_at = case when s ? 'next_attempt_ms'
        then now() + (s->>'next_attempt_ms')::bigint * interval '1 millisecond' end,
      started_at = coalesce(case when (s->>'started')::boolean then now() end, t.started_at),
      finished_at = case when s ? 'finished' then (case when (s->>'finished')::boolean then now() end) else t.finished_at end,
      compensation_started_at = coalesce(case when (s->>'compensation_started')::boolean then now() end,
        t.compensation_started_at),
      compensation_finished_at = case when s ? 'compensation_finished'
        then (case when (s->>'compensation_finished')::boolean then now() end) else t.compensation_finished_at end
    where t.saga_id = p_id and t.index = (s->>'index')::int
      and (not (s ? 'fence')
       or (t.status = s->'fence'->>'status'
           and case when s->'fence' ? 'compensation_attempt'
                 then t.compensation_attempt = (s->'fence'->>'compensation_attempt')::int
                 else t.attempt = (s->'fence'->>'attempt')::int end
           and t.lease_owner is not distinct from s->'fence'->>'lease_owner'));
    if not found then
      -- A fenced patch whose row moved on, or is gone (e.g. a claim committed without waiting for the disk and
      -- lost in a server crash): the whole transition is refused.
      if s ? 'fence' then
        raise exception 'step % of saga % moved on since it was claimed; result discarded', s->>'index', p_id
          using errcode = 'SG409';
      end if;
      insert into saga.steps (saga_id, index, "group", name, status, attempt, attempt_base, compensation_attempt,
        compensation_attempt_base, lease_owner, lease_expires_at, output, error, compensation_error, next_attempt_at,
        started_at, finished_at, compensation_started_at, compensation_finished_at)
      values (p_id, (s->>'index')::int, coalesce((s->>'group')::int, (s->>'index')::int), s->>'name', s->>'status', coalesce((s->>'attempt')::int, 0),
        coalesce((s->>'attempt_base')::int, 0), coalesce((s->>'compensation_attempt')::int, 0),
        coalesce((s->>'compensation_attempt_base')::int, 0), s->>'lease_owner',
        case when s ? 'lease_ms' then now() + (s->>'lease_ms')::bigint * interval '1 millisecond' end,
        s->'output', nullif(s->'error', 'null'::jsonb), nullif(s->'compensation_error', 'null'::jsonb),
        case when s ? 'next_attempt_ms' then now() + (s->>'next_attempt_ms')::bigint * interval '1 millisecond' end,
        case when (s->>'started')::boolean then now() end, case when (s->>'finished')::boolean then now() end,
        case when (s->>'compensation_started')::boolean then now() end,
        case when (s->>'compensation_finished')::boolean then now() end);
    end if;
  end loop;

  insert into saga.outbox (saga_id, seq, type, step, name, payload, tenant)
  select p_id, (e->>'seq')::int, e->>'type', e->>'step', v_name, coalesce(e->'payload', '{}'::jsonb), v_tenant
  from jsonb_array_elements(coalesce(p_events, '[]'::jsonb)) e;

  for j in select * from jsonb_array_elements(coalesce(p_jobs, '[]'::jsonb)) loop
    if j ? 'done' then
      -- The job running this transition has nothing left to do: it ends in this commit (sql/graphile.sql).
      perform saga._job_done((j->>'done')::bigint);
    elsif j ? 'child' then
      perform saga._child_job(p_id, j->'child');
    else
      perform saga._add_job(saga._task(v_name, v_version), (j->'payload')::json,
        case when j ? 'delay_ms' then now() + (j->>'delay_ms')::bigint * interval '1 millisecond' end);
    end if;
  end loop;

  if p_notify is not null then
    perform pg_notify('saga_control', p_notify);
  end if;
end $$;
--> statement-breakpoint

-- A saga as a worker decides from: the instance (with its row version, xmin, which every transition changes)
-- and its step rows. Step outputs are left out: they can be large. plpgsql, not sql: a sql function's body is
-- parsed and planned again on every call, a plpgsql one keeps its plan per session (this read runs once per
-- transition; as sql it was a fifth of the server's CPU in the bench, see docs/performance.md).
create or replace function saga._state(p_id uuid) returns json
language plpgsql stable as $$
begin
  return (select json_build_object(
      'id', i.id, 'xmin', i.xmin::text, 'name', i.name, 'version', i.version, 'state', i.state,
      'data', coalesce(i.data, i.input), 'current_step', i.current_step, 'compensation_cause', i.compensation_cause,
      'seq', i.seq, 'error', i.error,
      'steps', coalesce((select json_agg(json_build_object(
          'index', s.index, 'name', s.name, 'status', s.status, 'attempt', s.attempt, 'attempt_base', s.attempt_base,
          'compensation_attempt', s.compensation_attempt, 'compensation_attempt_base', s.compensation_attempt_base,
          'lease_owner', s.lease_owner, 'due', s.next_attempt_at is null or s.next_attempt_at <= now(),
          'error', s.error,
          -- A .child() step's child (sql/children.sql), looked up only where a decision may need it: a step
          -- waiting without a lease, or any step of a compensating saga; {"id": null} when it has none. Its
          -- result only while the step waits. instances_parent_id_parent_step_key.
          'child', case when i.state = 'compensating' or (s.status = 'running' and s.lease_owner is null) then
            coalesce((select json_build_object('id', c.id, 'state', c.state, 'error', c.error,
               'result', case when s.status = 'running' and c.state = 'completed' then c.result end)
             from saga.instances c where c.parent_id = i.id and c.parent_step = s.index), json_build_object('id', null))
            end) order by s.index)
        from saga.steps s where s.saga_id = i.id), '[]'::json))
    from saga.instances i where i.id = p_id);
end $$;
--> statement-breakpoint

-- Locks a saga's instance row, then reads it with its step rows. Two statements on purpose: a single
-- SELECT ... FOR UPDATE that waited for the lock would re-check the instance row but evaluate the step
-- subquery with the snapshot taken before the wait, and so could decide on step rows that changed since.
-- Each statement of a plpgsql function takes a fresh snapshot under READ COMMITTED.
create or replace function saga._lock(p_id uuid) returns json
language plpgsql as $$
begin
  perform 1 from saga.instances where id = p_id for update;
  if not found then
    return null;
  end if;
  return saga._state(p_id);
end $$;
--> statement-breakpoint

-- One whole transition in one statement (its own transaction): lock the instance row, check that it is
-- still the version the decision was made from (optimistic: any other transition changed its xmin), apply,
-- and return the new state for the next decision. On a version mismatch nothing is written and the current
-- state comes back with applied = false, to decide again.
create or replace function saga._transition(
  p_id uuid, p_xmin text, p_instance jsonb, p_steps jsonb, p_events jsonb, p_jobs jsonb, p_notify text
) returns json
language plpgsql as $$
declare
  v_xmin text;
begin
  select i.xmin::text into v_xmin from saga.instances i where i.id = p_id for update;
  if v_xmin is null then
    return null;
  end if;
  if v_xmin <> p_xmin then
    return json_build_object('applied', false, 'saga', saga._state(p_id));
  end if;
  perform saga._apply(p_id, p_instance, p_steps, p_events, p_jobs, p_notify);
  return json_build_object('applied', true, 'saga', saga._state(p_id));
end $$;
