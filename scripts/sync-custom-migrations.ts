/**
 * Keeps migrations/ in step with sql/: drizzle-kit's custom migrations get their text from the sql/ file of
 * the same name, and the generated init migration creates schema `saga` only if the journal did not already.
 * Run by `npm run db:generate`; test/schema.test.ts fails when they drift.
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const migrations = join(root, "migrations");

export function expectedCustomMigration(tag: string): string | undefined {
  const source = tag.replace(/^\d+_/, "");
  try {
    return readFileSync(join(root, "sql", `${source}.sql`), "utf8");
  } catch {
    return undefined;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const file of readdirSync(migrations).filter((f) => f.endsWith(".sql"))) {
    const path = join(migrations, file);
    const text = readFileSync(path, "utf8");
    const custom = expectedCustomMigration(file.replace(/\.sql$/, ""));
    const next = custom ?? text.replace(/^CREATE SCHEMA "saga";/m, 'CREATE SCHEMA IF NOT EXISTS "saga";');
    if (next !== text) {
      writeFileSync(path, next);
      console.log(`updated ${file}`);
    }
  }
}
