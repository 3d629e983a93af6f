/**
 * Workers run against the schema their own package migrates to: an older schema is refused at start
 * (SCHEMA_OUTDATED: run the migration), and a running worker that finds a newer one (another release migrated
 * the database under it) stops taking work (SCHEMA_NEWER) so that only the new release's workers advance sagas.
 */
import { SagaError } from "./errors.js";
import type { Executor } from "./executor.js";
import { describeNewer } from "./migrate.js";
import { type MigrationPlan, PACKAGE_VERSION, isNewer, planMigration } from "./migration-plan.js";

/** What a worker of this package must not run against, as an error; null when the schema is this package's. */
export function schemaMismatch(plan: MigrationPlan): SagaError | null {
  if (isNewer(plan)) {
    return new SagaError(
      "SCHEMA_NEWER",
      `${describeNewer(plan)}; this worker stops taking work: replace it with the new release's workers`,
      { details: { unknown: plan.unknown, newerVersion: plan.newerVersion } },
    );
  }
  const changed = plan.files.filter((f) => f.reason !== "tables changed").map((f) => f.name);
  if (plan.tables.length === 0 && changed.length === 0) return null;
  const parts = [
    plan.tables.length > 0 && `${plan.tables.length} table migration(s) (${plan.tables.map((m) => m.tag).join(", ")})`,
    changed.length > 0 && `${changed.length} sql file(s) (${changed.join(", ")})`,
  ].filter(Boolean);
  return new SagaError(
    "SCHEMA_OUTDATED",
    `schema saga is older than this pg-saga ${PACKAGE_VERSION}: ${parts.join(" and ")} not applied; ` +
      "run `pg-saga migrate` (or `engine.migrate()`) with this version first",
    { details: { tables: plan.tables.map((m) => m.tag), files: changed } },
  );
}

/** Throws SCHEMA_OUTDATED or SCHEMA_NEWER unless the database runs exactly this package's schema. */
export async function assertSchemaCurrent(db: Executor): Promise<void> {
  const mismatch = schemaMismatch(await planMigration(db));
  if (mismatch) throw mismatch;
}

/**
 * Looks every `intervalMs` whether a newer release migrated the database; calls `onNewer` once when it did.
 * A failed look (database away) is tried again at the next interval. Returns the function that stops it.
 */
export function watchSchema(db: Executor, intervalMs: number, onNewer: (err: SagaError) => void): () => void {
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    planMigration(db)
      .then((plan) => {
        const mismatch = schemaMismatch(plan);
        if (mismatch?.code === "SCHEMA_NEWER") {
          clearInterval(timer);
          onNewer(mismatch);
        }
      })
      .catch(() => {})
      .finally(() => {
        busy = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
