/**
 * A fleet restarting: five `pg-saga migrate` processes (bin/pg-saga.js) at once on one empty database. They take
 * turns on the advisory lock; one applies everything, the others find nothing to do, none fails.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readTableMigrations } from "../src/migration-plan.js";
import { readRepeatableFiles } from "../src/repeatable.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase({ migrated: false });
const BIN = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

function migrateProcess(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: "warn" };
  delete env.FORCE_COLOR;
  const child = spawn(process.execPath, [BIN, "migrate", "--json"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

describe("concurrent migrators", () => {
  it("five pg-saga migrate processes on an empty database: one application, no error", async () => {
    const runs = await Promise.all(Array.from({ length: 5 }, () => migrateProcess()));
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toBe("");
    }
    const results = runs.map((r) => JSON.parse(r.stdout) as { applied: number; repeatable: string[] });
    const migrations = readTableMigrations();
    const files = readRepeatableFiles().map((f) => f.name);
    expect(results.filter((r) => r.applied > 0)).toEqual([{ applied: migrations.length, repeatable: files }]);
    expect(results.filter((r) => r.applied === 0)).toEqual(Array(4).fill({ applied: 0, repeatable: [] }));

    const journal = await db.pool.query<{ created_at: string }>(
      "select created_at from saga.__drizzle_migrations order by id",
    );
    expect(journal.rows.map((r) => Number(r.created_at))).toEqual(migrations.map((m) => m.folderMillis));
    const recorded = await db.pool.query<{ n: number }>("select count(*)::int as n from saga.__repeatable");
    expect(recorded.rows[0]!.n).toBe(files.length);
    const worker = await db.pool.query("select 1 from graphile_worker._private_jobs limit 0");
    expect(worker.rowCount).toBe(0);
  });
});
