import { drizzle } from "drizzle-orm/node-postgres";
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SagaError, createSagaEngine, type SagaEngine, type SagaWorker } from "../src/index.js";
import { CALLS_TABLE, calls, orderSaga } from "./fixtures/order-saga.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
let engine: SagaEngine;
let worker: SagaWorker;
let saga: ReturnType<typeof orderSaga>;

beforeAll(async () => {
  await db.pool.query(CALLS_TABLE);
  await db.pool.query("create table app_orders (id serial primary key, customer text not null)");
  saga = orderSaga(db.pool);
  engine = createSagaEngine({ connectionString: db.url, sagas: [saga] });
  await engine.migrate();
  worker = await engine.runWorker({ concurrency: 4 });
});

afterAll(async () => {
  await worker?.stop();
  await engine?.close();
});

async function events(sagaId: string) {
  const { rows } = await db.pool.query<{ seq: number; type: string; step: string | null }>(
    "select seq, type, step from saga.events where saga_id = $1 order by seq",
    [sagaId],
  );
  return rows;
}

async function countRows(sagaId?: string) {
  const { rows } = await db.pool.query<{ instances: number; events: number; jobs: number }>(
    `select (select count(*) from saga.instances where $1::uuid is null or id = $1::uuid)::int as instances,
            (select count(*) from saga.outbox where $1::uuid is null or saga_id = $1::uuid)::int as events,
            (select count(*) from graphile_worker._private_jobs where $1::uuid is null or payload->>'id' = $1::text)::int as jobs`,
    [sagaId ?? null],
  );
  return rows[0]!;
}

describe("core engine", () => {
  it("runs a 4-step saga to completion, passing data along, with events in order", async () => {
    const { id, created } = await engine.start(saga, { customerId: "c-1", amount: 42 });
    expect(created).toBe(true);
    const done = await engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("completed");
    // The commit that completed the saga also ended its graphile-worker job: none is left once it is visible.
    expect((await countRows(id)).jobs).toBe(0);
    expect(done.result).toMatchObject({
      customerId: "c-1",
      amount: 42,
      orderId: `order-${id}:create-order`,
      reservationId: `res-order-${id}:create-order`,
      paymentId: `pay-order-${id}:create-order`,
      confirmed: true,
    });
    expect(done.steps.map((s) => [s.name, s.status, s.attempt])).toEqual([
      ["create-order", "succeeded", 1],
      ["reserve-inventory", "succeeded", 1],
      ["process-payment", "succeeded", 1],
      ["confirm-order", "succeeded", 1],
    ]);
    expect(done.finishedAt).toBeInstanceOf(Date);
    const evs = await events(id);
    expect(evs.map((e) => e.seq)).toEqual(evs.map((_, i) => i + 1));
    expect(evs.map((e) => `${e.type}${e.step ? `:${e.step}` : ""}`)).toEqual([
      "saga.started",
      "saga.step.started:create-order",
      "saga.step.completed:create-order",
      "saga.step.started:reserve-inventory",
      "saga.step.completed:reserve-inventory",
      "saga.step.started:process-payment",
      "saga.step.completed:process-payment",
      "saga.step.started:confirm-order",
      "saga.step.completed:confirm-order",
      "saga.completed",
    ]);
    expect((await calls(db.pool, id)).map((c) => `${c.kind}:${c.step}`)).toEqual([
      "execute:create-order",
      "execute:reserve-inventory",
      "execute:process-payment",
      "execute:confirm-order",
    ]);
    // The instance's sequence counter is the last event's seq.
    const { rows } = await db.pool.query("select seq from saga.instances where id = $1", [id]);
    expect(rows[0].seq).toBe(evs.length);
  });

  it("compensates steps 2 then 1 when step 3 fails, ending compensated", async () => {
    const { id } = await engine.start(saga, { customerId: "c-2", amount: 10, failAt: "process-payment" });
    const done = await engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("compensated");
    expect(done.error).toMatchObject({ code: "PAYMENT_DECLINED", step: "process-payment", retryable: false });
    expect((await calls(db.pool, id)).map((c) => `${c.kind}:${c.step}`)).toEqual([
      "execute:create-order",
      "execute:reserve-inventory",
      "execute:process-payment",
      "compensate:reserve-inventory",
      "compensate:create-order",
    ]);
    expect(done.steps.map((s) => s.status)).toEqual(["compensated", "compensated", "failed", "skipped"]);
    const evs = await events(id);
    expect(evs.map((e) => e.seq)).toEqual(evs.map((_, i) => i + 1));
    expect(evs.slice(-6).map((e) => `${e.type}${e.step ? `:${e.step}` : ""}`)).toEqual([
      "saga.step.started:process-payment",
      "saga.step.failed:process-payment",
      "compensation.started",
      "compensation.step.completed:reserve-inventory",
      "compensation.step.completed:create-order",
      "compensation.completed",
    ]);
  });

  it("ends failed, with nothing to undo, when the first step fails", async () => {
    const { id } = await engine.start(saga, { customerId: "c-3", amount: 1, failAt: "create-order" });
    const done = await engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("failed");
    expect(done.error).toMatchObject({ code: "ORDER_REJECTED", step: "create-order" });
    expect((await events(id)).at(-1)?.type).toBe("saga.failed");
    expect((await calls(db.pool, id)).filter((c) => c.kind === "compensate")).toEqual([]);
  });

  it("starts inside a pg transaction: rollback leaves nothing, commit runs", async () => {
    const before = await countRows();
    const client = await db.pool.connect();
    let rolledBackId: string;
    try {
      await client.query("begin");
      await client.query("insert into app_orders (customer) values ('rolled-back')");
      rolledBackId = (await engine.start(saga, { customerId: "tx-1", amount: 5 }, { client })).id;
      await client.query("rollback");
    } finally {
      client.release();
    }
    expect(await countRows(rolledBackId)).toEqual({ instances: 0, events: 0, jobs: 0 });
    expect(await countRows()).toMatchObject({ instances: before.instances, events: before.events });

    const committer = await db.pool.connect();
    let id: string;
    try {
      await committer.query("begin");
      await committer.query("insert into app_orders (customer) values ('committed')");
      id = (await engine.start(saga, { customerId: "tx-2", amount: 5 }, { client: committer })).id;
      // Not visible outside the transaction before it commits.
      expect(await engine.get(id)).toBeNull();
      await committer.query("commit");
    } finally {
      committer.release();
    }
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
  });

  it("starts inside a drizzle transaction: rollback leaves nothing, commit runs", async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const orm = drizzle(pool);
    try {
      let rolledBackId = "";
      await expect(
        orm.transaction(async (tx) => {
          await tx.execute(sql`insert into app_orders (customer) values ('drizzle-rollback')`);
          rolledBackId = (await engine.start(saga, { customerId: "dz-1", amount: 3 }, { client: tx })).id;
          throw new Error("application changed its mind");
        }),
      ).rejects.toThrow("application changed its mind");
      expect(rolledBackId).toMatch(/^[0-9a-f-]{36}$/);
      expect(await countRows(rolledBackId)).toEqual({ instances: 0, events: 0, jobs: 0 });

      const id = await orm.transaction(async (tx) => {
        await tx.execute(sql`insert into app_orders (customer) values ('drizzle-commit')`);
        return (await engine.start(saga, { customerId: "dz-2", amount: 3 }, { client: tx })).id;
      });
      expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
      const { rows } = await db.pool.query(
        "select count(*)::int as n from app_orders where customer like 'drizzle-%'",
      );
      expect(rows[0].n).toBe(1);
    } finally {
      await pool.end();
    }
  });

  it("creates one instance for 50 concurrent starts with one idempotency key", async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        engine.start(saga, { customerId: "idem", amount: 7 }, { idempotencyKey: "order-idem-1" }),
      ),
    );
    const ids = new Set(results.map((r) => r.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const { rows } = await db.pool.query(
      "select count(*)::int as n from saga.instances where idempotency_key = 'order-idem-1'",
    );
    expect(rows[0].n).toBe(1);
    const [id] = [...ids];
    await engine.waitFor(id!, { timeoutMs: 20_000 });
    expect((await calls(db.pool, id)).filter((c) => c.step === "create-order")).toHaveLength(1);
  });

  it("rejects invalid input with INVALID_INPUT naming the field, writing nothing", async () => {
    const before = await countRows();
    const err = await engine.start(saga, { customerId: "", amount: -5 } as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SagaError);
    expect((err as SagaError).code).toBe("INVALID_INPUT");
    expect((err as SagaError).message).toMatch(/customerId/);
    expect((err as SagaError).message).toMatch(/amount/);
    const issues = ((err as SagaError).details as { issues: { path: string[] }[] }).issues;
    expect(issues.map((i) => i.path.join("."))).toEqual(["customerId", "amount"]);
    expect(await countRows()).toMatchObject({ instances: before.instances, events: before.events });
  });

  it("rejects an unknown saga and a payload over the size limit, writing nothing", async () => {
    const before = await countRows();
    const other = orderSaga(db.pool, { name: "not-registered" });
    await expect(engine.start(other, { customerId: "x", amount: 1 })).rejects.toMatchObject({
      code: "UNKNOWN_SAGA",
    });
    const small = createSagaEngine({ connectionString: db.url, sagas: [saga], maxPayloadBytes: 1_000 });
    try {
      await expect(small.start(saga, { customerId: "x".repeat(2_000), amount: 1 })).rejects.toMatchObject({
        code: "PAYLOAD_TOO_LARGE",
      });
    } finally {
      await small.close();
    }
    expect(await countRows()).toMatchObject({ instances: before.instances, events: before.events });
  });

  it("answers the plain SQL of docs/sql.md (Looking at state)", async () => {
    const { id } = await engine.start(
      saga,
      { customerId: "sql", amount: 9 },
      { metadata: { tenant: "acme" } },
    );
    await engine.waitFor(id, { timeoutMs: 20_000 });
    const instance = await db.pool.query(
      "select id, name, version, state, input, data, result, error, idempotency_key, created_at, updated_at, finished_at from saga.instances where id = $1",
      [id],
    );
    expect(instance.rows[0]).toMatchObject({
      id,
      name: "order-processing",
      version: 1,
      state: "completed",
      error: null,
    });
    const steps = await db.pool.query(
      "select saga_id, index, name, status, attempt, output, error, started_at, finished_at from saga.steps where saga_id = $1 order by index",
      [id],
    );
    expect(steps.rows.map((r) => [r.index, r.name, r.status, r.attempt])).toEqual([
      [0, "create-order", "succeeded", 1],
      [1, "reserve-inventory", "succeeded", 1],
      [2, "process-payment", "succeeded", 1],
      [3, "confirm-order", "succeeded", 1],
    ]);
    const counts = await db.pool.query(
      "select state, count(*)::int as n from saga.instances where name = 'order-processing' group by state",
    );
    expect(counts.rows.find((r) => r.state === "completed")?.n).toBeGreaterThan(0);
    const evs = await db.pool.query(
      "select id, saga_id, seq, type, step, payload, created_at from saga.events where saga_id = $1 order by seq",
      [id],
    );
    expect(evs.rows[0]).toMatchObject({
      type: "saga.started",
      seq: 1,
      payload: { version: 1, metadata: { tenant: "acme" } },
    });
  });
});
