/**
 * Workers run only against their own schema: an older one is refused at start (SCHEMA_OUTDATED, naming the
 * command), health and `migrate --dry-run` say what is pending, and a running worker whose database a newer
 * release migrated stops taking work (SCHEMA_NEWER); migrate() never downgrades such a database.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { SagaError, createSagaEngine, defineSaga } from "../src/index.js";
import { readRepeatableFiles } from "../src/repeatable.js";
import { useTestDatabase } from "./helpers/database.js";
import { installRelease010 } from "./helpers/released-schema.js";

const db = useTestDatabase({ migrated: false });
const BIN = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIXTURE = fileURLToPath(new URL("./fixtures/cli-sagas.ts", import.meta.url));

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: "warn" };
  delete env.FORCE_COLOR;
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

const ping = defineSaga({ name: "schema-ping", input: z.object({}) }).step("one", {
  execute: async (data) => data,
});
const files = readRepeatableFiles().map((f) => f.name);

describe("schema version checks", () => {
  it("refuses to run a worker on a 0.1.0 schema, names the command; health and --dry-run say what is pending", async () => {
    await installRelease010(db.url);
    const engine = createSagaEngine({ connectionString: db.url, sagas: [ping] });
    try {
      const err = await engine.runWorker().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SagaError);
      expect((err as SagaError).code).toBe("SCHEMA_OUTDATED");
      expect((err as SagaError).message).toMatch(/sql file\(s\) \(drops\.sql, functions\.sql/);
      expect((err as SagaError).message).toMatch(/run `pg-saga migrate` \(or `engine\.migrate\(\)`\)/);

      const report = await engine.health();
      expect(report.healthy).toBe(false);
      expect(report.migrations).toMatchObject({ ok: false, pending: [], repeatable: files, newer: null });
      expect(report.problems).toContainEqual(expect.stringMatching(/sql file\(s\) not applied .*: run pg-saga migrate$/));
    } finally {
      await engine.close();
    }

    const [dry, worker] = await Promise.all([
      cli(["migrate", "--dry-run", "--json"]),
      cli(["worker", "--sagas", FIXTURE]),
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toEqual({
      dryRun: true,
      upToDate: false,
      tables: [],
      files: files.map((file) => ({ file, reason: "new" })),
      forgotten: [],
      newer: null,
    });
    expect(worker.code).toBe(1);
    expect(worker.stderr).toMatch(/run `pg-saga migrate`.*\(SCHEMA_OUTDATED\)/);
    const human = await cli(["migrate", "--dry-run"]);
    expect(human.stdout).toMatch(/^migrate would apply, in one transaction:\n {2}sql file {9}drops\.sql \(new\)/);
    const recorded = await db.pool.query("select to_regclass('saga.__repeatable') as t");
    expect(recorded.rows[0].t).toBeNull(); // the dry run changed nothing

    const migrated = await cli(["migrate", "--json"]);
    expect(JSON.parse(migrated.stdout)).toEqual({ applied: 0, repeatable: files });
    expect(JSON.parse((await cli(["migrate", "--dry-run", "--json"])).stdout)).toMatchObject({ upToDate: true, files: [] });
    const version = await db.pool.query<{ v: { migrations: number; files: Record<string, string> } }>(
      "select saga.schema_version() as v",
    );
    expect(version.rows[0]!.v.migrations).toBeGreaterThan(0);
    expect(Object.keys(version.rows[0]!.v.files).sort()).toEqual([...files].sort());
  });

  it("stops a running worker when a newer release migrates the database, and never downgrades it", async () => {
    const engine = createSagaEngine({ connectionString: db.url, sagas: [ping] });
    try {
      const worker = await engine.runWorker({ pollInterval: 100, schemaCheckInterval: 200 });
      expect((await engine.waitFor((await engine.start(ping, {})).id)).state).toBe("completed");

      // What a newer release's migrate() leaves: its sql/ files recorded under its version.
      await db.pool.query("update saga.__repeatable set version = '99.0.0' where file = 'functions.sql'");
      const ended = await worker.ended;
      expect(ended).toBeInstanceOf(SagaError);
      expect(ended!.code).toBe("SCHEMA_NEWER");
      expect(ended!.message).toMatch(/pg-saga 99\.0\.0 migrated it; this worker stops taking work/);
      const { id } = await engine.start(ping, {});
      await new Promise((r) => setTimeout(r, 500));
      expect((await engine.get(id))!.state).toBe("running"); // left for the new release's workers

      const refused = await engine.migrate().catch((e: unknown) => e);
      expect((refused as SagaError).code).toBe("SCHEMA_NEWER");
      const version = await db.pool.query("select version from saga.__repeatable where file = 'functions.sql'");
      expect(version.rows[0].version).toBe("99.0.0");
      expect((await engine.health()).migrations.newer).toMatch(/^schema saga is newer than this pg-saga/);
      expect((await engine.runWorker().catch((e: unknown) => e) as SagaError).code).toBe("SCHEMA_NEWER");

      // A table migration this version does not know says the same.
      await db.pool.query("update saga.__repeatable set version = (select version from saga.__repeatable where file = 'drops.sql')");
      await db.pool.query("insert into saga.__drizzle_migrations (hash, created_at) values ('newer', 4102444800000)");
      expect(((await engine.migrate().catch((e: unknown) => e)) as SagaError).message).toMatch(
        /1 table migration\(s\) this version does not know \(4102444800000\)/,
      );
      await db.pool.query("delete from saga.__drizzle_migrations where hash = 'newer'");
      const again = await engine.runWorker({ pollInterval: 100 });
      expect((await engine.waitFor(id)).state).toBe("completed");
      await again.stop();
      expect(await again.ended).toBeNull();
    } finally {
      await engine.close();
    }
  });
});
