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
  type CommittedTransaction,
  inCommitOrder,
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
  it("never skips the row of a transaction that commits after a later one, and never waits for it (the gap)", async () => {
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

      // T2 is committed with the higher id: a reader by `id > last` would pass T1's row for good, and a reader
      // below the oldest open transaction would hold T2 back for as long as T1 stays open. T2 goes out now.
      await waitUntil("T2 published", () => raw.messages.filter(ofType("gap.")).length >= 1);
      await waitUntil("T2 consumed", () => durable.length >= 1);
      const rounds = relay.stats.rounds;
      await waitUntil("the relay ran rounds with T1 open", () => relay.stats.rounds >= rounds + 5);
      expect(raw.messages.filter(ofType("gap.")).map((m) => m.id)).toEqual([id2]);
      expect(durable.map((e) => e.id)).toEqual([id2]);

      await t1.query("commit");
      await waitUntil("both published", () => raw.messages.filter(ofType("gap.")).length >= 2);
      await waitUntil("both consumed", () => durable.length >= 2);
      await sleep(200); // a second copy, if any, would arrive now
      expect(raw.messages.filter(ofType("gap.")).map((m) => m.id)).toEqual([id2, id1]);
      expect(durable.map((e) => e.id)).toEqual([id2, id1]);
    } finally {
      t1.release();
      t2.release();
      await relay.stop();
      await sub.close();
      await raw.close();
    }
  });

  it("a saga's later seq with the lower xid, in one batch split into pages: every consumer still gets seq order", async () => {
    const saga = "6f1d2c1e-0000-4000-8000-00000000c0de";
    const a = await db.pool.connect();
    const b = await db.pool.connect();
    try {
      // A takes its xid first; B writes seq 1 and commits; then A writes seqs 2 and 3 (the saga's row lock
      // would order them so in the engine). In (xid, id) order A's events come first, with filler between.
      await a.query("begin");
      await a.query("select pg_current_xact_id()");
      await b.query("begin");
      await b.query("select pg_current_xact_id()");
      await insertEvents(db.pool, "inv.filler", 3);
      await insertEvents(b, "inv.saga", 1, { id: saga, firstSeq: 1 });
      await b.query("commit");
      await insertEvents(a, "inv.saga", 2, { id: saga, firstSeq: 2 });
      await a.query("commit");
    } finally {
      a.release();
      b.release();
    }
    // Nothing read yet: one batch holds everything, and pages of two cut it before seq 1.
    const raw = await rawListener(db.url);
    const durable: SagaEvent[] = [];
    const sub = engine.subscribe({ types: ["inv.saga", "inv.filler"] }, (e) => void durable.push(e), {
      durable: "inversion",
      batchSize: 2,
      pollInterval: 50,
    });
    const relay = testRelay(db.url, db.pool, { batchSize: 2 });
    try {
      await waitUntil("published", () => raw.messages.filter(ofType("inv.")).length >= 6);
      await waitUntil("consumed", () => durable.length >= 6);
      await sleep(200);
      for (const got of [raw.messages.filter(ofType("inv.")), durable]) {
        expect(got.filter((e) => e.sagaId === saga).map((e) => e.seq)).toEqual([1, 2, 3]);
        expect(got).toHaveLength(6);
      }
    } finally {
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
          const transactions: CommittedTransaction[] = [];
          await Promise.all(
            writers.map(async (client, w) => {
              for (const step of plan.filter((p) => p.writer === w)) {
                await client.query("begin");
                const ids: number[] = [];
                for (let i = 0; i < step.events; i++) {
                  ids.push(...(await insertEvents(client, type, 1)));
                  await sleep(step.pauseMs);
                }
                const commitStart = performance.now();
                await client.query(step.rollback ? "rollback" : "commit");
                if (!step.rollback) {
                  committed.push(...ids);
                  transactions.push({ ids, commitStart, commitEnd: performance.now() });
                }
              }
            }),
          );
          const published = () => raw.messages.filter((m) => m.type === type).map((m) => m.id);
          await waitUntil(`run ${type} published`, () => published().length >= committed.length);
          await waitUntil(`run ${type} consumed`, () => committed.every((id) => durable.has(id)));
          expect(new Set(published())).toEqual(new Set(committed));
          expect(published()).toHaveLength(committed.length);
          expect(await inCommitOrder(db.pool, published(), transactions)).toEqual([]);
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
