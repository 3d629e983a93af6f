/**
 * Operators against a saga that holds its row: cancel() of a hung transactional step returns at once and the
 * step is aborted, from TypeScript and from SQL. saga.start from SQL refuses versions and idempotency keys out
 * of range with its own SQLSTATE; migrate() by a role without CREATE finds a current schema current.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { SagaError, createSagaEngine, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const undone = new Set<string>();

/** A transactional step that writes, then hangs (ignoring its signal) or sits in a long query. */
const hung = defineSaga({ name: "hung", input: z.object({ how: z.enum(["promise", "query"]) }) })
  .step("reserve", {
    execute: (data) => data,
    compensate: (_data, ctx) => {
      undone.add(ctx.sagaId);
    },
  })
  .step("write", {
    transactional: true,
    execute: async (data, ctx) => {
      await ctx.tx.query("insert into hung_writes (saga_id) values ($1)", [ctx.sagaId]);
      if (data.how === "query") await ctx.tx.query("select pg_sleep(3600)");
      else await new Promise(() => {});
      return data;
    },
  });

const harness = useEngine(db, () => [hung], { abortGrace: 500 });
const e = () => harness.engine;

beforeAll(async () => {
  await db.pool.query("create table hung_writes (saga_id uuid not null)");
});

async function startHung(how: "promise" | "query"): Promise<string> {
  const { id } = await e().start(hung, { how });
  await expect.poll(async () => (await e().get(id))?.steps[1]?.status, { timeout: 10_000 }).toBe("running");
  // The handler holds the row: its transaction took the lock before calling it.
  await new Promise((r) => setTimeout(r, 200));
  return id;
}

async function expectCancelled(id: string, reason: string) {
  const done = await e().waitFor(id, { timeoutMs: 20_000 });
  expect(done.state).toBe("cancelled");
  expect(done.error).toMatchObject({ code: "CANCELLED", message: reason });
  // The transactional attempt did not commit: failed (not unknown), its write rolled back, not compensated.
  expect(done.steps[1]).toMatchObject({ status: "failed", error: { code: "CANCELLED", outcome: "failed" } });
  expect(done.steps[0]?.status).toBe("compensated");
  expect(undone.has(id)).toBe(true);
  const writes = await db.pool.query("select count(*)::int as n from hung_writes where saga_id = $1", [id]);
  expect(writes.rows[0].n).toBe(0);
  const requests = await db.pool.query(
    "select count(*)::int as n from saga.cancel_requests where saga_id = $1",
    [id],
  );
  expect(requests.rows[0].n).toBe(0);
}

describe("cancel of a hung transactional step", () => {
  it("engine.cancel() does not wait for the row lock; the handler is aborted and the saga cancelled", async () => {
    const id = await startHung("promise");
    const started = performance.now();
    const result = await e().cancel(id, "stop waiting");
    // Bounded by its lock timeout (1 s), never by the handler.
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(result.state).toBe("running");
    await expectCancelled(id, "stop waiting");
  });

  it("a handler stuck in a query is aborted too: the query is cancelled in the database", async () => {
    const id = await startHung("query");
    await e().cancel(id, "stop the query");
    await expectCancelled(id, "stop the query");
    const sleeping = await db.pool.query(
      "select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(3600)' and state = 'active' and datname = current_database()",
    );
    expect(sleeping.rows[0].n).toBe(0);
  });

  it("SQL saga.cancel returns at once ('running'); the first reason asked for is kept", async () => {
    const id = await startHung("promise");
    const { rows } = await db.pool.query("select saga.cancel($1, 'from sql') as state", [id]);
    expect(rows[0].state).toBe("running");
    await db.pool.query("select saga.cancel($1, 'second')", [id]);
    await expectCancelled(id, "from sql");
  });
});

describe("saga.start from SQL", () => {
  async function sqlError(options: unknown): Promise<string | undefined> {
    try {
      await db.pool.query("select saga.start('hung', $1::jsonb, $2::jsonb)", [
        JSON.stringify({ how: "promise" }),
        JSON.stringify(options),
      ]);
    } catch (err) {
      return (err as { code?: string }).code;
    }
    return undefined;
  }

  it("refuses versions out of range and long idempotency keys with SG400, writing nothing; 1.0 is version 1", async () => {
    const before = await db.pool.query("select count(*)::int as n from saga.instances");
    expect(await sqlError({ version: 1e10 })).toBe("SG400");
    expect(await sqlError({ version: 1.5 })).toBe("SG400");
    expect(await sqlError({ version: -1 })).toBe("SG400");
    expect(await sqlError({ idempotencyKey: "k".repeat(10_000) })).toBe("SG400");
    expect(await sqlError({ idempotencyKey: "" })).toBe("SG400");
    const after = await db.pool.query("select count(*)::int as n from saga.instances");
    expect(after.rows[0].n).toBe(before.rows[0].n);

    const { rows } = await db.pool
      .query(`select saga.start('noop-version', '{}'::jsonb, '{"version": 1.0}'::jsonb) as id`)
      .catch((err: { code?: string }) => ({ rows: [{ id: err.code }] }));
    // Not a registered saga: SG406 (its own error), not 22P02 from the version.
    expect(rows[0].id).toBe("SG406");
    const key = "k".repeat(255);
    const ok = await db.pool.query("select saga.start('hung', $1::jsonb, $2::jsonb) as id", [
      JSON.stringify({ how: "promise" }),
      JSON.stringify({ version: 1.0, idempotencyKey: key }),
    ]);
    const started = await db.pool.query("select version, idempotency_key from saga.instances where id = $1", [
      ok.rows[0].id,
    ]);
    expect(started.rows[0]).toEqual({ version: 1, idempotency_key: key });
    await e().cancel(ok.rows[0].id as string, "test over");
  });
});

describe("migrate() by a role without CREATE on the database", () => {
  const role = `pgsaga_nocreate_${process.pid}`;
  afterAll(async () => {
    await db.pool.query(`drop owned by ${role}`).catch(() => {});
    await db.pool.query(`drop role if exists ${role}`);
  });

  it("succeeds when the schema is current, and fails with MIGRATION_FAILED (not a raw 42501) when it cannot read it", async () => {
    await db.pool.query(`create role ${role} login`);
    const url = new URL(db.url);
    url.username = role;
    const engine = createSagaEngine({ connectionString: url.toString(), sagas: [] });
    try {
      const refused = await engine.migrate().catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(SagaError);
      expect(refused).toMatchObject({ code: "MIGRATION_FAILED", message: expect.stringMatching(/42501/) });

      await db.pool.query(
        `grant usage on schema saga, graphile_worker to ${role};
         grant select on saga.__drizzle_migrations, saga.__repeatable, graphile_worker.migrations to ${role}`,
      );
      const privileges = await db.pool.query(
        "select has_database_privilege($1, current_database(), 'CREATE') as db, has_schema_privilege($1, 'saga', 'CREATE') as saga",
        [role],
      );
      expect(privileges.rows[0]).toEqual({ db: false, saga: false });
      await expect(engine.migrate()).resolves.toBeUndefined();
    } finally {
      await engine.close();
    }
  });
});
