/**
 * `npm run bench [-- --quick] [-- --only throughput,latency] [-- --dashboard-n 100000]`: every scenario on one fresh
 * database (pgsaga_bench on the server of BENCH_DATABASE_URL or DATABASE_URL), a table on stdout and the
 * full results as JSON in bench/results/<timestamp>.json. The database is dropped at the end.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type BenchOptions, Results, countQueries, loadAverage, log } from "./harness.js";
import { createBenchDatabase, dropBenchDatabase } from "./setup.js";

type Scenario = (o: BenchOptions, r: Results) => Promise<void>;

const SCENARIOS: Record<string, () => Promise<Scenario>> = {
  throughput: async () => (await import("./throughput.js")).throughputScenario,
  "commit-rate": async () => (await import("./commit-rate.js")).commitRateScenario,
  latency: async () => (await import("./latency.js")).latencyScenario,
  "write-path": async () => (await import("./write-path.js")).writePathScenario,
  outbox: async () => (await import("./outbox.js")).outboxScenario,
  growth: async () => (await import("./growth.js")).growthScenario,
  memory: async () => (await import("./memory.js")).memoryScenario,
  pooler: async () => (await import("./pooler.js")).poolerScenario,
  dashboard: async () => (await import("./dashboard.js")).dashboardScenario,
  bridges: async () => (await import("./bridges.js")).bridgesScenario,
  graph: async () => (await import("./graph.js")).graphScenario,
};

function parseArgs(argv: string[]) {
  const quick = argv.includes("--quick");
  const keep = argv.includes("--keep");
  const at = argv.indexOf("--only");
  const only = at >= 0 ? (argv[at + 1] ?? "").split(",").filter(Boolean) : Object.keys(SCENARIOS);
  for (const name of only)
    if (!(name in SCENARIOS))
      throw new Error(`unknown scenario ${name}; one of ${Object.keys(SCENARIOS).join(", ")}`);
  return { quick, keep, only };
}

function databaseUrl(server: string, name: string): string {
  const url = new URL(server);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The commit measured, and whether the working tree differed from it. */
function gitState(): { commit: string | null; dirty: boolean } {
  try {
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "sql", "migrations"], {
      encoding: "utf8",
    }).trim();
    return { commit, dirty: dirty.length > 0 };
  } catch {
    return { commit: null, dirty: false };
  }
}

/**
 * Whether per-statement server time can be read: pg_stat_statements needs the library in
 * shared_preload_libraries (a server restart). Without it, server work is measured from /proc and pg_stat_wal.
 */
async function statementStats(o: BenchOptions): Promise<string> {
  const client = new pg.Client({ connectionString: o.adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ libs: string }>(
      "select current_setting('shared_preload_libraries') as libs",
    );
    return rows[0]?.libs.split(",").some((l) => l.trim() === "pg_stat_statements")
      ? "pg_stat_statements is preloaded: per-statement server time can be read with `create extension pg_stat_statements`."
      : "pg_stat_statements is not in shared_preload_libraries: server CPU comes from /proc of the backends, WAL records from pg_stat_wal (cluster-wide).";
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const adminUrl =
    process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/postgres";
  const dbName = process.env.BENCH_DATABASE_NAME ?? "pgsaga_bench";
  const o: BenchOptions = {
    adminUrl,
    dbName,
    url: databaseUrl(adminUrl, dbName),
    quick: args.quick,
    reps: Number(process.env.BENCH_REPS ?? (args.quick ? 1 : 3)),
    sagas: Number(process.env.BENCH_SAGAS ?? (args.quick ? 500 : 2_000)),
  };
  countQueries();
  const results = new Results();
  const failed: string[] = [];
  const started = Date.now();
  log(
    `pg-saga bench${o.quick ? " (quick)" : ""}: ${args.only.join(", ")} on ${dbName}, ${cpus().length} cores`,
  );
  const loadBefore = loadAverage();
  log(`load average at start: ${loadBefore}`);
  const statements = await statementStats(o);
  log(statements);
  await createBenchDatabase(o);
  try {
    for (const name of args.only) {
      log(`\n# ${name}`);
      const t0 = Date.now();
      // A scenario that cannot run here (a broker or PgBouncer missing) does not cost the others their table.
      try {
        await (
          await SCENARIOS[name]!()
        )(o, results);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        failed.push(`${name}: ${message.split("\n")[0]}`);
        log(`  failed: ${message}`);
      }
      log(`  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
  } finally {
    if (!args.keep) await dropBenchDatabase(o);
  }
  const loadAfter = loadAverage();
  log(`\n${results.table()}\n`);
  log(`targets (ratios within one run; medians of ${o.reps} repetitions of ${o.sagas} sagas):\n`);
  log(`${results.targets()}\n`);
  log(`load average: ${loadBefore} at start, ${loadAfter} at end, on ${cpus().length} cores. ${statements}`);
  if (failed.length > 0) log(`scenarios that failed: ${failed.join("; ")}`);
  const folder = fileURLToPath(new URL("./results/", import.meta.url));
  mkdirSync(folder, { recursive: true });
  const file = `${folder}${new Date(started).toISOString().replace(/[:.]/g, "-")}.json`;
  const { adminUrl: _admin, url: _url, ...shown } = o;
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: new Date(started).toISOString(),
        seconds: (Date.now() - started) / 1000,
        options: shown,
        node: process.version,
        git: gitState(),
        cores: cpus().length,
        loadAverage: { start: loadBefore, end: loadAfter },
        failed,
        figures: results.figures,
        extra: results.extra,
      },
      null,
      2,
    ),
  );
  log(`results: ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
