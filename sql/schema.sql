CREATE SCHEMA saga;

CREATE FUNCTION saga._add_job(p_task text, p_payload json, p_run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, p_priority integer DEFAULT NULL::integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
  perform graphile_worker.add_job(p_task, p_payload, run_at => p_run_at, priority => p_priority);
end $$;

CREATE FUNCTION saga._apply(p_id uuid, p_instance jsonb, p_steps jsonb, p_events jsonb, p_jobs jsonb, p_notify text) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

CREATE TABLE saga.outbox (
    id bigint NOT NULL,
    xid xid8 DEFAULT pg_current_xact_id() NOT NULL,
    saga_id uuid,
    seq integer,
    type text NOT NULL,
    step text,
    name text,
    key text,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant text
);

CREATE FUNCTION saga._batch_page(p_prev pg_snapshot, p_cur pg_snapshot, p_xid xid8, p_id bigint, p_ahead bigint[], p_limit integer) RETURNS SETOF saga.outbox
    LANGUAGE sql STABLE
    AS $$
  select b.* from (
    (select o.* from saga.outbox o
     where (o.xid, o.id) > (greatest(p_xid, pg_snapshot_xmax(p_prev)),
                            case when p_xid >= pg_snapshot_xmax(p_prev) then p_id else 0 end)
       and o.xid < pg_snapshot_xmax(p_cur)
       and pg_visible_in_snapshot(o.xid, p_cur) and o.id <> all(p_ahead)
     order by o.xid, o.id limit p_limit)
    union all
    (select o.*
     from pg_snapshot_xip(p_prev) x
     cross join lateral (
       select o.* from saga.outbox o
       where o.xid = x and (o.xid, o.id) > (x, case when x = p_xid then p_id else 0 end)
         and o.id <> all(p_ahead)
       order by o.xid, o.id limit p_limit) o
     where x >= p_xid and pg_visible_in_snapshot(x, p_cur))
  ) b
  order by b.xid, b.id limit p_limit
$$;

CREATE FUNCTION saga._batch_pulled(p_prev pg_snapshot, p_cur pg_snapshot, p_xid xid8, p_id bigint, p_ahead bigint[], p_saga_id uuid, p_seq integer) RETURNS SETOF saga.outbox
    LANGUAGE sql STABLE
    AS $$
  select o.* from saga.outbox o
  where o.saga_id = p_saga_id and o.seq < p_seq
    and (o.xid, o.id) > (p_xid, p_id) and o.id <> all(p_ahead)
    and pg_visible_in_snapshot(o.xid, p_cur) and not pg_visible_in_snapshot(o.xid, p_prev)
$$;

CREATE FUNCTION saga._batch_read(p_prev pg_snapshot, p_cur pg_snapshot, p_xid xid8, p_id bigint, p_ahead bigint[], p_scan integer, p_want integer, p_types text[], p_names text[], p_saga_ids uuid[]) RETURNS TABLE(n bigint, r saga.outbox, matches boolean, pulled boolean, page_end boolean, more boolean)
    LANGUAGE sql STABLE
    AS $$
  with page as materialized (
    select b.xid, b.id, b.saga_id, b.seq, f.matches, count(*) over () as total,
           count(*) filter (where f.matches) over (order by b.xid, b.id) as k
    from saga._batch_page(p_prev, p_cur, p_xid, p_id, p_ahead, p_scan) b
    cross join lateral (select (p_types is null or b.type = any(p_types))
                               and (p_names is null or b.name = any(p_names))
                               and (p_saga_ids is null or b.saga_id = any(p_saga_ids)) as matches) f),
  cut as materialized (select * from page where k < p_want or (k = p_want and matches)),
  last as (
    select c.xid, c.id,
           (select max(total) from page) = p_scan or (select count(*) from cut where matches) = p_want as more
    from cut c order by c.xid desc, c.id desc limit 1),
  pulled as (
    select p.xid, p.id, p.saga_id, p.seq,
           (p_types is null or p.type = any(p_types)) and (p_names is null or p.name = any(p_names))
             and (p_saga_ids is null or p.saga_id = any(p_saga_ids)) as matches
    from last
    cross join (select c.saga_id, max(c.seq) as seq from cut c
                where c.saga_id is not null and c.seq is not null group by c.saga_id) m
    cross join lateral saga._batch_pulled(p_prev, p_cur, last.xid, last.id, p_ahead, m.saga_id, m.seq) p
    where last.more),
  u as (
    select c.xid, c.id, c.seq, c.matches, false as pulled, coalesce(c.saga_id::text, c.id::text) as g
    from cut c
    union all
    select p.xid, p.id, p.seq, p.matches, true, p.saga_id::text from pulled p),
  slots as (select u.xid, u.id, u.g, row_number() over (partition by u.g order by u.xid, u.id) as k from u),
  ranked as (select u.*, row_number() over (partition by u.g order by u.seq, u.xid, u.id) as k from u)
  -- The rows by primary key, one lookup each (a lateral subquery, whatever the estimates).
  select row_number() over (order by s.xid, s.id), o.r, x.matches, x.pulled, (x.xid, x.id) = (l.xid, l.id),
         l.more
  from slots s join ranked x on x.g = s.g and x.k = s.k cross join last l
  cross join lateral (select o as r from saga.outbox o where o.id = x.id) o
  order by s.xid, s.id
$$;

CREATE FUNCTION saga._child_job(p_parent uuid, p_spec jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
declare
  v_id uuid;
  v_state text;
  v_step int := (p_spec->>'step')::int;
  v_task text;
  v_deadline timestamptz;
  c record;
begin
  if p_spec->>'op' = 'start' then
    v_task := saga._task(p_spec->>'name', (p_spec->>'version')::int);
    if p_spec ? 'timeout_ms' then
      v_deadline := now() + (p_spec->>'timeout_ms')::bigint * interval '1 millisecond';
    end if;
    -- The child shares its parent's tenant and trace.
    insert into saga.instances as i (name, version, state, input, metadata, deadline, seq, trace_context,
      parent_id, parent_step, tenant)
    select p_spec->>'name', (p_spec->>'version')::int, 'running', p_spec->'input', '{}'::jsonb, v_deadline, 1,
      p.trace_context, p.id, v_step, p.tenant
    from saga.instances p where p.id = p_parent
    -- instances_parent_id_parent_step_key: a retried transition finds the child its first try started.
    on conflict (parent_id, parent_step) where parent_step is not null do nothing
    returning i.id into v_id;
    if v_id is null then
      select i.state into v_state from saga.instances i where i.parent_id = p_parent and i.parent_step = v_step;
      -- Started before and already ended (the parent was retried): its end is the step's, at once.
      if v_state not in ('running', 'compensating') then
        perform saga._wake_parent(p_parent);
      end if;
      return;
    end if;
    insert into saga.outbox (saga_id, seq, type, name, payload, tenant)
    select v_id, 1, 'saga.started', p_spec->>'name', jsonb_strip_nulls(jsonb_build_object('version',
      (p_spec->>'version')::int, 'parentId', p_parent, 'parentStep', v_step, 'deadline', v_deadline)), i.tenant
    from saga.instances i where i.id = v_id;
    perform saga._add_job(v_task, json_build_object('id', v_id));
    if v_deadline is not null then
      perform saga._add_job(v_task, json_build_object('id', v_id, 'deadline', true), v_deadline);
    end if;
  elsif p_spec->>'op' = 'cancel' then
    -- The same request saga.cancel writes: the child's worker performs it, and cancels the child's own children.
    for c in select i.id, i.name, i.version from saga.instances i
             where i.parent_id = p_parent and i.parent_step is not null and i.state = 'running' loop
      insert into saga.cancel_requests (saga_id, reason, requested_by) values (c.id, p_spec->>'reason', 'parent saga ' || p_parent)
      on conflict (saga_id) do nothing;
      perform saga._add_job(saga._task(c.name, c.version),
        json_build_object('id', c.id, 'cancel', p_spec->>'reason', 'by', 'parent saga ' || p_parent), null, -10);
      perform pg_notify('saga_control', json_build_object('id', c.id)::text);
    end loop;
  elsif p_spec->>'op' = 'compensate' then
    select i.name, i.version into c from saga.instances i
    where i.id = (p_spec->>'id')::uuid and i.parent_id = p_parent and i.state = 'completed';
    if found then
      perform saga._add_job(saga._task(c.name, c.version),
        json_build_object('id', p_spec->>'id', 'compensate', p_spec->>'reason'));
    end if;
  else
    raise exception 'saga._child_job: unknown op %', p_spec->>'op' using errcode = 'SG400';
  end if;
end $$;

CREATE FUNCTION saga._cursor_pending(p_name text, p_limit integer) RETURNS TABLE(id bigint, created_at timestamp with time zone)
    LANGUAGE plpgsql STABLE
    AS $$
begin
  return query
    select b.id, b.created_at from saga.subscriptions s
    cross join lateral saga._batch_page(s.tick, pg_current_snapshot(), s.cursor_xid, s.cursor_id, s.ahead,
                                        p_limit) b
    where s.name = p_name;
end $$;

CREATE FUNCTION saga._enqueue(p_task text, p_payload json, p_run_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION saga._event_message(o saga.outbox) RETURNS text
    LANGUAGE sql STABLE
    AS $$
  select case when current_setting('saga.relay_notify', true) is distinct from 'full'
              then jsonb_build_object('id', o.id, 'sagaId', o.saga_id, 'seq', o.seq, 'type', o.type)::text
              when octet_length(m::text) < 8000 then m::text
              else (m - 'payload' || '{"truncated": true}'::jsonb)::text end
  from (select jsonb_build_object('id', o.id, 'sagaId', o.saga_id, 'seq', o.seq, 'type', o.type, 'step', o.step,
          'name', o.name, 'key', o.key, 'createdAt', o.created_at, 'payload', o.payload) as m) x
$$;

CREATE FUNCTION saga._grant_job_queue() RETURNS void
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION saga._grant_roles() RETURNS void
    LANGUAGE plpgsql
    AS $$
declare
  f text;
  t text;
  worker boolean := exists (select 1 from pg_roles where rolname = 'saga_worker');
  app boolean := exists (select 1 from pg_roles where rolname = 'saga_app');
  reader boolean := exists (select 1 from pg_roles where rolname = 'saga_reader');
begin
  -- Definer functions run as their owner: a fixed search_path, so no caller's schema can shadow what they call.
  foreach f in array array[
    'saga.start(text, jsonb, jsonb)', 'saga.cancel(uuid, text)', 'saga.retry(uuid, text)',
    'saga._start(text, integer, jsonb, text, jsonb, bigint, text, uuid, boolean, text)',
    'saga._publish(text[], text[], text[])', 'saga._saga_jobs()', 'saga.children(uuid)'] loop
    execute format('alter function %s security definer set search_path = pg_catalog, pg_temp', f);
  end loop;
  -- Nothing of schema saga for PUBLIC: functions are executable by PUBLIC unless revoked.
  revoke all on all tables in schema saga from public;
  revoke all on all functions in schema saga from public;

  if worker then
    grant usage on schema saga to saga_worker;
    grant select, insert, update, delete on all tables in schema saga to saga_worker;
    grant usage, select on all sequences in schema saga to saga_worker;
    grant execute on all functions in schema saga to saga_worker;
    -- graphile-worker's schema, when it exists (sql/graphile.sql).
    perform saga._grant_job_queue();
  end if;

  -- Tenant isolation (opt-in, docs/security.md): row-level security on the tables that hold a tenant's sagas and
  -- events. The owner bypasses it (workers and migrate run as the owner or saga_worker, across tenants);
  -- saga_app and saga_reader see a tenant's rows when their session sets saga.tenant, every row when it does not.
  -- Policies are created once, when missing: dropping and creating them would lock the tables on every migrate().
  for t in select unnest(array['instances', 'steps', 'outbox', 'cancel_requests', 'retry_requests']) loop
    if worker and not exists (select 1 from pg_policies p where p.schemaname = 'saga' and p.tablename = t
                              and p.policyname = 'saga_worker') then
      execute format('create policy saga_worker on saga.%I to saga_worker using (true) with check (true)', t);
    end if;
    if (app or reader) and not exists (select 1 from pg_policies p where p.schemaname = 'saga' and p.tablename = t
                                       and p.policyname = 'saga_tenant') then
      execute format('create policy saga_tenant on saga.%I for select to %s using (%s)', t,
        concat_ws(', ', case when app then 'saga_app' end, case when reader then 'saga_reader' end),
        case when t in ('instances', 'outbox') then 'saga._tenant_visible(tenant)'
             else format('exists (select 1 from saga.instances i where i.id = %I.saga_id and saga._tenant_visible(i.tenant))', t) end);
    end if;
    if not (select c.relrowsecurity from pg_class c where c.oid = format('saga.%I', t)::regclass) then
      execute format('alter table saga.%I enable row level security', t);
    end if;
  end loop;

  if app then
    grant usage on schema saga to saga_app;
    grant select on all tables in schema saga to saga_app;
    grant execute on function saga.start(text, jsonb, jsonb), saga.cancel(uuid, text), saga.retry(uuid, text),
      saga._start(text, integer, jsonb, text, jsonb, bigint, text, uuid, boolean, text),
      saga._publish(text[], text[], text[]), saga._saga_jobs(), saga._stale_after(), saga._tenant(),
      saga._tenant_visible(text), saga.children(uuid) to saga_app;
  end if;

  if reader then
    grant usage on schema saga to saga_reader;
    -- saga.retry_requests: engine.waitFor() waits for a retry that is queued (sql/operator.sql).
    grant select on saga.instances, saga.steps, saga.events, saga.stuck, saga.retry_requests to saga_reader;
    grant execute on function saga._saga_jobs(), saga._stale_after(), saga._tenant(), saga._tenant_visible(text),
      saga.children(uuid) to saga_reader;
  end if;
end $$;

CREATE FUNCTION saga._job_counts() RETURNS TABLE(saga_id text, runnable bigint, exhausted bigint, last_error text)
    LANGUAGE plpgsql STABLE
    AS $$
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

CREATE FUNCTION saga._job_done(p_job_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
  delete from graphile_worker._private_jobs where id = p_job_id;
end $$;

CREATE FUNCTION saga._lock(p_id uuid) RETURNS json
    LANGUAGE plpgsql
    AS $$
begin
  perform 1 from saga.instances where id = p_id for update;
  if not found then
    return null;
  end if;
  return saga._state(p_id);
end $$;

CREATE FUNCTION saga._publish(p_types text[], p_keys text[], p_payloads text[]) RETURNS SETOF bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
begin
  if exists (select 1 from unnest(p_types) t where t like 'saga.%' or t like 'compensation.%') then
    raise exception 'saga._publish: the types saga.* and compensation.* are the engine''s own' using errcode = 'SG400';
  end if;
  return query
  insert into saga.outbox (type, key, payload, tenant)
  select e.type, e.key, e.payload::jsonb, saga._tenant()
  from unnest(p_types, p_keys, p_payloads) with ordinality as e(type, key, payload, n)
  order by e.n
  returning id;
end $$;

CREATE FUNCTION saga._relay_publish(p_name text, p_epoch bigint, p_limit integer, p_lease_ms integer) RETURNS TABLE(published integer, pending boolean)
    LANGUAGE plpgsql
    AS $$
declare
  s record;
  v_cur pg_snapshot;
  v_messages text[];
  v_pulled bigint[];
  v_end_xid xid8;
  v_end_id bigint;
  v_more boolean;
  v_started int;
  v_message text;
begin
  select c.tick, c.batch_tick, c.cursor_xid, c.cursor_id, c.ahead,
         c.lease_expires_at is null
           or c.lease_expires_at < now() + p_lease_ms * interval '1 millisecond' * 2 / 3 as renew
  into s from saga.subscriptions c where c.name = p_name and c.epoch = p_epoch;
  if not found then
    return query select -1, false;
    return;
  end if;
  v_cur := coalesce(s.batch_tick, pg_current_snapshot());

  select array_agg(saga._event_message(b.r) order by b.n), array_agg((b.r).id) filter (where b.pulled),
         max((b.r).xid) filter (where b.page_end), max((b.r).id) filter (where b.page_end), bool_or(b.more),
         count(*) filter (where (b.r).type = 'saga.started')
  into v_messages, v_pulled, v_end_xid, v_end_id, v_more, v_started
  from saga._batch_read(s.tick, v_cur, s.cursor_xid, s.cursor_id, s.ahead, p_limit, p_limit, null, null, null) b;

  if v_messages is null then
    -- The batch is done (or was empty): the new snapshot becomes the tick. An empty new batch moves the tick
    -- only when the lease is renewed anyway, so an idle relay does not write on every poll.
    if s.batch_tick is not null or (s.renew and pg_snapshot_xmax(v_cur) > pg_snapshot_xmax(s.tick)) then
      update saga.subscriptions c
      set tick = v_cur, batch_tick = null, cursor_xid = '0', cursor_id = 0, ahead = '{}', updated_at = now(),
          lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
      where c.name = p_name and c.epoch = p_epoch;
    elsif s.renew then
      update saga.subscriptions c set lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
      where c.name = p_name and c.epoch = p_epoch;
    end if;
    return query select 0, s.batch_tick is not null;
    return;
  end if;

  -- Fence: still our epoch and still the position we read (the row lock serializes racing relays).
  perform 1 from saga.subscriptions c
  where c.name = p_name and c.epoch = p_epoch and c.cursor_xid = s.cursor_xid and c.cursor_id = s.cursor_id
    and c.tick::text = s.tick::text and c.batch_tick::text is not distinct from s.batch_tick::text
  for update;
  if not found then
    return query select -1, false;
    return;
  end if;

  foreach v_message in array v_messages loop
    perform pg_notify('saga_events', v_message);
  end loop;
  -- Sagas started in a caller's transaction (start() with a client, saga.start() in SQL) queued their first
  -- job without waking anyone (saga._enqueue): wake graphile-worker's listeners now that they are committed.
  if v_started > 0 then
    perform saga._wake_jobs(v_started);
  end if;

  if v_more then
    update saga.subscriptions c
    set batch_tick = v_cur, cursor_xid = v_end_xid, cursor_id = v_end_id,
        ahead = c.ahead || coalesce(v_pulled, '{}'), updated_at = now(),
        lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
    where c.name = p_name and c.epoch = p_epoch;
  else
    update saga.subscriptions c
    set tick = v_cur, batch_tick = null, cursor_xid = '0', cursor_id = 0, ahead = '{}', updated_at = now(),
        lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
    where c.name = p_name and c.epoch = p_epoch;
  end if;
  return query select cardinality(v_messages), v_more;
end $$;

CREATE FUNCTION saga._saga_jobs() RETURNS TABLE(saga_id text, runnable bigint, exhausted bigint, last_error text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
begin
  return query select * from saga._job_counts();
end $$;

CREATE FUNCTION saga._stale_after() RETURNS interval
    LANGUAGE sql STABLE
    AS $$
  select coalesce(nullif(current_setting('saga.worker_stale_after', true), '')::interval, interval '15 seconds')
$$;

CREATE FUNCTION saga._start(p_name text, p_version integer, p_input jsonb, p_idempotency_key text, p_metadata jsonb, p_timeout_ms bigint, p_trace_context text, p_parent_id uuid, p_validated boolean, p_tenant text DEFAULT NULL::text) RETURNS TABLE(id uuid, created boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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

CREATE FUNCTION saga._state(p_id uuid) RETURNS json
    LANGUAGE plpgsql STABLE
    AS $$
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

CREATE FUNCTION saga._task(p_name text, p_version integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ select 'saga:' || p_name || '@' || p_version $$;

CREATE FUNCTION saga._tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ select nullif(current_setting('saga.tenant', true), '') $$;

CREATE FUNCTION saga._tenant_visible(p_tenant text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ select saga._tenant() is null or p_tenant = saga._tenant() $$;

CREATE FUNCTION saga._transition(p_id uuid, p_xmin text, p_instance jsonb, p_steps jsonb, p_events jsonb, p_jobs jsonb, p_notify text) RETURNS json
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION saga._wake_jobs(p_count integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
  perform pg_notify('jobs:insert', json_build_object('count', p_count)::text);
end $$;

CREATE FUNCTION saga._wake_parent(p_parent uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
declare
  v record;
begin
  select p.name, p.version into v from saga.instances p where p.id = p_parent;
  if found then
    perform saga._add_job(saga._task(v.name, v.version), json_build_object('id', p_parent));
  end if;
end $$;

CREATE FUNCTION saga.cancel(p_id uuid, p_reason text DEFAULT 'cancelled'::text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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

CREATE FUNCTION saga.children(p_id uuid) RETURNS TABLE(id uuid, name text, version integer, state text, parent_step integer, result jsonb, error jsonb, created_at timestamp with time zone, finished_at timestamp with time zone)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
  select c.id, c.name, c.version, c.state, c.parent_step, c.result, c.error, c.created_at, c.finished_at
  from saga.instances c
  where c.parent_id = p_id and saga._tenant_visible(c.tenant)
  order by c.created_at, c.id
$$;

CREATE FUNCTION saga.retry(p_id uuid, p_reason text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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

CREATE FUNCTION saga.schema_version() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
  select jsonb_build_object(
    'migrations', (select count(*) from saga.__drizzle_migrations),
    'latest', (select max(created_at) from saga.__drizzle_migrations),
    'version', (select r.version from saga.__repeatable r order by r.applied_at desc, r.file limit 1),
    'files', (select coalesce(jsonb_object_agg(r.file, r.checksum), '{}'::jsonb) from saga.__repeatable r)
  )
$$;

CREATE FUNCTION saga.start(p_name text, p_input jsonb, p_options jsonb DEFAULT '{}'::jsonb) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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

CREATE TABLE saga.__drizzle_migrations (
    id integer NOT NULL,
    hash text NOT NULL,
    created_at bigint
);

CREATE SEQUENCE saga.__drizzle_migrations_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE saga.__drizzle_migrations_id_seq OWNED BY saga.__drizzle_migrations.id;

CREATE TABLE saga.__repeatable (
    file text NOT NULL,
    checksum text NOT NULL,
    version text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE saga.cancel_requests (
    saga_id uuid NOT NULL,
    reason text NOT NULL,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    requested_by text
);

CREATE TABLE saga.dead_letters (
    id bigint NOT NULL,
    subscription text NOT NULL,
    event_id bigint NOT NULL,
    event jsonb NOT NULL,
    error jsonb NOT NULL,
    attempts integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    redriven_at timestamp with time zone,
    delivered_at timestamp with time zone
);

ALTER TABLE saga.dead_letters ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME saga.dead_letters_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE saga.definitions (
    name text NOT NULL,
    version integer NOT NULL,
    fingerprint text NOT NULL,
    steps jsonb NOT NULL,
    timeout_ms bigint,
    registered_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE VIEW saga.events AS
 SELECT o.id,
    o.saga_id,
    o.seq,
    o.type,
    o.step,
    o.name,
    o.key,
        CASE
            WHEN ((jsonb_typeof(o.payload) = 'object'::text) AND (o.payload ? '$encrypted'::text)) THEN jsonb_build_object('$encrypted', (o.payload -> '$encrypted'::text))
            ELSE o.payload
        END AS payload,
    o.created_at,
    o.tenant
   FROM saga.outbox o
  WHERE saga._tenant_visible(o.tenant);

CREATE TABLE saga.instances (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    state text NOT NULL,
    input jsonb NOT NULL,
    data jsonb,
    result jsonb,
    error jsonb,
    current_step integer DEFAULT 0 NOT NULL,
    compensation_cause text,
    idempotency_key text,
    parent_id uuid,
    deadline timestamp with time zone,
    seq integer DEFAULT 0 NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    trace_context text,
    next_attempt_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    tenant text,
    parent_step integer
);

ALTER TABLE saga.outbox ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME saga.outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE saga.retry_requests (
    saga_id uuid NOT NULL,
    seq integer NOT NULL,
    reason text,
    requested_by text NOT NULL,
    requested_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE saga.steps (
    saga_id uuid NOT NULL,
    index integer NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    attempt_base integer DEFAULT 0 NOT NULL,
    compensation_attempt integer DEFAULT 0 NOT NULL,
    compensation_attempt_base integer DEFAULT 0 NOT NULL,
    lease_owner text,
    lease_expires_at timestamp with time zone,
    output jsonb,
    error jsonb,
    compensation_error jsonb,
    next_attempt_at timestamp with time zone,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    compensation_started_at timestamp with time zone,
    compensation_finished_at timestamp with time zone,
    "group" integer
);

CREATE TABLE saga.workers (
    id text NOT NULL,
    hostname text NOT NULL,
    pid integer NOT NULL,
    sagas jsonb DEFAULT '[]'::jsonb NOT NULL,
    job_worker_ids text[] DEFAULT '{}'::text[] NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE VIEW saga.stuck AS
 WITH live AS (
         SELECT w.id,
            w.sagas
           FROM saga.workers w
          WHERE (w.heartbeat_at >= (now() - saga._stale_after()))
        ), served AS (
         SELECT DISTINCT k.key
           FROM live,
            LATERAL jsonb_array_elements_text(live.sagas) k(key)
        ), jobs AS (
         SELECT _saga_jobs.saga_id,
            _saga_jobs.runnable,
            _saga_jobs.exhausted,
            _saga_jobs.last_error
           FROM saga._saga_jobs() _saga_jobs(saga_id, runnable, exhausted, last_error)
        ), leases AS (
         SELECT s.saga_id,
            bool_or(((l.id IS NOT NULL) AND (s.lease_expires_at > now()))) AS live_lease,
            (array_agg(s.name ORDER BY s.index) FILTER (WHERE ((l.id IS NULL) OR (s.lease_expires_at <= now()))))[1] AS lost_step,
            (array_agg(s.lease_owner ORDER BY s.index) FILTER (WHERE ((l.id IS NULL) OR (s.lease_expires_at <= now()))))[1] AS lost_owner
           FROM (saga.steps s
             LEFT JOIN live l ON ((l.id = s.lease_owner)))
          WHERE ((s.lease_owner IS NOT NULL) AND (s.status = ANY (ARRAY['running'::text, 'compensating'::text, 'failed'::text])))
          GROUP BY s.saga_id
        ), waits AS (
         SELECT s.saga_id,
            min(s.next_attempt_at) FILTER (WHERE (s.status = 'pending'::text)) AS retry_at,
            (array_agg(s.name ORDER BY s.next_attempt_at) FILTER (WHERE (s.status = 'pending'::text)))[1] AS retry_step,
            min(s.next_attempt_at) FILTER (WHERE (s.status = 'compensating'::text)) AS compensation_at,
            (array_agg(s.name ORDER BY s.next_attempt_at) FILTER (WHERE (s.status = 'compensating'::text)))[1] AS compensation_step
           FROM saga.steps s
          WHERE (s.next_attempt_at > now())
          GROUP BY s.saga_id
        ), candidates AS (
         SELECT i.id,
            i.name,
            i.version,
            i.state,
            i.current_step,
            i.updated_at,
            (EXISTS ( SELECT 1
                   FROM served
                  WHERE (served.key = ((i.name || '@'::text) || i.version)))) AS served,
            l.live_lease,
            l.lost_step,
            l.lost_owner,
            j.runnable,
            j.exhausted,
            j.last_error,
            COALESCE(w.retry_at,
                CASE
                    WHEN (i.next_attempt_at > now()) THEN i.next_attempt_at
                    ELSE NULL::timestamp with time zone
                END) AS retry_at,
            w.retry_step,
            w.compensation_at,
            w.compensation_step,
            COALESCE(( SELECT s.name
                   FROM saga.steps s
                  WHERE ((s.saga_id = i.id) AND (s.index = i.current_step))), ( SELECT ((d.steps -> i.current_step) ->> 'name'::text)
                   FROM saga.definitions d
                  WHERE ((d.name = i.name) AND (d.version = i.version)))) AS current_name,
            wc.id AS child_id,
            wc.step AS child_step
           FROM ((((saga.instances i
             LEFT JOIN LATERAL ( SELECT c_1.id,
                    s.name AS step
                   FROM (saga.instances c_1
                     JOIN saga.steps s ON (((s.saga_id = i.id) AND (s.index = c_1.parent_step))))
                  WHERE ((c_1.parent_id = i.id) AND (c_1.parent_step IS NOT NULL) AND ((c_1.state = ANY (ARRAY['running'::text, 'compensating'::text])) OR ((c_1.state = 'completed'::text) AND (s.status = 'compensating'::text))))
                  ORDER BY c_1.parent_step
                 LIMIT 1) wc ON (true))
             LEFT JOIN leases l ON ((l.saga_id = i.id)))
             LEFT JOIN jobs j ON ((j.saga_id = (i.id)::text)))
             LEFT JOIN waits w ON ((w.saga_id = i.id)))
          WHERE ((i.state = ANY (ARRAY['running'::text, 'compensating'::text])) AND (l.live_lease IS NOT TRUE) AND saga._tenant_visible(i.tenant))
        )
 SELECT c.id,
    c.name,
    c.version,
    c.state,
    r.step,
    r.reason,
    r.retry_at,
    r.detail,
    c.updated_at AS since
   FROM (candidates c
     CROSS JOIN LATERAL ( SELECT v.rank,
            v.reason,
            v.step,
            v.retry_at,
            v.detail,
            v.applies
           FROM ( VALUES (1,'no_worker_for_version'::text,c.current_name,NULL::timestamp with time zone,format('no live worker runs %s@%s'::text, c.name, c.version),(NOT c.served)), (2,'lease_expired'::text,c.lost_step,NULL::timestamp with time zone,format('step %s is leased by worker %s, which went silent or let the lease run out'::text, c.lost_step, c.lost_owner),(c.lost_step IS NOT NULL)), (3,'waiting_child'::text,c.child_step,NULL::timestamp with time zone,format('waiting for child %s'::text, c.child_id),(c.child_id IS NOT NULL)), (4,'no_job'::text,c.current_name,NULL::timestamp with time zone,
                        CASE
                            WHEN (COALESCE(c.exhausted, (0)::bigint) > 0) THEN format('its job failed for good: %s'::text, c.last_error)
                            ELSE 'no job will run it'::text
                        END,(COALESCE(c.runnable, (0)::bigint) = 0)), (5,'retry_scheduled'::text,c.retry_step,c.retry_at,format('step %s retries at %s'::text, c.retry_step, c.retry_at),((c.state = 'running'::text) AND (c.retry_at IS NOT NULL))), (6,'waiting_compensation'::text,c.compensation_step,c.compensation_at,format('compensation of step %s retries at %s'::text, c.compensation_step, c.compensation_at),((c.state = 'compensating'::text) AND (c.compensation_at IS NOT NULL)))) v(rank, reason, step, retry_at, detail, applies)
          WHERE v.applies
          ORDER BY v.rank
         LIMIT 1) r);

CREATE TABLE saga.subscriptions (
    name text NOT NULL,
    cursor_xid xid8 DEFAULT '0'::xid8 NOT NULL,
    cursor_id bigint DEFAULT 0 NOT NULL,
    epoch bigint DEFAULT 0 NOT NULL,
    owner text,
    lease_expires_at timestamp with time zone,
    filter jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    tick pg_snapshot DEFAULT '1:1:'::pg_snapshot NOT NULL,
    batch_tick pg_snapshot,
    ahead bigint[] DEFAULT '{}'::bigint[] NOT NULL
);

ALTER TABLE ONLY saga.__drizzle_migrations ALTER COLUMN id SET DEFAULT nextval('saga.__drizzle_migrations_id_seq'::regclass);

ALTER TABLE ONLY saga.__drizzle_migrations
    ADD CONSTRAINT __drizzle_migrations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY saga.__repeatable
    ADD CONSTRAINT __repeatable_pkey PRIMARY KEY (file);

ALTER TABLE ONLY saga.cancel_requests
    ADD CONSTRAINT cancel_requests_pkey PRIMARY KEY (saga_id);

ALTER TABLE ONLY saga.dead_letters
    ADD CONSTRAINT dead_letters_pkey PRIMARY KEY (id);

ALTER TABLE ONLY saga.definitions
    ADD CONSTRAINT definitions_name_version_pk PRIMARY KEY (name, version);

ALTER TABLE ONLY saga.instances
    ADD CONSTRAINT instances_pkey PRIMARY KEY (id);

ALTER TABLE ONLY saga.outbox
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY saga.retry_requests
    ADD CONSTRAINT retry_requests_pkey PRIMARY KEY (saga_id);

ALTER TABLE ONLY saga.steps
    ADD CONSTRAINT steps_saga_id_index_pk PRIMARY KEY (saga_id, index);

ALTER TABLE ONLY saga.subscriptions
    ADD CONSTRAINT subscriptions_pkey PRIMARY KEY (name);

ALTER TABLE ONLY saga.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);

CREATE INDEX dead_letters_subscription_idx ON saga.dead_letters USING btree (subscription, id);

CREATE INDEX instances_created_at_id_idx ON saga.instances USING btree (created_at, id);

CREATE UNIQUE INDEX instances_name_idempotency_key_key ON saga.instances USING btree (name, idempotency_key);

CREATE INDEX instances_parent_id_idx ON saga.instances USING btree (parent_id) WHERE (parent_id IS NOT NULL);

CREATE UNIQUE INDEX instances_parent_id_parent_step_key ON saga.instances USING btree (parent_id, parent_step) WHERE (parent_step IS NOT NULL);

CREATE INDEX instances_state_created_at_idx ON saga.instances USING btree (state, created_at, id);

CREATE INDEX outbox_saga_id_seq_idx ON saga.outbox USING btree (saga_id, seq);

CREATE INDEX outbox_xid_id_idx ON saga.outbox USING btree (xid, id);

CREATE INDEX steps_lease_owner_idx ON saga.steps USING btree (lease_owner) WHERE (lease_owner IS NOT NULL);

ALTER TABLE ONLY saga.steps
    ADD CONSTRAINT steps_saga_id_instances_id_fk FOREIGN KEY (saga_id) REFERENCES saga.instances(id) ON DELETE CASCADE;

ALTER TABLE saga.cancel_requests ENABLE ROW LEVEL SECURITY;

ALTER TABLE saga.instances ENABLE ROW LEVEL SECURITY;

ALTER TABLE saga.outbox ENABLE ROW LEVEL SECURITY;

ALTER TABLE saga.retry_requests ENABLE ROW LEVEL SECURITY;

CREATE POLICY saga_tenant ON saga.cancel_requests FOR SELECT TO saga_app, saga_reader USING ((EXISTS ( SELECT 1
   FROM saga.instances i
  WHERE ((i.id = cancel_requests.saga_id) AND saga._tenant_visible(i.tenant)))));

CREATE POLICY saga_tenant ON saga.instances FOR SELECT TO saga_app, saga_reader USING (saga._tenant_visible(tenant));

CREATE POLICY saga_tenant ON saga.outbox FOR SELECT TO saga_app, saga_reader USING (saga._tenant_visible(tenant));

CREATE POLICY saga_tenant ON saga.retry_requests FOR SELECT TO saga_app, saga_reader USING ((EXISTS ( SELECT 1
   FROM saga.instances i
  WHERE ((i.id = retry_requests.saga_id) AND saga._tenant_visible(i.tenant)))));

CREATE POLICY saga_tenant ON saga.steps FOR SELECT TO saga_app, saga_reader USING ((EXISTS ( SELECT 1
   FROM saga.instances i
  WHERE ((i.id = steps.saga_id) AND saga._tenant_visible(i.tenant)))));

CREATE POLICY saga_worker ON saga.cancel_requests TO saga_worker USING (true) WITH CHECK (true);

CREATE POLICY saga_worker ON saga.instances TO saga_worker USING (true) WITH CHECK (true);

CREATE POLICY saga_worker ON saga.outbox TO saga_worker USING (true) WITH CHECK (true);

CREATE POLICY saga_worker ON saga.retry_requests TO saga_worker USING (true) WITH CHECK (true);

CREATE POLICY saga_worker ON saga.steps TO saga_worker USING (true) WITH CHECK (true);

ALTER TABLE saga.steps ENABLE ROW LEVEL SECURITY;
