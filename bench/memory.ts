/**
 * Item 8: peak RSS of a worker process at concurrency 50 while it drains a backlog of no-op sagas. The
 * worker runs in a child process (node --import tsx: the TypeScript loader is part of the figure, a few MB).
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type BenchOptions, type Results, benchClient, log, resetTables, waitUntil } from "./harness.js";
import { noopSaga } from "./sagas.js";
import { startMany } from "./throughput.js";

async function peakRss(o: BenchOptions, sagas: number): Promise<number> {
  await resetTables(o);
  await startMany(o, noopSaga, sagas);
  const child = fork(fileURLToPath(new URL("./memory-worker.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_URL: o.url, BENCH_CONCURRENCY: "50" },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const message = (key: string) =>
    new Promise<Record<string, number>>((resolve, reject) => {
      child.on("message", (m: Record<string, number>) => {
        if (key in m) resolve(m);
      });
      child.on("exit", (code) => reject(new Error(`memory worker exited with ${code}`)));
    });
  const ready = message("ready");
  const report = message("peak");
  await ready;
  const poll = await benchClient(o);
  try {
    await waitUntil(
      async () => {
        const { rows } = await poll.query<{ n: number }>(
          "select count(*)::int as n from saga.instances where state in ('running', 'compensating')",
        );
        return rows[0]!.n === 0;
      },
      300_000,
      50,
    );
  } finally {
    await poll.end();
  }
  child.send({ stop: true });
  return (await report).peak! / 1024 / 1024;
}

export async function memoryScenario(o: BenchOptions, r: Results): Promise<void> {
  const runs: number[] = [];
  for (let rep = 0; rep < o.reps; rep++) {
    runs.push(await peakRss(o, o.quick ? 1_000 : 4_000));
    log(`  rep ${rep + 1}: peak RSS ${runs.at(-1)!.toFixed(0)} MB`);
  }
  r.add("memory", "worker peak RSS, concurrency 50, under load", "MB", runs, { target: "≤ 150" });
}
