/**
 * Item 5, the application's write path: a caller transaction inserting one order row, alone, with
 * `engine.start()` inside it, with start() and the NOTIFY its job sent before start() stopped notifying inside
 * the caller's transaction (the baseline), with a bare pg_notify inside it (what a NOTIFY alone costs), and with
 * the rows of a start but no job (a bench-only copy of saga._start without add_job, so without NOTIFY), at
 * 1, 16 and 64 concurrent writers. No worker runs: this is the cost the caller pays.
 */
import type pg from "pg";
import { createSagaEngine } from "../src/index.js";
import { type BenchOptions, type Cost, type Results, benchClient, log, resetTables } from "./harness.js";
import { closedLoop } from "./commit-rate.js";
import { benchSagas, noopSaga } from "./sagas.js";
import { fmt, percentile, spread } from "./stats.js";

type Variant =
  | "insert"
  | "insert+start"
  | "insert+start, NOTIFY in tx (before)"
  | "insert+notify"
  | "insert+start rows, no job";

/**
 * Installs bench._start_rows: saga._start with its saga._enqueue calls removed, to split what start() costs
 * into its saga rows and its job row. Returns false when the function no longer has the expected shape.
 */
async function installStartWithoutJob(o: BenchOptions): Promise<boolean> {
  const client = await benchClient(o);
  try {
    const { rows } = await client.query<{ def: string }>(
      "select pg_get_functiondef('saga._start(text, int, jsonb, text, jsonb, bigint, text, uuid, boolean)'::regprocedure) as def",
    );
    const def = rows[0]?.def ?? "";
    const stripped = def.replace(/perform saga\._enqueue\([^;]*;/g, "null;");
    if (stripped === def) return false;
    await client.query("create schema if not exists bench");
    await client.query(stripped.replace(/FUNCTION saga\._start\(/, "FUNCTION bench._start_rows("));
    return true;
  } catch {
    return false;
  } finally {
    await client.end();
  }
}

export async function writePathScenario(o: BenchOptions, r: Results): Promise<void> {
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 1 });
  const seconds = o.quick ? 1 : 2;
  const levels = [1, 16, 64];
  const variants: Variant[] = [
    "insert",
    "insert+start",
    "insert+start, NOTIFY in tx (before)",
    "insert+notify",
  ];
  if (await installStartWithoutJob(o)) variants.push("insert+start rows, no job");
  const runs = new Map<string, { perSec: number; p50: number; serverCpuMs: number; walRecords: number }[]>();
  const startCall: number[][] = [];
  try {
    for (let rep = 0; rep < o.reps; rep++) {
      await resetTables(o);
      const calls: number[] = [];
      for (const writers of levels) {
        for (const variant of variants) {
          const body = async (c: pg.Client, i: number) => {
            await c.query("begin");
            await c.query("insert into bench_orders (customer, amount) values ($1, $2)", [`c${i}`, 42]);
            if (variant === "insert+start") {
              const s = performance.now();
              await engine.start(noopSaga, { k: i }, { client: c });
              if (writers === 1) calls.push(performance.now() - s);
            } else if (variant === "insert+start, NOTIFY in tx (before)") {
              // What start() did before its job was queued without NOTIFY: graphile_worker.add_job's own.
              await engine.start(noopSaga, { k: i }, { client: c });
              await c.query(`select pg_notify('jobs:insert', '{"count":1}')`);
            } else if (variant === "insert+notify") {
              await c.query("select pg_notify('bench', $1)", [String(i)]);
            } else if (variant === "insert+start rows, no job") {
              await c.query(
                "select id from bench._start_rows('bench-noop', 1, $1::jsonb, null, '{}'::jsonb, null, null, null, true)",
                [JSON.stringify({ k: i })],
              );
            }
            await c.query("commit");
          };
          const result = await closedLoop(o, writers, seconds, body);
          const key = `${variant}@${writers}`;
          runs.set(key, [...(runs.get(key) ?? []), result]);
        }
        log(
          `  rep ${rep + 1}, ${writers} writers: ${variants.map((v) => `${v} ${fmt(runs.get(`${v}@${writers}`)!.at(-1)!.perSec)}/s`).join(", ")}`,
        );
      }
      startCall.push(calls);
    }
  } finally {
    await engine.close();
  }
  const get = (v: Variant, w: number) => runs.get(`${v}@${w}`)!;
  // Server work per caller transaction, with start() and without: what start() adds is their difference.
  const cost = (w: number): Cost => {
    const of = (v: Variant, label: string): Cost => ({
      label,
      cpuMs: spread(get(v, w).map((x) => x.serverCpuMs)).median,
      walRecords: spread(get(v, w).map((x) => x.walRecords)).median,
    });
    return { ...of("insert+start", "with start()"), vs: of("insert", "without") };
  };
  r.add(
    "write path",
    "start() call itself p50, 1 writer",
    "ms",
    startCall.map((c) => percentile(c, 50)),
  );
  r.add(
    "write path",
    "start() added to the caller tx p50, 1 writer",
    "ms",
    get("insert+start", 1).map((x, i) => x.p50 - get("insert", 1)[i]!.p50),
    {
      target: "≤ 0.3",
      cost: cost(1),
      why: "15 WAL records per start (instance and indexes, event, graphile-worker job); would meet it: a start without a job (claim in the fetch), a partial idempotency-key index",
    },
  );
  for (const w of levels) {
    for (const v of variants) {
      r.add(
        "write path",
        `${v} tx p50, ${w} writers`,
        "ms",
        get(v, w).map((x) => x.p50),
      );
      r.add(
        "write path",
        `${v} commits/s, ${w} writers`,
        "commits/s",
        get(v, w).map((x) => x.perSec),
      );
      if (w === 1)
        r.add(
          "write path",
          `${v} server CPU per tx, 1 writer`,
          "ms",
          get(v, w).map((x) => x.serverCpuMs),
        );
    }
    r.add(
      "write path",
      `with start() / without, commits/s, ${w} writers`,
      "×",
      get("insert+start", w).map((x, i) => x.perSec / get("insert", w)[i]!.perSec),
      w === 64
        ? {
            target: "≥ 0.5",
            cost: cost(w),
            why: "CPU-bound server: the ratio of commits/s is the ratio of server work per transaction; would meet it: the same lighter start",
          }
        : {},
    );
    if (variants.includes("insert+start rows, no job"))
      r.add(
        "write path",
        `with start rows but no job / without, commits/s, ${w} writers`,
        "×",
        get("insert+start rows, no job", w).map((x, i) => x.perSec / get("insert", w)[i]!.perSec),
      );
    r.add(
      "write path",
      `with start(), NOTIFY in tx (before) / without, commits/s, ${w} writers`,
      "×",
      get("insert+start, NOTIFY in tx (before)", w).map((x, i) => x.perSec / get("insert", w)[i]!.perSec),
    );
    r.add(
      "write path",
      `with pg_notify / without, commits/s, ${w} writers`,
      "×",
      get("insert+notify", w).map((x, i) => x.perSec / get("insert", w)[i]!.perSec),
    );
  }
}
