/**
 * Bad and big payloads: typed errors before anything is written, no poison job; 1 MB in and out; an output
 * jsonb cannot store is a recorded step failure; 100 concurrent duplicate starts in caller transactions make
 * one saga.
 */
import pg from "pg";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { SagaError, type SagaEngine, createSagaEngine } from "../src/index.js";
import { eventually } from "./chaos/worker-processes.js";
import { payloadSaga } from "./fixtures/chaos-sagas.js";
import { useThrowawayDatabase } from "./helpers/throwaway-postgres.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useThrowawayDatabase();
let engine: SagaEngine;
let worker: Awaited<ReturnType<SagaEngine["runWorker"]>>;
const saga = payloadSaga();

beforeAll(async () => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [saga] });
  worker = await engine.runWorker({ concurrency: 4, pollInterval: 100 });
});

afterAll(async () => {
  await worker?.stop();
  await engine?.close();
});

const count = async (sql: string) => (await db.pool.query<{ n: number }>(sql)).rows[0]?.n;
const nothingWritten = async () => ({
  instances: await count("select count(*)::int as n from saga.instances"),
  events: await count("select count(*)::int as n from saga.events"),
  jobs: await count("select count(*)::int as n from graphile_worker._private_jobs"),
});

async function rejects(input: unknown): Promise<string> {
  try {
    await engine.start(saga, input as never);
  } catch (err) {
    expect(err).toBeInstanceOf(SagaError);
    return (err as SagaError).code;
  }
  throw new Error("start() accepted bad input");
}

it("malformed input gets a typed error and writes nothing", async () => {
  const before = await nothingWritten();
  let deep: unknown = "bottom";
  for (let i = 0; i < 100_000; i++) deep = { deep };
  expect(await rejects({ blob: "nul\u0000here", outputBytes: 1 })).toBe("INVALID_INPUT");
  expect(await rejects(deep)).toBe("INVALID_INPUT");
  expect(await rejects({ blob: deep, outputBytes: 1 })).toBe("INVALID_INPUT");
  expect(await rejects({ blob: 42, outputBytes: "many" })).toBe("INVALID_INPUT");
  expect(await rejects(null)).toBe("INVALID_INPUT");
  expect(await rejects({ blob: "x".repeat(1_100_000), outputBytes: 1 })).toBe("PAYLOAD_TOO_LARGE");
  expect(await nothingWritten()).toEqual(before);
});

it("input started from SQL with the wrong types fails the saga with INVALID_INPUT: no poison job", async () => {
  const { rows } = await db.pool.query<{ id: string }>(
    `select id from saga._start('chaos-payload', 1, $1::jsonb, null, '{}'::jsonb, null, null, null, false)`,
    [JSON.stringify({ blob: { nested: [1, [2, [3]]] }, outputBytes: -1 })],
  );
  const id = rows[0]?.id ?? "";
  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("failed");
  expect(done.error?.code).toBe("INVALID_INPUT");
  // The job ends once (graphile-worker deletes it just after the terminal transition commits): never retried.
  const job = () =>
    db.pool.query<{ attempts: number }>(
      "select attempts from graphile_worker._private_jobs where payload->>'id' = $1",
      [id],
    );
  await eventually(
    async () => ((await job()).rows.length === 0 ? true : undefined),
    10_000,
    "the job to end",
  );
  const started = await count(
    `select count(*)::int as n from saga.events where saga_id = '${id}' and type = 'saga.step.started'`,
  );
  expect(started).toBe(0);
});

it("1 MB of input and 1 MB of output go through", async () => {
  const { id } = await engine.start(saga, { blob: "x".repeat(1_000_000), outputBytes: 1_000_000 });
  const done = await engine.waitFor(id, { timeoutMs: 60_000 });
  expect(done.state).toBe("completed");
  expect(done.result).toEqual({ inputBytes: 1_000_000, outputBytes: 1_000_000 });
  const stored = await db.pool.query<{ n: number }>(
    "select length(output->>'out')::int as n from saga.steps where saga_id = $1 and index = 0",
    [id],
  );
  expect(stored.rows[0]?.n).toBe(1_000_000);
});

it("a step output with a NUL character is a recorded, non-retried failure (INVALID_OUTPUT), not a stuck saga", async () => {
  const { id } = await engine.start(saga, { blob: "ok", outputBytes: 0, nul: true });
  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("failed");
  expect(done.error).toMatchObject({ code: "INVALID_OUTPUT", step: "echo" });
  expect(done.steps[0]).toMatchObject({ status: "failed", attempt: 1 });
  // Other sagas are not held up by it.
  const next = await engine.start(saga, { blob: "fine", outputBytes: 3 });
  expect((await engine.waitFor(next.id, { timeoutMs: 30_000 })).state).toBe("completed");
});

it("100 concurrent duplicate starts with one idempotency key, each in its own caller transaction: one saga", async () => {
  const clients = new pg.Pool({ connectionString: db.url, max: 100 });
  try {
    const results = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const client = await clients.connect();
        try {
          await client.query("begin");
          const r = await engine.start(
            saga,
            { blob: "dup", outputBytes: 1 },
            { idempotencyKey: "order-42", client },
          );
          await client.query("commit");
          return r;
        } catch (err) {
          await client.query("rollback");
          throw err;
        } finally {
          client.release();
        }
      }),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    const id = results[0]?.id ?? "";
    expect(
      await count("select count(*)::int as n from saga.instances where idempotency_key = 'order-42'"),
    ).toBe(1);
    expect(
      await count(
        `select count(*)::int as n from saga.events where saga_id = '${id}' and type = 'saga.started'`,
      ),
    ).toBe(1);
    expect((await engine.waitFor(id, { timeoutMs: 30_000 })).state).toBe("completed");
  } finally {
    await clients.end();
  }
});
