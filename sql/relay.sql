-- Outbox relay (invariant 6). The relay's cursor is the row '$relay' of saga.subscriptions; its epoch fences
-- a relay that lost the lease. Events are read in (xid, id) order, only below the oldest transaction still
-- running: a row of a transaction at or above that watermark may still commit, or be invisible to us yet.

insert into saga.subscriptions (name) values ('$relay') on conflict (name) do nothing;
--> statement-breakpoint

-- The message of one event on channel saga_events. Any role that can connect may LISTEN: by default a message
-- says only which event to read ({id, sagaId, seq, type}); a relay started with notify: "full" sets
-- saga.relay_notify on its session and sends the whole event, the payload only when the message fits under the
-- 8000-byte NOTIFY limit, else `truncated: true` (listeners read the payload by id).
create or replace function saga._event_message(o saga.outbox) returns text
language sql stable as $$
  select case when current_setting('saga.relay_notify', true) is distinct from 'full'
              then jsonb_build_object('id', o.id, 'sagaId', o.saga_id, 'seq', o.seq, 'type', o.type)::text
              when octet_length(m::text) < 8000 then m::text
              else (m - 'payload' || '{"truncated": true}'::jsonb)::text end
  from (select jsonb_build_object('id', o.id, 'sagaId', o.saga_id, 'seq', o.seq, 'type', o.type, 'step', o.step,
          'name', o.name, 'key', o.key, 'createdAt', o.created_at, 'payload', o.payload) as m) x
$$;
--> statement-breakpoint

-- One relay round trip: publishes the next batch below the watermark and moves the cursor, in the caller's
-- single-statement transaction. NOTIFY is transactional, so the notifications and the cursor commit
-- together: a failed NOTIFY (queue full) rolls the cursor back, and a relay fenced out by a newer epoch
-- publishes nothing. Returns published = -1 when fenced.
create or replace function saga._relay_publish(p_name text, p_epoch bigint, p_limit int, p_lease_ms int)
returns table (published int, pending boolean)
language plpgsql as $$
declare
  v_cursor_xid xid8;
  v_cursor_id bigint;
  v_messages text[];
  v_last_xid xid8;
  v_last_id bigint;
  v_message text;
  v_started int;
begin
  -- Read before locking: a row lock takes a transaction id, and ours would then cap the watermark.
  select s.cursor_xid, s.cursor_id into v_cursor_xid, v_cursor_id
  from saga.subscriptions s where s.name = p_name and s.epoch = p_epoch;
  if not found then
    return query select -1, false;
    return;
  end if;

  -- outbox_xid_id_idx: a range scan from the cursor in (xid, id) order, stopped by the watermark and the limit.
  select array_agg(saga._event_message(b.r) order by b.xid, b.id),
         (array_agg(b.xid order by b.xid desc, b.id desc))[1],
         (array_agg(b.id order by b.xid desc, b.id desc))[1],
         count(*) filter (where (b.r).type = 'saga.started')
  into v_messages, v_last_xid, v_last_id, v_started
  from (select o as r, o.xid, o.id from saga.outbox o
        where (o.xid, o.id) > (v_cursor_xid, v_cursor_id)
          and o.xid < pg_snapshot_xmin(pg_current_snapshot())
        order by o.xid, o.id
        limit p_limit) b;

  if v_messages is null then
    -- Idle: renew the lease only once a third of it is spent, so polling does not write every time.
    update saga.subscriptions s set lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
    where s.name = p_name and s.epoch = p_epoch
      and (s.lease_expires_at is null or s.lease_expires_at < now() + p_lease_ms * interval '1 millisecond' * 2 / 3);
    return query select 0, exists (
      select 1 from saga.outbox o where (o.xid, o.id) > (v_cursor_xid, v_cursor_id));
    return;
  end if;

  -- Fence: still our epoch and still the cursor we read (the row lock serializes racing relays).
  perform 1 from saga.subscriptions s
  where s.name = p_name and s.epoch = p_epoch and s.cursor_xid = v_cursor_xid and s.cursor_id = v_cursor_id
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
    perform pg_notify('jobs:insert', json_build_object('count', v_started)::text);
  end if;

  update saga.subscriptions s
  set cursor_xid = v_last_xid, cursor_id = v_last_id, updated_at = now(),
      lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
  where s.name = p_name and s.epoch = p_epoch;

  return query select cardinality(v_messages), exists (
    select 1 from saga.outbox o where (o.xid, o.id) > (v_last_xid, v_last_id));
end $$;
