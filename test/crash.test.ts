/**
 * Crash safety with real processes on a throwaway server: kill -9 mid-step, a zombie paused past its lease,
 * a kill between the record commit and graphile-worker's job completion, a late success after compensation.
 */
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { type SagaEngine, createSagaEngine } from "../src/index.js";
import {
  type ChaosWorker,
  countLogs,
  eventually,
  spawnChaosWorker,
  stopChaosWorker,
} from "./chaos/worker-processes.js";
import { holdSaga, txHoldSaga } from "./fixtures/chaos-sagas.js";
import { CALLS_TABLE, calls, orderSaga } from "./fixtures/order-saga.js";
import { useThrowawayDatabase } from "./helpers/throwaway-postgres.js";

const DEAD_AFTER_MS = 1_500;
// Real processes on a machine that may be busy: spawning one can take seconds.
vi.setConfig({ testTimeout: 180_000 });
const db = useThrowawayDatabase({ setup: [CALLS_TABLE] });
let engine: SagaEngine;
const workers: (ChaosWorker & { crasher: boolean })[] = [];
const spawn = async (extra: Record<string, string> = {}) => {
  const w = await spawnChaosWorker({ DATABASE_URL: db.url, DEAD_AFTER_MS: String(DEAD_AFTER_MS), ...extra });
  const entry = Object.assign(w, { crasher: extra.CRASH_AFTER_COMPLETE === "1" });
  workers.push(entry);
  return entry;
};

/** At least `n` live normal workers (tests may leave some killed or stopped). */
const live = async (n: number) => {
  const alive = workers.filter((w) => w.alive && !w.crasher);
  while (alive.length < n) alive.push(await spawn());
  return alive;
};

beforeAll(async () => {
  engine = createSagaEngine({
    connectionString: db.url,
    sagas: [holdSaga(db.pool), txHoldSaga(db.pool), orderSaga(db.pool)],
  });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  await engine?.close();
});

/** The worker process that made the first call of a saga's step. */
async function firstCaller(sagaId: string, step: string, pool: ChaosWorker[]) {
  const row = await eventually(
    async () => (await calls(db.pool, sagaId)).find((c) => c.step === step && c.kind === "execute"),
    30_000,
    `first call of ${step}`,
  );
  const w = pool.find((p) => p.pid === row.worker_pid);
  if (!w) throw new Error(`call made by unknown pid ${row.worker_pid}`);
  return w;
}

const lockedJobs = async () =>
  (
    await db.pool.query<{ n: number }>(
      "select count(*)::int as n from graphile_worker._private_jobs where locked_by is not null",
    )
  ).rows[0]?.n;

it("kill -9 mid-step: another worker retries the step within deadWorkerAfter plus a margin", async () => {
  const pool = await live(2);
  const { id } = await engine.start(holdSaga(db.pool), { holdMs: 60_000 });
  const victim = await firstCaller(id, "hold", pool);
  victim.child.kill("SIGKILL");
  await victim.exited;
  const killed = await db.pool.query<{ t: Date }>("select clock_timestamp() as t");

  const done = await engine.waitFor(id, { timeoutMs: 60_000 });
  expect(done.state).toBe("completed");
  // Recovery: from the kill to the retry's first write, both by the database clock.
  const retried = await db.pool.query<{ ms: number }>(
    `select (extract(epoch from at - $2::timestamptz) * 1000)::int as ms from test_calls
     where saga_id = $1 and step = 'hold' and kind = 'execute' and attempt = 2`,
    [id, killed.rows[0]?.t],
  );
  const recoveredIn = retried.rows[0]?.ms ?? Infinity;
  expect(recoveredIn).toBeLessThan(DEAD_AFTER_MS + 10_000);
  const hold = done.steps.find((s) => s.name === "hold");
  expect(hold).toMatchObject({ status: "succeeded", attempt: 2 });

  const made = await calls(db.pool, id);
  const survivor = pool.find((p) => p !== victim);
  expect(made.filter((c) => c.kind === "execute").map((c) => [c.step, c.attempt, c.worker_pid])).toEqual([
    ["prepare", 1, victim.pid],
    ["hold", 1, victim.pid],
    ["hold", 2, survivor?.pid],
    ["after", 1, survivor?.pid],
  ]);
  const retrying = await db.pool.query<{ payload: { error: { code: string; outcome: string } } }>(
    "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
    [id],
  );
  expect(retrying.rows.map((r) => [r.payload.error.code, r.payload.error.outcome])).toEqual([
    ["WORKER_LOST", "unknown"],
  ]);
  // The dead worker's graphile-worker job was unlocked at once, not after 4 hours, and nothing is left locked.
  await eventually(
    async () => ((await lockedJobs()) === 0 ? true : undefined),
    20_000,
    "no locked jobs",
  ).catch(async (err: unknown) => {
    const { rows } = await db.pool.query(
      "select id, task_identifier, payload, locked_by, locked_at, run_at, attempts from graphile_worker._private_jobs where locked_by is not null",
    );
    const w = await db.pool.query("select id, job_worker_ids, heartbeat_at from saga.workers");
    console.info(JSON.stringify({ victim: victim.workerId, rows, workers: w.rows }));
    throw err;
  });
  console.info(`kill -9 mid-step: the step was retried ${recoveredIn} ms after the kill`);
});

it("kill -9 inside a transactional step: the attempt rolled back, so it failed (not unknown) and is not compensated", async () => {
  const pool = await live(2);
  const { id } = await engine.start(txHoldSaga(db.pool), { holdMs: 60_000 });
  const victim = await firstCaller(id, "write", pool);
  victim.child.kill("SIGKILL");
  const done = await engine.waitFor(id, { timeoutMs: 60_000 });
  expect(done.state).toBe("compensated");
  const write = done.steps.find((s) => s.name === "write");
  expect(write).toMatchObject({ status: "failed", attempt: 1 });
  expect(write?.error).toMatchObject({ code: "WORKER_LOST", outcome: "failed" });
  // The write on ctx.tx died with the transaction; "prepare" is undone, "write" had nothing to undo.
  expect((await calls(db.pool, id)).map((c) => [c.step, c.kind])).toEqual([
    ["prepare", "execute"],
    ["write", "execute"],
    ["prepare", "compensate"],
  ]);
});

it("a worker paused past its lease comes back as a zombie: its late result is discarded and counted", async () => {
  const pool = await live(2);
  const { id } = await engine.start(holdSaga(db.pool), { holdMs: 3_000 });
  const zombie = await firstCaller(id, "hold", pool);
  zombie.child.kill("SIGSTOP");
  const done = await engine.waitFor(id, { timeoutMs: 60_000 });
  expect(done.state).toBe("completed");
  const eventsBefore = await db.pool.query("select id from saga.events where saga_id = $1", [id]);

  zombie.child.kill("SIGCONT");
  await eventually(
    async () => (countLogs(zombie, "late or duplicate result discarded") > 0 ? true : undefined),
    15_000,
    "the zombie to discard its result",
  );
  const after = await engine.get(id);
  expect(after?.steps.map((s) => [s.name, s.status, s.attempt])).toEqual([
    ["prepare", "succeeded", 1],
    ["hold", "succeeded", 2],
    ["after", "succeeded", 1],
  ]);
  const eventsAfter = await db.pool.query("select id from saga.events where saga_id = $1", [id]);
  expect(eventsAfter.rows).toEqual(eventsBefore.rows);
  // The zombie did finish its handler (the write it makes first and last are there); nothing of it was applied.
  const made = await calls(db.pool, id);
  expect(made.filter((c) => c.worker_pid === zombie.pid).map((c) => [c.step, c.kind, c.attempt])).toEqual([
    ["prepare", "execute", 1],
    ["hold", "execute", 1],
    ["hold", "returned", 1],
  ]);
  expect(made.filter((c) => c.step === "after")).toHaveLength(1);

  // The zombie rejoined with a fresh heartbeat and takes work again.
  const next = await engine.start(orderSaga(db.pool), { customerId: "after-zombie", amount: 1 });
  expect((await engine.waitFor(next.id, { timeoutMs: 60_000 })).state).toBe("completed");
  expect(zombie.alive).toBe(true);
});

it("a cancel while the step's worker is paused: the paused attempt's result is discarded, the step compensated once", async () => {
  const pool = await live(2);
  const { id } = await engine.start(holdSaga(db.pool), { holdMs: 2_000 });
  const zombie = await firstCaller(id, "hold", pool);
  zombie.child.kill("SIGSTOP");
  await engine.cancel(id, "customer changed their mind");
  const done = await engine.waitFor(id, { timeoutMs: 60_000 });
  expect(done.state).toBe("cancelled");
  const discarded = () => countLogs(zombie, "late or duplicate result discarded");
  const before = discarded();
  zombie.child.kill("SIGCONT");
  await eventually(async () => (discarded() > before ? true : undefined), 15_000, "the discard");
  const after = await engine.get(id);
  expect(after?.state).toBe("cancelled");
  expect(after?.steps.map((s) => [s.name, s.status])).toEqual([
    ["prepare", "compensated"],
    ["hold", "compensated"],
    ["after", "skipped"],
  ]);
  const made = await calls(db.pool, id);
  expect(
    made
      .filter((c) => c.kind === "compensate")
      .map((c) => c.step)
      .sort(),
  ).toEqual(["hold", "prepare"]);
  const completed = await db.pool.query(
    "select 1 from saga.events where saga_id = $1 and type = 'saga.step.completed' and step = 'hold'",
    [id],
  );
  expect(completed.rows).toEqual([]);
});

it("a late success after compensation began is discarded", async () => {
  const pool = await live(2);
  // The paused attempt is written off as lost; its retry elsewhere fails for good; compensation runs.
  const { id } = await engine.start(holdSaga(db.pool), { holdMs: 3_000, failRetry: true });
  const zombie = await firstCaller(id, "hold", pool);
  zombie.child.kill("SIGSTOP");
  const done = await engine.waitFor(id, { timeoutMs: 60_000 });
  expect(done.state).toBe("compensated");
  const eventsBefore = await db.pool.query("select id from saga.events where saga_id = $1", [id]);
  const discardedSuccess = () =>
    zombie.logs.filter((l) => l.message.startsWith("late or duplicate") && l.outcome === "success").length;
  const before = discardedSuccess();
  zombie.child.kill("SIGCONT");
  await eventually(async () => (discardedSuccess() > before ? true : undefined), 15_000, "the late success");
  const after = await engine.get(id);
  expect(after?.steps.map((s) => [s.name, s.status, s.attempt])).toEqual([
    ["prepare", "compensated", 1],
    ["hold", "failed", 2],
    ["after", "skipped", 0],
  ]);
  const eventsAfter = await db.pool.query("select id from saga.events where saga_id = $1", [id]);
  expect(eventsAfter.rows).toEqual(eventsBefore.rows);
  const made = await calls(db.pool, id);
  expect(made.filter((c) => c.kind === "returned").map((c) => c.worker_pid)).toEqual([zombie.pid]);
  expect(made.filter((c) => c.kind === "compensate").map((c) => c.step)).toEqual(["prepare"]);
});

it("kill -9 after the record committed but before graphile-worker marked the job done: nothing is left to run, and a re-run does nothing", async () => {
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  const crasher = await spawn({ CRASH_AFTER_COMPLETE: "1" });
  const { id } = await engine.start(orderSaga(db.pool), { customerId: "crash-after-record", amount: 5 });
  const how = await Promise.race([
    crasher.exited,
    new Promise((r) => setTimeout(() => r("still running"), 90_000)),
  ]);
  expect(how).toBe("SIGKILL");
  expect((await engine.get(id))?.state).toBe("completed");
  // The transition that completed the saga also ended its job, in the same commit: no job is left locked.
  const jobs = () =>
    db.pool.query<{ n: number }>(
      "select count(*)::int as n from graphile_worker._private_jobs where payload->>'id' = $1",
      [id],
    );
  expect((await jobs()).rows[0]?.n).toBe(0);

  // A job for the finished saga anyway (as a crash before that commit would leave): it runs and does nothing.
  await db.pool.query(
    "select graphile_worker.add_job('saga:order-processing@1', json_build_object('id', $1::uuid))",
    [id],
  );
  await spawn();
  await eventually(
    async () => ((await jobs()).rows[0]?.n === 0 ? true : undefined),
    45_000,
    "the extra job to run and finish",
  );
  const made = await calls(db.pool, id);
  expect(made.map((c) => [c.step, c.attempt, c.worker_pid])).toEqual(
    ["create-order", "reserve-inventory", "process-payment", "confirm-order"].map((s) => [s, 1, crasher.pid]),
  );
  const events = await db.pool.query<{ type: string }>(
    "select type from saga.events where saga_id = $1 order by seq",
    [id],
  );
  expect(events.rows.filter((e) => e.type === "saga.completed")).toHaveLength(1);
  expect(events.rows).toHaveLength(1 + 4 * 2 + 1);
});
