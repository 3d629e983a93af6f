-- pg-saga views: the stable read surface documented in the README.

-- Every event the engine and the application wrote, in commit-safe columns. A payload encrypted by the
-- engine's codec shows as {"$encrypted": "<key id>"}: the key it needs, never the sealed bytes.
create or replace view saga.events as
select o.id, o.saga_id, o.seq, o.type, o.step, o.name, o.key,
  case when jsonb_typeof(o.payload) = 'object' and o.payload ? '$encrypted'
       then jsonb_build_object('$encrypted', o.payload->'$encrypted') else o.payload end as payload,
  o.created_at, o.tenant
from saga.outbox o
-- The view runs as its owner, past row-level security: it checks the session's saga.tenant itself.
where saga._tenant_visible(o.tenant);
