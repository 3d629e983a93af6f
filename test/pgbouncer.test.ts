/**
 * pg-saga behind a real PgBouncer in transaction mode (1.18: no prepared statement tracking), with LISTEN on
 * a direct connection (`listenConnectionString`): the migrator, the core saga paths, a worker process killed
 * mid-step, and subscriptions. Workers poll rarely here, so sagas and events only move if the wake-ups
 * (NOTIFY through the pooler, LISTEN on the direct connection) arrive.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type SagaEngine, type SagaEvent, type SagaWorker, createSagaEngine } from "../src/index.js";
import { type ChaosWorker, eventually, spawnChaosWorker, stopChaosWorker } from "./chaos/worker-processes.js";
import { holdSaga } from "./fixtures/chaos-sagas.js";
import { CALLS_TABLE, calls, orderSaga } from "./fixtures/order-saga.js";
import { createDatabase, dropDatabase, useTestDatabase } from "./helpers/database.js";
import { type Pgbouncer, startPgbouncer } from "./helpers/pgbouncer.js";

vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });
const db = useTestDatabase();
let bouncer: Pgbouncer;
let pooled: string;
let engine: SagaEngine;
let worker: SagaWorker;
const children: ChaosWorker[] = [];
const RARELY = 600_000;

beforeAll(async () => {
  await db.pool.query(CALLS_TABLE);
  const target = new URL(db.url);
  bouncer = await startPgbouncer({ host: target.hostname, port: Number(target.port || 5432) });
  pooled = bouncer.through(db.url);
  engine = createSagaEngine({
    connectionString: pooled,
    listenConnectionString: db.url,
    sagas: [orderSaga(db.pool), holdSaga(db.pool)],
  });
  await engine.migrate();
  worker = await engine.runWorker({ concurrency: 4, pollInterval: RARELY, relay: { pollInterval: RARELY } });
});

// Registered after useTestDatabase: runs before its drop (hooks after run in reverse).
afterAll(async () => {
  await Promise.all(children.map((c) => stopChaosWorker(c)));
  await worker?.stop();
  await engine?.close();
  await bouncer?.stop();
});

/** What PgBouncer logged as an error or warning after `from` characters of its log. */
const serverErrors = async (from: number) =>
  (await bouncer.log())
    .slice(from)
    .split("\n")
    .filter((l) => /ERROR|WARNING/.test(l));

describe("behind PgBouncer in transaction mode", () => {
  it("migrate() runs through the pooler, five at once, on an empty database: no session lock is left behind", async () => {
    const fresh = await createDatabase(false);
    const engines = Array.from({ length: 5 }, () =>
      createSagaEngine({ connectionString: bouncer.through(fresh.url), sagas: [], poolSize: 2 }),
    );
    try {
      await Promise.all(engines.map((e) => e.migrate()));
      const check = new pg.Client({ connectionString: fresh.url });
      await check.connect();
      try {
        const { rows } = await check.query<{ n: number }>(
          "select count(*)::int as n from pg_locks l join pg_database d on d.oid = l.database where l.locktype = 'advisory' and d.datname = $1",
          [fresh.name],
        );
        expect(rows[0]!.n).toBe(0);
        const applied = await check.query<{ n: number }>("select count(*)::int as n from saga.__repeatable");
        expect(applied.rows[0]!.n).toBeGreaterThan(0);
      } finally {
        await check.end();
      }
    } finally {
      await Promise.all(engines.map((e) => e.close()));
      // PgBouncer still holds idle server connections to the database: drop it with them gone.
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      await admin
        .query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [fresh.name])
        .finally(() => admin.end());
      await dropDatabase(fresh.name);
    }
  });

  it("sequential sagas complete through the pooler with the worker polling only every 10 minutes: the wake-ups arrive", async () => {
    const logFrom = (await bouncer.log()).length;
    for (let i = 0; i < 15; i++) {
      const { id } = await engine.start(orderSaga(db.pool), { customerId: `c${i}`, amount: 10 });
      const done = await engine.waitFor(id, { timeoutMs: 20_000 });
      expect(done.state).toBe("completed");
    }
    // A failing saga compensates through the pooler too.
    const { id } = await engine.start(orderSaga(db.pool), {
      customerId: "bad",
      amount: 1,
      failAt: "process-payment",
    });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("compensated");
    expect((await calls(db.pool, id)).filter((c) => c.kind === "compensate").map((c) => c.step)).toEqual([
      "reserve-inventory",
      "create-order",
    ]);
    // A cancel reaches the running step over the worker's direct LISTEN connection.
    const held = await engine.start(holdSaga(db.pool), { holdMs: 60_000 });
    await eventually(
      async () => (await calls(db.pool, held.id)).find((c) => c.step === "hold") ?? undefined,
      20_000,
      "the hold step",
    );
    await engine.cancel(held.id, "test");
    expect((await engine.waitFor(held.id, { timeoutMs: 20_000 })).state).toBe("cancelled");
    // No named prepared statement and no other session state reached the pooler: it logged no error.
    expect(await serverErrors(logFrom)).toEqual([]);
  });

  it("subscriptions: a durable and a LISTEN-only subscriber get the saga's events, woken over the direct connection", async () => {
    const durable: SagaEvent[] = [];
    const live: SagaEvent[] = [];
    const sub = engine.subscribe({ types: ["saga.completed"] }, (e) => void durable.push(e), {
      durable: "pooled",
      pollInterval: RARELY,
    });
    const eph = engine.subscribe({ types: ["saga.completed"] }, (e) => void live.push(e));
    try {
      await sub.ready;
      await eph.ready;
      await new Promise((r) => setTimeout(r, 300));
      const ids: string[] = [];
      for (let i = 0; i < 3; i++)
        ids.push((await engine.start(orderSaga(db.pool), { customerId: `s${i}`, amount: 5 })).id);
      const mine = (events: SagaEvent[]) =>
        events.flatMap((e) => (e.sagaId !== null && ids.includes(e.sagaId) ? [e.sagaId] : []));
      await eventually(
        async () => (mine(durable).length >= 3 ? true : undefined),
        20_000,
        "durable deliveries",
      );
      await eventually(async () => (mine(live).length >= 3 ? true : undefined), 20_000, "live deliveries");
      expect(mine(durable).sort()).toEqual([...ids].sort());
      expect(mine(live).sort()).toEqual([...ids].sort());
    } finally {
      await sub.close();
      await eph.close();
    }
  });

  it("a worker process killed with SIGKILL mid-step through the pooler: another finishes the saga", async () => {
    const env = { DATABASE_URL: pooled, LISTEN_URL: db.url, DEAD_AFTER_MS: "1500" };
    const first = await spawnChaosWorker(env);
    children.push(first);
    // The in-process worker leaves chaos sagas to the processes from here on.
    await worker.stop();
    const { id } = await engine.start(holdSaga(db.pool), { holdMs: 60_000 });
    await eventually(
      async () => (await calls(db.pool, id)).find((c) => c.step === "hold") ?? undefined,
      30_000,
      "the hold step",
    );
    first.child.kill("SIGKILL");
    await first.exited;
    children.push(await spawnChaosWorker(env));
    const done = await engine.waitFor(id, { timeoutMs: 60_000 });
    expect(done.state).toBe("completed");
    const holds = (await calls(db.pool, id)).filter((c) => c.step === "hold" && c.kind === "execute");
    expect(holds.map((c) => c.attempt)).toEqual([1, 2]);
  });
});
