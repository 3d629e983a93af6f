/**
 * Item 1: N three-step sagas started at once (one transaction), then a worker drains them. Measures sagas/s
 * from the first handler call to the last saga completed, and commits and round trips per saga.
 */
import pg from "pg";
import { type AnySaga, createSagaEngine } from "../src/index.js";
import {
  type BenchOptions,
  type Cost,
  type Results,
  benchClient,
  log,
  queries,
  resetTables,
  backendCpuSeconds,
  settleStats,
  waitUntil,
  walCounts,
  xactCounts,
} from "./harness.js";
import { fmt, spread } from "./stats.js";
import { benchSagas, probe } from "./sagas.js";

export interface RunResult {
  sagas: number;
  seconds: number;
  sagasPerSec: number;
  transitionsPerSec: number;
  /** Transactions committed per saga, the start's included. */
  commitsPerSaga: number;
  /** WAL flushes and WAL records per saga (pg_stat_wal, cluster-wide). */
  walSyncsPerSaga: number;
  walRecordsPerSaga: number;
  /** Round trips per saga from this process (start excluded). */
  roundTripsPerSaga: number;
  /** CPU of this process (worker, bench probe) per saga. */
  nodeCpuMsPerSaga: number;
  /** CPU of the database backends per saga (connection start-up included). */
  pgCpuMsPerSaga: number;
  breakdown: Record<string, number>;
}

/** Starts `n` sagas in one caller transaction. */
export async function startMany(o: BenchOptions, saga: AnySaga, n: number, offset = 0): Promise<void> {
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 1 });
  const client = new pg.Client({ connectionString: o.url });
  await client.connect();
  try {
    await client.query("begin");
    for (let i = 1; i <= n; i++) await engine.start(saga, { k: offset + i }, { client });
    await client.query("commit");
  } finally {
    await client.end();
    await engine.close();
  }
}

/**
 * One drain of `o.sagas` sagas at `concurrency`; tables are reset first unless `keep` is set. The poll
 * reads active sagas through instances_state_created_at_idx, so it stays cheap next to 1M finished ones.
 */
export async function runSagaThroughput(
  o: BenchOptions,
  saga: AnySaga,
  concurrency: number,
  options: { keep?: boolean; sagas?: number } = {},
): Promise<RunResult> {
  const n = options.sagas ?? o.sagas;
  if (!options.keep) await resetTables(o);
  await startMany(o, saga, n);
  await settleStats();
  const before = await xactCounts(o);
  const walBefore = await walCounts(o);
  probe.reset();
  queries.reset();
  const cpu0 = process.cpuUsage();
  let pgCpu = Number.NaN;
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 2 });
  const poll = await benchClient(o);
  let polls = 0;
  let end = 0;
  try {
    const worker = await engine.runWorker({ concurrency });
    try {
      await waitUntil(async () => {
        polls++;
        const { rows } = await poll.query<{ n: number }>(
          "select count(*)::int as n from saga.instances where name = $1 and state in ('running', 'compensating')",
          [saga.name],
        );
        return rows[0]!.n === 0;
      }, 300_000);
      end = performance.now();
      pgCpu = await backendCpuSeconds(o);
    } finally {
      await worker.stop();
    }
  } finally {
    await engine.close();
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

/** Median postgres CPU and WAL records per saga over repetitions. */
function costOf(runs: RunResult[], label?: string): Cost {
  return {
    cpuMs: spread(runs.map((x) => x.pgCpuMsPerSaga)).median,
    walRecords: spread(runs.map((x) => x.walRecordsPerSaga)).median,
    ...(label ? { label } : {}),
  };
}

/**
 * Items 1 and 2, interleaved: per repetition and concurrency, pg-saga no-op, the naive chain, pg-saga
 * transactional, so drift on the shared machine hits all three alike. Ratios are taken per repetition.
 */
export async function throughputScenario(o: BenchOptions, r: Results): Promise<void> {
  const { runNaiveChain } = await import("./naive-chain.js");
  const { noopSaga, txSaga } = await import("./sagas.js");
  const samples: Record<string, RunResult[]> = {};
  const push = (key: string, result: RunResult) => (samples[key] ??= []).push(result);
  for (let rep = 0; rep < o.reps; rep++) {
    for (const c of [10, 24]) {
      push(`noop-${c}`, await runSagaThroughput(o, noopSaga, c));
      push(`naive-${c}`, await runNaiveChain(o, c));
      push(`tx-${c}`, await runSagaThroughput(o, txSaga, c));
      log(
        `  rep ${rep + 1} c=${c}: pg-saga ${fmt(samples[`noop-${c}`]!.at(-1)!.sagasPerSec)}/s, naive ${fmt(samples[`naive-${c}`]!.at(-1)!.sagasPerSec)}/s, tx ${fmt(samples[`tx-${c}`]!.at(-1)!.sagasPerSec)}/s`,
      );
    }
  }
  for (const c of [10, 24]) {
    const noop = samples[`noop-${c}`]!;
    const naive = samples[`naive-${c}`]!;
    const tx = samples[`tx-${c}`]!;
    const naiveCost = costOf(naive, "naive");
    r.add(
      "throughput",
      `pg-saga no-op sagas/s, c=${c}`,
      "sagas/s",
      noop.map((x) => x.sagasPerSec),
      { cost: costOf(noop) },
    );
    r.add(
      "throughput",
      `pg-saga no-op step transitions/s, c=${c}`,
      "steps/s",
      noop.map((x) => x.transitionsPerSec),
    );
    r.add(
      "throughput",
      `pg-saga transactional sagas/s, c=${c}`,
      "sagas/s",
      tx.map((x) => x.sagasPerSec),
      { cost: costOf(tx) },
    );
    r.add(
      "baseline",
      `naive chain sagas/s, c=${c}`,
      "sagas/s",
      naive.map((x) => x.sagasPerSec),
      { cost: costOf(naive) },
    );
    r.add(
      "baseline",
      `ratio pg-saga no-op / naive, c=${c}`,
      "×",
      noop.map((x, i) => x.sagasPerSec / naive[i]!.sagasPerSec),
      {
        target: "≥ 2",
        cost: { ...costOf(noop, "pg-saga"), vs: naiveCost },
        why: "server CPU per saga (four saga._transition calls, the start, get_job, the relay); would meet it: transitions of many sagas in one statement, the first claim in the fetch",
      },
    );
    r.add(
      "baseline",
      `ratio pg-saga transactional / naive, c=${c}`,
      "×",
      tx.map((x, i) => x.sagasPerSec / naive[i]!.sagasPerSec),
      {
        target: "≥ 1.3",
        cost: { ...costOf(tx, "pg-saga"), vs: naiveCost },
        why: "three round trips per step where a no-op step has one (same server time); would meet it: a pipelined connection for the step's transaction",
      },
    );
    r.add(
      "commits",
      `commits per saga, pg-saga no-op, c=${c}`,
      "commits",
      noop.map((x) => x.commitsPerSaga),
    );
    r.add(
      "commits",
      `commits per saga, pg-saga transactional, c=${c}`,
      "commits",
      tx.map((x) => x.commitsPerSaga),
    );
    r.add(
      "commits",
      `commits per chain, naive, c=${c}`,
      "commits",
      naive.map((x) => x.commitsPerSaga),
    );
    for (const [label, runs] of [
      ["pg-saga no-op", noop],
      ["pg-saga transactional", tx],
      ["naive chain", naive],
    ] as const) {
      r.add(
        "commits",
        `WAL flushes per saga, ${label}, c=${c}`,
        "flushes",
        runs.map((x) => x.walSyncsPerSaga),
      );
      r.add(
        "commits",
        `WAL records per saga, ${label}, c=${c}`,
        "records",
        runs.map((x) => x.walRecordsPerSaga),
      );
    }
    r.add(
      "commits",
      `round trips per saga, pg-saga no-op, c=${c}`,
      "round trips",
      noop.map((x) => x.roundTripsPerSaga),
    );
    r.add(
      "commits",
      `round trips per chain, naive, c=${c}`,
      "round trips",
      naive.map((x) => x.roundTripsPerSaga),
    );
    r.add(
      "cpu",
      `node CPU per saga, pg-saga no-op, c=${c}`,
      "ms",
      noop.map((x) => x.nodeCpuMsPerSaga),
    );
    r.add(
      "cpu",
      `postgres CPU per saga, pg-saga no-op, c=${c}`,
      "ms",
      noop.map((x) => x.pgCpuMsPerSaga),
    );
    r.add(
      "cpu",
      `node CPU per saga, pg-saga transactional, c=${c}`,
      "ms",
      tx.map((x) => x.nodeCpuMsPerSaga),
    );
    r.add(
      "cpu",
      `postgres CPU per saga, pg-saga transactional, c=${c}`,
      "ms",
      tx.map((x) => x.pgCpuMsPerSaga),
    );
    r.add(
      "cpu",
      `node CPU per chain, naive, c=${c}`,
      "ms",
      naive.map((x) => x.nodeCpuMsPerSaga),
    );
    r.add(
      "cpu",
      `postgres CPU per chain, naive, c=${c}`,
      "ms",
      naive.map((x) => x.pgCpuMsPerSaga),
    );
  }
  r.extra.throughputBreakdown = {
    noop: samples["noop-10"]?.[0]?.breakdown,
    tx: samples["tx-10"]?.[0]?.breakdown,
    naive: samples["naive-10"]?.[0]?.breakdown,
  };
  r.extra.throughputRuns = samples;
}
