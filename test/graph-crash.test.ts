/**
 * Ten parallel branches and a worker process killed with SIGKILL while five of them are in flight: each
 * branch ends once, each effect is written once per idempotency key.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type AnySaga, type SagaEngine, createSagaEngine } from "../src/index.js";
import { GRAPH_TABLES, graphCalls, tenSaga } from "./fixtures/graph-sagas.js";
import { useTestDatabase } from "./helpers/database.js";
import { type WorkerChild, spawnWorker, stopWorker } from "./helpers/processes.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();
const children: WorkerChild[] = [];

beforeAll(async () => {
  await db.pool.query(GRAPH_TABLES);
});

afterAll(async () => {
  await Promise.all(children.map((c) => stopWorker(c)));
});

async function events(sagaId: string) {
  const { rows } = await db.pool.query<{ seq: number; type: string; step: string | null }>(
    "select seq, type, step from saga.events where saga_id = $1 order by seq",
    [sagaId],
  );
  return rows;
}

/** Starts a saga held in graph_hold from its first step on: the start and the hold commit together. */
async function startHeld(engine: SagaEngine, saga: AnySaga): Promise<string> {
  const client = await db.pool.connect();
  try {
    await client.query("begin");
    const { id } = await engine.start(saga, {}, { client });
    await client.query("insert into graph_hold (saga_id) values ($1)", [id]);
    await client.query("commit");
    return id;
  } finally {
    client.release();
  }
}

/** How many commits claimed the branches (a commit's rows share its now()), and the leases' owners. */
async function claimCommits(sagaId: string, ownerLike = "%") {
  const { rows } = await db.pool.query<{ commits: number }>(
    `select count(distinct started_at)::int as commits from saga.steps
     where saga_id = $1 and "group" = 0 and lease_owner like $2`,
    [sagaId, ownerLike],
  );
  return rows[0]?.commits;
}

describe("ten branches and a SIGKILL", () => {
  it("ten branches claimed together by one worker each run and record once", async () => {
    const ten = tenSaga(db.pool);
    const engine = createSagaEngine({ connectionString: db.url, sagas: [ten] });
    const worker = await engine.runWorker({ concurrency: 10 });
    try {
      const id = await startHeld(engine, ten);
      await vi.waitFor(
        async () =>
          expect((await graphCalls(db.pool, id)).filter((c) => c.ended_ms === null)).toHaveLength(10),
        { timeout: 60_000, interval: 50 },
      );
      // All ten claimed in one commit (no job per branch), each with its own lease and attempt.
      expect(await claimCommits(id)).toBe(1);
      await db.pool.query("delete from graph_hold where saga_id = $1", [id]);
      const done = await engine.waitFor(id, { timeoutMs: 60_000 });
      expect(done.result).toEqual({ sum: 45, keys: 10 });
      const evs = await events(id);
      const completed = evs.filter((e) => e.type === "saga.step.completed").map((e) => e.step);
      expect(completed.sort()).toEqual([...Array.from({ length: 10 }, (_, i) => `b${i}`), "sum"].sort());
      expect(evs.filter((e) => e.type === "saga.step.started")).toHaveLength(11);
      expect(done.steps.filter((x) => x.group === 0).map((x) => [x.status, x.attempt])).toEqual(
        Array.from({ length: 10 }, () => ["succeeded", 1]),
      );
      const effects = await db.pool.query<{ n: number }>("select n from graph_effects where saga_id = $1", [
        id,
      ]);
      expect(effects.rows.map((r) => r.n)).toEqual(Array.from({ length: 10 }, () => 1));
    } finally {
      await worker.stop();
      await engine.close();
    }
  });

  it("a worker killed with five branches in flight: each branch ends once, each effect once per key", async () => {
    const ten = tenSaga(db.pool);
    const env = {
      DATABASE_URL: db.url,
      CONCURRENCY: "5",
      DEAD_AFTER_MS: "1500",
      HEARTBEAT_MS: "300",
      REAP_MS: "300",
    };
    const a = await spawnWorker("graph-worker.ts", env, 60_000);
    children.push(a);
    const starter = createSagaEngine({ connectionString: db.url, sagas: [ten] });
    try {
      const id = await startHeld(starter, ten);
      // Five branches in flight in process A (its concurrency is five).
      const pidA = a.child.pid!;
      await vi.waitFor(
        async () => {
          const running = (await graphCalls(db.pool, id)).filter(
            (c) => c.worker_pid === pidA && c.ended_ms === null,
          );
          expect(running.length).toBe(5);
        },
        { timeout: 60_000, interval: 50 },
      );
      // A's five were claimed together, in one commit: the kill lands mid-batch.
      expect(await claimCommits(id, `%:${pidA}:%`)).toBe(1);
      const b = await spawnWorker("graph-worker.ts", { ...env, CONCURRENCY: "10" }, 60_000);
      children.push(b);
      a.child.kill("SIGKILL");
      await a.exited;
      await db.pool.query("delete from graph_hold where saga_id = $1", [id]);
      const done = await starter.waitFor(id, { timeoutMs: 90_000 });
      expect(done.state).toBe("completed");
      expect(done.result).toEqual({ sum: 45, keys: 10 });
      // Each branch succeeded once: one completed event each, and A's attempts were written off as lost.
      const evs = await events(id);
      const completed = evs.filter((e) => e.type === "saga.step.completed").map((e) => e.step);
      expect(completed.sort()).toEqual([...Array.from({ length: 10 }, (_, i) => `b${i}`), "sum"].sort());
      expect(evs.map((e) => e.seq)).toEqual(evs.map((_, i) => i + 1));
      const effects = await db.pool.query<{ key: string; n: number }>(
        "select key, n from graph_effects where saga_id = $1 order by key",
        [id],
      );
      expect(effects.rows.map((r) => r.key)).toEqual(
        Array.from({ length: 10 }, (_, i) => `${id}:b${i}`).sort(),
      );
      const calls = await graphCalls(db.pool, id);
      const killed = calls.filter((c) => c.worker_pid === pidA).map((c) => c.step);
      expect(killed).toHaveLength(5);
      // The five killed branches ran again elsewhere; their effect is still one row per key.
      for (const step of killed)
        expect(
          calls.filter((c) => c.step === step && c.worker_pid !== pidA && c.ended_ms !== null),
        ).toHaveLength(1);
      const steps = done.steps.filter((x) => x.group === 0);
      expect(steps.every((x) => x.status === "succeeded")).toBe(true);
      expect(
        steps
          .filter((x) => x.attempt === 2)
          .map((x) => x.name)
          .sort(),
      ).toEqual([...killed].sort());
    } finally {
      await starter.close();
    }
  });
});
