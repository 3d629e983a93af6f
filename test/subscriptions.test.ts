/**
 * engine.subscribe / publish / deadLetters / redrive, retention, and the relay running inside a real worker.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  SagaError,
  createSagaEngine,
  defineSaga,
  retry,
  type SagaEngine,
  type SagaEvent,
} from "../src/index.js";
import { resolveRetention } from "../src/relay/options.js";
import { runRetention } from "../src/relay/retention.js";
import { useTestDatabase } from "./helpers/database.js";
import { insertEvents, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
let engine: SagaEngine;

const shipSaga = defineSaga({ name: "ship", input: z.object({ n: z.number() }) })
  .step("pack", { execute: async (data) => ({ ...data, packed: true }) })
  .step("send", { execute: async (data) => ({ ...data, sent: true }) });

beforeAll(() => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [shipSaga] });
});
afterAll(async () => {
  await engine?.close();
});

const count = async (sql: string, values: unknown[] = []) =>
  Number((await db.pool.query<{ n: number }>(sql, values)).rows[0]!.n);

describe("subscriptions", () => {
  it("a handler that always throws: retries, a dead letter, the subscription moves on; redrive delivers once fixed", async () => {
    let broken = true;
    const calls = new Map<string, number>();
    const delivered: string[] = [];
    const sub = engine.subscribe(
      { types: ["dlq.ok", "dlq.poison"] },
      (e) => {
        const tag = (e.payload as { tag: string }).tag;
        calls.set(tag, (calls.get(tag) ?? 0) + 1);
        if (broken && e.type === "dlq.poison") throw new Error(`cannot take ${tag}`);
        delivered.push(tag);
      },
      { durable: "dlq", maxAttempts: 3, retry: retry.fixed({ maxAttempts: 3, delay: 5 }), pollInterval: 50 },
    );
    try {
      await engine.publish([
        { type: "dlq.ok", payload: { tag: "a" } },
        { type: "dlq.poison", payload: { tag: "p1" } },
        { type: "dlq.ok", payload: { tag: "b" } },
      ]);
      await waitUntil("the events after the poison one delivered", () => delivered.includes("b"));
      expect(delivered).toEqual(["a", "b"]);
      expect(calls.get("p1")).toBe(3);
      const [letter, ...more] = await engine.deadLetters("dlq");
      expect(more).toEqual([]);
      expect(letter).toMatchObject({
        subscription: "dlq",
        attempts: 3,
        error: { message: "cannot take p1", type: "Error" },
        event: { type: "dlq.poison", payload: { tag: "p1" } },
        redrivenAt: null,
        deliveredAt: null,
      });
      expect(letter!.event.createdAt).toBeInstanceOf(Date);
      expect(await sub.metrics()).toMatchObject({
        mode: "durable",
        delivered: 2,
        failed: 3,
        deadLettered: 1,
        active: true,
      });

      // Redrive while still broken: dead again, attempts add up.
      expect(await engine.redrive(letter!.id)).toEqual({ redriven: 1 });
      await waitUntil("the redrive failed", () => calls.get("p1") === 6);
      await waitUntil(
        "back in the dead letters",
        async () => (await engine.deadLetters("dlq"))[0]?.redrivenAt === null,
      );
      expect((await engine.deadLetters("dlq"))[0]).toMatchObject({ id: letter!.id, attempts: 6 });

      broken = false;
      expect(await engine.redrive({ subscription: "dlq" })).toEqual({ redriven: 1 });
      await waitUntil("redelivered", () => delivered.includes("p1"));
      await waitUntil("settled", async () => (await engine.deadLetters("dlq")).length === 0);
      const history = await engine.deadLetters("dlq", { includeDelivered: true });
      expect(history).toHaveLength(1);
      expect(history[0]!.deliveredAt).toBeInstanceOf(Date);
      expect(await engine.redrive(letter!.id)).toEqual({ redriven: 0 });
      expect(delivered.filter((t) => t === "p1")).toHaveLength(1);
    } finally {
      await sub.close();
    }
    await expect(engine.redrive(-1)).rejects.toMatchObject({ code: "INVALID_OPTIONS" });
  });

  it("publish joins the caller's transaction and rejects the engine's prefixes before writing anything", async () => {
    const before = await count("select count(*)::int as n from saga.outbox where type like 'app.%'");
    for (const type of ["saga.completed", "compensation.started"]) {
      const err = await engine.publish([{ type: "app.fine" }, { type }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SagaError);
      expect(err).toMatchObject({ code: "INVALID_EVENT", details: { index: 1 } });
    }
    await expect(engine.publish({ type: "app.nul", payload: { s: "a\u0000b" } })).rejects.toMatchObject({
      code: "INVALID_EVENT",
    });
    await expect(engine.publish([])).rejects.toMatchObject({ code: "INVALID_EVENT" });
    expect(await count("select count(*)::int as n from saga.outbox where type like 'app.%'")).toBe(before);

    const got: SagaEvent[] = [];
    const sub = engine.subscribe({ types: ["app.order-placed"] }, (e) => void got.push(e), {
      durable: "app",
      pollInterval: 50,
    });
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      await engine.publish({ type: "app.order-placed", payload: { order: 1 } }, { client });
      await client.query("rollback");
      await client.query("begin");
      await client.query("create table app_orders (id int primary key)");
      await client.query("insert into app_orders values (2)");
      const { ids } = await engine.publish(
        { type: "app.order-placed", key: "order-2", payload: { order: 2 } },
        { client },
      );
      await client.query("commit");
      await waitUntil("delivered", () => got.length >= 1);
      expect(got).toEqual([expect.objectContaining({ id: ids[0], key: "order-2", payload: { order: 2 } })]);
      expect(await count("select count(*)::int as n from saga.outbox where type = 'app.order-placed'")).toBe(
        1,
      );
    } finally {
      client.release();
      await sub.close();
    }
  });

  it("rejects bad subscribe options with a typed error, before anything starts", () => {
    const handler = () => {};
    expect(() => engine.subscribe({ sagaIds: ["nope"] }, handler)).toThrow(
      expect.objectContaining({ code: "INVALID_OPTIONS" }),
    );
    expect(() => engine.subscribe({}, handler, { durable: "$relay" })).toThrow(
      expect.objectContaining({ code: "INVALID_OPTIONS" }),
    );
    expect(() => engine.subscribe({}, handler, { durable: "x", batchSize: 0 })).toThrow(
      expect.objectContaining({ code: "INVALID_OPTIONS" }),
    );
    expect(() => engine.subscribe({ types: "saga.completed" as never }, handler)).toThrow(
      expect.objectContaining({ code: "INVALID_OPTIONS" }),
    );
  });

  it("one process consumes a durable name at a time; the other takes over on close; from: now skips history", async () => {
    await insertEvents(db.pool, "handover.old", 3);
    const seen: { who: string; id: number }[] = [];
    const make = (who: string) =>
      engine.subscribe({ types: ["handover"] }, (e) => void seen.push({ who, id: e.id }), {
        durable: "handover",
        from: "now",
        pollInterval: 20,
        lease: 60_000,
      });
    const a = make("a");
    await a.ready;
    const b = make("b");
    await b.ready;
    // from: "now" starts at the watermark: nothing below the watermark of before the call is delivered.
    const { rows: before } = await db.pool.query<{ w: string }>(
      "select pg_snapshot_xmin(pg_current_snapshot())::text as w",
    );
    const lateSeen: number[] = [];
    const skipped = engine.subscribe({ types: ["handover.old"] }, (e) => void lateSeen.push(e.id), {
      durable: "late",
      from: "now",
      pollInterval: 20,
    });
    await skipped.ready;
    try {
      const first = await insertEvents(db.pool, "handover", 20);
      await waitUntil("first half", () => seen.length >= 20);
      expect((await a.metrics()).active).toBe(true);
      expect((await b.metrics()).active).toBe(false);
      await a.close();
      const second = await insertEvents(db.pool, "handover", 20);
      await waitUntil("second half", () => seen.length >= 40);
      expect(seen.map((s) => s.id)).toEqual([...first, ...second]);
      expect(new Set(seen.slice(0, 20).map((s) => s.who))).toEqual(new Set(["a"]));
      expect(new Set(seen.slice(20).map((s) => s.who))).toEqual(new Set(["b"]));
      await waitUntil("cursor committed", async () => (await b.metrics()).lagMs === 0);
      expect(await engine.subscriptionMetrics("handover")).toMatchObject({
        delivered: 20,
        lagMs: 0,
        active: true,
      });
      expect(await engine.subscriptionMetrics("never-made")).toBeNull();
      const { rows: history } = await db.pool.query<{ id: string }>(
        "select id from saga.outbox where type = 'handover.old' and xid < $1::xid8",
        [before[0]!.w],
      );
      expect(lateSeen.filter((id) => history.some((r) => Number(r.id) === id))).toEqual([]);
    } finally {
      await b.close();
      await skipped.close();
    }
  });

  it("a durable subscription drains a backlog in growing batches, and a fixed batchSize stays fixed", async () => {
    await insertEvents(db.pool, "backlog.item", 3_000);
    const seen = { adaptive: new Set<number>(), fixed: new Set<number>() };
    const adaptive = engine.subscribe({ types: ["backlog.item"] }, (e) => void seen.adaptive.add(e.id), {
      durable: "backlog-adaptive",
      pollInterval: 50,
    });
    const fixed = engine.subscribe({ types: ["backlog.item"] }, (e) => void seen.fixed.add(e.id), {
      durable: "backlog-fixed",
      batchSize: 100,
      pollInterval: 50,
    });
    try {
      await waitUntil("both drained", () => seen.adaptive.size === 3_000 && seen.fixed.size === 3_000);
      await waitUntil("cursors committed", async () => (await adaptive.metrics()).lagMs === 0);
      const [a, f] = [await adaptive.metrics(), await fixed.metrics()];
      // 100, 200, 400, 800, then 1,000 at a time: far fewer cursor commits than 30 batches of 100.
      expect(a.delivered).toBe(3_000);
      expect(a.averageBatchSize).toBeGreaterThan(300);
      expect(f.averageBatchSize).toBeLessThanOrEqual(100);
      expect(f.batches).toBeGreaterThanOrEqual(30);
    } finally {
      await adaptive.close();
      await fixed.close();
    }
  });

  it("a worker's relay delivers each saga's events in seq order to durable and LISTEN-only subscribers", async () => {
    const durable: SagaEvent[] = [];
    const live: SagaEvent[] = [];
    const a = engine.subscribe({ names: ["ship"] }, (e) => void durable.push(e), {
      durable: "ship-events",
      batchSize: 4,
      pollInterval: 50,
    });
    const b = engine.subscribe({ names: ["ship"], types: ["saga.completed"] }, (e) => void live.push(e));
    const worker = await engine.runWorker({ concurrency: 4, pollInterval: 100, relay: { pollInterval: 50 } });
    try {
      await Promise.all([a.ready, b.ready]);
      const ids = await Promise.all(
        Array.from({ length: 6 }, (_, n) => engine.start(shipSaga, { n }).then((r) => r.id)),
      );
      for (const id of ids) expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
      await waitUntil(
        "all completions consumed",
        () => durable.filter((e) => e.type === "saga.completed").length === 6,
      );
      await waitUntil("all completions heard", () => live.length === 6);
      for (const id of ids) {
        const trail = durable.filter((e) => e.sagaId === id);
        const stored = await db.pool.query(
          "select seq, type from saga.events where saga_id = $1 order by seq",
          [id],
        );
        expect(trail.map((e) => [e.seq, e.type])).toEqual(stored.rows.map((r) => [r.seq, r.type]));
        expect(trail.every((e) => e.name === "ship")).toBe(true);
      }
      expect(new Set(live.map((e) => e.sagaId))).toEqual(new Set(ids));
      await waitUntil("cursor committed", async () => (await a.metrics()).lagMs === 0);
      const m = await a.metrics();
      expect(m).toMatchObject({ delivered: durable.length, failed: 0, lagMs: 0 });
      expect(m.batches).toBeGreaterThan(0);
      expect(m.averageBatchSize).toBeGreaterThan(0);
      expect(m.averageBatchSize).toBeLessThanOrEqual(4);
    } finally {
      await worker.stop();
      await a.close();
      await b.close();
    }
  });

  it("retention removes only events every durable subscription has passed, and finished sagas when asked", async () => {
    // Only this test's two subscriptions hold events back (no relay runs here).
    await db.pool.query("delete from saga.subscriptions");
    const fast: number[] = [];
    let gate: () => void = () => {};
    const blocked = new Promise<void>((r) => (gate = r));
    const slowSeen: number[] = [];
    const ids = await insertEvents(db.pool, "ret", 30);
    await db.pool.query("update saga.outbox set created_at = now() - interval '2 hours' where id = any($1)", [
      ids.slice(0, 25),
    ]);
    const caughtUp = engine.subscribe({ types: ["ret"] }, (e) => void fast.push(e.id), {
      durable: "ret-fast",
      pollInterval: 20,
    });
    const behind = engine.subscribe(
      { types: ["ret"] },
      async (e) => {
        if (e.id === ids[10]) await blocked;
        slowSeen.push(e.id);
      },
      { durable: "ret-slow", batchSize: 10, pollInterval: 20 },
    );
    const options = resolveRetention({ events: "1h", batchSize: 4, maxBatches: 2 });
    try {
      await waitUntil("fast caught up", () => fast.length === 30);
      await waitUntil(
        "fast committed",
        async () =>
          (await count("select count(*)::int as n from saga._cursor_pending('ret-fast', 1000)")) === 0,
      );
      await waitUntil(
        "slow committed its first batch",
        async () =>
          (await count("select cursor_id::int as n from saga.subscriptions where name = 'ret-slow'")) ===
          ids[9],
      );
      // Bounded: two statements of four rows per run.
      expect(await runRetention(db.pool, options)).toEqual({ events: 8, sagas: 0 });
      expect(await runRetention(db.pool, resolveRetention({ events: "1h" }))).toEqual({
        events: 2,
        sagas: 0,
      });
      const left = (
        await db.pool.query("select id from saga.outbox where id = any($1) order by id", [ids])
      ).rows.map((r) => Number(r.id));
      expect(left).toEqual(ids.slice(10));
      gate();
      await waitUntil("slow caught up", () => slowSeen.length === 30);
      await waitUntil(
        "slow cursor at the end",
        async () =>
          (await count("select count(*)::int as n from saga._cursor_pending('ret-slow', 1000)")) === 0,
      );
      expect(await runRetention(db.pool, resolveRetention({ events: "1h" }))).toEqual({
        events: 15,
        sagas: 0,
      });
      const remaining = (
        await db.pool.query("select id from saga.outbox where id = any($1) order by id", [ids])
      ).rows.map((r) => Number(r.id));
      expect(remaining).toEqual(ids.slice(25)); // passed by all, but younger than an hour
    } finally {
      gate();
      await caughtUp.close();
      await behind.close();
    }

    // Finished sagas older than the age go with their steps and passed events; running and recent ones stay.
    const { id: oldDone } = await engine.start(shipSaga, { n: 100 });
    const { id: recentDone } = await engine.start(shipSaga, { n: 101 });
    const worker = await engine.runWorker({ concurrency: 2, pollInterval: 100, relay: false });
    await engine.waitFor(oldDone);
    await engine.waitFor(recentDone);
    await worker.stop();
    const { id: running } = await engine.start(shipSaga, { n: 102 }); // no worker: stays running
    await db.pool.query(
      "update saga.instances set created_at = now() - interval '3 days', finished_at = now() - interval '2 days' where id = $1",
      [oldDone],
    );
    await db.pool.query("update saga.instances set created_at = now() - interval '3 days' where id = $1", [
      running,
    ]);
    // Every subscription has passed every event so far.
    await db.pool.query(
      "update saga.subscriptions set tick = pg_current_snapshot(), batch_tick = null, cursor_xid = '0', cursor_id = 0",
    );
    const result = await runRetention(db.pool, resolveRetention({ events: false, sagas: "1d" }));
    expect(result).toEqual({ events: 0, sagas: 1 });
    const exists = async (table: string, column: string, id: string) =>
      count(`select count(*)::int as n from saga.${table} where ${column} = $1`, [id]);
    expect([
      await exists("instances", "id", oldDone),
      await exists("steps", "saga_id", oldDone),
      await exists("outbox", "saga_id", oldDone),
    ]).toEqual([0, 0, 0]);
    expect(await exists("instances", "id", recentDone)).toBe(1);
    expect(await exists("outbox", "saga_id", recentDone)).toBeGreaterThan(0);
    expect(await exists("instances", "id", running)).toBe(1);
  });
});
