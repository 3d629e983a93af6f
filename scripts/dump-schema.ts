/**
 * `npm run db:dump`: migrates a scratch database and writes the normalized schema dump to sql/schema.sql.
 * test/schema.test.ts fails when the migrations no longer produce exactly this file.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import pg from "pg";
import { createSagaEngine } from "../src/index.js";

/** pg_dump of schema `saga`, without the lines that vary between runs and versions. */
export function dumpSagaSchema(url: string): string {
  const raw = execFileSync(
    "pg_dump",
    ["--schema-only", "--no-owner", "--no-privileges", "--schema=saga", url],
    { encoding: "utf8" },
  );
  return (
    raw
      .split("\n")
      .filter((line) => !/^(--|SET |SELECT pg_catalog\.set_config|\\(un)?restrict )/.test(line))
      .join("\n")
      .replace(/\n{3,}/g, "\n\n")
      .trim() + "\n"
  );
}

export async function migratedDump(adminUrl: string): Promise<string> {
  const name = `pgsaga_dump_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${name}`);
    await admin.query(`create database ${name}`);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    const engine = createSagaEngine({ connectionString: url.toString(), sagas: [] });
    await engine.migrate();
    await engine.close();
    return dumpSagaSchema(url.toString());
  } finally {
    await admin.query(`drop database if exists ${name}`);
    await admin.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dump = await migratedDump(process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/postgres");
  writeFileSync(new URL("../sql/schema.sql", import.meta.url), dump);
  console.log("wrote sql/schema.sql");
}
