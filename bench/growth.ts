/**
 * Item 7: throughput and get/list latency with 10k, then 1M finished sagas in the tables (instances, three
 * step rows and eight outbox events each, generated with SQL in chunks). `--quick` uses 10k and 100k.
 */
import { createSagaEngine } from "../src/index.js";
import { type BenchOptions, type Results, benchClient, log, resetTables } from "./harness.js";
import { benchSagas, noopSaga } from "./sagas.js";
import { percentile } from "./stats.js";
import { runSagaThroughput } from "./throughput.js";

const CHUNK = 250_000;

/** Adds `count` completed sagas named bench-history, created over the past days. */
export async function addHistory(o: BenchOptions, from: number, count: number): Promise<void> {
  const client = await benchClient(o);
  try {
    for (let done = 0; done < count; done += CHUNK) {
      const n = Math.min(CHUNK, count - done);
      // Sequential ids (uuid from the row number) keep the generation an index append; three statements
      // share them instead of a CTE with RETURNING, which would materialize every row.
      const id = "lpad(to_hex(g), 32, '0')::uuid";
      const rows = "generate_series($1::int, $1::int + $2::int - 1) g";
      const at = "(now() - interval '1 day' - g * interval '100 ms')";
      await client.query(
        `insert into saga.instances (id, name, version, state, input, data, result, current_step, seq, created_at,
                                     updated_at, finished_at)
         select ${id}, 'bench-history', 1, 'completed', jsonb_build_object('k', g), jsonb_build_object('k', g),
                jsonb_build_object('k', g), 3, 8, ${at}, ${at} + interval '3 ms', ${at} + interval '3 ms'
         from ${rows}`,
        [from + done + 1, n],
      );
      await client.query(
        `insert into saga.steps (saga_id, index, name, status, attempt, output, started_at, finished_at)
         select ${id}, s, (array['one', 'two', 'three'])[s + 1], 'succeeded', 1, '{}'::jsonb, ${at}, ${at}
         from ${rows}, generate_series(0, 2) s`,
        [from + done + 1, n],
      );
      await client.query(
        `insert into saga.outbox (saga_id, seq, type, step, name, payload, created_at)
         select ${id}, e, (array['saga.started', 'saga.step.started', 'saga.step.completed', 'saga.step.started',
                   'saga.step.completed', 'saga.step.started', 'saga.step.completed', 'saga.completed'])[e],
                (array[null, 'one', 'one', 'two', 'two', 'three', 'three', null])[e], 'bench-history', '{}'::jsonb, ${at}
         from ${rows}, generate_series(1, 8) e`,
        [from + done + 1, n],
      );
    }
    // Finished sagas' events were published long ago: move the relay's cursor past them, or the relay would
    // spend the measured runs publishing a backlog of millions (one NOTIFY each).
    await client.query(
      `update saga.subscriptions s set cursor_xid = m.xid, cursor_id = m.id
       from (select xid, id from saga.outbox order by xid desc, id desc limit 1) m
       where s.name = '$relay'`,
    );
    await client.query("vacuum analyze saga.instances, saga.steps, saga.outbox");
  } finally {
    await client.end();
  }
}

/** Removes the sagas of previous bench runs, keeping the history. */
async function clearRuns(o: BenchOptions): Promise<void> {
  const client = await benchClient(o);
  try {
    await client.query(`delete from saga.outbox where saga_id in (select id from saga.instances where name <> 'bench-history');
      delete from saga.instances where name <> 'bench-history';
      truncate graphile_worker._private_jobs; delete from saga.workers;`);
  } finally {
    await client.end();
  }
}

async function readLatency(o: BenchOptions, samples: number) {
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 1 });
  const client = await benchClient(o);
  try {
    const { rows } = await client.query<{ id: string }>(
      "select id from saga.instances where name = 'bench-history' order by random() limit $1",
      [samples],
    );
    const time = async (fn: () => Promise<unknown>) => {
      const t = performance.now();
      await fn();
      return performance.now() - t;
    };
    const get: number[] = [];
    const list: number[] = [];
    const listCompleted: number[] = [];
    for (const { id } of rows) {
      get.push(await time(() => engine.get(id)));
      list.push(await time(() => engine.list({ limit: 50 })));
      listCompleted.push(await time(() => engine.list({ states: ["completed"], limit: 50 })));
    }
    return {
      get: percentile(get, 50),
      list: percentile(list, 50),
      listCompleted: percentile(listCompleted, 50),
    };
  } finally {
    await client.end();
    await engine.close();
  }
}

export async function growthScenario(o: BenchOptions, r: Results): Promise<void> {
  const sizes = o.quick ? [10_000, 100_000] : [10_000, 1_000_000];
  const per: Record<number, { tput: number[]; get: number[]; list: number[]; listCompleted: number[] }> = {};
  await resetTables(o);
  let have = 0;
  for (const size of sizes) {
    const t0 = Date.now();
    await addHistory(o, have, size - have);
    have = size;
    log(
      `  ${size.toLocaleString("en-US")} finished sagas generated in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    const fig: (typeof per)[number] = { tput: [], get: [], list: [], listCompleted: [] };
    per[size] = fig;
    for (let rep = 0; rep < o.reps; rep++) {
      await clearRuns(o);
      fig.tput.push((await runSagaThroughput(o, noopSaga, 10, { keep: true })).sagasPerSec);
      const read = await readLatency(o, o.quick ? 50 : 100);
      fig.get.push(read.get);
      fig.list.push(read.list);
      fig.listCompleted.push(read.listCompleted);
    }
    const label = size.toLocaleString("en-US");
    r.add("growth", `sagas/s (no-op, c=10) with ${label} finished`, "sagas/s", fig.tput);
    r.add("growth", `get() p50 with ${label} finished`, "ms", fig.get);
    r.add("growth", `list({ limit: 50 }) p50 with ${label} finished`, "ms", fig.list);
    r.add(
      "growth",
      `list({ states: [completed], limit: 50 }) p50 with ${label} finished`,
      "ms",
      fig.listCompleted,
    );
  }
  const [small, big] = sizes.map((s) => per[s]!);
  const ratio = (a: number[], b: number[]) => b.map((x, i) => x / a[i]!);
  r.add("growth", "throughput big / small", "×", ratio(small!.tput, big!.tput), { target: "≥ 0.9" });
  r.add("growth", "get() latency big / small", "×", ratio(small!.get, big!.get), { target: "≤ 1.2" });
  r.add("growth", "list() latency big / small", "×", ratio(small!.list, big!.list), { target: "≤ 1.2" });
  r.add(
    "growth",
    "list(completed) latency big / small",
    "×",
    ratio(small!.listCompleted, big!.listCompleted),
    {
      target: "≤ 1.2",
    },
  );
  // The history stays: with --keep, EXPLAIN the reads against 1M finished sagas; other scenarios reset first.
}
