/**
 * Item 4: sequential sagas, one at a time, with an idle worker waiting. start → completed is measured from
 * before `start()` to the moment the completed state is visible to another connection; start committed →
 * first handler from `start()` resolving (its commit acknowledged) to the first handler's entry. The naive
 * chain is measured the same way for reference. Query durations per kind are kept (single saga in flight:
 * round trip plus server time, no queueing).
 */
import { createSagaEngine } from "../src/index.js";
import {
  type BenchOptions,
  type Cost,
  type Results,
  backendCpuSeconds,
  benchClient,
  log,
  queries,
  resetTables,
  walCounts,
} from "./harness.js";
import { startChainWorker } from "./naive-chain.js";
import { benchSagas, noopSaga, probe } from "./sagas.js";
import { fmt, percentile, spread } from "./stats.js";

interface LatencyRun {
  done: number[];
  first: number[];
  /** Server CPU and WAL records per saga over the measured sagas (backends of the bench database). */
  cost?: Cost;
}

/** Reads server CPU and WAL at the first measured saga and again at the end of the loop. */
function costMeter(o: BenchOptions) {
  let cpu0 = Number.NaN;
  let wal0 = 0;
  return {
    async begin() {
      cpu0 = await backendCpuSeconds(o);
      wal0 = (await walCounts(o)).records;
    },
    async end(n: number): Promise<Cost> {
      const cpu = await backendCpuSeconds(o);
      const wal = (await walCounts(o)).records;
      return { cpuMs: ((cpu - cpu0) * 1000) / n, walRecords: (wal - wal0) / n };
    },
  };
}

function lastStep(id: string): Promise<void> {
  return new Promise((resolve) => {
    const previous = probe.onLastStep;
    probe.onLastStep = (done) => {
      previous?.(done);
      if (done === id) resolve();
    };
  });
}

/**
 * `inCallerTx`: start() runs in a transaction of the caller's own connection, committed right after, so the
 * workers are woken by the outbox relay (it publishes saga.started) rather than by the engine.
 */
async function sagaLatency(
  o: BenchOptions,
  count: number,
  warmup: number,
  inCallerTx = false,
): Promise<LatencyRun> {
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 2 });
  const poll = await benchClient(o);
  const caller = await benchClient(o);
  const run: LatencyRun = { done: [], first: [] };
  const meter = costMeter(o);
  try {
    const worker = await engine.runWorker({ concurrency: 10 });
    try {
      probe.reset();
      probe.trackFirst = true;
      for (let i = 0; i < warmup + count; i++) {
        if (i === warmup) {
          queries.reset();
          await meter.begin();
        }
        queries.timing = i >= warmup;
        const t0 = performance.now();
        let id = "";
        const finished = new Promise<void>((resolve) => {
          probe.onLastStep = (done) => {
            if (done === id) resolve();
          };
        });
        if (inCallerTx) {
          await caller.query("begin");
          id = (await engine.start(noopSaga, { k: i + 1 }, { client: caller })).id;
          await caller.query("commit");
        } else id = (await engine.start(noopSaga, { k: i + 1 })).id;
        const committed = performance.now();
        await finished;
        for (;;) {
          const { rows } = await poll.query<{ state: string }>(
            "select state from saga.instances where id = $1",
            [id],
          );
          if (rows[0]?.state === "completed") break;
        }
        const t1 = performance.now();
        if (i >= warmup) {
          run.done.push(t1 - t0);
          run.first.push((probe.firstHandlerAt.get(id) ?? Number.NaN) - committed);
        }
      }
      queries.timing = false;
      run.cost = await meter.end(count);
    } finally {
      await worker.stop();
    }
  } finally {
    await engine.close();
    await poll.end();
    await caller.end();
  }
  return run;
}

async function naiveLatency(o: BenchOptions, count: number, warmup: number): Promise<LatencyRun> {
  const worker = await startChainWorker(o, 10);
  const client = await benchClient(o);
  const run: LatencyRun = { done: [], first: [] };
  const meter = costMeter(o);
  try {
    probe.reset();
    probe.trackFirst = true;
    for (let i = 0; i < warmup + count; i++) {
      if (i === warmup) await meter.begin();
      const id = 50_000 + i;
      const finished = lastStep(String(id));
      const t0 = performance.now();
      await client.query(
        "select graphile_worker.add_job('bench_chain', json_build_object('id', $1::int, 'step', 1))",
        [id],
      );
      const committed = performance.now();
      await finished;
      for (;;) {
        const { rows } = await client.query<{ step: number }>("select step from bench_rows where id = $1", [
          id,
        ]);
        if (rows[0]?.step === 3) break;
      }
      const t1 = performance.now();
      if (i >= warmup) {
        run.done.push(t1 - t0);
        run.first.push((probe.firstHandlerAt.get(String(id)) ?? Number.NaN) - committed);
      }
    }
    run.cost = await meter.end(count);
  } finally {
    await worker.stop();
    await client.end();
  }
  return run;
}

export async function latencyScenario(o: BenchOptions, r: Results): Promise<void> {
  const count = o.quick ? 100 : 200;
  const saga: LatencyRun[] = [];
  const inTx: LatencyRun[] = [];
  const naive: LatencyRun[] = [];
  let perQuery: Record<string, { n: number; p50: number }> = {};
  for (let rep = 0; rep < o.reps; rep++) {
    await resetTables(o);
    saga.push(await sagaLatency(o, count, 20));
    if (rep === 0) perQuery = queries.medians();
    inTx.push(await sagaLatency(o, count, 20, true));
    naive.push(await naiveLatency(o, count, 20));
    log(
      `  rep ${rep + 1}: pg-saga p50 ${fmt(percentile(saga.at(-1)!.done, 50))} ms, naive p50 ${fmt(percentile(naive.at(-1)!.done, 50))} ms`,
    );
  }
  const p = (runs: LatencyRun[], key: "done" | "first", q: number) => runs.map((x) => percentile(x[key], q));
  const cost = (runs: LatencyRun[], label?: string): Cost => ({
    cpuMs: spread(runs.map((x) => x.cost?.cpuMs ?? Number.NaN)).median,
    walRecords: spread(runs.map((x) => x.cost?.walRecords ?? Number.NaN)).median,
    ...(label ? { label } : {}),
  });
  const sagaCost = { ...cost(saga, "pg-saga"), vs: cost(naive, "naive") };
  r.add("latency", "pg-saga start → completed p50", "ms", p(saga, "done", 50), {
    target: "≤ 3",
    cost: sagaCost,
    why: "five serial commits that wait for the disk (start, get_job, records); would meet it: the first claim in the fetch, opt-in asynchronous records",
  });
  r.add("latency", "pg-saga start → completed p95", "ms", p(saga, "done", 95));
  r.add("latency", "pg-saga start → completed p99", "ms", p(saga, "done", 99), {
    target: "≤ 8",
    cost: sagaCost,
    why: "the same serial flushes, and load spikes on 2 shared cores",
  });
  r.add("latency", "pg-saga start committed → first handler p50", "ms", p(saga, "first", 50), {
    target: "≤ 1",
    cost: sagaCost,
    why: "NOTIFY wake-up, then graphile-worker's get_job commit waiting for the disk; would meet it: get_job without the flush on direct connections, or the claim in the fetch",
  });
  r.add("latency", "pg-saga start committed → first handler p99", "ms", p(saga, "first", 99));
  r.add("latency", "pg-saga in caller tx: commit → first handler p50", "ms", p(inTx, "first", 50));
  r.add("latency", "pg-saga in caller tx: commit → first handler p99", "ms", p(inTx, "first", 99));
  r.add("latency", "pg-saga in caller tx: start → completed p50", "ms", p(inTx, "done", 50));
  r.add("latency", "naive start → completed p50", "ms", p(naive, "done", 50), { cost: cost(naive) });
  r.add("latency", "naive start → completed p99", "ms", p(naive, "done", 99));
  r.add("latency", "naive add_job committed → first task p50", "ms", p(naive, "first", 50));
  r.extra.latencyQueryMedians = perQuery;
  log(`  query p50s during pg-saga latency (ms): ${JSON.stringify(perQuery)}`);
}
