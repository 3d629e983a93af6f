/**
 * A database as pg-saga 0.1.0 left it: the frozen migrations of test/fixtures/migrations-0.1.0 applied the way
 * 0.1.0's migrate() applied them (one transaction each, recorded by `created_at` in saga.__drizzle_migrations,
 * no repeatable files recorded), then graphile-worker's schema.
 */
import { fileURLToPath } from "node:url";
import { runMigrations as runWorkerMigrations } from "graphile-worker";
import pg from "pg";
import { quietWorkerLogger } from "../../src/graphile/boundary.js";
import { readTableMigrations } from "../../src/migration-plan.js";

export const MIGRATIONS_0_1_0 = fileURLToPath(new URL("../fixtures/migrations-0.1.0", import.meta.url));

export async function installRelease010(url: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    await pool.query("create schema if not exists saga");
    await pool.query(
      "create table if not exists saga.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)",
    );
    for (const migration of readTableMigrations(MIGRATIONS_0_1_0)) {
      const client = await pool.connect();
      try {
        await client.query("begin");
        for (const statement of migration.statements) await client.query(statement);
        await client.query("insert into saga.__drizzle_migrations (hash, created_at) values ($1, $2)", [
          migration.hash,
          migration.folderMillis,
        ]);
        await client.query("commit");
      } catch (err) {
        await client.query("rollback");
        throw err;
      } finally {
        client.release();
      }
    }
    await runWorkerMigrations({ pgPool: pool, logger: quietWorkerLogger });
  } finally {
    await pool.end();
  }
}
