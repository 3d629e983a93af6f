-- What schema saga runs: the table migrations applied (count and the newest journal `when`), the pg-saga
-- version of the last migrate() that re-applied sql/ files, and each file's checksum. Workers compare the same
-- records with their own package (src/schema-check.ts): an older schema makes them refuse to start
-- (SCHEMA_OUTDATED), a newer one makes them stop taking work (SCHEMA_NEWER).
create or replace function saga.schema_version() returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'migrations', (select count(*) from saga.__drizzle_migrations),
    'latest', (select max(created_at) from saga.__drizzle_migrations),
    'version', (select r.version from saga.__repeatable r order by r.applied_at desc, r.file limit 1),
    'files', (select coalesce(jsonb_object_agg(r.file, r.checksum), '{}'::jsonb) from saga.__repeatable r)
  )
$$;
