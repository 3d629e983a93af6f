/**
 * The outbox relay (invariant 6): commit-safe order, no gap, no double publish under racing relays, and
 * recovery from killed connections. Assertions compare delivered sets with committed sets.
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSagaEngine, type SagaEngine, type SagaEvent } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import {
  inCommitSafeOrder,
  insertEvents,
  rawListener,
  sleep,
  terminate,
  testRelay,
  waitUntil,
} from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
let engine: SagaEngine;

beforeAll(() => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [] });
});
afterAll(async () => {
  await engine?.close();
});

const ofType = (prefix: string) => (m: { type: string }) => m.type.startsWith(prefix);

describe("outbox relay", () => {
  it("never skips the row of a transaction that commits after a later one (the gap)", async () => {
    const raw = await rawListener(db.url);
    const durable: SagaEvent[] = [];
    const sub = engine.subscribe({ types: ["gap.t1", "gap.t2"] }, (e) => void durable.push(e), {
      durable: "gap",
      pollInterval: 50,
    });
    const relay = testRelay(db.url, db.pool);
    const t1 = await db.pool.connect();
    const t2 = await db.pool.connect();
    try {
      await sub.ready;
      await t1.query("begin");
      const [id1] = await insertEvents(t1, "gap.t1", 1);
      await t2.query("begin");
      const [id2] = await insertEvents(t2, "gap.t2", 1);
      await t2.query("commit");
      expect(id1! < id2!).toBe(true);

      // T2 is committed and visible, with the higher id: a reader by `id > last` would pass T1's row for good.
      const visible = await db.pool.query("select id from saga.outbox where type like 'gap.%'");
      expect(visible.rows.map((r) => Number(r.id))).toEqual([id2]);
      const rounds = relay.stats.rounds;
      await waitUntil("the relay ran rounds with T1 open", () => relay.stats.rounds >= rounds + 5);
      expect(raw.messages.filter(ofType("gap."))).toEqual([]);
      expect(durable).toEqual([]);

      await t1.query("commit");
      await waitUntil("both published", () => raw.messages.filter(ofType("gap.")).length >= 2);
      await waitUntil("both consumed", () => durable.length >= 2);
      expect(raw.messages.filter(ofType("gap.")).map((m) => m.id)).toEqual([id1, id2]);
      expect(durable.map((e) => e.id)).toEqual([id1, id2]);
    } finally {
      t1.release();
      t2.release();
      await relay.stop();
      await sub.close();
      await raw.close();
    }
  });

  it("property: concurrent writers with rollbacks and delays → delivered set = committed set, once each", async () => {
    const raw = await rawListener(db.url);
    const durable = new Map<number, number>();
    const sub = engine.subscribe({}, (e) => void durable.set(e.id, (durable.get(e.id) ?? 0) + 1), {
      durable: "property",
      from: "now",
      pollInterval: 50,
    });
    const relay = testRelay(db.url, db.pool, { batchSize: 7 });
    const writers = await Promise.all(Array.from({ length: 4 }, () => db.pool.connect()));
    const tx = fc.record({
      writer: fc.nat({ max: 3 }),
      events: fc.integer({ min: 1, max: 3 }),
      rollback: fc.boolean(),
      pauseMs: fc.nat({ max: 12 }),
    });
    let run = 0;
    try {
      await sub.ready;
      await fc.assert(
        fc.asyncProperty(fc.array(tx, { minLength: 5, maxLength: 30 }), async (plan) => {
          const type = `prop.${run++}`;
          const committed: number[] = [];
          await Promise.all(
            writers.map(async (client, w) => {
              for (const step of plan.filter((p) => p.writer === w)) {
                await client.query("begin");
                const ids: number[] = [];
                for (let i = 0; i < step.events; i++) {
                  ids.push(...(await insertEvents(client, type, 1)));
                  await sleep(step.pauseMs);
                }
                await client.query(step.rollback ? "rollback" : "commit");
                if (!step.rollback) committed.push(...ids);
              }
            }),
          );
          const published = () => raw.messages.filter((m) => m.type === type).map((m) => m.id);
          await waitUntil(`run ${type} published`, () => published().length >= committed.length);
          await waitUntil(`run ${type} consumed`, () => committed.every((id) => durable.has(id)));
          expect(new Set(published())).toEqual(new Set(committed));
          expect(published()).toHaveLength(committed.length);
          expect(await inCommitSafeOrder(db.pool, published())).toBe(true);
        }),
        { seed: 20_261_125, numRuns: 6, endOnFailure: true },
      );
      // No consumer crashed: nothing was delivered twice.
      expect([...durable.values()].filter((n) => n !== 1)).toEqual([]);
      const rolledBack = await db.pool.query(
        "select count(*)::int as n from saga.outbox where type like 'prop.%'",
      );
      expect(durable.size).toBe(rolledBack.rows[0].n);
    } finally {
      writers.forEach((w) => w.release());
      await relay.stop();
      await sub.close();
      await raw.close();
    }
  });

  it("catches up after pg_terminate_backend on the listeners and the relay's connection during a burst", async () => {
    const subPool = new pg.Pool({
      connectionString: db.url,
      application_name: "test subscriber pool",
      max: 4,
    });
    const subEngine = createSagaEngine({ pool: subPool, sagas: [] });
    const raw = await rawListener(db.url);
    const durable = new Map<number, number>();
    const ephemeral: number[] = [];
    const filter = { types: ["burst"] };
    const sub = subEngine.subscribe(filter, (e) => void durable.set(e.id, (durable.get(e.id) ?? 0) + 1), {
      durable: "burst",
      pollInterval: 100,
    });
    const live = subEngine.subscribe(filter, (e) => void ephemeral.push(e.id));
    const relay = testRelay(db.url, db.pool);
    const committed: number[] = [];
    let killed = 0;
    try {
      await Promise.all([sub.ready, live.ready]);
      for (let i = 0; i < 60; i++) {
        committed.push(...(await insertEvents(db.pool, "burst", 10)));
        if (i % 20 === 10) {
          killed += await terminate(db.pool, [
            "pg-saga relay",
            "pg-saga relay listener",
            "pg-saga subscriptions",
            "test subscriber pool",
          ]);
        }
        await sleep(5);
      }
      expect(killed).toBeGreaterThanOrEqual(4);
      await waitUntil("all published", () => raw.messages.filter(ofType("burst")).length >= committed.length);
      await waitUntil("all consumed", () => committed.every((id) => durable.has(id)));
      const published = raw.messages.filter(ofType("burst")).map((m) => m.id);
      // The relay published each event once: a batch cut by the kill rolled back with its cursor.
      expect(published).toEqual(committed);
      expect(new Set(durable.keys())).toEqual(new Set(committed));
      // LISTEN-only is at most once: what it got is committed, never twice; it may have missed some.
      expect(new Set(ephemeral).size).toBe(ephemeral.length);
      expect(ephemeral.every((id) => committed.includes(id))).toBe(true);
      expect(relay.stats.failures).toBeGreaterThan(0);
      // Both listeners are back (connections open again) before closing.
      await waitUntil("listeners reconnected", async () => {
        const { rows } = await db.pool.query(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name in ('pg-saga relay listener', 'pg-saga subscriptions')",
        );
        return rows[0].n === 2;
      });
    } finally {
      await relay.stop();
      await sub.close();
      await live.close();
      await subEngine.close();
      await subPool.end();
      await raw.close();
    }
  });

  it('notify: "full" sends a payload only when the message fits under 8000 bytes; listeners read it by id otherwise', async () => {
    const raw = await rawListener(db.url);
    const big = { blob: "x".repeat(20_000) };
    const small = { blob: "y".repeat(7_000) };
    const live: SagaEvent[] = [];
    const durable: SagaEvent[] = [];
    const filter = { types: ["size.big", "size.small"] };
    const a = engine.subscribe(filter, (e) => void live.push(e));
    const b = engine.subscribe(filter, (e) => void durable.push(e), { durable: "size", pollInterval: 50 });
    const relay = testRelay(db.url, db.pool, { notify: "full" });
    try {
      await Promise.all([a.ready, b.ready]);
      const { ids } = await engine.publish([
        { type: "size.big", payload: big, key: "k1" },
        { type: "size.small", payload: small },
      ]);
      await waitUntil("both published", () => raw.messages.filter(ofType("size.")).length >= 2);
      await waitUntil("both delivered", () => live.length >= 2 && durable.length >= 2);
      const [bigMsg, smallMsg] = raw.messages.filter(ofType("size."));
      expect(bigMsg).toMatchObject({ id: ids[0], truncated: true, type: "size.big" });
      expect(bigMsg).not.toHaveProperty("payload");
      expect(smallMsg).toMatchObject({ id: ids[1], payload: small });
      expect(smallMsg!.bytes).toBeLessThan(8_000);
      for (const got of [live, durable]) {
        expect(got.map((e) => e.payload)).toEqual([big, small]);
        expect(got[0]).toMatchObject({ key: "k1", sagaId: null, seq: null, name: null });
        expect(got[0]!.createdAt).toBeInstanceOf(Date);
      }
    } finally {
      await relay.stop();
      await a.close();
      await b.close();
      await raw.close();
    }
  });

  it("two relays racing over the lease: no event published twice, none skipped", async () => {
    const raw = await rawListener(db.url);
    const relays = [
      testRelay(db.url, db.pool, { lease: 60, pollInterval: 5 }),
      testRelay(db.url, db.pool, { lease: 60, pollInterval: 5 }),
    ];
    const committed: number[] = [];
    const epoch = async () =>
      Number(
        (await db.pool.query("select epoch from saga.subscriptions where name = '$relay'")).rows[0].epoch,
      );
    const before = await epoch();
    try {
      // Write while the lease keeps changing hands: expire it now and then, and both relays rush for it (the
      // holder may renew it first; the other takes it over, bumping the epoch that fences the loser).
      for (let i = 0; i < 600 && (i < 80 || (await epoch()) - before < 6); i++) {
        committed.push(...(await insertEvents(db.pool, "race", 1 + (i % 4))));
        if (i % 4 === 0) {
          await db.pool.query(
            "update saga.subscriptions set lease_expires_at = now() - interval '1 second' where name = '$relay'",
          );
        }
        await sleep(3);
      }
      await waitUntil("all published", () => raw.messages.filter(ofType("race")).length >= committed.length);
      await sleep(200); // a double publish, if any, would arrive now
      expect(raw.messages.filter(ofType("race")).map((m) => m.id)).toEqual(committed);
      expect((await epoch()) - before).toBeGreaterThanOrEqual(6);
      expect(relays[0]!.stats.leaderships + relays[1]!.stats.leaderships).toBeGreaterThanOrEqual(6);
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
      await raw.close();
    }
  });
});
