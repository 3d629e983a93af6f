import { fileURLToPath } from "node:url";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { Logger as WorkerLogger, runMigrations as runWorkerMigrations } from "graphile-worker";
import type pg from "pg";
import { sqlState } from "./db.js";
import { SagaError } from "./errors.js";

/** Where drizzle-kit writes pg-saga's migrations; shipped with the package. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../migrations", import.meta.url));

/** One key for every pg-saga migrator in any process: they take turns. */
const MIGRATION_LOCK = 727_274_001;

/**
 * Brings schema `saga` and graphile-worker's schema up to date. Idempotent; concurrent callers wait for each
 * other on an advisory lock held by one dedicated connection for the duration, released before it returns.
 * Each migration runs in its own transaction, recorded in `saga.__drizzle_migrations` (drizzle's journal
 * format, in pg-saga's own schema so an application's drizzle journal never clashes with it).
 */
export async function migrate(pool: pg.Pool): Promise<{ applied: number }> {
  try {
    return await migrateNow(pool);
  } catch (err) {
    if (err instanceof SagaError) throw err;
    const code = sqlState(err);
    const hint =
      code === "42501"
        ? "; the role running migrate() lacks a privilege: run it once as the schema's owner, or grant CREATE"
        : "";
    throw new SagaError(
      "MIGRATION_FAILED",
      `pg-saga migrate failed${code ? ` (SQLSTATE ${code})` : ""}: ${(err as Error).message}${hint}`,
      { cause: err },
    );
  }
}

async function migrateNow(pool: pg.Pool): Promise<{ applied: number }> {
  const client = await pool.connect();
  let applied = 0;
  try {
    await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      // `create ... if not exists` checks the CREATE privilege before existence: a role without it (an
      // application role on an installed schema) must find everything current without being refused.
      const journal = await client.query<{ found: boolean }>(
        "select to_regclass('saga.__drizzle_migrations') is not null as found",
      );
      if (!journal.rows[0]?.found) {
        await client.query("create schema if not exists saga");
        await client.query(
          `create table if not exists saga.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)`,
        );
      }
      const done = await client.query<{ created_at: string }>(
        "select created_at from saga.__drizzle_migrations",
      );
      const seen = new Set(done.rows.map((r) => Number(r.created_at)));
      for (const migration of readMigrationFiles({ migrationsFolder: MIGRATIONS_FOLDER })) {
        if (seen.has(migration.folderMillis)) continue;
        await client.query("begin");
        try {
          for (const statement of migration.sql) {
            if (statement.trim()) await client.query(statement);
          }
          await client.query("insert into saga.__drizzle_migrations (hash, created_at) values ($1, $2)", [
            migration.hash,
            migration.folderMillis,
          ]);
          await client.query("commit");
          applied++;
        } catch (err) {
          await client.query("rollback");
          throw new SagaError(
            "MIGRATION_FAILED",
            `pg-saga migration ${migration.folderMillis} failed: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
      }
      await runWorkerMigrations({ pgPool: pool, logger: quietWorkerLogger });
    } finally {
      await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
  return { applied };
}

/** graphile-worker logs to the console by default; the library never does. */
export const quietWorkerLogger = new WorkerLogger(() => () => {});
