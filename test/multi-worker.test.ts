import { afterAll, beforeAll, expect, it } from "vitest";
import { createSagaEngine, type SagaEngine } from "../src/index.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { useTestDatabase } from "./helpers/database.js";
import { type WorkerChild, spawnWorker, stopWorker } from "./helpers/processes.js";

const db = useTestDatabase();
let engine: SagaEngine;
const children: WorkerChild[] = [];

beforeAll(async () => {
  await db.pool.query(CALLS_TABLE);
  engine = createSagaEngine({ connectionString: db.url, sagas: [orderSaga(db.pool)] });
  for (let i = 0; i < 2; i++) children.push(await spawnWorker("worker-process.ts", { DATABASE_URL: db.url, CONCURRENCY: "8" }));
});

afterAll(async () => {
  await Promise.all(children.map((c) => stopWorker(c)));
  await engine?.close();
});

it("two worker processes run 200 sagas: one handler call per step attempt, none advanced twice", async () => {
  const saga = orderSaga(db.pool);
  const ids = await Promise.all(
    Array.from({ length: 200 }, (_, i) => engine.start(saga, { customerId: `c-${i}`, amount: 1 + i }).then((r) => r.id)),
  );
  for (const id of ids) expect((await engine.waitFor(id, { timeoutMs: 60_000 })).state).toBe("completed");

  const perStep = await db.pool.query<{ saga_id: string; step: string; n: number }>(
    "select saga_id, step, count(*)::int as n from test_calls where kind = 'execute' group by saga_id, step having count(*) <> 1",
  );
  expect(perStep.rows).toEqual([]);
  const total = await db.pool.query<{ n: number; workers: number }>(
    "select count(*)::int as n, count(distinct worker_pid)::int as workers from test_calls",
  );
  expect(total.rows[0]).toEqual({ n: 800, workers: 2 });
  // Every step ran exactly once and every saga's events are gap-free 1..n.
  const gaps = await db.pool.query(
    "select saga_id from saga.events group by saga_id having max(seq) <> count(*) or min(seq) <> 1",
  );
  expect(gaps.rows).toEqual([]);
  const attempts = await db.pool.query("select count(*)::int as n from saga.steps where attempt <> 1");
  expect(attempts.rows[0].n).toBe(0);
});
