/**
 * Item 3, the ceiling: a single-row insert+update transaction (begin, insert, update, commit) at 1 and 16
 * clients. Dividing by the commits one saga needs gives the most sagas/s this server could commit.
 */
import pg from "pg";
import { type BenchOptions, type Results, cpuSecondsOf, log, walCounts } from "./harness.js";
import { fmt, percentile } from "./stats.js";

/**
 * Runs `body` in a loop on each of `clients` connections for `seconds`; returns tx/s, latency p50 and the
 * server CPU per transaction of those connections' backends (less sensitive to a busy machine than tx/s).
 */
export async function closedLoop(
  o: BenchOptions,
  clients: number,
  seconds: number,
  body: (c: pg.Client, i: number) => Promise<void>,
): Promise<{ perSec: number; p50: number; samples: number[]; serverCpuMs: number; walRecords: number }> {
  const conns = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new pg.Client({ connectionString: o.url });
      await c.connect();
      return c;
    }),
  );
  const pids = await Promise.all(
    conns.map(async (c) => (await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid),
  );
  const samples: number[] = [];
  let count = 0;
  try {
    const until = performance.now() + seconds * 1000;
    const t0 = performance.now();
    const cpu0 = await cpuSecondsOf(pids);
    const wal0 = (await walCounts(o)).records;
    await Promise.all(
      conns.map(async (c) => {
        for (let i = 0; performance.now() < until; i++) {
          const s = performance.now();
          await body(c, i);
          samples.push(performance.now() - s);
          count++;
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const serverCpuMs = (((await cpuSecondsOf(pids)) - cpu0) * 1000) / count;
    const walRecords = ((await walCounts(o)).records - wal0) / count;
    return { perSec: count / elapsed, p50: percentile(samples, 50), samples, serverCpuMs, walRecords };
  } finally {
    await Promise.all(conns.map((c) => c.end()));
  }
}

async function insertUpdate(c: pg.Client): Promise<void> {
  await c.query("begin");
  const { rows } = await c.query<{ id: string }>("insert into bench_kv (v) values (1) returning id");
  await c.query("update bench_kv set v = v + 1 where id = $1", [rows[0]!.id]);
  await c.query("commit");
}

export async function commitRateScenario(o: BenchOptions, r: Results): Promise<void> {
  const seconds = o.quick ? 1 : 2;
  const runs: Record<number, { perSec: number; p50: number; serverCpuMs: number }[]> = { 1: [], 16: [] };
  for (let rep = 0; rep < o.reps; rep++) {
    for (const clients of [1, 16]) runs[clients]!.push(await closedLoop(o, clients, seconds, insertUpdate));
    log(
      `  rep ${rep + 1}: 1 client ${fmt(runs[1]!.at(-1)!.perSec)}/s, 16 clients ${fmt(runs[16]!.at(-1)!.perSec)}/s`,
    );
  }
  r.add(
    "commit rate",
    "insert+update tx p50, 1 client",
    "ms",
    runs[1]!.map((x) => x.p50),
  );
  r.add(
    "commit rate",
    "insert+update commits/s, 1 client",
    "commits/s",
    runs[1]!.map((x) => x.perSec),
  );
  r.add(
    "commit rate",
    "insert+update commits/s, 16 clients",
    "commits/s",
    runs[16]!.map((x) => x.perSec),
  );
  r.add(
    "commit rate",
    "insert+update server CPU per tx, 1 client",
    "ms",
    runs[1]!.map((x) => x.serverCpuMs),
  );
  // Ceilings from the commits per saga the throughput scenario measured (when it ran in this process).
  for (const [label, figure] of [
    ["pg-saga no-op", "commits per saga, pg-saga no-op, c=24"],
    ["naive chain", "commits per chain, naive, c=24"],
  ] as const) {
    const perSaga = r.figures.find((f) => f.name === figure)?.value.median;
    if (perSaga === undefined) continue;
    r.add(
      "commit rate",
      `ceiling ${label} sagas/s at 16 clients (${fmt(perSaga)} commits per saga)`,
      "sagas/s",
      runs[16]!.map((x) => x.perSec / perSaga),
    );
  }
}
