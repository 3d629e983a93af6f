import { beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { SagaError, aes256gcm, createSagaEngine, defineSaga, type SagaEngine } from "../src/index.js";
import { CHILD_TABLES, childSagas } from "./fixtures/child-sagas.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventTrail, useEngine } from "./helpers/engine.js";
import { spawnWorker, stopWorker } from "./helpers/processes.js";
import { loginRole } from "./helpers/roles.js";

const db = useTestDatabase();
let family: ReturnType<typeof childSagas>;
const t = useEngine(db, () => {
  family = childSagas(db.pool);
  return Object.values(family);
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
    expect(done.steps.find((s) => s.name === "top-mid")?.output).toMatchObject({
      n: 11,
      leaf: 22,
      mid: true,
    });
    const { rows } = await db.pool.query("select id, state, parent_step from saga.children($1)", [id]);
    expect(rows).toEqual([{ id: mid!.id, state: "completed", parent_step: 1 }]);
    // saga_reader may call it; a session of another tenant sees no child.
    const reader = new pg.Client({
      connectionString: await loginRole(db.url, "pgsaga_child_reader", ["saga_reader"]),
    });
    await reader.connect();
    try {
      expect((await reader.query("select id from saga.children($1)", [id])).rows).toEqual([{ id: mid!.id }]);
      await reader.query("set saga.tenant = 'someone-else'");
      expect((await reader.query("select id from saga.children($1)", [id])).rows).toEqual([]);
    } finally {
      await reader.end();
    }
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
    expect(step?.error).toMatchObject({
      code: "CHILD_FAILED",
      details: { childId: mid!.id, state: "compensated" },
    });
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

  /** Runs `fn` on its own engine and worker while the shared worker sleeps. */
  async function alone(
    options: { concurrency: number; codec?: ReturnType<typeof aes256gcm> },
    fn: (engine: SagaEngine) => Promise<void>,
  ) {
    const engine: SagaEngine = createSagaEngine({
      connectionString: db.url,
      sagas: Object.values(family),
      ...(options.codec ? { codec: options.codec } : {}),
    });
    const worker = await engine.runWorker({ concurrency: options.concurrency, pollInterval: 100 });
    try {
      await t.worker.stop();
      await fn(engine);
    } finally {
      await worker.stop();
      await engine.close();
      t.worker = await t.engine.runWorker({ concurrency: 8, pollInterval: 100 });
    }
  }

  it("a worker of concurrency 1 runs parent, child and grandchild: a waiting parent holds no slot", async () => {
    await alone({ concurrency: 1 }, async (engine) => {
      const { id } = await engine.start(family.top, { n: 3 });
      expect((await engine.waitFor(id, { timeoutMs: 30_000 })).result).toEqual({ total: 93, mid: true });
    });
  });

  it("with a codec, a child's input and result are stored encrypted and reach the parent decrypted", async () => {
    await alone(
      { concurrency: 4, codec: aes256gcm({ keys: { k1: randomBytes(32) }, current: "k1" }) },
      async (engine) => {
        const { id } = await engine.start(family.top, { n: 12 });
        expect((await engine.waitFor(id, { timeoutMs: 30_000 })).result).toEqual({ total: 363, mid: true });
        const { rows } = await db.pool.query<{ input: unknown; result: unknown }>(
          "select input, result from saga.instances where parent_id = $1",
          [id],
        );
        expect(rows[0]?.input).toMatchObject({ $encrypted: "k1" });
        expect(rows[0]?.result).toMatchObject({ $encrypted: "k1" });
      },
    );
  });

  it("compensating the parent compensates its completed child, which compensates its own", async () => {
    const { id } = await t.engine.start(family.top, { n: 4, failTop: true });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    const [mid, leaf] = await descendants(id);
    expect(mid?.state).toBe("compensated");
    expect(leaf?.state).toBe("compensated");
    expect(done.steps.map((s) => `${s.name}:${s.status}`)).toEqual([
      "top-before:compensated",
      "top-mid:compensated",
      "top-after:failed",
    ]);
    expect(await effects([id, mid!.id, leaf!.id])).toEqual([
      "do:top-before",
      "do:mid-before",
      "do:leaf-work",
      "do:mid-after",
      "do:top-after",
      "undo:leaf-work",
      "undo:mid-before",
      "undo:top-before",
    ]);
    const leafView = await t.engine.get(leaf!.id);
    expect(leafView?.error).toMatchObject({ code: "PARENT_COMPENSATING" });
    expect(await eventTrail(db, mid!.id)).toEqual(
      expect.arrayContaining(["saga.completed", "compensation.started", "compensation.completed"]),
    );
  });

  it("a parked chain shows in saga.stuck as waiting for its child; cancel at the top cancels every descendant", async () => {
    const { id } = await t.engine.start(family.top, { n: 5, hold: "cancel-gate" });
    let chain: Awaited<ReturnType<typeof descendants>> = [];
    await waitUntil(async () => {
      chain = await descendants(id);
      return chain.length === 2 && (await effects([chain[1]!.id])).length === 1;
    }, "the leaf to run");
    const [mid, leaf] = chain;
    const { rows: stuck } = await db.pool.query(
      "select id, reason, step, detail from saga.stuck where id = any($1::uuid[]) order by step",
      [[id, mid!.id, leaf!.id]],
    );
    expect(stuck).toEqual([
      { id: mid!.id, reason: "waiting_child", step: "mid-leaf", detail: `waiting for child ${leaf!.id}` },
      { id, reason: "waiting_child", step: "top-mid", detail: `waiting for child ${mid!.id}` },
    ]);
    // Parked: no lease, no job.
    const { rows: parked } = await db.pool.query(
      `select s.status, s.lease_owner, (select count(*)::int from graphile_worker._private_jobs j where j.payload->>'id' = $1::uuid::text) as jobs
       from saga.steps s where s.saga_id = $1::uuid and s.name = 'top-mid'`,
      [id],
    );
    expect(parked).toEqual([{ status: "running", lease_owner: null, jobs: 0 }]);

    await t.engine.cancel(id, "customer changed their mind");
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("cancelled");
    expect((await descendants(id)).map((c) => c.state)).toEqual(["cancelled", "cancelled"]);
    expect((await t.engine.get(leaf!.id))?.error).toMatchObject({
      code: "CANCELLED",
      details: { by: `parent saga ${mid!.id}` },
    });
    // The leaf's attempt was aborted mid-call (outcome unknown): compensated; then each level undid its own step.
    expect(await effects([id, mid!.id, leaf!.id])).toEqual([
      "do:top-before",
      "do:mid-before",
      "do:leaf-work",
      "undo:leaf-work",
      "undo:mid-before",
      "undo:top-before",
    ]);
  });

  it("a worker killed (SIGKILL) while the parents wait does not lose the wake-up", async () => {
    await t.worker.stop();
    const proc = await spawnWorker("child-worker.ts", { DATABASE_URL: db.url, CONCURRENCY: "4" });
    let id = "";
    try {
      ({ id } = await t.engine.start(family.top, { n: 6, hold: "crash-gate" }));
      let chain: Awaited<ReturnType<typeof descendants>> = [];
      await waitUntil(async () => {
        chain = await descendants(id);
        return chain.length === 2 && (await effects([chain[1]!.id])).length === 1;
      }, "the leaf to run in the worker process");
      proc.child.kill("SIGKILL");
      await proc.exited;
    } finally {
      await stopWorker(proc);
    }
    await db.pool.query("insert into child_gates (key) values ('crash-gate')");
    t.worker = await t.engine.runWorker({
      concurrency: 8,
      pollInterval: 100,
      heartbeatInterval: 200,
      deadWorkerAfter: 1_000,
      reapInterval: 200,
    });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("completed");
    expect(done.result).toEqual({ total: 61 * 2 + 61, mid: true });
    const [mid, leaf] = await descendants(id);
    expect([mid?.state, leaf?.state]).toEqual(["completed", "completed"]);
    const leafView = await t.engine.get(leaf!.id);
    // The killed attempt was written off as lost; the next one completed.
    expect(leafView?.steps[0]).toMatchObject({ status: "succeeded", attempt: 2 });
  });

  it("ctx.startChild starts fire-and-forget children, once per step however often the step runs", async () => {
    const { id } = await t.engine.start(family.spawner, { n: 8 });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("completed");
    expect(done.steps[0]?.attempt).toBe(2);
    const { children } = done.result as { children: { id: string; created: boolean }[] };
    // The second attempt found both children its first attempt started.
    expect(children.map((c) => c.created)).toEqual([false, false]);
    const { rows } = await db.pool.query<{ id: string; parent_step: number | null }>(
      "select id, parent_step from saga.children($1)",
      [id],
    );
    expect(rows.map((r) => r.id).sort()).toEqual(children.map((c) => c.id).sort());
    expect(rows.every((r) => r.parent_step === null)).toBe(true);
    for (const child of children) {
      const leaf = await t.engine.waitFor(child.id, { timeoutMs: 30_000 });
      expect(leaf.state).toBe("completed");
      expect(leaf.parentId).toBe(id);
    }
  });

  it("a child step's timeout is the child's deadline: the child ends timed_out and the step fails", async () => {
    const { id } = await t.engine.start(family.timeboxed, { n: 9 });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    const [leaf] = await descendants(id);
    expect(leaf?.state).toBe("timed_out");
    expect(done.steps[1]?.error).toMatchObject({ code: "CHILD_FAILED", details: { state: "timed_out" } });
    expect(await effects([id, leaf!.id])).toEqual([
      "do:tb-before",
      "do:leaf-work",
      "undo:leaf-work",
      "undo:tb-before",
    ]);
  });

  it("an input the child's schema refuses fails the step for good before any child starts", async () => {
    const { id } = await t.engine.start(family.badInput, { n: 10 });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    expect(done.steps[1]).toMatchObject({ status: "failed", attempt: 1, error: { code: "INVALID_INPUT" } });
    expect(await descendants(id)).toEqual([]);
    expect(await effects([id])).toEqual(["do:bi-before", "undo:bi-before"]);
  });

  it("the parallel compensation strategy undoes a completed child through the child's own compensation", async () => {
    const { id } = await t.engine.start(family.parallelUndo, { n: 11 });
    const done = await t.engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    const [leaf] = await descendants(id);
    expect(leaf?.state).toBe("compensated");
    expect(done.steps.map((s) => s.status)).toEqual(["compensated", "compensated", "failed"]);
    expect((await effects([id, leaf!.id])).sort()).toEqual(
      ["do:leaf-work", "do:pu-before", "undo:leaf-work", "undo:pu-before"].sort(),
    );
  });
});
