/**
 * A durable consumer process killed with SIGKILL in the middle of a batch: the standby process takes over
 * when the lease runs out, the uncommitted part of the batch is delivered again, nothing is lost, and
 * each saga's events arrive in seq order in every process.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { useTestDatabase } from "./helpers/database.js";
import { type WorkerChild, spawnWorker, stopWorker } from "./helpers/processes.js";
import { insertEvents, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
const children: WorkerChild[] = [];

beforeAll(async () => {
  await db.pool.query(
    "create table test_deliveries (n bigint generated always as identity primary key, consumer text, event_id bigint, saga_id uuid, seq int)",
  );
});
afterAll(async () => {
  await Promise.all(children.map((c) => stopWorker(c)));
});

interface Delivery {
  consumer: string;
  event_id: string;
  saga_id: string;
  seq: number;
}
const deliveries = async () =>
  (await db.pool.query<Delivery>("select consumer, event_id, saga_id, seq from test_deliveries order by n"))
    .rows;

it("a consumer killed mid-batch: the standby takes over, redelivers the open batch, loses nothing, keeps seq order", async () => {
  // 12 sagas, 15 events each, written as 15 rounds of one transition per saga (interleaved like real traffic).
  const sagas = Array.from({ length: 12 }, () => randomUUID());
  const all: number[] = [];
  for (let seq = 1; seq <= 15; seq++) {
    for (const id of sagas) all.push(...(await insertEvents(db.pool, "crash", 1, { id, firstSeq: seq })));
  }
  const env = { DATABASE_URL: db.url, NAME: "crash", DELAY_MS: "4", LEASE_MS: "1500", BATCH: "40" };
  const a = await spawnWorker("subscriber-durable.ts", { ...env, TAG: "a", HANG_AT: "100" });
  children.push(a);
  const b = await spawnWorker("subscriber-durable.ts", { ...env, TAG: "b" });
  children.push(b);

  // Kill A inside its third batch (rows 81..120): 81..100 are handled, their cursor is not committed.
  await waitUntil("a is in its third batch", async () => (await deliveries()).length >= 100, 60_000);
  a.child.kill("SIGKILL");
  expect(await a.exited).toBe("SIGKILL");
  const beforeKill = await deliveries();
  expect(new Set(beforeKill.map((d) => d.consumer))).toEqual(new Set(["a"])); // B stood by

  await waitUntil(
    "b delivered everything",
    async () => {
      const got = new Set((await deliveries()).map((d) => Number(d.event_id)));
      return all.every((id) => got.has(id));
    },
    60_000,
  );
  const rows = await deliveries();
  const byA = rows.filter((d) => d.consumer === "a").map((d) => Number(d.event_id));
  const byB = rows.filter((d) => d.consumer === "b").map((d) => Number(d.event_id));

  // Nothing lost; duplicates only for what A handled after its last committed cursor.
  expect(new Set([...byA, ...byB])).toEqual(new Set(all));
  await waitUntil("b committed its last batch", async () => {
    const { rows: pending } = await db.pool.query(
      "select count(*)::int as n from saga._cursor_pending('crash', 1000)",
    );
    return pending[0].n === 0;
  });
  const twice = byB.filter((id) => byA.includes(id));
  expect(twice.length).toBeGreaterThan(0);
  expect(byB.slice(0, twice.length)).toEqual(twice); // B starts over exactly at A's committed cursor
  expect(new Set(byB).size).toBe(byB.length);
  expect(byA).toHaveLength(100);
  expect(twice).toEqual(byA.slice(80));

  // Per saga, each process saw strictly increasing seq.
  for (const consumer of ["a", "b"]) {
    for (const id of sagas) {
      const seqs = rows.filter((d) => d.consumer === consumer && d.saga_id === id).map((d) => d.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(new Set(seqs).size).toBe(seqs.length);
    }
  }
});
