import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate as drizzleMigrate } from "drizzle-orm/node-postgres/migrator";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { describe, expect, it } from "vitest";
import { createSagaEngine } from "../src/index.js";
import { MIGRATIONS_FOLDER } from "../src/migrate.js";
import { dumpSagaSchema } from "../scripts/dump-schema.js";
import { expectedCustomMigration } from "../scripts/sync-custom-migrations.js";
import { useTestDatabase } from "./helpers/database.js";

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

  it("ships each custom migration with the text of its sql/ source (run `npm run db:generate`)", () => {
    const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER, "meta", "_journal.json"), "utf8")) as {
      entries: { tag: string }[];
    };
    let custom = 0;
    for (const { tag } of journal.entries) {
      const expected = expectedCustomMigration(tag);
      if (expected === undefined) continue;
      custom++;
      expect(readFileSync(join(MIGRATIONS_FOLDER, `${tag}.sql`), "utf8"), tag).toBe(expected);
    }
    expect(custom).toBeGreaterThanOrEqual(3);
  });
});
