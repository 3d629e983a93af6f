/**
 * Item 6, the outbox: a durable subscription's lag at a steady 1,000 events/s (engine.publish, a batch of
 * ten every 10 ms, with a worker running the relay), from each batch's commit to its delivery; and the most
 * events/s a durable subscription drains from a backlog written with SQL. The lag run goes twice: once
 * alone, once with a session of another database idle in transaction for the whole run. Skipped where the engine has no
 * subscribe() yet (the relay is built separately).
 */
import { createSagaEngine } from "../src/index.js";
import pg from "pg";
import {
  type BenchOptions,
  type Results,
  benchClient,
  log,
  resetTables,
  sleep,
  waitUntil,
} from "./harness.js";
import { benchSagas } from "./sagas.js";
import { percentile } from "./stats.js";

interface BenchEvent {
  payload: unknown;
}
interface Subscription {
  ready: Promise<void>;
  close(): Promise<void>;
}
/** The part of the engine this scenario uses, typed here so the bench compiles before the relay lands. */
interface OutboxApi {
  subscribe?(
    filter: { types?: string[] },
    handler: (event: BenchEvent) => unknown,
    options?: { durable?: string; from?: "oldest" | "now"; batchSize?: number },
  ): Subscription;
  publish?(events: { type: string; payload?: unknown }[]): Promise<{ ids: number[] }>;
}

function outboxApi(engine: unknown): Required<OutboxApi> | null {
  const api = engine as OutboxApi;
  return typeof api.subscribe === "function" && typeof api.publish === "function"
    ? (api as Required<OutboxApi>)
    : null;
}

async function lagRun(o: BenchOptions, seconds: number): Promise<number[] | null> {
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 8 });
  const api = outboxApi(engine);
  if (!api) {
    await engine.close();
    return null;
  }
  const committedAt = new Map<number, number>();
  const received: { batch: number; at: number }[] = [];
  try {
    const worker = await engine.runWorker({ concurrency: 1 });
    const sub = api.subscribe(
      { types: ["bench.tick"] },
      (e) => {
        received.push({ batch: (e.payload as { b: number }).b, at: performance.now() });
      },
      { durable: `bench-lag-${Date.now()}`, from: "now" },
    );
    try {
      await sub.ready;
      const t0 = performance.now();
      const batches = seconds * 100;
      const inFlight: Promise<unknown>[] = [];
      for (let b = 0; b < batches; b++) {
        const wait = t0 + b * 10 - performance.now();
        if (wait > 0) await sleep(wait);
        const events = Array.from({ length: 10 }, (_, i) => ({ type: "bench.tick", payload: { b, i } }));
        inFlight.push(api.publish(events).then(() => committedAt.set(b, performance.now())));
      }
      await Promise.all(inFlight);
      await waitUntil(async () => received.length >= batches * 10, 60_000, 20);
    } finally {
      await sub.close();
      await worker.stop();
    }
  } finally {
    await engine.close();
  }
  return received.map((r) => Math.max(0, r.at - committedAt.get(r.batch)!));
}

/**
 * The lag run again with a session of another database of the same server idle in transaction (holding an
 * xid) for the whole run: the cluster-wide xmin stays behind it, and delivery must not notice.
 */
async function lagRunWithIdleTransaction(o: BenchOptions, seconds: number): Promise<number[] | null> {
  const idle = new pg.Client({ connectionString: o.adminUrl, application_name: "bench idle in transaction" });
  await idle.connect();
  try {
    await idle.query("begin");
    await idle.query("select pg_current_xact_id()");
    return await lagRun(o, seconds);
  } finally {
    await idle.query("rollback").catch(() => {});
    await idle.end();
  }
}

async function drainRun(o: BenchOptions, count: number, batchSize?: number): Promise<number | null> {
  const seed = await benchClient(o);
  await seed.query(
    "insert into saga.outbox (type, payload) select 'bench.drain', jsonb_build_object('i', g) from generate_series(1, $1::int) g",
    [count],
  );
  await seed.end();
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 4 });
  const api = outboxApi(engine);
  if (!api) {
    await engine.close();
    return null;
  }
  let delivered = 0;
  let first = 0;
  try {
    const t0 = performance.now();
    const sub = api.subscribe(
      { types: ["bench.drain"] },
      () => {
        if (delivered++ === 0) first = performance.now();
      },
      { durable: `bench-drain-${Date.now()}`, from: "oldest", ...(batchSize ? { batchSize } : {}) },
    );
    try {
      await waitUntil(async () => delivered >= count, 300_000, 5);
      const end = performance.now();
      log(
        `    drained ${count} in ${((end - t0) / 1000).toFixed(2)} s (first after ${(first - t0).toFixed(0)} ms)`,
      );
      return count / ((end - t0) / 1000);
    } finally {
      await sub.close();
    }
  } finally {
    await engine.close();
  }
}

export async function outboxScenario(o: BenchOptions, r: Results): Promise<void> {
  const p50: number[] = [];
  const p99: number[] = [];
  const idleP50: number[] = [];
  const idleP99: number[] = [];
  const drained: number[] = [];
  const drainedBig: number[] = [];
  const count = o.quick ? 20_000 : 50_000;
  for (let rep = 0; rep < o.reps; rep++) {
    await resetTables(o);
    const lags = await lagRun(o, o.quick ? 2 : 5);
    if (!lags) {
      log("  skipped: this engine has no subscribe()/publish() yet");
      return;
    }
    p50.push(percentile(lags, 50));
    p99.push(percentile(lags, 99));
    await resetTables(o);
    const idleLags = (await lagRunWithIdleTransaction(o, o.quick ? 2 : 5))!;
    idleP50.push(percentile(idleLags, 50));
    idleP99.push(percentile(idleLags, 99));
    await resetTables(o);
    drained.push((await drainRun(o, count))!);
    await resetTables(o);
    drainedBig.push((await drainRun(o, count, 1_000))!);
    log(
      `  rep ${rep + 1}: lag p50 ${p50.at(-1)!.toFixed(1)} ms p99 ${p99.at(-1)!.toFixed(1)} ms; with a session idle in transaction p50 ${idleP50.at(-1)!.toFixed(1)} ms p99 ${idleP99.at(-1)!.toFixed(1)} ms; drained ${drained.at(-1)!.toFixed(0)}/s, batch 1000: ${drainedBig.at(-1)!.toFixed(0)}/s`,
    );
  }
  r.add("outbox", "durable subscription lag p50 at 1,000 events/s", "ms", p50);
  r.add("outbox", "durable subscription lag p99 at 1,000 events/s", "ms", p99, { target: "≤ 10" });
  r.add("outbox", "lag p50 at 1,000 events/s, a session idle in transaction", "ms", idleP50);
  r.add("outbox", "lag p99 at 1,000 events/s, a session idle in transaction", "ms", idleP99, {
    target: "≤ 10",
  });
  r.add("outbox", "events/s drained, durable, default batch", "events/s", drained, { target: "≥ 20,000" });
  r.add("outbox", "events/s drained, durable, batchSize 1000", "events/s", drainedBig, {
    target: "≥ 20,000",
  });
}
