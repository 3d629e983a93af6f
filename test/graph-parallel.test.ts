/**
 * Parallel groups and conditions with real workers: branches that really overlap, a branch that fails for
 * good (after its sibling ended, or while it runs), compensation group by group, skipped steps, a cancel and a
 * deadline with branches in flight, an operator's retry. The SIGKILL test is test/graph-crash.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type SagaEngine, type SagaWorker, compensation, createSagaEngine } from "../src/index.js";
import {
  GRAPH_TABLES,
  conditionalSaga,
  diamondSaga,
  graphCalls,
  retryGroupSaga,
} from "./fixtures/graph-sagas.js";
import { useTestDatabase } from "./helpers/database.js";
import { drawGraph } from "../src/cli/commands/read.js";
import { colours } from "../src/cli/format.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();
let engine: SagaEngine;
let worker: SagaWorker;
const sagas = () => ({
  sequential: diamondSaga(db.pool),
  parallel: diamondSaga(db.pool, compensation.parallel(), "diamond-parallel"),
  conditional: conditionalSaga(db.pool),
  retry: retryGroupSaga(db.pool),
  deadline: diamondSaga(db.pool, compensation.parallel(), "diamond-deadline", "1500ms"),
});
let s: ReturnType<typeof sagas>;

beforeAll(async () => {
  await db.pool.query(GRAPH_TABLES);
  s = sagas();
  engine = createSagaEngine({
    connectionString: db.url,
    sagas: [s.sequential, s.parallel, s.conditional, s.retry, s.deadline],
  });
  worker = await engine.runWorker({ concurrency: 4 });
});

afterAll(async () => {
  await worker?.stop();
  await engine?.close();
});

async function events(sagaId: string) {
  const { rows } = await db.pool.query<{
    seq: number;
    type: string;
    step: string | null;
    payload: { outcome?: string };
  }>("select seq, type, step, payload from saga.events where saga_id = $1 order by seq", [sagaId]);
  return rows;
}
const label = (e: { type: string; step: string | null }) => `${e.type}${e.step ? `:${e.step}` : ""}`;
const at = (list: string[], item: string) => {
  const i = list.indexOf(item);
  expect(i, `${item} in ${list.join(", ")}`).toBeGreaterThanOrEqual(0);
  return i;
};

describe("diamond A → { B, C } → D", () => {
  it("runs B and C at the same time and D gets both outputs", async () => {
    const { id } = await engine.start(s.sequential, { mode: "ok" });
    const done = await engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("completed");
    expect(done.result).toEqual({ sum: 2 + 3 });
    expect(done.steps.map((x) => [x.name, x.group, x.status])).toEqual([
      ["A", 0, "succeeded"],
      ["B", 1, "succeeded"],
      ["C", 1, "succeeded"],
      ["D", 2, "succeeded"],
    ]);
    const calls = await graphCalls(db.pool, id);
    const b = calls.find((c) => c.step === "B")!;
    const c = calls.find((c) => c.step === "C")!;
    expect(b.started_ms).toBeLessThan(c.ended_ms!);
    expect(c.started_ms).toBeLessThan(b.ended_ms!);
    const evs = (await events(id)).map(label);
    expect(evs.map((_, i) => i)).toEqual(evs.map((_, i) => i));
    expect(at(evs, "saga.step.completed:A")).toBeLessThan(at(evs, "saga.step.started:B"));
    expect(at(evs, "saga.step.completed:A")).toBeLessThan(at(evs, "saga.step.started:C"));
    expect(Math.max(at(evs, "saga.step.completed:B"), at(evs, "saga.step.completed:C"))).toBeLessThan(
      at(evs, "saga.step.started:D"),
    );
    expect(evs.at(-1)).toBe("saga.completed");
    // pg-saga show draws the groups.
    expect(drawGraph(colours(false), done.steps)).toEqual([
      "  A     succeeded",
      "  parallel (2 branches)",
      "  ├─ B  succeeded",
      "  └─ C  succeeded",
      "  D     succeeded",
    ]);
  });

  for (const strategy of ["sequential", "parallel"] as const) {
    it(`${strategy}(): C fails for good after B ended → B then A compensated, D never runs`, async () => {
      const { id } = await engine.start(s[strategy], { mode: "late" });
      const done = await engine.waitFor(id, { timeoutMs: 30_000 });
      expect(done.state).toBe("compensated");
      const calls = await graphCalls(db.pool, id);
      const b = calls.find((c) => c.step === "B" && c.kind === "execute")!;
      const c = calls.find((c) => c.step === "C" && c.kind === "execute")!;
      // Overlap, measured inside the handlers.
      expect(b.started_ms).toBeLessThan(c.ended_ms!);
      expect(c.started_ms).toBeLessThan(b.ended_ms!);
      expect(calls.some((x) => x.step === "D")).toBe(false);
      const comp = calls.filter((x) => x.kind === "compensate");
      expect(comp.map((x) => [x.step, x.note])).toEqual([
        ["B", "succeeded"],
        ["A", "succeeded"],
      ]);
      expect(comp[0]!.ended_ms!).toBeLessThanOrEqual(comp[1]!.started_ms);
      expect(done.steps.map((x) => [x.name, x.status])).toEqual([
        ["A", "compensated"],
        ["B", "compensated"],
        ["C", "failed"],
        ["D", "skipped"],
      ]);
      const evs = (await events(id)).map(label);
      expect(at(evs, "saga.step.failed:C")).toBeLessThan(at(evs, "compensation.started"));
      expect(at(evs, "compensation.started")).toBeLessThan(at(evs, "compensation.step.completed:B"));
      expect(at(evs, "compensation.step.completed:B")).toBeLessThan(at(evs, "compensation.step.completed:A"));
      expect(evs.at(-1)).toBe("compensation.completed");
      expect(evs.filter((e) => e.startsWith("saga.step.completed:B"))).toHaveLength(1);
    });
  }

  it("C fails while B runs → B is aborted through ctx.signal and compensated as unknown, then A", async () => {
    const { id } = await engine.start(s.sequential, { mode: "early" });
    const done = await engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    const calls = await graphCalls(db.pool, id);
    expect(calls.find((c) => c.step === "B" && c.kind === "execute")?.outcome).toBe("aborted");
    const comp = calls.filter((x) => x.kind === "compensate");
    expect(comp.map((x) => [x.step, x.note])).toEqual([
      ["B", "unknown"],
      ["A", "succeeded"],
    ]);
    // B's compensation began only once its aborted attempt had ended.
    const bExec = calls.find((c) => c.step === "B" && c.kind === "execute")!;
    expect(bExec.ended_ms!).toBeLessThanOrEqual(comp[0]!.started_ms);
    const b = done.steps.find((x) => x.name === "B")!;
    expect((b.error as { code: string; outcome: string }).code).toBe("SIBLING_FAILED");
    expect((b.error as { outcome: string }).outcome).toBe("unknown");
    expect(calls.some((x) => x.step === "D")).toBe(false);
  });

  it("a cancel with both branches in flight interrupts both", async () => {
    const { id } = await engine.start(s.sequential, { mode: "hold" });
    await vi.waitFor(
      async () => {
        const calls = await graphCalls(db.pool, id);
        expect(calls.filter((c) => c.kind === "execute" && (c.step === "B" || c.step === "C"))).toHaveLength(
          2,
        );
      },
      { timeout: 20_000, interval: 20 },
    );
    await engine.cancel(id, "changed my mind");
    const done = await engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("cancelled");
    expect(done.steps.find((x) => x.name === "D")?.status).toBe("skipped");
    const failed = (await events(id)).filter((e) => e.type === "saga.step.failed").map((e) => e.step);
    expect(failed.sort()).toEqual(["B", "C"]);
    const calls = await graphCalls(db.pool, id);
    expect(
      calls
        .filter((c) => c.kind === "execute" && c.outcome === "aborted")
        .map((c) => c.step)
        .sort(),
    ).toEqual(["B", "C"]);
    // Both may have had their effect: both compensated (as unknown), then A.
    const comp = calls.filter((x) => x.kind === "compensate").map((x) => [x.step, x.note]);
    expect(comp.slice(0, 2).sort()).toEqual([
      ["B", "unknown"],
      ["C", "unknown"],
    ]);
    expect(comp[2]).toEqual(["A", "succeeded"]);
  });
});

it("an operator's retry of a saga failed in a group re-runs the failed branch only", async () => {
  // The saga starts in the transaction that holds q: q fails for good on its first run.
  const client = await db.pool.connect();
  let id: string;
  try {
    await client.query("begin");
    id = (await engine.start(s.retry, {}, { client })).id;
    await client.query("insert into graph_hold (saga_id) values ($1)", [id]);
    await client.query("commit");
  } finally {
    client.release();
  }
  const failed = await engine.waitFor(id, { timeoutMs: 30_000, states: ["failed", "completed"] });
  expect(failed.state).toBe("failed");
  expect(failed.steps.map((x) => [x.name, x.status])).toEqual([
    ["p", "succeeded"],
    ["q", "failed"],
    ["z", "skipped"],
  ]);
  await db.pool.query("delete from graph_hold where saga_id = $1", [id]);
  await engine.retry(id);
  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("completed");
  expect(done.result).toEqual({ p: "p", q: "q" });
  const calls = (await graphCalls(db.pool, id)).map((c) => c.step);
  expect(calls.filter((c) => c === "p")).toHaveLength(1);
  expect(calls.filter((c) => c === "q")).toHaveLength(2);
});

it("the saga deadline with both branches in flight interrupts both; parallel() compensates them, then A", async () => {
  const { id } = await engine.start(s.deadline, { mode: "hold" });
  const done = await engine.waitFor(id, { timeoutMs: 30_000 });
  expect(done.state).toBe("timed_out");
  const calls = await graphCalls(db.pool, id);
  const aborted = calls.filter((c) => c.kind === "execute" && c.outcome === "aborted").map((c) => c.step);
  expect(aborted.sort()).toEqual(["B", "C"]);
  const comp = calls.filter((x) => x.kind === "compensate");
  expect(
    comp
      .slice(0, 2)
      .map((x) => [x.step, x.note])
      .sort(),
  ).toEqual([
    ["B", "unknown"],
    ["C", "unknown"],
  ]);
  expect(comp.map((x) => x.step)[2]).toBe("A");
  // B's and C's compensations both ended before A's began (group by group).
  expect(Math.max(comp[0]!.ended_ms!, comp[1]!.ended_ms!)).toBeLessThanOrEqual(comp[2]!.started_ms);
  const codes = done.steps.filter((x) => x.group === 1).map((x) => (x.error as { code: string }).code);
  expect(codes).toEqual(["SAGA_TIMEOUT", "SAGA_TIMEOUT"]);
});

describe("conditions", () => {
  it("a false `when` skips the step and its branch; the input passes on; the joined data has no key", async () => {
    const { id } = await engine.start(s.conditional, { n: 5, fail: false });
    const done = await engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("completed");
    expect(done.result).toEqual({ keys: ["y"], y: "y", x: null });
    expect(done.steps.map((x) => [x.name, x.group, x.status])).toEqual([
      ["first", 0, "succeeded"],
      ["maybe", 1, "skipped"],
      ["after", 2, "succeeded"],
      ["x", 3, "skipped"],
      ["y", 3, "succeeded"],
      ["last", 4, "succeeded"],
    ]);
    const calls = await graphCalls(db.pool, id);
    // "after" got first's output unchanged.
    expect(JSON.parse(calls.find((c) => c.step === "after")!.note!)).toEqual({
      n: 5,
      fail: false,
      first: "first",
    });
    expect(calls.map((c) => c.step)).not.toContain("maybe");
    const evs = (await events(id)).map(label);
    expect(evs).toContain("saga.step.skipped:maybe");
    expect(evs).toContain("saga.step.skipped:x");
    expect(at(evs, "saga.step.completed:first")).toBeLessThan(at(evs, "saga.step.skipped:maybe"));
    expect(at(evs, "saga.step.skipped:maybe")).toBeLessThan(at(evs, "saga.step.started:after"));
  });

  it("a true `when` runs the step; its dependant gets its output", async () => {
    const { id } = await engine.start(s.conditional, { n: 500, fail: false });
    const done = await engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("completed");
    expect(done.result).toEqual({ keys: ["x", "y"], y: "y", x: "x" });
    const calls = await graphCalls(db.pool, id);
    expect(JSON.parse(calls.find((c) => c.step === "after")!.note!)).toMatchObject({ maybe: "maybe" });
  });

  it("a skipped step is never compensated", async () => {
    const { id } = await engine.start(s.conditional, { n: 5, fail: true });
    const done = await engine.waitFor(id, { timeoutMs: 30_000 });
    expect(done.state).toBe("compensated");
    const comp = (await graphCalls(db.pool, id)).filter((c) => c.kind === "compensate").map((c) => c.step);
    expect(comp).toEqual(["y", "after", "first"]);
    expect(done.steps.filter((x) => x.status === "skipped").map((x) => x.name)).toEqual(["maybe", "x"]);
  });
});
