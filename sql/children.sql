-- Child sagas: a `.child()` step starts another saga in its parent's transition and parks the parent (its step
-- `running`, no lease, no job) until the child ends; the child's terminal transition queues a job for the parent
-- in the same commit (saga._apply calls saga._wake_parent). Source of a repeatable migration (src/repeatable.ts).

-- Queues a job for the parent of a child saga that just ended: the parent's worker reads the child's state and
-- records its step. Called by saga._apply in the child's terminal transition, and by a start that finds its
-- child already ended.
create or replace function saga._wake_parent(p_parent uuid) returns void
language plpgsql as $$
declare
  v record;
begin
  select p.name, p.version into v from saga.instances p where p.id = p_parent;
  if found then
    perform saga._add_job(saga._task(v.name, v.version), json_build_object('id', p_parent));
  end if;
end $$;
--> statement-breakpoint

-- What a parent's transition asks of its children (a job spec `{ "child": ... }` of saga._apply), with the
-- parent's row locked:
--   {op: start, step, name, version, input, timeout_ms}  starts the step's child, once per (parent, step)
--   {op: cancel, reason}                                cancels the parent's running children (their own cancel)
--   {op: compensate, id, reason}                        asks a completed child to run its own compensation
create or replace function saga._child_job(p_parent uuid, p_spec jsonb) returns void
language plpgsql as $$
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
--> statement-breakpoint

-- A saga's children, in the order they started: those of `.child()` steps (parent_step set) and those started by
-- ctx.startChild (parent_step null). Part of the SQL API: SECURITY DEFINER (sql/security.sql), so it checks the
-- session's tenant itself. Served by instances_parent_id_idx.
create or replace function saga.children(p_id uuid)
returns table (id uuid, name text, version int, state text, parent_step int, result jsonb, error jsonb,
  created_at timestamptz, finished_at timestamptz)
language sql stable as $$
  select c.id, c.name, c.version, c.state, c.parent_step, c.result, c.error, c.created_at, c.finished_at
  from saga.instances c
  where c.parent_id = p_id and saga._tenant_visible(c.tenant)
  order by c.created_at, c.id
$$;
