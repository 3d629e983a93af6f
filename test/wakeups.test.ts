/**
 * start() never NOTIFYs inside the transaction that writes the saga (a NOTIFY serializes commits cluster-wide):
 * the engine wakes the workers after its own commit, and the outbox relay wakes them when it publishes the
 * saga.started event of a saga started in the caller's transaction or from SQL.
 */
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type SagaEngine, type SagaWorker, createSagaEngine } from "../src/index.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
let engine: SagaEngine;
let listener: pg.Client;
const heard: { payload: string }[] = [];

beforeAll(async () => {
  await db.pool.query(CALLS_TABLE);
  engine = createSagaEngine({ connectionString: db.url, sagas: [orderSaga(db.pool)] });
  await engine.migrate();
  listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  listener.on("notification", (n) => heard.push({ payload: n.payload ?? "" }));
  await listener.query('listen "jobs:insert"');
});

afterAll(async () => {
  await listener?.end();
  await engine?.close();
});

/**
 * The "jobs:insert" notifications committed before this call: a sentinel NOTIFY sent now is delivered after
 * every notification of a transaction that committed earlier, so once it arrives nothing earlier is in flight.
 */
async function jobNotificationsSoFar(): Promise<unknown[]> {
  const sentinel = `sentinel-${Math.random()}`;
  await db.pool.query("select pg_notify('jobs:insert', $1)", [sentinel]);
  for (let i = 0; i < 200 && !heard.some((h) => h.payload === sentinel); i++)
    await new Promise((r) => setTimeout(r, 25));
  const all = heard.splice(0, heard.length);
  expect(all.some((h) => h.payload === sentinel)).toBe(true);
  return all.filter((h) => h.payload !== sentinel).map((h) => JSON.parse(h.payload) as unknown);
}

it("a start in the caller's transaction notifies nobody from that transaction", async () => {
  await jobNotificationsSoFar();
  const client = await db.pool.connect();
  try {
    await client.query("begin");
    await engine.start(orderSaga(db.pool), { customerId: "in-tx", amount: 1 }, { client });
    await client.query("commit");
  } finally {
    client.release();
  }
  // No worker and no relay run: nothing else would send one either.
  expect(await jobNotificationsSoFar()).toEqual([]);
});

it("a start on the engine's own connection wakes the workers right after its commit", async () => {
  await jobNotificationsSoFar();
  const started = await Promise.all(
    [1, 2, 3].map((i) => engine.start(orderSaga(db.pool), { customerId: `own-${i}`, amount: i })),
  );
  // A start that found its idempotency key taken wakes nobody.
  await engine.start(
    orderSaga(db.pool),
    { customerId: "own-key", amount: 1 },
    { idempotencyKey: "wake-once" },
  );
  await engine.start(
    orderSaga(db.pool),
    { customerId: "own-key", amount: 1 },
    { idempotencyKey: "wake-once" },
  );
  const counts = (await jobNotificationsSoFar()).map((m) => (m as { count: number }).count);
  expect(started.every((s) => s.created)).toBe(true);
  expect(counts.reduce((a, b) => a + b, 0)).toBe(4);
});

it("sagas started in a caller's transaction or from SQL run at once though the worker polls once a minute", async () => {
  // Polling alone would first look for jobs a minute from now; the relay's wake-up is what runs these.
  let worker: SagaWorker | undefined;
  try {
    worker = await engine.runWorker({ concurrency: 4, pollInterval: 60_000 });
    const client = await db.pool.connect();
    let inTx: string;
    try {
      await client.query("begin");
      inTx = (await engine.start(orderSaga(db.pool), { customerId: "tx", amount: 2 }, { client })).id;
      await client.query(
        "insert into test_calls (saga_id, step, kind, attempt, worker_pid) values ($1, 'app', 'write', 0, 0)",
        [inTx],
      );
      await client.query("commit");
    } finally {
      client.release();
    }
    const fromSql = (
      await db.pool.query<{ id: string }>(
        `select saga.start('order-processing', '{"customerId": "sql", "amount": 3}'::jsonb) as id`,
      )
    ).rows[0]!.id;
    for (const id of [inTx, fromSql])
      expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
  } finally {
    await worker?.stop();
  }
});
