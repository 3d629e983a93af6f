-- pg-saga views: the stable read surface documented in the README.

-- Every event the engine and the application wrote, in commit-safe columns.
create or replace view saga.events as
select o.id, o.saga_id, o.seq, o.type, o.step, o.name, o.key, o.payload, o.created_at
from saga.outbox o;
