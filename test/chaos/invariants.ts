/**
 * The chaos suite's invariant checker: what must hold after any mix of kills, pauses, terminated backends and
 * Postgres restarts, read from the tables alone.
 */
import type pg from "pg";

export interface Invariant {
  name: string;
  ok: boolean;
  detail: string;
}

const TERMINAL_EVENT = `case i.state
  when 'completed' then 'saga.completed' when 'failed' then 'saga.failed'
  when 'compensated' then 'compensation.completed' when 'compensation_failed' then 'compensation.failed' end`;

async function one<T>(pool: pg.Pool, sql: string, values: unknown[] = []): Promise<T> {
  const { rows } = await pool.query(sql, values);
  return rows[0] as T;
}

/**
 * Checks every invariant of the transfer workload. `delivered` is the set of `sagaId/seq` a durable
 * subscription received, when the engine has one.
 *
 * @example
 * const results = await checkInvariants(pool, { accounts: 20, initialBalance: 1000 });
 */
export async function checkInvariants(
  pool: pg.Pool,
  o: { accounts: number; initialBalance: number; delivered?: Set<string> },
): Promise<Invariant[]> {
  const out: Invariant[] = [];
  const add = (name: string, ok: boolean, detail: string) => out.push({ name, ok, detail });

  const terminal = await one<{ total: number; open: number; bad: number; states: Record<string, number> }>(
    pool,
    `select count(*)::int as total,
            count(*) filter (where finished_at is null or state in ('running', 'compensating'))::int as open,
            count(*) filter (where (select count(*) from saga.events e where e.saga_id = i.id and e.type in
              ('saga.completed', 'saga.failed', 'compensation.completed', 'compensation.failed')) <> 1
              or not exists (select 1 from saga.events e where e.saga_id = i.id and e.type = ${TERMINAL_EVENT}))::int as bad,
            (select jsonb_object_agg(state, n) from (select state, count(*)::int as n from saga.instances group by state) s) as states
     from saga.instances i where i.name = 'transfer'`,
  );
  add(
    "every saga terminal, with exactly one terminal event matching its state",
    terminal.open === 0 && terminal.bad === 0,
    `${terminal.total} sagas ${JSON.stringify(terminal.states)}; open ${terminal.open}; bad ${terminal.bad}`,
  );

  const money = await one<{ total: string; wrong: number; ledger_wrong: number }>(
    pool,
    `select (select sum(balance) from accounts)::text as total,
            (select count(*)::int from accounts a where a.balance <> $1
               - coalesce((select sum((i.input->>'amount')::int) from saga.instances i
                           where i.state = 'completed' and (i.input->>'from')::int = a.id), 0)
               + coalesce((select sum((i.input->>'amount')::int) from saga.instances i
                           where i.state = 'completed' and (i.input->>'to')::int = a.id), 0)) as wrong,
            (select count(*)::int from accounts a
              where a.balance <> $1 + coalesce((select sum(delta) from ledger l where l.account = a.id), 0)) as ledger_wrong`,
    [o.initialBalance],
  );
  const expected = String(o.accounts * o.initialBalance);
  add(
    "money conserved; every balance is what the completed transfers say",
    money.total === expected && money.wrong === 0 && money.ledger_wrong === 0,
    `total ${money.total} (expected ${expected}); accounts off ${money.wrong}; off their ledger ${money.ledger_wrong}`,
  );

  const effects = await one<{ missing: number; extra: number; keys: number; duplicates: number }>(
    pool,
    `select count(*) filter (where i.state = 'completed' and b.key is null)::int as missing,
            count(*) filter (where i.state <> 'completed' and b.key is not null)::int as extra,
            count(b.key)::int as keys, coalesce(sum(b.calls - 1), 0)::int as duplicates
     from saga.instances i left join bank_effects b on b.saga_id = i.id where i.name = 'transfer'`,
  );
  add(
    "each external effect at most once per idempotency key (and once per completed transfer)",
    effects.missing === 0 && effects.extra === 0,
    `${effects.keys} effects; ${effects.duplicates} duplicate deliveries absorbed by the key; missing ${effects.missing}; unexpected ${effects.extra}`,
  );

  const comp = await one<{
    forward: number;
    undone: number;
    wrong_steps: number;
    wrong_events: number;
    leaked: number;
  }>(
    pool,
    `select (select count(*)::int from ledger l join saga.instances i on i.id = l.saga_id
              where i.state = 'compensated' and l.key not like '%:compensate') as forward,
            (select count(*)::int from ledger l join saga.instances i on i.id = l.saga_id
              where i.state = 'compensated' and l.key like '%:compensate') as undone,
            (select count(*)::int from saga.steps s join saga.instances i on i.id = s.saga_id
              where i.state = 'compensated' and s.name in ('debit', 'credit') and s.status = 'succeeded') as wrong_steps,
            (select count(*)::int from saga.steps s join saga.instances i on i.id = s.saga_id
              where i.state = 'compensated' and s.status = 'compensated'
                and (select count(*) from saga.events e where e.saga_id = s.saga_id and e.step = s.name
                     and e.type = 'compensation.step.completed') <> 1) as wrong_events,
            (select count(*)::int from ledger l join saga.instances i on i.id = l.saga_id
              where i.state <> 'compensated' and l.key like '%:compensate') as leaked`,
  );
  add(
    "every completed step of a compensated saga compensated exactly once",
    comp.forward === comp.undone && comp.wrong_steps === 0 && comp.wrong_events === 0 && comp.leaked === 0,
    `${comp.forward} effects undone ${comp.undone} times; steps left succeeded ${comp.wrong_steps}; bad events ${comp.wrong_events}; undos outside compensated sagas ${comp.leaked}`,
  );

  const outbox = await one<{ events: number; gaps: number; step_mismatch: number }>(
    pool,
    `select (select count(*)::int from saga.events) as events,
            (select count(*)::int from (select saga_id from saga.events group by saga_id
              having max(seq) <> count(*) or min(seq) <> 1 or count(distinct seq) <> count(*)) g) as gaps,
            (select count(*)::int from saga.steps s where
               (select count(*) from saga.events e where e.saga_id = s.saga_id and e.step = s.name
                and e.type = 'saga.step.completed')
               <> case when s.status in ('succeeded', 'compensating', 'compensated', 'compensation_failed')
                         and s.error is null then 1 else 0 end) as step_mismatch`,
  );
  let delivered = "no durable subscription in this build: events checked against the step transitions";
  let deliveredOk = true;
  if (o.delivered) {
    const { rows } = await pool.query<{ k: string }>("select saga_id || '/' || seq as k from saga.events");
    const committed = new Set(rows.map((r) => r.k));
    const missing = [...committed].filter((k) => !o.delivered?.has(k)).length;
    const phantom = [...o.delivered].filter((k) => !committed.has(k)).length;
    deliveredOk = missing === 0 && phantom === 0;
    delivered = `durable subscription delivered ${o.delivered.size} of ${committed.size}; missing ${missing}; never committed ${phantom}`;
  }
  add(
    "outbox: gap-free per saga, one completion event per completed step, delivered set = committed set",
    outbox.gaps === 0 && outbox.step_mismatch === 0 && deliveredOk,
    `${outbox.events} events; sagas with gaps ${outbox.gaps}; steps without exactly one completion event ${outbox.step_mismatch}; ${delivered}`,
  );

  const leftovers = await one<{ leases: number; locked: number }>(
    pool,
    `select (select count(*)::int from saga.steps where lease_owner is not null) as leases,
            (select count(*)::int from graphile_worker._private_jobs where locked_by is not null) as locked`,
  );
  add(
    "nothing left leased or locked",
    leftovers.leases === 0 && leftovers.locked === 0,
    `leased steps ${leftovers.leases}; locked jobs ${leftovers.locked}`,
  );
  return out;
}
