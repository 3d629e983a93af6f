import type { Executor } from "../executor.js";
import { sqlState } from "../db.js";
import { SagaError } from "../errors.js";

/**
 * The default `source` of a database's messages: its cluster's system identifier and its name. Two databases
 * of one cluster differ by name, two clusters by identifier, so their outbox ids never collide in a broker's
 * duplicate window.
 */
export async function databaseSource(db: Executor): Promise<string> {
  try {
    const { rows } = await db.query<{ id: string; db: string }>(
      "select system_identifier::text as id, current_database() as db from pg_control_system()",
    );
    const row = rows[0]!;
    return `urn:pg-saga:${row.id}:${encodeURIComponent(row.db)}`;
  } catch (err) {
    // pg_control_system() is for superusers and pg_monitor members only.
    if (sqlState(err) === "42501")
      throw new SagaError(
        "INVALID_OPTIONS",
        "the bridge cannot read the database's system identifier (grant pg_monitor to this role, or pass `source`, a name unique to this database)",
        { cause: err },
      );
    throw err;
  }
}
