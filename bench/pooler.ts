/**
 * Sequential sagas (three no-op steps, one at a time, an idle worker waiting) directly and through a real
 * PgBouncer in transaction mode, in the same run: the pooler with LISTEN on a direct connection
 * (`listenConnectionString`, the documented setup) against the server directly. Also, for reference, a few
 * sagas through the pooler with no direct LISTEN connection: every wake-up is lost and each saga waits for
 * the worker's poll.
 */
import { createSagaEngine } from "../src/index.js";
import { startPgbouncer } from "../test/helpers/pgbouncer.js";
import { type BenchOptions, type Results, benchClient, log, resetTables } from "./harness.js";
import { benchSagas, noopSaga, probe } from "./sagas.js";
import { fmt } from "./stats.js";

async function sequential(
  o: BenchOptions,
  connectionString: string,
  listenConnectionString: string | undefined,
  count: number,
  warmup: number,
): Promise<number> {
  const engine = createSagaEngine({
    connectionString,
    listenConnectionString,
    sagas: benchSagas,
    poolSize: 2,
  });
  const poll = await benchClient(o);
  try {
    const worker = await engine.runWorker({ concurrency: 10 });
    try {
      probe.reset();
      let t0 = performance.now();
      for (let i = 0; i < warmup + count; i++) {
        if (i === warmup) t0 = performance.now();
        let id = "";
        const finished = new Promise<void>((resolve) => {
          probe.onLastStep = (done) => {
            if (done === id) resolve();
          };
        });
        id = (await engine.start(noopSaga, { k: i + 1 })).id;
        await finished;
        for (;;) {
          const { rows } = await poll.query<{ state: string }>(
            "select state from saga.instances where id = $1",
            [id],
          );
          if (rows[0]?.state === "completed") break;
        }
      }
      return (performance.now() - t0) / count;
    } finally {
      await worker.stop();
    }
  } finally {
    await engine.close();
    await poll.end();
  }
}

export async function poolerScenario(o: BenchOptions, r: Results): Promise<void> {
  const target = new URL(o.url);
  const bouncer = await startPgbouncer({ host: target.hostname, port: Number(target.port || 5432) });
  const pooled = bouncer.through(o.url);
  const count = o.quick ? 50 : 200;
  const direct: number[] = [];
  const through: number[] = [];
  const ratio: number[] = [];
  try {
    for (let rep = 0; rep < o.reps; rep++) {
      await resetTables(o);
      direct.push(await sequential(o, o.url, undefined, count, 10));
      through.push(await sequential(o, pooled, o.url, count, 10));
      ratio.push(through.at(-1)! / direct.at(-1)!);
      log(`  rep ${rep + 1}: direct ${fmt(direct.at(-1)!)} ms/saga, pooled ${fmt(through.at(-1)!)} ms/saga`);
    }
    r.add("pooler", "sequential saga, direct", "ms", direct);
    r.add("pooler", "sequential saga, PgBouncer + direct LISTEN", "ms", through);
    r.add("pooler", "PgBouncer / direct", "x", ratio, { target: "≤ 2" });
    // Without a direct LISTEN connection each saga waits for the worker's poll (1 s by default).
    const lost = await sequential(o, pooled, undefined, 5, 1);
    r.add("pooler", "sequential saga, PgBouncer without listenConnectionString", "ms", [lost], {
      note: "wake-ups lost: each saga waits for the poll",
    });
  } finally {
    await bouncer.stop();
  }
}
