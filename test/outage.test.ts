/**
 * Postgres outages against a real worker process on a throwaway server: each of its connections terminated
 * (pooled, graphile-worker's LISTEN, the control LISTEN), then a full server restart and a longer stop. The
 * worker logs, backs off, reconnects and carries on; it never exits and never wedges.
 */
import { afterAll, beforeAll, beforeEach, expect, it, onTestFailed, vi } from "vitest";
import { type SagaEngine, createSagaEngine } from "../src/index.js";
import {
  type ChaosWorker,
  eventually,
  spawnChaosWorker,
  stopChaosWorker,
  withAppName,
} from "./chaos/worker-processes.js";
import { holdSaga } from "./fixtures/chaos-sagas.js";
import { CALLS_TABLE, calls, orderSaga } from "./fixtures/order-saga.js";
import { TRANSFER_TABLES, transferSaga } from "./fixtures/transfer-saga.js";
import { useThrowawayDatabase } from "./helpers/throwaway-postgres.js";

const APP = "outage-worker";
// Real processes on a machine that may be busy: spawning one can take seconds.
vi.setConfig({ testTimeout: 180_000 });
const db = useThrowawayDatabase({ setup: [CALLS_TABLE, TRANSFER_TABLES] });
let engine: SagaEngine;
let worker: ChaosWorker;

beforeAll(async () => {
  await db.pool.query("insert into accounts (id, balance) select g, 1000 from generate_series(1, 10) g");
  engine = createSagaEngine({
    connectionString: db.url,
    sagas: [orderSaga(db.pool), holdSaga(db.pool), transferSaga(db.pool)],
  });
  worker = await spawnChaosWorker({ DATABASE_URL: withAppName(db.url, APP), CONCURRENCY: "4" });
});

// A failure shows what the worker and the database were doing: its last log lines, its backends, its jobs.
beforeEach(() => {
  onTestFailed(async () => {
    const activity = await db.pool.query(
      `select pid, state, wait_event_type, wait_event, left(query, 80) as query
       from pg_stat_activity where application_name = $1`,
      [APP],
    );
    const jobs = await db.pool.query(
      `select locked_by, count(*)::int, min(run_at) as run_at, max(attempts) as attempts
       from graphile_worker.jobs group by 1`,
    );
    const steps = await db.pool.query(
      "select status, lease_owner is not null as leased, count(*)::int from saga.steps group by 1, 2",
    );
    console.info(
      JSON.stringify(
        { alive: worker.alive, activity: activity.rows, jobs: jobs.rows, steps: steps.rows },
        null,
        1,
      ),
    );
    console.info(
      worker.stderr(),
      worker.logs
        .slice(-40)
        .map((l) => JSON.stringify(l))
        .join("\n"),
    );
  });
});

afterAll(async () => {
  if (!worker) return;
  const how = await stopChaosWorker(worker);
  if (how !== 0) console.info(worker.stderr(), JSON.stringify(worker.logs.slice(-15)));
  expect(how).toBe(0);
  await engine?.close();
});

/** The worker's backends whose last query matches `like` (all of them without it). */
async function terminate(like?: string): Promise<number> {
  const { rows } = await db.pool.query<{ ok: boolean }>(
    `select pg_terminate_backend(pid) as ok from pg_stat_activity
     where application_name = $1 and ($2::text is null or query like $2)`,
    [APP, like ?? null],
  );
  return rows.filter((r) => r.ok).length;
}

async function runOrders(n: number, tag: string) {
  const ids = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      engine.start(orderSaga(db.pool), { customerId: `${tag}-${i}`, amount: 1 + i }).then((r) => r.id),
    ),
  );
  const states = await Promise.all(
    ids.map(async (id) => (await engine.waitFor(id, { timeoutMs: 60_000 })).state),
  );
  expect(states.every((s) => s === "completed")).toBe(true);
  return ids;
}

/** Every transfer terminal, money conserved, balances as the completed transfers say, effects once. */
async function checkTransfers(ids: string[]) {
  const states = await Promise.all(
    ids.map(async (id) => (await engine.waitFor(id, { timeoutMs: 90_000 })).state),
  );
  expect(states.filter((s) => s !== "completed" && s !== "compensated")).toEqual([]);
  const money = await db.pool.query<{ total: string; wrong: number }>(
    `select (select sum(balance) from accounts)::text as total,
            (select count(*)::int from accounts a where a.balance <> 1000
               - coalesce((select sum((i.input->>'amount')::int) from saga.instances i
                           where i.state = 'completed' and (i.input->>'from')::int = a.id), 0)
               + coalesce((select sum((i.input->>'amount')::int) from saga.instances i
                           where i.state = 'completed' and (i.input->>'to')::int = a.id), 0)) as wrong`,
  );
  expect(money.rows[0]).toEqual({ total: "10000", wrong: 0 });
  const effects = await db.pool.query<{ missing: number; extra: number }>(
    `select count(*) filter (where i.state = 'completed' and b.key is null)::int as missing,
            count(*) filter (where i.state <> 'completed' and b.key is not null)::int as extra
     from saga.instances i left join bank_effects b on b.saga_id = i.id where i.name = 'transfer'`,
  );
  expect(effects.rows[0]).toEqual({ missing: 0, extra: 0 });
}

async function startTransfers(n: number) {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      engine
        .start(transferSaga(db.pool), {
          from: 1 + (i % 10),
          to: 1 + ((i + 3) % 10),
          amount: 1 + (i % 7),
          slowMs: 150,
          ...(i % 5 === 4 ? { failAt: "notify-bank" as const } : {}),
        })
        .then((r) => r.id),
    ),
  );
}

it("pg_terminate_backend of each of the worker's connections: it reconnects and carries on", async () => {
  await runOrders(5, "warm");
  const listenerPid = async () =>
    (
      await db.pool.query<{ pid: number }>(
        "select pid from pg_stat_activity where application_name = $1 and query like 'LISTEN%saga_control%'",
        [APP],
      )
    ).rows[0]?.pid;
  const oldListener = await listenerPid();
  expect(await terminate("LISTEN%saga_control%")).toBe(1);
  expect(await terminate("%jobs:insert%")).toBe(1);
  expect(await terminate()).toBeGreaterThan(0);
  await runOrders(20, "after-terminate");
  expect(worker.alive).toBe(true);
  // The control listener is back: a cancel reaches the running handler (it would otherwise hold for 60 s).
  await eventually(
    async () => {
      const pid = await listenerPid();
      return pid !== undefined && pid !== oldListener ? true : undefined;
    },
    15_000,
    "the control listener to reconnect",
  );
  const { id } = await engine.start(holdSaga(db.pool), { holdMs: 60_000 });
  await eventually(
    async () => ((await calls(db.pool, id)).some((c) => c.step === "hold") ? true : undefined),
    15_000,
    "the hold step to run",
  );
  const aborted = () =>
    worker.logs.filter((l) => l.message.startsWith("late or duplicate") && l.sagaId === id);
  await engine.cancel(id, "stop holding");
  await eventually(
    async () => (aborted().length > 0 ? true : undefined),
    15_000,
    "the handler to be aborted",
  );
  expect((await engine.waitFor(id, { timeoutMs: 15_000 })).state).toBe("cancelled");
});

// graphile-worker shuts its job pool down when a batch of job completions cannot be written. This makes that
// happen on demand: while `until` is ahead, its completion statement fails with a connection-class SQLSTATE.
const REFUSE_COMPLETIONS = `
create table refuse_completions (until timestamptz not null);
create function refuse_completions() returns trigger language plpgsql as $$
begin
  if current_query() like 'delete from "graphile_worker"._private_jobs%'
     and exists (select 1 from refuse_completions where until > now()) then
    raise exception 'job completion refused by the test' using errcode = '08006';
  end if;
  return null;
end $$;
create trigger refuse_completions before delete on graphile_worker._private_jobs
  for each statement execute function refuse_completions();`;

it("a job pool that could not write its completions is replaced at once, though a step still holds its slot", async () => {
  await db.pool.query(REFUSE_COMPLETIONS);
  const { id: holding } = await engine.start(holdSaga(db.pool), { holdMs: 30_000 });
  await eventually(
    async () => ((await calls(db.pool, holding)).some((c) => c.step === "hold") ? true : undefined),
    15_000,
    "the hold step to run",
  );
  const replaced = () => worker.logs.filter((l) => l.message.startsWith("job runner stopped on its own"));
  const before = replaced().length;
  await db.pool.query("insert into refuse_completions values (now() + interval '2 seconds')");
  await runOrders(3, "refused");
  await eventually(async () => (replaced().length > before ? true : undefined), 15_000, "a new job pool");
  await db.pool.query("delete from refuse_completions");
  // The old pool waits for the held step before it ends; the new one takes these orders meanwhile.
  await runOrders(10, "while-held");
  expect((await engine.get(holding))?.steps.find((s) => s.name === "hold")?.status).toBe("running");
  expect((await engine.waitFor(holding, { timeoutMs: 60_000 })).state).toBe("completed");
  // Jobs the old pool could not complete are unlocked by the worker itself, run again and find nothing to do.
  await eventually(
    async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        "select count(*)::int as n from graphile_worker._private_jobs",
      );
      return rows[0]?.n === 0 ? true : undefined;
    },
    30_000,
    "every job to be completed",
  );
  expect(worker.alive).toBe(true);
});

it("backends terminated again and again under load: every transfer ends, money is conserved", async () => {
  const ids = await startTransfers(40);
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 300));
    await terminate();
  }
  await checkTransfers(ids);
  expect(worker.alive).toBe(true);
});

it("a Postgres restart mid-run: the worker reconnects and finishes every saga", async () => {
  const ids = await startTransfers(40);
  await new Promise((r) => setTimeout(r, 400));
  await db.server.restart("fast");
  await checkTransfers(ids);
  expect(worker.alive).toBe(true);
  await runOrders(10, "after-restart");
});

it("Postgres down for 5 s: the worker backs off, comes back and finishes", async () => {
  const ids = await startTransfers(30);
  await new Promise((r) => setTimeout(r, 300));
  await db.server.stop("fast");
  await new Promise((r) => setTimeout(r, 5_000));
  expect(worker.alive).toBe(true);
  await db.server.start();
  await checkTransfers(ids);
  await runOrders(10, "after-outage");
  expect(worker.alive).toBe(true);
  const stuck = await db.pool.query(
    "select saga_id, index, status from saga.steps where lease_owner is not null",
  );
  expect(stuck.rows).toEqual([]);
});
