/**
 * Start → completed of a saga of 10 parallel branches against the same 10 steps in a line, one saga
 * at a time with an idle worker (concurrency 10). Measured with no-op steps (the engine alone: every branch is a
 * job of its own with a claim and a record on the saga's row, where a line of steps records one and claims the
 * next in one transition) and with steps that wait 20 ms and 50 ms, as calls to another service would. Times
 * are the database's own, `finished_at - created_at`.
 */
import { z } from "zod";
import { type AnySaga, createSagaEngine, defineSaga } from "../src/index.js";
import { type BenchOptions, type Results, benchClient, log, resetTables } from "./harness.js";
import { fmt, percentile } from "./stats.js";

const input = z.object({ k: z.number().int() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NAMES = Array.from({ length: 10 }, (_, i) => `s${i}`);

function sagas(waitMs: number): { parallel: AnySaga; line: AnySaga } {
  const execute = async () => {
    if (waitMs > 0) await sleep(waitMs);
  };
  const parallel = defineSaga({ name: `bench-par10-${waitMs}`, input }).parallel(
    Object.fromEntries(NAMES.map((n) => [n, { execute }])),
  );
  let line: AnySaga = defineSaga({ name: `bench-seq10-${waitMs}`, input });
  for (const n of NAMES) line = line.step(n, { execute });
  return { parallel, line };
}

async function timeOne(o: BenchOptions, saga: AnySaga, count: number, warmup: number): Promise<number[]> {
  const engine = createSagaEngine({ connectionString: o.url, sagas: [saga], poolSize: 4 });
  const poll = await benchClient(o);
  const times: number[] = [];
  try {
    const worker = await engine.runWorker({ concurrency: 10 });
    try {
      for (let i = 0; i < warmup + count; i++) {
        const { id } = await engine.start(saga, { k: i + 1 });
        for (;;) {
          const { rows } = await poll.query<{ state: string; ms: number | null }>(
            `select state, extract(epoch from finished_at - created_at) * 1000 as ms
             from saga.instances where id = $1`,
            [id],
          );
          const row = rows[0];
          if (row && row.state !== "running") {
            if (row.state !== "completed") throw new Error(`saga ${id} ended ${row.state}`);
            if (i >= warmup) times.push(Number(row.ms));
            break;
          }
          await sleep(1);
        }
      }
    } finally {
      await worker.stop();
    }
  } finally {
    await poll.end();
    await engine.close();
  }
  return times;
}

export async function graphScenario(o: BenchOptions, r: Results): Promise<void> {
  const count = o.quick ? 15 : 40;
  for (const waitMs of [0, 20, 50]) {
    const { parallel, line } = sagas(waitMs);
    await resetTables(o);
    const par = await timeOne(o, parallel, count, 3);
    const seq = await timeOne(o, line, count, 3);
    const ratio = percentile(par, 50) / percentile(seq, 50);
    const what = waitMs === 0 ? "no-op steps" : `steps of ${waitMs} ms`;
    r.add("graph", `10 parallel branches, ${what}: start → completed`, "ms", par);
    r.add("graph", `10 steps in a line, ${what}: start → completed`, "ms", seq);
    r.add("graph", `parallel / line, ${what}`, "×", [ratio], {
      target: "≤ 0.4",
      why: "with no-op steps the saga's start job and first read weigh as much as the branches; would meet it: the claim in the fetch",
    });
    log(`  p95 parallel ${fmt(percentile(par, 95))} ms, line ${fmt(percentile(seq, 95))} ms`);
  }
}
