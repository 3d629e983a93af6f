/**
 * The three group roles: a saga's whole life (start, steps, events, cancel, retry, subscriptions, a kill -9 of
 * a worker process) run by non-superuser login roles that are members of saga_app, saga_worker and saga_reader,
 * and each role refused (42501) what it must not do.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import {
  BusinessError,
  type SagaEngine,
  type SagaEvent,
  createSagaEngine,
  defineSaga,
} from "../src/index.js";
import { CALLS_TABLE, calls } from "./fixtures/order-saga.js";
import { waitUntil } from "./fixtures/subscriber-helpers.js";
import { createDatabase, dropDatabase, useTestDatabase } from "./helpers/database.js";
import { type ChaosWorker, spawnChaosWorker, stopChaosWorker } from "./chaos/worker-processes.js";
import { holdSaga } from "./fixtures/chaos-sagas.js";
import { loginRole } from "./helpers/roles.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();
const urls = { app: "", worker: "", reader: "" };
let effects: pg.Pool;
let app: SagaEngine;
let worker: SagaEngine;
let stopWorkerEngine: () => Promise<void>;

const flaky = { broken: true };
const ticket = defineSaga({ name: "ticket", input: z.object({ seat: z.string() }) })
  .step("hold", {
    execute: (data) => {
      if (flaky.broken && data.seat === "flaky") throw new BusinessError("JAMMED", "printer jammed");
      return { ...data, held: true };
    },
    compensate: () => {},
  })
  .step("issue", { execute: (data) => ({ ...data, issued: true }) })
  .step("wait", {
    execute: async (data, ctx) => {
      if (data.seat !== "slow") return data;
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      return data;
    },
  });

beforeAll(async () => {
  urls.app = await loginRole(db.url, "pgsaga_t_app", ["saga_app"]);
  urls.worker = await loginRole(db.url, "pgsaga_t_worker", ["saga_worker"]);
  urls.reader = await loginRole(db.url, "pgsaga_t_reader", ["saga_reader"]);
  await db.pool.query(CALLS_TABLE);
  await db.pool.query("grant select, insert on test_calls to saga_worker");
  effects = new pg.Pool({ connectionString: urls.worker, max: 4 });
  app = createSagaEngine({ connectionString: urls.app, sagas: [ticket, holdSaga(effects)] });
  worker = createSagaEngine({ connectionString: urls.worker, sagas: [ticket, holdSaga(effects)] });
  const w = await worker.runWorker({
    concurrency: 4,
    pollInterval: 100,
    heartbeatInterval: 300,
    deadWorkerAfter: 1_500,
    reapInterval: 500,
  });
  stopWorkerEngine = () => w.stop();
});
afterAll(async () => {
  await stopWorkerEngine?.();
  await worker?.close();
  await app?.close();
  await effects?.end();
});

const whoami = async (url: string) => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ super: boolean }>(
      "select rolsuper as super from pg_roles where rolname = current_user",
    );
    return rows[0]!.super;
  } finally {
    await c.end();
  }
};

/** The SQLSTATE each statement fails with, run as `url`'s role (null: it succeeded). */
async function refusals(url: string, statements: string[]): Promise<(string | null)[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const codes: (string | null)[] = [];
    for (const sql of statements) {
      codes.push(
        await c.query(sql).then(
          () => null,
          (err: { code?: string }) => err.code ?? "?",
        ),
      );
    }
    return codes;
  } finally {
    await c.end();
  }
}

describe("least-privilege roles", () => {
  it("the login roles are not superusers", async () => {
    for (const url of Object.values(urls)) expect(await whoami(url)).toBe(false);
  });

  it("saga_app starts, reads, publishes, subscribes, cancels and retries; saga_worker runs it all", async () => {
    const got: SagaEvent[] = [];
    const sub = app.subscribe({ types: ["saga.completed", "ticket.sold"] }, (e) => void got.push(e));
    await sub.ready;
    const durable: SagaEvent[] = [];
    const billing = worker.subscribe({ types: ["saga.completed"] }, (e) => void durable.push(e), {
      durable: "billing",
      pollInterval: 50,
    });
    try {
      const { id } = await app.start(ticket, { seat: "12A" });
      expect((await app.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
      expect((await app.get(id))?.steps.map((s) => s.status)).toEqual([
        "succeeded",
        "succeeded",
        "succeeded",
      ]);
      expect((await app.list({ name: "ticket" })).map((s) => s.id)).toContain(id);
      await app.publish({ type: "ticket.sold", payload: { seat: "12A" } });
      await waitUntil("live events", () => got.length >= 2);
      await waitUntil("durable event", () => durable.some((e) => e.sagaId === id));
      expect(got.map((e) => e.type).sort()).toEqual(["saga.completed", "ticket.sold"]);

      // From SQL too: saga.start is SECURITY DEFINER.
      const c = new pg.Client({ connectionString: urls.app });
      await c.connect();
      const sqlId = (await c.query<{ id: string }>("select saga.start('ticket', '{\"seat\":\"9C\"}') as id"))
        .rows[0]!.id;
      await c.end();
      expect((await app.waitFor(sqlId, { timeoutMs: 20_000 })).state).toBe("completed");

      const slow = await app.start(ticket, { seat: "slow" });
      await waitUntil(
        "the wait step runs",
        async () => (await app.get(slow.id))?.steps[2]?.status === "running",
      );
      await app.cancel(slow.id, "changed plans");
      expect((await app.waitFor(slow.id, { timeoutMs: 20_000 })).state).toBe("cancelled");

      const failed = await app.start(ticket, { seat: "flaky" });
      expect((await app.waitFor(failed.id, { timeoutMs: 20_000 })).state).toBe("failed");
      flaky.broken = false;
      await app.retry(failed.id, { reason: "printer fixed" });
      expect((await app.waitFor(failed.id, { timeoutMs: 20_000 })).state).toBe("completed");
    } finally {
      await sub.close();
      await billing.close();
    }
  });

  it("each role is refused what it must not do (42501)", async () => {
    const { rows } = await db.pool.query<{ id: string }>("select id from saga.instances limit 1");
    const id = rows[0]!.id;
    const writes = [
      `insert into saga.instances (name, version, state, input) values ('x', 1, 'running', '{}')`,
      `update saga.instances set state = 'completed' where id = '${id}'`,
      `delete from saga.outbox`,
      `insert into saga.outbox (type, payload) values ('saga.completed', '{}')`,
      `select saga._apply('${id}', '{"state":"completed"}', '[]', '[]', '[]', null)`,
      `select * from graphile_worker._private_jobs`,
      `create table saga.mine (id int)`,
    ];
    expect(await refusals(urls.app, writes)).toEqual(writes.map(() => "42501"));
    const readerOnly = [
      ...writes,
      `select * from saga.outbox`,
      `select * from saga.subscriptions`,
      `select saga.start('ticket', '{}')`,
      `select saga.cancel('${id}', 'x')`,
      `select saga.retry('${id}')`,
      `select * from saga._publish(array['x'], array[null], array['{}'])`,
    ];
    expect(await refusals(urls.reader, readerOnly)).toEqual(readerOnly.map(() => "42501"));
    expect(
      await refusals(urls.reader, [
        "select count(*) from saga.instances",
        "select count(*) from saga.steps",
        "select count(*) from saga.events",
        "select count(*) from saga.stuck",
      ]),
    ).toEqual([null, null, null, null]);
    // The worker writes the tables, but owns nothing and creates nothing.
    expect(
      await refusals(urls.worker, [
        "create table saga.mine (id int)",
        "drop table saga.outbox",
        "alter table saga.instances add column x int",
        "create schema mine",
      ]),
    ).toEqual(["42501", "42501", "42501", "42501"]);
    // saga._publish refuses the engine's own event types even to a role allowed to call it.
    expect(
      await refusals(urls.app, [
        "select * from saga._publish(array['saga.completed'], array[null], array['{}'])",
      ]),
    ).toEqual(["SG400"]);
  });

  it("a non-superuser owner without CREATEROLE migrates a fresh database; the roles get their grants there", async () => {
    const created = await createDatabase(false);
    const ownerUrl = await loginRole(created.url, "pgsaga_t_owner");
    const admin = new pg.Client({ connectionString: created.url });
    await admin.connect();
    await admin.query(`alter database ${created.name} owner to pgsaga_t_owner`);
    await admin.end();
    const owner = createSagaEngine({ connectionString: ownerUrl, sagas: [] });
    try {
      await owner.migrate();
      await owner.migrate();
      const workerUrl = new URL(urls.worker);
      workerUrl.pathname = `/${created.name}`;
      expect(
        await refusals(workerUrl.toString(), [
          "select count(*) from graphile_worker._private_jobs",
          "insert into saga.workers (id, hostname, pid, sagas) values ('w', 'h', 1, '[]')",
          "create table saga.mine (id int)",
        ]),
      ).toEqual([null, null, "42501"]);
    } finally {
      await owner.close();
      await dropDatabase(created.name);
    }
  });

  it("kill -9 of a worker process running as saga_worker: another saga_worker process finishes the saga", async () => {
    await stopWorkerEngine();
    const env = { DATABASE_URL: urls.worker, DEAD_AFTER_MS: "1500" };
    const spawned: ChaosWorker[] = [];
    try {
      const victim = await spawnChaosWorker(env);
      spawned.push(victim);
      const { id } = await app.start(holdSaga(effects), { holdMs: 60_000 });
      await waitUntil("the hold step called", async () =>
        (await calls(db.pool, id)).some((c) => c.step === "hold"),
      );
      victim.child.kill("SIGKILL");
      await victim.exited;
      const rescuer = await spawnChaosWorker(env);
      spawned.push(rescuer);
      expect((await app.waitFor(id, { timeoutMs: 60_000 })).state).toBe("completed");
      const holds = (await calls(db.pool, id)).filter((c) => c.step === "hold" && c.kind === "execute");
      expect(holds.map((c) => [c.attempt, c.worker_pid])).toEqual([
        [1, victim.pid],
        [2, rescuer.pid],
      ]);
    } finally {
      await Promise.all(spawned.map((w) => stopChaosWorker(w)));
    }
  });
});
