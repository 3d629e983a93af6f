/**
 * Bridges: events/s each bridge publishes from a backlog with default settings, and its lag at a steady
 * 1,000 events/s (engine.publish, ten every 10 ms, a worker running the relay) from each batch's commit to its
 * arrival at a consumer of the broker. Baseline in the same run: a durable subscription with a no-op handler.
 */
import amqp from "amqplib";
import { connect } from "nats";
import { type Bridge, createSagaEngine, natsBridge, rabbitBridge } from "../src/index.js";
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

const NATS_URL = process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222";
const RABBIT_URL = process.env.BENCH_RABBIT_URL ?? "amqp://guest:guest@127.0.0.1:5672";

type Target = "baseline" | "nats" | "rabbitmq";

/** A broker-side consumer that records when each event arrives, and the bridge that feeds it. */
interface Sink {
  bridge: Bridge | null;
  received: Map<number, number>;
  close(): Promise<void>;
}

async function sink(target: Target, tag: string): Promise<Sink> {
  const received = new Map<number, number>();
  const note = (body: Buffer | Uint8Array) => {
    const e = JSON.parse(Buffer.from(body).toString()) as { payload: { b: number; i: number } };
    received.set(e.payload.b * 10 + e.payload.i, performance.now());
  };
  if (target === "nats") {
    const nc = await connect({ servers: NATS_URL });
    const stream = `BENCH_${tag}`;
    const sub = nc.subscribe(`${tag}.app.>`, { callback: (_err, m) => note(m.data) });
    return {
      bridge: natsBridge({ name: `bench-${tag}`, servers: NATS_URL, stream, subjectPrefix: tag }),
      received,
      async close() {
        sub.unsubscribe();
        await (await nc.jetstreamManager()).streams.delete(stream).catch(() => {});
        await nc.close();
      },
    };
  }
  if (target === "rabbitmq") {
    const conn = await amqp.connect(RABBIT_URL);
    const ch = await conn.createChannel();
    const exchange = `bench.${tag}`;
    await ch.assertExchange(exchange, "topic", { durable: true });
    const { queue } = await ch.assertQueue("", { exclusive: true });
    await ch.bindQueue(queue, exchange, "#");
    await ch.consume(queue, (m) => m && note(m.content), { noAck: true });
    return {
      bridge: rabbitBridge({ name: `bench-${tag}`, url: RABBIT_URL, exchange }),
      received,
      async close() {
        await ch.deleteExchange(exchange).catch(() => {});
        await conn.close();
      },
    };
  }
  return { bridge: null, received, close: async () => {} };
}

/** Lag at 1,000 events/s for `seconds`: ms from each batch's commit to each event's arrival. */
async function lagRun(o: BenchOptions, target: Target, seconds: number): Promise<number[]> {
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 8 });
  const tag = `lag${target.replace(/\W/g, "")}${Date.now().toString(36)}`;
  const s = await sink(target, tag);
  const committedAt = new Map<number, number>();
  try {
    const worker = await engine.runWorker({ concurrency: 1 });
    const consumer = s.bridge
      ? engine.startBridges([s.bridge])
      : (() => {
          const sub = engine.subscribe(
            { types: ["bench.tick"] },
            (e) => {
              const p = e.payload as { b: number; i: number };
              s.received.set(p.b * 10 + p.i, performance.now());
            },
            { durable: `bench-${tag}`, from: "now" },
          );
          return { ready: sub.ready, stop: () => sub.close() };
        })();
    try {
      await consumer.ready;
      await sleep(500); // the stream/exchange is created or verified
      const t0 = performance.now();
      const batches = seconds * 100;
      const inFlight: Promise<unknown>[] = [];
      for (let b = 0; b < batches; b++) {
        const wait = t0 + b * 10 - performance.now();
        if (wait > 0) await sleep(wait);
        const events = Array.from({ length: 10 }, (_, i) => ({ type: "bench.tick", payload: { b, i } }));
        inFlight.push(engine.publish(events).then(() => committedAt.set(b, performance.now())));
      }
      await Promise.all(inFlight);
      await waitUntil(async () => s.received.size >= batches * 10, 60_000, 20);
    } finally {
      await consumer.stop();
      await worker.stop();
    }
  } finally {
    await engine.close();
    await s.close();
  }
  return [...s.received].map(([k, at]) => Math.max(0, at - committedAt.get(Math.floor(k / 10))!));
}

/** Events/s from a backlog of `count` events written with SQL, until the last is acknowledged. */
async function drainRun(o: BenchOptions, target: Target, count: number): Promise<number> {
  const seed = await benchClient(o);
  await seed.query(
    "insert into saga.outbox (type, payload) select 'bench.tick', jsonb_build_object('b', g / 10, 'i', g % 10) from generate_series(0, $1::int - 1) g",
    [count],
  );
  await seed.end();
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas, poolSize: 4 });
  const tag = `drain${target.replace(/\W/g, "")}${Date.now().toString(36)}`;
  const s = await sink(target, tag);
  try {
    const t0 = performance.now();
    let done: () => boolean;
    let stop: () => Promise<void>;
    if (s.bridge) {
      const running = engine.startBridges([s.bridge]);
      done = () => (running.stats()[s.bridge!.name]?.acked ?? 0) >= count;
      stop = () => running.stop();
    } else {
      let delivered = 0;
      const sub = engine.subscribe({}, () => void delivered++, { durable: `bench-${tag}` });
      done = () => delivered >= count;
      stop = () => sub.close();
    }
    try {
      await waitUntil(async () => done(), 300_000, 5);
      return count / ((performance.now() - t0) / 1000);
    } finally {
      await stop();
    }
  } finally {
    await engine.close();
    await s.close();
  }
}

export async function bridgesScenario(o: BenchOptions, r: Results): Promise<void> {
  const count = o.quick ? 10_000 : 30_000;
  for (const target of ["baseline", "nats", "rabbitmq"] as const) {
    const rates: number[] = [];
    const p50: number[] = [];
    const p99: number[] = [];
    for (let rep = 0; rep < o.reps; rep++) {
      await resetTables(o);
      rates.push(await drainRun(o, target, count));
      await resetTables(o);
      const lags = await lagRun(o, target, o.quick ? 2 : 5);
      p50.push(percentile(lags, 50));
      p99.push(percentile(lags, 99));
      log(
        `  ${target} rep ${rep + 1}: ${rates.at(-1)!.toFixed(0)} events/s; lag p50 ${p50.at(-1)!.toFixed(1)} ms p99 ${p99.at(-1)!.toFixed(1)} ms`,
      );
    }
    const label =
      target === "baseline" ? "durable subscription, no-op handler (baseline)" : `${target} bridge`;
    r.add(
      "bridges",
      `events/s, ${label}`,
      "events/s",
      rates,
      target === "nats" ? { target: "≥ 10,000" } : {},
    );
    r.add("bridges", `lag p50 at 1,000 events/s, ${label}`, "ms", p50);
    r.add(
      "bridges",
      `lag p99 at 1,000 events/s, ${label}`,
      "ms",
      p99,
      target === "nats" ? { target: "≤ 20" } : {},
    );
  }
}
