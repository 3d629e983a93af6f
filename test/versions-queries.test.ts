import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, createSagaEngine, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const input = z.object({ n: z.number().int(), fail: z.boolean().default(false) });

const v1 = defineSaga({ name: "signup", version: 1, input })
  .step("create-user", { execute: (d) => ({ ...d, v: 1 }) })
  .step("send-email", { execute: (d) => d });
const v2 = defineSaga({ name: "signup", version: 2, input })
  .step("create-user", { execute: (d) => ({ ...d, v: 2 }) })
  .step("create-profile", { execute: (d) => d, compensate: () => {} })
  .step("send-email", {
    execute: (d) => {
      if (d.fail) throw new BusinessError("EMAIL_BOUNCED", "bounced");
      return d;
    },
  });
const v3 = defineSaga({ name: "signup", version: 3, input }).step("all-in-one", {
  execute: (d) => ({ ...d, v: 3 }),
});

const harness = useEngine(db, () => [v1, v2]);
const e = () => harness.engine;

describe("definition versions", () => {
  it("runs two versions side by side, each instance pinned to its own", async () => {
    const a = await e().start(v1, { n: 1 });
    const b = await e().start(v2, { n: 2 });
    const [doneA, doneB] = await Promise.all([e().waitFor(a.id), e().waitFor(b.id)]);
    expect([doneA.version, doneA.state, doneA.result]).toEqual([1, "completed", { n: 1, fail: false, v: 1 }]);
    expect([doneB.version, doneB.state, doneB.result]).toEqual([2, "completed", { n: 2, fail: false, v: 2 }]);
    expect(doneA.steps.map((s) => s.name)).toEqual(["create-user", "send-email"]);
    expect(doneB.steps.map((s) => s.name)).toEqual(["create-user", "create-profile", "send-email"]);
  });

  it("leaves a version no worker runs waiting, untouched, until a worker that has it starts", async () => {
    const starter = createSagaEngine({ connectionString: db.url, sagas: [v3] });
    try {
      const { id } = await starter.start(v3, { n: 3 });
      await new Promise((r) => setTimeout(r, 500));
      const waiting = await starter.get(id);
      expect(waiting?.state).toBe("running");
      expect(waiting?.steps.map((s) => s.status)).toEqual(["pending"]);
      const { rows } = await db.pool.query("select count(*)::int as n from saga.steps where saga_id = $1", [
        id,
      ]);
      expect(rows[0].n).toBe(0);
      const served = await db.pool.query<{ sagas: string[] }>("select sagas from saga.workers");
      expect(served.rows.flatMap((r) => r.sagas)).not.toContain("signup@3");

      const worker = await starter.runWorker({ concurrency: 2, pollInterval: 100 });
      try {
        expect((await starter.waitFor(id)).result).toEqual({ n: 3, fail: false, v: 3 });
      } finally {
        // stop() is idempotent: a second call (and close() after it) waits for the same shutdown.
        await Promise.all([worker.stop(), worker.stop()]);
        await worker.stop();
      }
    } finally {
      await starter.close();
    }
  });

  it("refuses at worker start a definition whose steps changed under the same version", async () => {
    const changed = defineSaga({ name: "signup", version: 1, input }).step("create-user", {
      execute: (d) => d,
    });
    const engine = createSagaEngine({ connectionString: db.url, sagas: [changed] });
    try {
      await expect(engine.runWorker()).rejects.toMatchObject({ code: "DEFINITION_MISMATCH" });
    } finally {
      await engine.close();
    }
  });
});

describe("list and metrics", () => {
  it("filters by state, name, time and metadata, and pages with a keyset cursor", async () => {
    const since = new Date(Date.now() - 1000);
    const started = [];
    for (let i = 0; i < 7; i++) {
      started.push(
        await e().start(
          v2,
          { n: 100 + i, fail: i % 3 === 0 },
          { metadata: { batch: "paging", even: i % 2 === 0 } },
        ),
      );
    }
    for (const s of started) await e().waitFor(s.id);
    const all = new Set(started.map((s) => s.id));

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await e().list({ metadata: { batch: "paging" }, limit: 3, cursor, order: "asc" });
      expect(page.length).toBeLessThanOrEqual(3);
      seen.push(...page.map((p) => p.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(7);
    expect(new Set(seen)).toEqual(all);
    expect(seen).toEqual(started.map((s) => s.id)); // ascending creation order

    const compensated = await e().list({ states: ["compensated"], metadata: { batch: "paging" } });
    expect(compensated.map((c) => c.id).sort()).toEqual(
      [started[0]!.id, started[3]!.id, started[6]!.id].sort(),
    );
    const even = await e().list({
      metadata: { batch: "paging", even: true },
      name: "signup",
      createdAfter: since,
    });
    expect(even).toHaveLength(4);
    expect(await e().list({ names: ["nope"] })).toHaveLength(0);
    expect(await e().list({ metadata: { batch: "paging" }, createdBefore: since })).toHaveLength(0);
    await expect(e().list({ limit: 0 })).rejects.toMatchObject({ code: "INVALID_OPTIONS" });
    await expect(e().list({ cursor: "garbage" })).rejects.toMatchObject({ code: "INVALID_OPTIONS" });
  });

  it("computes metrics in SQL", async () => {
    const m = await e().metrics({ name: "signup" });
    const { rows } = await db.pool.query<{ state: string; n: number }>(
      "select state, count(*)::int as n from saga.instances where name = 'signup' group by state",
    );
    const count = (s: string) => rows.find((r) => r.state === s)?.n ?? 0;
    expect(m.total).toBe(rows.reduce((a, r) => a + r.n, 0));
    expect(m.completed).toBe(count("completed"));
    expect(m.compensated).toBe(count("compensated"));
    expect(m.compensated).toBeGreaterThanOrEqual(3);
    expect(m.active).toBe(count("running") + count("compensating"));
    expect(m.failedSteps).toBeGreaterThanOrEqual(3);
    expect(m.totalCompensations).toBeGreaterThanOrEqual(3);
    expect(m.averageSagaDurationMs).toBeGreaterThan(0);
    expect(m.totalSteps).toBeGreaterThan(m.failedSteps);
  });
});
