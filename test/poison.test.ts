/**
 * Poison steps and skewed clocks, with real processes: a step that takes its process down (process.exit, an
 * uncaught throw in a timer) costs one attempt per crash, its attempts stay bounded and other sagas keep
 * moving; a worker whose clock is an hour off still retries and times out on time (the database clock).
 */
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { type SagaEngine, createSagaEngine } from "../src/index.js";
import { type ChaosWorker, spawnChaosWorker, stopChaosWorker } from "./chaos/worker-processes.js";
import { clockSaga, deadlineSaga, poisonSaga } from "./fixtures/chaos-sagas.js";
import { CALLS_TABLE, calls } from "./fixtures/order-saga.js";
import { TRANSFER_TABLES, transferSaga } from "./fixtures/transfer-saga.js";
import { useThrowawayDatabase } from "./helpers/throwaway-postgres.js";

vi.setConfig({ testTimeout: 240_000 });
const db = useThrowawayDatabase({
  setup: [CALLS_TABLE, TRANSFER_TABLES, "insert into accounts (id, balance) values (1, 1000), (2, 1000)"],
});
let engine: SagaEngine;
let supervising = true;
const crashes: (number | string)[] = [];
const workers: ChaosWorker[] = [];

/** A process manager in miniature: a worker that dies is replaced. */
async function supervise(env: Record<string, string>): Promise<void> {
  const w = await spawnChaosWorker({ DATABASE_URL: db.url, DEAD_AFTER_MS: "1500", ...env });
  workers.push(w);
  void w.exited.then((how) => {
    if (!supervising) return;
    crashes.push(how);
    void supervise(env).catch(() => {});
  });
}

beforeAll(async () => {
  engine = createSagaEngine({
    connectionString: db.url,
    sagas: [poisonSaga(db.pool), transferSaga(db.pool), clockSaga(db.pool), deadlineSaga(db.pool)],
  });
});

afterAll(async () => {
  supervising = false;
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  await engine?.close();
});

it.each(["exit", "timer-throw"] as const)(
  "a step that crashes its process (%s) is counted per attempt; attempts stay bounded; others keep moving",
  async (mode) => {
    supervising = true;
    while (workers.filter((w) => w.alive).length < 2) await supervise({});
    crashes.length = 0;
    const poison = await engine.start(poisonSaga(db.pool), { mode });
    // Sagas that share the crashing processes (their in-flight attempts are lost too, and retried).
    const others = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        engine
          .start(transferSaga(db.pool), { from: 1 + (i % 2), to: 2 - (i % 2), amount: 1, slowMs: 100 })
          .then((r) => r.id),
      ),
    );
    const failed = await engine.waitFor(poison.id, { timeoutMs: 120_000 });
    expect(failed.state).toBe("failed");
    expect(failed.error).toMatchObject({ code: "WORKER_LOST", step: "explode" });
    // Three attempts (its retry policy), each one a crashed process; none more.
    const made = (await calls(db.pool, poison.id)).map((c) => c.attempt);
    expect(made).toEqual([1, 2, 3]);
    expect(crashes.length).toBeGreaterThanOrEqual(3);
    expect(crashes.every((c) => (mode === "exit" ? c === 3 : c === 1))).toBe(true);
    for (const id of others)
      expect((await engine.waitFor(id, { timeoutMs: 120_000 })).state).toBe("completed");
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await calls(db.pool, poison.id)).length).toBe(3);
  },
);

it.each([
  ["an hour ahead", 3_600_000],
  ["an hour behind", -3_600_000],
])("a worker whose clock is %s retries and times out on time (the database clock)", async (_label, skew) => {
  supervising = false;
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  supervising = true;
  await supervise({ CLOCK_SKEW_MS: String(skew) });

  const flaky = await engine.start(clockSaga(db.pool), { failures: 2 });
  const hung = await engine.start(deadlineSaga(db.pool), {});
  expect((await engine.waitFor(flaky.id, { timeoutMs: 60_000 })).state).toBe("completed");
  expect((await engine.waitFor(hung.id, { timeoutMs: 60_000 })).state).toBe("timed_out");

  // The retries waited their 1 s by the database clock: not an hour, and not zero.
  const gaps = await db.pool.query<{ ms: number }>(
    `select (extract(epoch from at - lag(at) over (order by attempt)) * 1000)::int as ms
     from test_calls where saga_id = $1 order by attempt`,
    [flaky.id],
  );
  const waits = gaps.rows.slice(1).map((r) => r.ms);
  expect(waits).toHaveLength(2);
  for (const ms of waits) expect(ms).toBeGreaterThanOrEqual(950);
  const deadline = await db.pool.query<{ ms: number }>(
    "select (extract(epoch from finished_at - created_at) * 1000)::int as ms from saga.instances where id = $1",
    [hung.id],
  );
  expect(deadline.rows[0]?.ms).toBeGreaterThanOrEqual(1_950);
});
