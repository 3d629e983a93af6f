/**
 * Graceful shutdown with real processes: SIGTERM lets running steps finish, then aborts and releases them
 * (another worker retries them at once, the attempt not counted); a second signal forces the exit.
 */
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { type SagaEngine, createSagaEngine } from "../src/index.js";
import { type ChaosWorker, eventually, spawnChaosWorker, stopChaosWorker } from "./chaos/worker-processes.js";
import { holdSaga } from "./fixtures/chaos-sagas.js";
import { CALLS_TABLE, calls } from "./fixtures/order-saga.js";
import { useThrowawayDatabase } from "./helpers/throwaway-postgres.js";

// Real processes on a machine that may be busy: spawning one can take seconds.
vi.setConfig({ testTimeout: 180_000 });
const db = useThrowawayDatabase({ setup: [CALLS_TABLE] });
let engine: SagaEngine;
const workers: ChaosWorker[] = [];
const spawn = async (extra: Record<string, string> = {}) => {
  const w = await spawnChaosWorker({ DATABASE_URL: db.url, DEAD_AFTER_MS: "1500", ...extra });
  workers.push(w);
  return w;
};

beforeAll(async () => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [holdSaga(db.pool)] });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  await engine?.close();
});

/** Starts a hold saga on `first` alone, then brings up `second` (so the step surely runs on `first`). */
async function holdOn(first: ChaosWorker, holdMs: number) {
  const { id } = await engine.start(holdSaga(db.pool), { holdMs });
  await eventually(
    async () =>
      (await calls(db.pool, id)).some((c) => c.step === "hold" && c.worker_pid === first.pid)
        ? true
        : undefined,
    30_000,
    "the hold step to start",
  );
  return id;
}

const stepRow = async (id: string, index: number) =>
  (
    await db.pool.query<{ status: string; attempt: number; attempt_base: number }>(
      "select status, attempt, attempt_base from saga.steps where saga_id = $1 and index = $2",
      [id, index],
    )
  ).rows[0];

it("SIGTERM: a step that outlives the grace period is aborted and released; another worker retries it at once", async () => {
  const leaving = await spawn({ STOP_TIMEOUT_MS: "500" });
  const id = await holdOn(leaving, 60_000);
  const staying = await spawn();
  leaving.child.kill("SIGTERM");
  expect(await leaving.exited).toBe(0);

  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("completed");
  // Released, not lost: the shutdown attempt does not count against the step's attempts.
  expect(await stepRow(id, 1)).toEqual({ status: "succeeded", attempt: 2, attempt_base: 1 });
  const retrying = await db.pool.query<{ payload: { reason?: string } }>(
    "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
    [id],
  );
  expect(retrying.rows.map((r) => r.payload.reason)).toEqual(["worker shutdown"]);
  const made = await calls(db.pool, id);
  expect(made.filter((c) => c.step === "hold" && c.kind === "execute").map((c) => c.worker_pid)).toEqual([
    leaving.pid,
    staying.pid,
  ]);
  expect(leaving.logs.some((l) => l.message === "stopped")).toBe(true);
});

it("SIGTERM: a step that finishes within the grace period is recorded, and the saga goes on elsewhere", async () => {
  const leaving = await spawn({ STOP_TIMEOUT_MS: "20000" });
  for (const w of workers) if (w !== leaving && w.alive) await stopChaosWorker(w);
  const id = await holdOn(leaving, 1_500);
  leaving.child.kill("SIGTERM");
  const staying = await spawn();
  expect(await leaving.exited).toBe(0);
  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("completed");
  expect(await stepRow(id, 1)).toEqual({ status: "succeeded", attempt: 1, attempt_base: 0 });
  const made = await calls(db.pool, id);
  expect(made.filter((c) => c.kind === "execute").map((c) => [c.step, c.worker_pid])).toEqual([
    ["prepare", leaving.pid],
    ["hold", leaving.pid],
    ["after", staying.pid],
  ]);
});

it("a second signal forces the exit; the step is then recovered from the dead worker", async () => {
  const leaving = await spawn({ STOP_TIMEOUT_MS: "60000" });
  for (const w of workers) if (w !== leaving && w.alive) await stopChaosWorker(w);
  const id = await holdOn(leaving, 60_000);
  await spawn();
  leaving.child.kill("SIGTERM");
  await eventually(
    async () => (leaving.logs.some((l) => l.message.startsWith("stopping")) ? true : undefined),
    10_000,
    "the first signal to be handled",
  );
  leaving.child.kill("SIGINT");
  expect(await leaving.exited).toBe(128 + 2);
  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("completed");
  const retrying = await db.pool.query<{ payload: { error?: { code: string } } }>(
    "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
    [id],
  );
  expect(retrying.rows.map((r) => r.payload.error?.code)).toEqual(["WORKER_LOST"]);
});
