/**
 * Tenant isolation (opt-in): a saga_app session with saga.tenant set sees and acts only on its tenant's sagas
 * and events; sessions without the setting (and the worker) see every tenant.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { type SagaEngine, type SagaEvent, createSagaEngine, defineSaga } from "../src/index.js";
import { waitUntil } from "./fixtures/subscriber-helpers.js";
import { useTestDatabase } from "./helpers/database.js";
import { loginRole } from "./helpers/roles.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();
const urls = { acme: "", globex: "", all: "", reader: "", worker: "" };
const engines: SagaEngine[] = [];
let acme: SagaEngine;
let globex: SagaEngine;
let all: SagaEngine;
let stopWorker: () => Promise<void>;

const order = defineSaga({ name: "tenant-order", input: z.object({ n: z.number() }) })
  .step("reserve", { execute: (data) => ({ ...data, reserved: true }), compensate: () => {} })
  .step("charge", { execute: (data) => ({ ...data, charged: true }) });

/** `url` with `saga.tenant` set for every session of the connection (libpq's options parameter). */
function withTenant(url: string, tenant: string): string {
  const u = new URL(url);
  u.searchParams.set("options", `-c saga.tenant=${tenant}`);
  return u.toString();
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** The SQLSTATE `sql` fails with as `url`'s role, or null when it succeeds. */
const sqlState = (url: string, sql: string, params: unknown[] = []) =>
  query(url, sql, params).then(
    () => null,
    (err: { code?: string }) => err.code ?? "?",
  );

const count = async (url: string, sql: string, params: unknown[]) =>
  Number((await query<{ n: string }>(url, sql, params))[0]!.n);

beforeAll(async () => {
  const app = await loginRole(db.url, "pgsaga_tn_app", ["saga_app"]);
  urls.acme = withTenant(app, "acme");
  urls.globex = withTenant(app, "globex");
  urls.all = app;
  urls.reader = await loginRole(db.url, "pgsaga_tn_reader", ["saga_reader"]);
  urls.worker = await loginRole(db.url, "pgsaga_tn_worker", ["saga_worker"]);
  const worker = createSagaEngine({ connectionString: urls.worker, sagas: [order] });
  engines.push(worker);
  const w = await worker.runWorker({ concurrency: 4, pollInterval: 100 });
  stopWorker = () => w.stop();
  acme = createSagaEngine({ connectionString: urls.acme, sagas: [order] });
  globex = createSagaEngine({ connectionString: urls.globex, sagas: [order] });
  all = createSagaEngine({ connectionString: urls.all, sagas: [order] });
  engines.push(acme, globex, all);
});
afterAll(async () => {
  await stopWorker?.();
  for (const e of engines) await e.close();
});

describe("tenant isolation", () => {
  it("each tenant's session sees, cancels, retries and hears only its own sagas; the worker runs them all", async () => {
    const heardByAcme: SagaEvent[] = [];
    const sub = acme.subscribe({ types: ["saga.completed"] }, (e) => void heardByAcme.push(e));
    await sub.ready;
    try {
      const b = await globex.start(order, { n: 1 });
      expect((await globex.waitFor(b.id, { timeoutMs: 20_000 })).state).toBe("completed");
      // Started with the session's tenant, and run to completion by a worker that has no tenant.
      const a = await acme.start(order, { n: 2 });
      expect((await acme.waitFor(a.id, { timeoutMs: 20_000 })).state).toBe("completed");
      await waitUntil("acme hears its saga complete", () => heardByAcme.some((e) => e.sagaId === a.id));
      expect(heardByAcme.map((e) => e.sagaId)).not.toContain(b.id);

      const tenants = await query<{ id: string; tenant: string }>(
        db.url,
        "select id, tenant from saga.instances where id = any($1::uuid[])",
        [[a.id, b.id]],
      );
      expect(Object.fromEntries(tenants.map((r) => [r.id, r.tenant]))).toEqual({
        [a.id]: "acme",
        [b.id]: "globex",
      });
      expect(
        await count(
          db.url,
          "select count(*) as n from saga.outbox where saga_id = $1 and tenant = 'globex'",
          [b.id],
        ),
      ).toBeGreaterThanOrEqual(2);

      // Reads: the engine API and every table and view.
      expect(await acme.get(b.id)).toBeNull();
      expect(await globex.get(a.id)).toBeNull();
      expect((await acme.get(a.id))?.state).toBe("completed");
      const acmeList = (await acme.list({ name: "tenant-order" })).map((s) => s.id);
      expect(acmeList).toContain(a.id);
      expect(acmeList).not.toContain(b.id);
      for (const sql of [
        "select count(*) as n from saga.instances where id = $1",
        "select count(*) as n from saga.steps where saga_id = $1",
        "select count(*) as n from saga.outbox where saga_id = $1",
        "select count(*) as n from saga.events where saga_id = $1",
      ]) {
        expect(await count(urls.acme, sql, [b.id]), sql).toBe(0);
        expect(await count(urls.globex, sql, [b.id]), sql).toBeGreaterThan(0);
        // Sessions without the setting see every tenant.
        expect(await count(urls.all, sql, [a.id]), sql).toBeGreaterThan(0);
        expect(await count(urls.all, sql, [b.id]), sql).toBeGreaterThan(0);
      }
      expect(
        await count(urls.reader, "select count(*) as n from saga.events where saga_id = $1", [b.id]),
      ).toBeGreaterThan(0);
      const readerAcme = withTenant(urls.reader, "acme");
      for (const sql of [
        "select count(*) as n from saga.instances where id = $1",
        "select count(*) as n from saga.steps where saga_id = $1",
        "select count(*) as n from saga.events where saga_id = $1",
      ])
        expect(await count(readerAcme, sql, [b.id]), sql).toBe(0);

      // Acting on another tenant's saga: not found (not "already ended", which would tell it exists).
      await expect(acme.cancel(b.id)).rejects.toMatchObject({ code: "SAGA_NOT_FOUND" });
      await expect(acme.retry(b.id)).rejects.toMatchObject({ code: "SAGA_NOT_FOUND" });
      expect(await sqlState(urls.acme, "select saga.cancel($1)", [b.id])).toBe("SG404");
      expect(await sqlState(urls.acme, "select saga.retry($1)", [b.id])).toBe("SG404");
      // Its own saga: found, and refused for its state.
      expect(await sqlState(urls.acme, "select saga.cancel($1)", [a.id])).toBe("SG410");
      expect(await sqlState(urls.acme, "select saga.retry($1)", [a.id])).toBe("SG412");

      // A session may not start a saga for another tenant, nor learn another tenant's idempotency key's saga.
      await expect(acme.start(order, { n: 3 }, { tenant: "globex" })).rejects.toMatchObject({
        code: "INVALID_OPTIONS",
      });
      expect(
        await sqlState(urls.acme, `select saga.start('tenant-order', '{"n":3}', '{"tenant":"globex"}')`),
      ).toBe("SG400");
      await globex.start(order, { n: 4 }, { idempotencyKey: "k-4" });
      await expect(acme.start(order, { n: 4 }, { idempotencyKey: "k-4" })).rejects.toMatchObject({
        code: "IDEMPOTENCY_CONFLICT",
      });
    } finally {
      await sub.close();
    }
  });

  it("a session without the setting starts for a tenant given explicitly, from the engine and from SQL", async () => {
    const e = await all.start(order, { n: 5 }, { tenant: "acme" });
    const s = (
      await query<{ id: string }>(
        urls.all,
        `select saga.start('tenant-order', '{"n":6}', '{"tenant":"globex"}') as id`,
      )
    )[0]!.id;
    const untagged = (await all.start(order, { n: 7 })).id;
    for (const id of [e.id, s, untagged])
      expect((await all.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
    expect((await acme.get(e.id))?.state).toBe("completed");
    expect(await acme.get(s)).toBeNull();
    expect((await globex.get(s))?.state).toBe("completed");
    // A saga without a tenant belongs to no tenant's session.
    expect(await acme.get(untagged)).toBeNull();
    expect(
      await count(
        urls.all,
        "select count(*) as n from saga.events where saga_id = $1 and tenant = 'globex'",
        [s],
      ),
    ).toBeGreaterThanOrEqual(2);
  });

  it("an application event carries the publishing session's tenant", async () => {
    await acme.publish({ type: "tenant.note", payload: { n: 1 } });
    await globex.publish({ type: "tenant.note", payload: { n: 2 } });
    const seen = async (url: string) =>
      (
        await query<{ n: number }>(
          url,
          "select (payload->>'n')::int as n from saga.events where type = 'tenant.note'",
        )
      )
        .map((r) => r.n)
        .sort();
    expect(await seen(urls.acme)).toEqual([1]);
    expect(await seen(urls.globex)).toEqual([2]);
    expect(await seen(urls.all)).toEqual([1, 2]);
  });
});
