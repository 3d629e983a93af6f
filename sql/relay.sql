-- Outbox relay and durable cursors (invariant 6), read by snapshot ticks. A cursor's `tick` is a
-- pg_current_snapshot() taken earlier: every event visible in it is consumed. The next batch is the events
-- visible in a newer snapshot and not in the tick: transactions that started since (xid in [tick.xmax,
-- new.xmax)) and those that were still running at the tick (pg_snapshot_xip(tick)), when they are visible now.
-- A transaction left open anywhere on the server holds back only its own events: it stays in the new tick's
-- in-progress list and its events come in the first batch after it commits. The relay's cursor is the row
-- '$relay' of saga.subscriptions; its epoch fences a relay that lost the lease.

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

-- The next `p_limit` events of the batch (p_prev, p_cur) after position (p_xid, p_id), in (xid, id) order,
-- without the ids in p_ahead (delivered early). outbox_xid_id_idx only: one range scan from the position
-- (never from an old xmin), and one short range scan per transaction of p_prev's in-progress list that has
-- committed since.
create or replace function saga._batch_page(p_prev pg_snapshot, p_cur pg_snapshot, p_xid xid8, p_id bigint,
                                            p_ahead bigint[], p_limit int)
returns setof saga.outbox
language sql stable as $$
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
--> statement-breakpoint

-- Events of the batch (p_prev, p_cur) after the page ending at (p_xid, p_id) that must come before it: a
-- saga's events commit in seq order (each transition holds the saga's row lock), but a transaction can take
-- its xid early and commit late, so within one batch a later seq can sort before an earlier one. Given a
-- saga of the page with its highest seq there, returns that saga's lower seqs the page does not hold.
-- outbox_saga_id_seq_idx.
create or replace function saga._batch_pulled(p_prev pg_snapshot, p_cur pg_snapshot, p_xid xid8, p_id bigint,
                                              p_ahead bigint[], p_saga_id uuid, p_seq int)
returns setof saga.outbox
language sql stable as $$
  select o.* from saga.outbox o
  where o.saga_id = p_saga_id and o.seq < p_seq
    and (o.xid, o.id) > (p_xid, p_id) and o.id <> all(p_ahead)
    and pg_visible_in_snapshot(o.xid, p_cur) and not pg_visible_in_snapshot(o.xid, p_prev)
$$;
--> statement-breakpoint

-- A page and what it must pull forward, in delivery order: (xid, id) order, except that each saga's events
-- take the slots that saga has in it in seq order. The page is the first p_scan events of the batch after the
-- position, cut after the p_want-th that passes the filter (null filters pass everything): events the filter
-- rejects only move the position. `more`: the page may not have reached the end of the batch.
create or replace function saga._batch_read(p_prev pg_snapshot, p_cur pg_snapshot, p_xid xid8, p_id bigint,
                                            p_ahead bigint[], p_scan int, p_want int, p_types text[],
                                            p_names text[], p_saga_ids uuid[])
returns table (n bigint, r saga.outbox, matches boolean, pulled boolean, page_end boolean, more boolean)
language sql stable as $$
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
--> statement-breakpoint

-- One relay round trip: publishes the next page of the current batch and moves the cursor, in the caller's
-- single-statement transaction. NOTIFY is transactional, so the notifications and the cursor commit
-- together: a failed NOTIFY (queue full) rolls the cursor back, and a relay fenced out by a newer epoch
-- publishes nothing. Returns published = -1 when fenced; pending when more may be read at once.
create or replace function saga._relay_publish(p_name text, p_epoch bigint, p_limit int, p_lease_ms int)
returns table (published int, pending boolean)
language plpgsql as $$
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
--> statement-breakpoint

-- The first events a cursor has not consumed yet, up to p_limit (lag and health, not delivery): visible now,
-- not in its tick, after its position. plpgsql: the cursor columns come in a later migration than this file.
create or replace function saga._cursor_pending(p_name text, p_limit int)
returns table (id bigint, created_at timestamptz)
language plpgsql stable as $$
begin
  return query
    select b.id, b.created_at from saga.subscriptions s
    cross join lateral saga._batch_page(s.tick, pg_current_snapshot(), s.cursor_xid, s.cursor_id, s.ahead,
                                        p_limit) b
    where s.name = p_name;
end $$;
