/**
 * Item 8: peak RSS of a worker process at concurrency 50 while it drains a backlog of no-op sagas. The
 * worker runs in a child process on plain node, bundled with esbuild (tsx's own dependency), because the
 * tsx loader alone adds ~30 MB to a process; without esbuild it falls back to `node --import tsx`.
 */
import { fork } from "node:child_process";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type BenchOptions, type Results, benchClient, log, resetTables, waitUntil } from "./harness.js";
import { noopSaga } from "./sagas.js";
import { startMany } from "./throughput.js";

interface Entry {
  file: string;
  execArgv: string[];
  loader: string;
}

/**
 * The worker as plain JavaScript in .bench-cache/ at the project's root, one folder down like src/, so that its
 * package imports resolve and so do the paths the code takes from its own location (../package.json, ../sql,
 * ../migrations); or the .ts under tsx.
 */
async function workerEntry(): Promise<Entry> {
  const source = fileURLToPath(new URL("./memory-worker.ts", import.meta.url));
  try {
    const esbuild = await import("esbuild");
    const folder = fileURLToPath(new URL("../.bench-cache/", import.meta.url));
    mkdirSync(folder, { recursive: true });
    const file = `${folder}memory-worker.mjs`;
    await esbuild.build({
      entryPoints: [source],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      outfile: file,
      logLevel: "silent",
    });
    return { file, execArgv: [], loader: "plain node, bundled with esbuild" };
  } catch {
    return { file: source, execArgv: ["--import", "tsx"], loader: "node --import tsx (+~30 MB)" };
  }
}

async function peakRss(o: BenchOptions, sagas: number, entry: Entry): Promise<number> {
  await resetTables(o);
  await startMany(o, noopSaga, sagas);
  const child = fork(entry.file, [], {
    execArgv: entry.execArgv,
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
  // A worker that exits early rejects both; `ready` reports it, this one must not end the whole run.
  report.catch(() => {});
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
  const entry = await workerEntry();
  log(`  worker process: ${entry.loader}`);
  for (let rep = 0; rep < o.reps; rep++) {
    runs.push(await peakRss(o, o.quick ? 1_000 : 4_000, entry));
    log(`  rep ${rep + 1}: peak RSS ${runs.at(-1)!.toFixed(0)} MB`);
  }
  r.add("memory", "worker peak RSS, concurrency 50, under load", "MB", runs, {
    target: "≤ 150",
    note: entry.loader,
  });
}
