import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate as drizzleMigrate } from "drizzle-orm/node-postgres/migrator";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { describe, expect, it } from "vitest";
import { createSagaEngine } from "../src/index.js";
import { MIGRATIONS_FOLDER, migrate } from "../src/migrate.js";
import { dumpSagaSchema } from "../scripts/dump-schema.js";
import { createDatabase, dropDatabase, useTestDatabase } from "./helpers/database.js";
import { installRelease010 } from "./helpers/released-schema.js";
import pg from "pg";
import { readRepeatableFiles } from "../src/repeatable.js";

const db = useTestDatabase({ migrated: false });

/** An application's own drizzle migrations, in drizzle's default journal (schema `drizzle`). */
function appMigrations(): string {
  const dir = mkdtempSync(join(tmpdir(), "app-migrations-"));
  mkdirSync(join(dir, "meta"));
  writeFileSync(
    join(dir, "0000_app.sql"),
    'CREATE TABLE "app_orders" ("id" serial PRIMARY KEY, "total" integer NOT NULL);',
  );
  writeFileSync(
    join(dir, "meta", "_journal.json"),
    JSON.stringify({
      version: "7",
      dialect: "postgresql",
      entries: [{ idx: 0, version: "7", when: 1700000000000, tag: "0000_app", breakpoints: true }],
    }),
  );
  return dir;
}

describe("schema and migrations", () => {
  it("migrates concurrently from two engines, once, next to an application's own drizzle migrations", async () => {
    const orm = drizzle(db.pool);
    const folder = appMigrations();
    await drizzleMigrate(orm, { migrationsFolder: folder });

    const a = createSagaEngine({ connectionString: db.url, sagas: [] });
    const b = createSagaEngine({ connectionString: db.url, sagas: [] });
    try {
      await Promise.all([a.migrate(), b.migrate()]);
      await a.migrate(); // idempotent
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    await drizzleMigrate(orm, { migrationsFolder: folder }); // the app's journal is untouched by ours

    const ours = await db.pool.query("select hash from saga.__drizzle_migrations order by id");
    expect(ours.rows.map((r) => r.hash)).toEqual(
      readMigrationFiles({ migrationsFolder: MIGRATIONS_FOLDER }).map((m) => m.hash),
    );
    const theirs = await db.pool.query("select count(*)::int as n from drizzle.__drizzle_migrations");
    expect(theirs.rows[0].n).toBe(1);
    const tables = await db.pool.query(
      "select table_schema, table_name from information_schema.tables where table_name in ('app_orders', 'instances', '_private_jobs') order by 1",
    );
    expect(tables.rows.map((r) => `${r.table_schema}.${r.table_name}`)).toEqual([
      "graphile_worker._private_jobs",
      "public.app_orders",
      "saga.instances",
    ]);
  });

  it("produces exactly the committed sql/schema.sql (run `npm run db:dump` after changing migrations)", () => {
    const committed = readFileSync(new URL("../sql/schema.sql", import.meta.url), "utf8");
    expect(dumpSagaSchema(db.url)).toBe(committed);
  });

  it("records the checksum of every repeatable sql/ file", async () => {
    const { rows } = await db.pool.query("select file, checksum from saga.__repeatable order by file");
    expect(rows).toEqual(
      readRepeatableFiles()
        .map((f) => ({ file: f.name, checksum: f.checksum }))
        .sort((a, b) => a.file.localeCompare(b.file)),
    );
  });

  it("upgrades a 0.1.0 database to exactly the schema of a fresh install", async () => {
    const old = await createDatabase(false);
    const pool = new pg.Pool({ connectionString: old.url, max: 3 });
    try {
      await installRelease010(old.url);
      const result = await migrate(pool);
      // 0.1.0 recorded no repeatable file: all of them are re-applied once, then nothing.
      expect(result.repeatable).toEqual(readRepeatableFiles().map((f) => f.name));
      expect(await migrate(pool)).toEqual({ applied: 0, repeatable: [] });
      await pool.end();
      const committed = readFileSync(new URL("../sql/schema.sql", import.meta.url), "utf8");
      expect(dumpSagaSchema(old.url)).toBe(committed);
    } finally {
      await pool.end().catch(() => {});
      await dropDatabase(old.name);
    }
  });

  it("defines every function and view of schema saga in a sql/ file (a dropped one goes in sql/drops.sql)", async () => {
    const defined = new Map<string, number>();
    for (const file of readRepeatableFiles())
      for (const statement of file.statements)
        for (const m of statement.matchAll(/create or replace (function|view) saga\.(\w+)/gi))
          defined.set(`${m[1]!.toLowerCase()} ${m[2]}`, (defined.get(`${m[1]!.toLowerCase()} ${m[2]}`) ?? 0) + 1);
    const { rows } = await db.pool.query<{ key: string; n: number }>(
      `select 'function ' || proname as key, count(*)::int as n from pg_proc
       where pronamespace = 'saga'::regnamespace group by proname
       union all
       select 'view ' || viewname, 1 from pg_views where schemaname = 'saga'`,
    );
    expect(new Map(rows.map((r) => [r.key, r.n]))).toEqual(defined);
  });
});
