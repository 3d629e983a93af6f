import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { SagaError, createSagaEngine, defineSaga, type SagaEngine } from "../src/index.js";
import { CHILD_TABLES, childSagas } from "./fixtures/child-sagas.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventTrail, useEngine } from "./helpers/engine.js";
import { spawnWorker, stopWorker } from "./helpers/processes.js";

const db = useTestDatabase();
let family: ReturnType<typeof childSagas>;
const t = useEngine(db, () => {
  family = childSagas(db.pool);
  return [family.top, family.mid, family.leaf];
});

beforeAll(async () => {
  await db.pool.query(CHILD_TABLES);
});

/** The chain below a saga: [child, grandchild], each as its row. */
async function descendants(id: string) {
  const { rows } = await db.pool.query<{ id: string; name: string; state: string; parent_step: number }>(
    `with recursive d as (select i.id, i.name, i.state, i.parent_step, 1 as depth from saga.instances i where i.parent_id = $1
      union all select i.id, i.name, i.state, i.parent_step, d.depth + 1 from saga.instances i join d on i.parent_id = d.id)
     select id, name, state, parent_step from d order by depth`,
    [id],
  );
  return rows;
}

async function effects(ids: string[]) {
  const { rows } = await db.pool.query<{ step: string; kind: string }>(
    "select step, kind from child_effects where saga_id = any($1::uuid[]) order by at",
    [ids],
  );
  return rows.map((r) => `${r.kind}:${r.step}`);
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("child sagas", () => {
  it("types a child step's output as the child's result", () => {
    const child = defineSaga({ name: "typed-child", input: z.object({ a: z.string() }) }).step("c", {
      execute: (d) => ({ len: d.a.length }),
    });
    defineSaga({ name: "typed-parent", input: z.object({ s: z.string() }) })
      .child("kid", {
        saga: child,
        input: (d) => {
          expectTypeOf(d).toEqualTypeOf<{ s: string }>();
          return { a: d.s };
        },
      })
      .step("after", {
        execute: (d) => {
          expectTypeOf(d).toEqualTypeOf<{ len: number }>();
          return d;
        },
      });
    expectTypeOf(family.top.$result).toEqualTypeOf<{ total: number; mid: true }>();
  });

  it("refuses an engine whose saga starts a child saga it does not run", () => {
    let caught: unknown;
    try {
      createSagaEngine({ connectionString: db.url, sagas: [family.top, family.mid] });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SagaError);
    expect((caught as SagaError).code).toBe("UNKNOWN_SAGA");
    expect((caught as SagaError).message).toContain('"child-leaf@1"');
  });

  it("runs three levels: the top's result carries the grandchild's", async () => {
    const { id } = await t.engine.start(family.top, { n: 1 });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("completed");
    // leaf = (1 * 10 + 1) * 2 = 22, n as the leaf saw it = 11.
    expect(done.result).toEqual({ total: 33, mid: true });
    const [mid, leaf] = await descendants(id);
    expect(mid).toMatchObject({ name: "child-mid", state: "completed", parent_step: 1 });
    expect(leaf).toMatchObject({ name: "child-leaf", state: "completed", parent_step: 1 });
    expect(done.parentId).toBeNull();
    expect(done.children).toEqual([{ id: mid!.id, name: "child-mid", state: "completed", parentStep: 1 }]);
    expect((await t.engine.get(mid!.id))?.parentId).toBe(id);
    expect(done.steps.find((s) => s.name === "top-mid")?.output).toMatchObject({ n: 11, leaf: 22, mid: true });
    const { rows } = await db.pool.query("select id, state, parent_step from saga.children($1)", [id]);
    expect(rows).toEqual([{ id: mid!.id, state: "completed", parent_step: 1 }]);
    expect(await eventTrail(db, id)).toEqual([
      "saga.started",
      "saga.step.started:top-before",
      "saga.step.completed:top-before",
      "saga.step.started:top-mid",
      "saga.step.completed:top-mid",
      "saga.step.started:top-after",
      "saga.step.completed:top-after",
      "saga.completed",
    ]);
  });

  it("a grandchild that fails for good compensates the chain upward", async () => {
    const { id } = await t.engine.start(family.top, { n: 2, fail: true });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    const [mid, leaf] = await descendants(id);
    expect(leaf?.state).toBe("failed");
    expect(mid?.state).toBe("compensated");
    const step = done.steps.find((s) => s.name === "top-mid");
    expect(step?.status).toBe("failed");
    expect(step?.error).toMatchObject({ code: "CHILD_FAILED", details: { childId: mid!.id, state: "compensated" } });
    const midView = await t.engine.get(mid!.id);
    expect(midView?.steps.find((s) => s.name === "mid-leaf")?.error).toMatchObject({
      code: "CHILD_FAILED",
      details: { state: "failed", error: { code: "LEAF_REFUSED" } },
    });
    // Leaf: did its work and failed (nothing to undo); mid undid its own step; then top undid its own.
    expect(await effects([id, mid!.id, leaf!.id])).toEqual([
      "do:top-before",
      "do:mid-before",
      "do:leaf-work",
      "undo:mid-before",
      "undo:top-before",
    ]);
  });

  it("a worker of concurrency 1 runs parent, child and grandchild: a waiting parent holds no slot", async () => {
    const engine: SagaEngine = createSagaEngine({
      connectionString: db.url,
      sagas: [family.top, family.mid, family.leaf],
    });
    const worker = await engine.runWorker({ concurrency: 1, pollInterval: 100 });
    try {
      // The shared worker sleeps through this one: only the single-slot worker may run these.
      await t.worker.stop();
      const { id } = await engine.start(family.top, { n: 3 });
      expect((await engine.waitFor(id, { timeoutMs: 30_000 })).result).toEqual({ total: 93, mid: true });
    } finally {
      await worker.stop();
      await engine.close();
      t.worker = await t.engine.runWorker({ concurrency: 8, pollInterval: 100 });
    }
  });
});
