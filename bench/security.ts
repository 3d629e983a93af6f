/**
 * `npx tsx bench/security.ts`: what the security features cost, as ratios within one run on one database.
 * - codec: sagas/s of a three-step saga with a ~1 kB input, with aes256gcm vs without (alternating rounds),
 *   and the CPU time of one encode+decode of that input;
 * - verify: a LISTEN-only subscriber's delivery of a burst of events (each notification looked up in
 *   saga.outbox, one query per batch): events/s, and the verification queries per event.
 * Uses DATABASE_URL's server (default the local one); creates and drops pgsaga_bench_security.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { z } from "zod";
import { type PayloadCodec, aes256gcm, createSagaEngine, defineSaga } from "../src/index.js";

const server = process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/postgres";
const name = "pgsaga_bench_security";
const url = Object.assign(new URL(server), { pathname: `/${name}` }).toString();
const SAGAS = Number(process.env.SAGAS ?? 300);

const saga = defineSaga({ name: "bench-secure", input: z.object({ blob: z.string(), n: z.number() }) })
  .step("a", { execute: (d) => ({ ...d, a: 1 }) })
  .step("b", { execute: (d) => ({ ...d, b: 2 }) })
  .step("c", { execute: (d) => ({ ...d, c: 3 }) });
const input = { blob: randomBytes(384).toString("base64"), n: 1 };

async function sagasPerSecond(codec: PayloadCodec | undefined): Promise<number> {
  const engine = createSagaEngine({ connectionString: url, sagas: [saga], codec });
  const worker = await engine.runWorker({ concurrency: 8, pollInterval: 20 });
  try {
    const t0 = performance.now();
    const ids = await Promise.all(
      Array.from({ length: SAGAS }, (_, n) => engine.start(saga, { ...input, n })),
    );
    for (const { id } of ids) await engine.waitFor(id, { timeoutMs: 120_000 });
    return SAGAS / ((performance.now() - t0) / 1000);
  } finally {
    await worker.stop();
    await engine.close();
  }
}

async function verifiedDelivery(events: number): Promise<{ perSecond: number; queriesPerEvent: number }> {
  const engine = createSagaEngine({ connectionString: url, sagas: [saga] });
  const worker = await engine.runWorker({ concurrency: 2 });
  let got = 0;
  const sub = engine.subscribe({ types: ["bench.tick"] }, () => void got++);
  try {
    await sub.ready;
    const t0 = performance.now();
    for (let i = 0; i < events; i += 500)
      await engine.publish(
        Array.from({ length: Math.min(500, events - i) }, () => ({ type: "bench.tick", payload: input })),
      );
    while (got < events) await new Promise((r) => setTimeout(r, 10));
    const m = await sub.metrics();
    return { perSecond: events / ((performance.now() - t0) / 1000), queriesPerEvent: m.batches / events };
  } finally {
    await sub.close();
    await worker.stop();
    await engine.close();
  }
}

const admin = new pg.Client({ connectionString: server });
await admin.connect();
await admin.query(`drop database if exists ${name} with (force)`);
await admin.query(`create database ${name}`);
try {
  const setup = createSagaEngine({ connectionString: url, sagas: [saga] });
  await setup.migrate();
  await setup.close();
  const codec = aes256gcm({ keys: { k1: randomBytes(32) }, current: "k1" });
  const t0 = process.cpuUsage();
  for (let i = 0; i < 10_000; i++) codec.decode(codec.encode(input));
  const cpu = process.cpuUsage(t0);
  const plain: number[] = [];
  const coded: number[] = [];
  await sagasPerSecond(undefined); // warm-up
  for (let round = 0; round < 3; round++) {
    plain.push(await sagasPerSecond(undefined));
    coded.push(await sagasPerSecond(codec));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const verify = await verifiedDelivery(5_000);
  console.log(
    JSON.stringify(
      {
        encodeDecodeMicros: (cpu.user + cpu.system) / 10_000,
        sagasPerSecond: {
          plain: median(plain),
          aes256gcm: median(coded),
          ratio: median(coded) / median(plain),
        },
        listenOnlyVerified: verify,
      },
      null,
      2,
    ),
  );
} finally {
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.end();
}
