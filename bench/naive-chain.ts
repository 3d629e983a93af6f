/**
 * Item 2, the baseline: the chain a user wires by hand on graphile-worker. Each job updates a row and adds
 * the next job in the same transaction (on the task's own client, helpers.withPgClient), three jobs per chain,
 * graphile-worker's default options, same concurrency, same database, same run.
 */
import pg from "pg";
import { type Task, run } from "graphile-worker";
import { quietWorkerLogger } from "../src/graphile/boundary.js";
import {
  type BenchOptions,
  backendCpuSeconds,
  benchClient,
  queries,
  resetTables,
  settleStats,
  waitUntil,
  walCounts,
  xactCounts,
} from "./harness.js";
import { probe } from "./sagas.js";
import type { RunResult } from "./throughput.js";

interface ChainPayload {
  id: number;
  step: number;
}

export const chainTask: Task = async (payload, helpers) => {
  const { id, step } = payload as ChainPayload;
  if (Number.isNaN(probe.firstCall)) probe.firstCall = performance.now();
  if (step === 1 && probe.trackFirst) probe.firstHandlerAt.set(String(id), performance.now());
  await helpers.withPgClient(async (client) => {
    await client.query("begin");
    try {
      await client.query("update bench_rows set n = n + 1, step = $2 where id = $1", [id, step]);
      if (step < 3)
        await client.query("select graphile_worker.add_job('bench_chain', $1::json)", [
          JSON.stringify({ id, step: step + 1 }),
        ]);
      await client.query("commit");
    } catch (err) {
      await client.query("rollback");
      throw err;
    }
  });
  if (step === 3) probe.onLastStep?.(String(id));
};

/** A graphile-worker runner for the chain, on its own pool of concurrency + 4 connections. */
export async function startChainWorker(o: BenchOptions, concurrency: number) {
  const pool = new pg.Pool({ connectionString: o.url, max: concurrency + 4 });
  pool.on("error", () => {}); // a dropped idle connection is not the baseline's failure
  const runner = await run({
    pgPool: pool,
    concurrency,
    noHandleSignals: true,
    pollInterval: 1_000,
    taskList: { bench_chain: chainTask },
    logger: quietWorkerLogger,
  });
  return {
    async stop() {
      await runner.stop();
      await pool.end();
    },
  };
}

export async function runNaiveChain(o: BenchOptions, concurrency: number): Promise<RunResult> {
  const n = o.sagas;
  await resetTables(o);
  const seed = await benchClient(o);
  await seed.query(
    "select graphile_worker.add_job('bench_chain', json_build_object('id', g, 'step', 1)) from generate_series(1, $1::int) g",
    [n],
  );
  await seed.end();
  await settleStats();
  const before = await xactCounts(o);
  const walBefore = await walCounts(o);
  probe.reset();
  queries.reset();
  const cpu0 = process.cpuUsage();
  let pgCpu = Number.NaN;
  const poll = await benchClient(o);
  let polls = 0;
  let end = 0;
  const worker = await startChainWorker(o, concurrency);
  try {
    await waitUntil(async () => {
      polls++;
      const { rows } = await poll.query<{ n: number }>(
        "select count(*)::int as n from bench_rows where id <= $1 and step < 3",
        [n],
      );
      return rows[0]!.n === 0;
    }, 300_000);
    end = performance.now();
    pgCpu = await backendCpuSeconds(o);
  } finally {
    await worker.stop();
    await poll.end();
  }
  const breakdown = queries.snapshot();
  const roundTrips = queries.total;
  const cpu = process.cpuUsage(cpu0);
  await settleStats();
  const after = await xactCounts(o);
  const walAfter = await walCounts(o);
  const seconds = (end - probe.firstCall) / 1000;
  return {
    sagas: n,
    seconds,
    sagasPerSec: n / seconds,
    transitionsPerSec: (3 * n) / seconds,
    commitsPerSaga: (after.commits - before.commits - polls) / n + 1,
    walSyncsPerSaga: (walAfter.syncs - walBefore.syncs) / n,
    walRecordsPerSaga: (walAfter.records - walBefore.records) / n,
    roundTripsPerSaga: roundTrips / n,
    nodeCpuMsPerSaga: (cpu.user + cpu.system) / 1000 / n,
    pgCpuMsPerSaga: (pgCpu * 1000) / n,
    breakdown,
  };
}
