import type pg from "pg";
import { sqlState } from "./db.js";
import { SagaError } from "./errors.js";
import { migrateJobQueue } from "./graphile/boundary.js";
import {
  type MigrationPlan,
  MIGRATIONS_FOLDER,
  PACKAGE_VERSION,
  isNewer,
  planMigration,
} from "./migration-plan.js";
import { REPEATABLE_TABLE_SQL } from "./repeatable.js";

export { MIGRATIONS_FOLDER };

/** One key for every pg-saga migrator in any process: they take turns. */
const MIGRATION_LOCK = 727_274_001;

/** What one migrate() call changed. */
export interface MigrateResult {
  /** Table migrations applied. */
  applied: number;
  /** sql/ files (functions, views, triggers) re-applied, in the order they ran. */
  repeatable: string[];
}

export interface MigrateOptions {
  /** Folders to read instead of the package's own; for tests of the mechanism. */
  migrationsFolder?: string;
  sqlFolder?: string;
}

/**
 * Brings schema `saga` and graphile-worker's schema up to date. Idempotent; concurrent callers (a fleet
 * restarting) wait for each other on a transaction-level advisory lock taken first in the migration's
 * transaction, and the ones that come after the first find nothing to do. Nothing is held by the session, so
 * it works through a transaction pooler (PgBouncer); graphile-worker's migrations, after the commit, are safe
 * to run concurrently on their own.
 *
 * One transaction applies the pending table migrations of the journal (recorded in `saga.__drizzle_migrations`,
 * drizzle's journal format in pg-saga's own schema) and then re-applies, in dependency order, every sql/ file
 * whose checksum differs from the one recorded in `saga.__repeatable`: an upgrade commits whole or not at all,
 * so running workers see either the old schema or the new one.
 */
export async function migrate(pool: pg.Pool, options: MigrateOptions = {}): Promise<MigrateResult> {
  try {
    return await migrateNow(pool, options);
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

async function migrateNow(pool: pg.Pool, options: MigrateOptions): Promise<MigrateResult> {
  const client = await pool.connect();
  let result: MigrateResult;
  try {
    // Read committed whatever the server default: every statement after the lock sees what the previous
    // holder committed.
    await client.query("begin isolation level read committed");
    try {
      await client.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      // `create ... if not exists` checks the CREATE privilege before existence: a role without it (an
      // application role on an installed schema) must find everything current without being refused.
      const journals = await client.query<{ found: boolean }>(
        `select to_regclass('saga.__drizzle_migrations') is not null
           and to_regclass('saga.__repeatable') is not null as found`,
      );
      if (!journals.rows[0]?.found) {
        await client.query("create schema if not exists saga");
        await client.query(
          `create table if not exists saga.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)`,
        );
        await client.query(REPEATABLE_TABLE_SQL);
      }
      const plan = await planMigration(client, options);
      refuseNewerSchema(plan);
      result = await apply(client, plan);
      await client.query("commit");
    } catch (err) {
      await client.query("rollback").catch(() => {});
      throw err;
    }
  } finally {
    client.release();
  }
  await migrateJobQueue(pool);
  // After graphile-worker's tables exist (sql/security.sql): the group roles' grants and policies. A role
  // that does not own schema saga (an application role finding everything current) has nothing to grant.
  if (result.applied > 0 || result.repeatable.length > 0 || (await ownsSchema(pool))) await grantRoles(pool);
  return result;
}

async function ownsSchema(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ owner: boolean }>(
    "select pg_has_role(nspowner, 'USAGE') as owner from pg_namespace where nspname = 'saga'",
  );
  return rows[0]?.owner === true;
}

/** Under the migration lock: concurrent GRANTs on one object fail ("tuple concurrently updated"). */
async function grantRoles(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query("select saga._grant_roles()");
    await client.query("commit");
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw new SagaError(
      "MIGRATION_FAILED",
      `pg-saga could not grant its roles (saga_app, saga_worker, saga_reader): ${(err as Error).message}; ` +
        "run migrate as the role that owns schemas saga and graphile_worker",
      { cause: err, details: { source: "sql/security.sql", code: (err as { code?: unknown }).code } },
    );
  } finally {
    client.release();
  }
}

/** Code older than the database would put back functions the newer tables no longer match. */
function refuseNewerSchema(plan: MigrationPlan): void {
  if (!isNewer(plan)) return;
  throw new SagaError(
    "SCHEMA_NEWER",
    `${describeNewer(plan)}; upgrade this application instead of migrating with it`,
    {
      details: { unknown: plan.unknown, newerVersion: plan.newerVersion },
    },
  );
}

/** Why the database is newer than this code, for messages. */
export function describeNewer(plan: MigrationPlan): string {
  const why =
    plan.newerVersion !== null
      ? `pg-saga ${plan.newerVersion} migrated it`
      : `it has ${plan.unknown.length} table migration(s) this version does not know (${plan.unknown.join(", ")})`;
  return `schema saga is newer than this pg-saga ${PACKAGE_VERSION}: ${why}`;
}

async function apply(client: pg.PoolClient, plan: MigrationPlan): Promise<MigrateResult> {
  for (const migration of plan.tables) {
    await run(client, migration.statements, `migration ${migration.tag}`);
    await client.query("insert into saga.__drizzle_migrations (hash, created_at) values ($1, $2)", [
      migration.hash,
      migration.folderMillis,
    ]);
  }
  for (const file of plan.files) {
    await run(client, file.statements, `sql/${file.name}`);
    await client.query(
      `insert into saga.__repeatable (file, checksum, version) values ($1, $2, $3)
       on conflict (file) do update set checksum = excluded.checksum, version = excluded.version, applied_at = now()`,
      [file.name, file.checksum, PACKAGE_VERSION],
    );
  }
  if (plan.forgotten.length > 0)
    await client.query("delete from saga.__repeatable where file = any($1::text[])", [plan.forgotten]);
  return { applied: plan.tables.length, repeatable: plan.files.map((f) => f.name) };
}

async function run(client: pg.PoolClient, statements: string[], source: string): Promise<void> {
  for (const [i, statement] of statements.entries()) {
    try {
      await client.query(statement);
    } catch (err) {
      throw new SagaError(
        "MIGRATION_FAILED",
        `pg-saga ${source} failed at statement ${i + 1} (nothing was applied): ${(err as Error).message}`,
        { cause: err, details: { source, statement: i + 1 } },
      );
    }
  }
}

