-- Roles and grants (docs/security.md). Three NOLOGIN group roles, granted to login roles by the user:
--   saga_worker  runs transitions, the relay, durable subscriptions and graphile-worker's jobs
--   saga_app     starts, publishes, cancels, retries through SECURITY DEFINER functions; reads the saga tables
--   saga_reader  reads saga.instances, saga.steps, saga.events and saga.stuck
-- The role that runs migrate() owns everything. Roles are created when the migrating role may (superuser or
-- CREATEROLE); otherwise this is skipped with a NOTICE and the grants go to the roles that exist (an
-- administrator creates them, and the next migrate() grants them).

do $$
declare
  r text;
begin
  foreach r in array array['saga_app', 'saga_worker', 'saga_reader'] loop
    if not exists (select 1 from pg_roles where rolname = r) then
      begin
        execute format('create role %I nologin', r);
      exception
        when insufficient_privilege then
          raise notice 'pg-saga: role % does not exist and % may not create roles; create it (nologin) and migrate again', r, current_user;
        -- Another database of the cluster migrating at the same moment created it.
        when duplicate_object or unique_violation then null;
      end;
    end if;
  end loop;
end $$;
--> statement-breakpoint

-- engine.publish() for a role that may not write saga.outbox: the engine's own event types are refused here as
-- in the engine (SG400), so an application cannot forge a saga's history.
create or replace function saga._publish(p_types text[], p_keys text[], p_payloads text[])
returns setof bigint
language plpgsql as $$
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
--> statement-breakpoint

-- Grants to whichever of the three roles exist, and the SECURITY DEFINER settings of the functions saga_app
-- calls. migrate() calls it after graphile-worker's own migrations, every time: `create or replace` of a
-- function in another sql/ file resets SECURITY DEFINER, and graphile-worker's tables may be new.
create or replace function saga._grant_roles() returns void
language plpgsql as $$
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
