/**
 * What pg-saga relies on in graphile-worker beyond its documented API (src/graphile/boundary.ts and
 * sql/graphile.sql), checked against the installed graphile-worker: after an upgrade, a failure here names what
 * changed before any saga test fails for a reason that is hard to see.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { run } from "graphile-worker";
import {
  GRAPHILE_SCHEMA,
  JOBS_CHANNEL,
  JobTracker,
  type Runner,
  forceUnlockWorkers,
  isFromGraphileWorker,
  quietWorkerLogger,
  startJobRunner,
  unlockOwnStaleJobs,
  unlockUnownedSagaJobs,
} from "../src/graphile/boundary.js";
import { SQL_FOLDER } from "../src/repeatable.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();

/** The columns pg-saga reads or writes, with the types it expects (information_schema.columns.data_type). */
const COLUMNS: Record<string, Record<string, string>> = {
  _private_jobs: {
    id: "bigint",
    task_id: "integer",
    payload: "json",
    run_at: "timestamp with time zone",
    locked_by: "text",
    locked_at: "timestamp with time zone",
    attempts: "smallint",
    max_attempts: "smallint",
    last_error: "text",
  },
  _private_tasks: { id: "integer", identifier: "text" },
};

/** The functions pg-saga calls, with the named arguments it passes. */
const FUNCTIONS: Record<string, Record<string, string>> = {
  add_job: { identifier: "text", payload: "json", run_at: "timestamp with time zone", priority: "integer" },
  force_unlock_workers: { worker_ids: "text[]" },
};

interface Job {
  id: string;
  payload: unknown;
  lockedBy: string | null;
}

// graphile-worker warns about a pool without an error handler; the database stays up in this file.
beforeAll(() => void db.pool.on("error", () => {}));

let runner: Runner | undefined;
afterEach(async () => {
  await runner?.stop();
  runner = undefined;
});

/** A real graphile-worker runner that polls only once an hour: a job runs only when the channel wakes it. */
async function startRunner(task: string, onJob: (job: Job) => Promise<void> = async () => {}) {
  const jobs = new JobTracker();
  const ran: Job[] = [];
  const waiters: (() => void)[] = [];
  // Listening, and past its first fetch: from then on only a wake-up (or the hourly poll) fetches jobs.
  const ready = Promise.all([
    new Promise((resolve) => jobs.events.once("pool:listen:success", resolve)),
    new Promise((resolve) => jobs.events.once("localQueue:getJobs:complete", resolve)),
  ]);
  runner = await startJobRunner({
    pool: db.pool,
    preparedStatements: true,
    concurrency: 2,
    pollInterval: 3_600_000,
    events: jobs.events,
    taskList: {
      [task]: async (payload, helpers) => {
        const { rows } = await db.pool.query<{ locked_by: string | null }>(
          `select locked_by from ${GRAPHILE_SCHEMA}._private_jobs where id = $1`,
          [helpers.job.id],
        );
        const job = { id: helpers.job.id, payload, lockedBy: rows[0]?.locked_by ?? null };
        expect(
          jobs.held.has(job.id),
          "a running job is among the tracker's held jobs (localQueue/job events)",
        ).toBe(true);
        await onJob(job);
        ran.push(job);
        waiters.splice(0).forEach((w) => w());
      },
    },
  });
  await ready;
  const ranJobs = async (n: number) => {
    while (ran.length < n) {
      const woken = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 15_000);
        waiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!woken)
        throw new Error(
          `no job ran within 15 s: graphile-worker did not fetch the job after a ${JOBS_CHANNEL} wake-up (channel or payload changed?)`,
        );
    }
    return ran;
  };
  return { jobs, ranJobs };
}

async function jobRows(task: string) {
  const { rows } = await db.pool.query<{ id: string; locked_by: string | null }>(
    `select j.id, j.locked_by from ${GRAPHILE_SCHEMA}._private_jobs j
     join ${GRAPHILE_SCHEMA}._private_tasks t on t.id = j.task_id where t.identifier = $1 order by j.id`,
    [task],
  );
  return rows;
}

describe("graphile-worker boundary", () => {
  it("its private tables have the columns pg-saga uses, with the same types", async () => {
    const { rows } = await db.pool.query<{ table_name: string; column_name: string; data_type: string }>(
      `select table_name, column_name, data_type from information_schema.columns
       where table_schema = $1 and table_name = any($2)`,
      [GRAPHILE_SCHEMA, Object.keys(COLUMNS)],
    );
    const changed: string[] = [];
    for (const [table, columns] of Object.entries(COLUMNS))
      for (const [column, type] of Object.entries(columns)) {
        const found = rows.find((r) => r.table_name === table && r.column_name === column);
        if (!found) changed.push(`${GRAPHILE_SCHEMA}.${table}.${column} is gone (expected ${type})`);
        else if (found.data_type !== type)
          changed.push(`${GRAPHILE_SCHEMA}.${table}.${column} is ${found.data_type}, expected ${type}`);
      }
    // saga._enqueue's `on conflict do nothing` needs a unique identifier to insert each task once.
    const unique = await db.pool.query(
      `select 1 from pg_index x join pg_attribute a on a.attrelid = x.indrelid and a.attnum = x.indkey[0]
       where x.indrelid = to_regclass($1) and x.indisunique and x.indnatts = 1 and a.attname = 'identifier'`,
      [`${GRAPHILE_SCHEMA}._private_tasks`],
    );
    if (unique.rowCount === 0)
      changed.push(`${GRAPHILE_SCHEMA}._private_tasks.identifier is no longer unique`);
    expect(
      changed,
      "graphile-worker's private tables changed: update sql/graphile.sql and src/graphile/boundary.ts",
    ).toEqual([]);
  });

  it("its functions take the arguments pg-saga passes", async () => {
    const { rows } = await db.pool.query<{ name: string; args: string[] | null; types: string[] }>(
      `select p.proname as name, p.proargnames as args,
              array(select format_type(t, null) from unnest(p.proargtypes) t) as types
       from pg_proc p where p.pronamespace = to_regnamespace($1) and p.proname = any($2)`,
      [GRAPHILE_SCHEMA, Object.keys(FUNCTIONS)],
    );
    const changed: string[] = [];
    for (const [fn, args] of Object.entries(FUNCTIONS)) {
      const overloads = rows.filter((r) => r.name === fn);
      if (overloads.length !== 1) {
        changed.push(`${GRAPHILE_SCHEMA}.${fn} has ${overloads.length} definitions, expected 1`);
        continue;
      }
      const { args: names, types } = overloads[0]!;
      for (const [arg, type] of Object.entries(args)) {
        const i = names?.indexOf(arg) ?? -1;
        if (i < 0) changed.push(`${GRAPHILE_SCHEMA}.${fn} has no argument ${arg}`);
        else if (types[i] !== type)
          changed.push(`${GRAPHILE_SCHEMA}.${fn}(${arg}) is ${types[i]}, expected ${type}`);
      }
    }
    expect(
      changed,
      "graphile-worker's functions changed: update sql/graphile.sql and src/graphile/boundary.ts",
    ).toEqual([]);
  });

  it("only the boundary names graphile-worker's schema, private tables and channel", () => {
    const outside: string[] = [];
    for (const name of readdirSync(SQL_FOLDER)) {
      if (!name.endsWith(".sql") || name === "graphile.sql" || name === "schema.sql") continue;
      const code = readFileSync(join(SQL_FOLDER, name), "utf8").replace(/--.*$/gm, "");
      if (/graphile_worker|_private_|jobs:insert/.test(code)) outside.push(`sql/${name}`);
    }
    const src = join(SQL_FOLDER, "../src");
    for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
      const path = join(entry.parentPath, entry.name);
      if (path.endsWith(join("graphile", "boundary.ts"))) continue;
      const code = readFileSync(path, "utf8");
      if (/from "graphile-worker"|_private_|jobs:insert|graphile_worker\./.test(code)) outside.push(path);
    }
    expect(
      outside,
      "graphile-worker is touched outside src/graphile/boundary.ts and sql/graphile.sql",
    ).toEqual([]);
  });

  it("a job queued without a wake-up runs once the jobs:insert channel wakes the runner, locked under its pool's id", async () => {
    const task = "saga:boundary-enqueue@1";
    const { jobs, ranJobs } = await startRunner(task);
    // saga._enqueue sends no NOTIFY; saga._wake_jobs, after the commit, is what the relay sends.
    await db.pool.query("select saga._enqueue($1, $2)", [task, JSON.stringify({ id: "a" })]);
    expect(await jobRows(task)).toHaveLength(1);
    const { rows } = await db.pool.query<{ channel: string }>("select $1::text as channel", [JOBS_CHANNEL]);
    expect(rows[0]!.channel).toBe("jobs:insert");
    await db.pool.query("select saga._wake_jobs(1)");
    const [job] = await ranJobs(1);
    expect(job!.payload).toEqual({ id: "a" });
    expect(jobs.poolIds, "pool:create gives the pool's id").toHaveLength(1);
    expect(job!.lockedBy, "graphile-worker no longer locks jobs under its pool's id (locked_by)").toBe(
      jobs.poolIds[0],
    );
    expect(jobs.lockIds).toContain(jobs.poolIds[0]);
  });

  it("a job added through add_job (saga._add_job) runs, and one ended by its own transition (saga._job_done) is gone", async () => {
    const task = "saga:boundary-add@1";
    const { jobs, ranJobs } = await startRunner(task, async (job) => {
      // What saga._apply does in a job's last transition: the job ends in that commit.
      await db.pool.query("select saga._job_done($1)", [job.id]);
      expect(await jobRows(task)).toEqual([]);
    });
    await db.pool.query("select saga._add_job($1, $2, p_priority => -10)", [
      task,
      JSON.stringify({ id: "b" }),
    ]);
    const [job] = await ranJobs(1);
    expect(job!.payload).toEqual({ id: "b" });
    await runner!.stop();
    runner = undefined;
    expect(await jobRows(task), "graphile-worker's own completion after saga._job_done").toEqual([]);
    expect(jobs.held.size).toBe(0);
  });

  it("the reaper's unlocks free jobs of dead pools, and saga._saga_jobs counts them", async () => {
    const task = "saga:boundary-reap@1";
    for (const id of ["c", "d", "e"])
      await db.pool.query("select saga._enqueue($1, $2)", [task, JSON.stringify({ id })]);
    const [c, d, e] = await jobRows(task);
    const lock = (job: { id: string }, by: string) =>
      db.pool.query(
        `update ${GRAPHILE_SCHEMA}._private_jobs set locked_by = $2, locked_at = now() - interval '1 hour' where id = $1`,
        [job.id, by],
      );
    await lock(c!, "dead-pool");
    await lock(d!, "own-pool");
    await lock(e!, "nobodys-pool");
    await forceUnlockWorkers(db.pool, ["dead-pool"]);
    expect(await unlockOwnStaleJobs(db.pool, ["own-pool"], [], 1_000)).toBe(1);
    await unlockUnownedSagaJobs(db.pool, 1_000);
    expect((await jobRows(task)).map((j) => j.locked_by)).toEqual([null, null, null]);
    const { rows } = await db.pool.query<{ saga_id: string; runnable: string }>(
      "select saga_id, runnable from saga._saga_jobs() where saga_id = any($1) order by 1",
      [["c", "d", "e"]],
    );
    expect(rows).toEqual([
      { saga_id: "c", runnable: "1" },
      { saga_id: "d", runnable: "1" },
      { saga_id: "e", runnable: "1" },
    ]);
  });

  it("an error thrown inside graphile-worker is recognised by its stack frames (the rejection guard)", async () => {
    const err = await run({
      pgPool: db.pool,
      taskDirectory: "/nonexistent/pg-saga-boundary-tasks",
      logger: quietWorkerLogger,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(
      isFromGraphileWorker(err),
      `graphile-worker's frames are no longer recognised in:\n${(err as Error).stack}`,
    ).toBe(true);
    expect(isFromGraphileWorker(new Error("an application's own"))).toBe(false);
  });
});
