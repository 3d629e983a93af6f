/** `pg-saga reset --yes`: a development database back to before `migrate`, every saga, event and job gone. */
import { GRAPHILE_SCHEMA, GRAPHILE_SCHEMA_SQL } from "../../graphile/boundary.js";
import { CliError, type Cli } from "../context.js";

/** pg-saga's schema, and graphile-worker's: its jobs, queues and migrations. */
const SCHEMAS = [
  { name: "saga", sql: "saga" },
  { name: GRAPHILE_SCHEMA, sql: GRAPHILE_SCHEMA_SQL },
];

export async function resetCommand(cli: Cli, o: { yes?: boolean }): Promise<void> {
  const url = cli.databaseUrl();
  const database = (() => {
    try {
      return decodeURIComponent(new URL(url).pathname.slice(1)) || "(default database)";
    } catch {
      return "(the database)";
    }
  })();
  if (!o.yes)
    throw new CliError(
      "CONFIRMATION_REQUIRED",
      `reset drops schemas ${SCHEMAS.map((s) => s.name).join(" and ")} of ${database}, with every saga, event and job: for a development database, run pg-saga reset --yes`,
      2,
    );
  const pool = cli.engine().pool;
  // One transaction: a reset either happens whole or not at all (a worker still connected makes it wait).
  const client = await pool.connect();
  try {
    await client.query("begin");
    for (const schema of SCHEMAS) await client.query(`drop schema if exists ${schema.sql} cascade`);
    await client.query("commit");
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
  cli.print(
    { reset: true, dropped: SCHEMAS.map((s) => s.name) },
    () =>
      `dropped schemas ${SCHEMAS.map((s) => s.name).join(" and ")} of ${database}; pg-saga migrate (or engine.migrate()) installs them again`,
  );
}
