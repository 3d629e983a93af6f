/**
 * A transaction left open anywhere on the server delays only its own events (invariant 6): the relay and
 * durable cursors read by snapshot ticks, not below the server's oldest transaction. Real sessions: one idle
 * in transaction in another database of the same server for the whole file, one in this database.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createSagaEngine, defineSaga, type SagaEngine } from "../src/index.js";
import { createDatabase, dropDatabase, useTestDatabase } from "./helpers/database.js";
import { rawListener, sleep, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
let engine: SagaEngine;
let other: { name: string; url: string };
let idle: pg.Client;
let idleXid: string;

const noteSaga = defineSaga({ name: "note", input: z.object({ n: z.number() }) }).step("write", {
  execute: async (data) => ({ ...data, written: true }),
});

beforeAll(async () => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [noteSaga] });
  await engine.migrate();
  // Another database of the same server, and a session there that holds an xid and stays idle in
  // transaction: the server-wide xmin sits behind it for the whole file.
  other = await createDatabase(false);
  idle = new pg.Client({ connectionString: other.url, application_name: "test idle in transaction" });
  await idle.connect();
  await idle.query("begin");
  idleXid = String((await idle.query<{ x: string }>("select pg_current_xact_id()::text as x")).rows[0]!.x);
});
afterAll(async () => {
  await idle?.query("rollback").catch(() => {});
  await idle?.end();
  if (other) await dropDatabase(other.name);
  await engine?.close();
});

describe("a transaction open elsewhere on the server", () => {
  it("delays nothing: 500 sagas reach a durable subscriber and a LISTEN client; an open transaction's own event comes once after its commit, never after a rollback", async () => {
    const raw = await rawListener(db.url);
    const durable = new Map<number, number>();
    const seen: { sagaId: string | null; seq: number | null; type: string }[] = [];
    const sub = engine.subscribe(
      {},
      (e) => {
        durable.set(e.id, (durable.get(e.id) ?? 0) + 1);
        seen.push({ sagaId: e.sagaId, seq: e.seq, type: e.type });
      },
      { durable: "open-tx", from: "now", pollInterval: 50 },
    );
    const worker = await engine.runWorker({ concurrency: 20 });
    const late = await db.pool.connect();
    const undone = await db.pool.connect();
    try {
      await sub.ready;
      // The server's oldest transaction is the idle one of the other database, older than every event here.
      const { rows } = await db.pool.query<{ xmin: string }>(
        "select pg_snapshot_xmin(pg_current_snapshot())::text as xmin",
      );
      expect(BigInt(rows[0]!.xmin)).toBeLessThanOrEqual(BigInt(idleXid));

      // Open transactions in this database too, each with an event of its own.
      await late.query("begin");
      const { id: lateSaga } = await engine.start(noteSaga, { n: -1 }, { client: late });
      await undone.query("begin");
      const { ids: undoneIds } = await engine.publish([{ type: "open-tx.undone" }], { client: undone });

      const ids: string[] = [];
      for (let n = 0; n < 500; n++) ids.push((await engine.start(noteSaga, { n })).id);
      const completed = (messages: { type: string; sagaId: string | null }[]) =>
        new Set(messages.filter((m) => m.type === "saga.completed").map((m) => m.sagaId));
      await waitUntil(
        "LISTEN got all 500 completions",
        () => ids.every((id) => completed(raw.messages).has(id)),
        120_000,
      );
      await waitUntil(
        "the durable subscriber got all 500 completions",
        () => ids.every((id) => completed(seen).has(id)),
        120_000,
      );

      // The open transactions' events are nowhere yet.
      const lateEvents = () => raw.messages.filter((m) => m.sagaId === lateSaga);
      expect(lateEvents()).toEqual([]);
      expect(seen.filter((e) => e.sagaId === lateSaga)).toEqual([]);

      // Health names the oldest open transaction as a vacuum risk, not as lag.
      const report = await engine.health({ maxTransactionAgeMs: 0 });
      expect(report.oldestTransaction).toMatchObject({ database: other.name });
      expect(report.warnings.some((w) => w.includes(other.name) && w.includes("vacuum"))).toBe(true);
      expect(report.problems).toEqual([]);

      await undone.query("rollback");
      await late.query("commit");
      await waitUntil("the late saga's start published", () => lateEvents().length >= 1);
      await waitUntil("the late saga's start consumed", () =>
        seen.some((e) => e.sagaId === lateSaga && e.seq !== null),
      );
      await sleep(300); // a second copy, or the rolled-back event, would arrive now
      const lateStarted = raw.messages.filter((m) => m.sagaId === lateSaga && m.type === "saga.started");
      expect(lateStarted).toHaveLength(1);
      expect(raw.messages.filter((m) => m.type === "open-tx.undone")).toEqual([]);
      expect(undoneIds.every((id) => !durable.has(id))).toBe(true);

      // Everything exactly once to the durable subscriber, each saga in seq order, LISTEN in seq order too.
      expect([...durable.values()].filter((n) => n !== 1)).toEqual([]);
      for (const stream of [seen, raw.messages]) {
        const last = new Map<string, number>();
        for (const e of stream) {
          if (e.sagaId === null || e.seq === null) continue;
          expect(e.seq).toBeGreaterThan(last.get(e.sagaId) ?? 0);
          last.set(e.sagaId, e.seq);
        }
      }
    } finally {
      await late.query("rollback").catch(() => {});
      await undone.query("rollback").catch(() => {});
      late.release();
      undone.release();
      await worker.stop();
      await sub.close();
      await raw.close();
    }
  }, 240_000);
});
