import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, inject } from "vitest";
import { databaseUrl } from "./global-setup.js";

export interface TestDatabase {
  url: string;
  name: string;
  /** A pool for the test's own assertions; closed by the harness. */
  pool: pg.Pool;
}

async function withAdmin<T>(fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: inject("adminUrl") });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

/** Creates an empty database, or a copy of the migrated template. */
export async function createDatabase(migrated = true): Promise<{ name: string; url: string }> {
  const name = `pgsaga_t${inject("runId")}_${randomBytes(5).toString("hex")}`;
  await withAdmin((admin) =>
    admin.query(`create database ${name}${migrated ? ` template ${inject("templateDatabase")}` : ""}`),
  );
  return { name, url: databaseUrl(inject("adminUrl"), name) };
}

/**
 * Drops a test database. A connection still open to it at that point is a leak (a pool, client, listener
 * or worker the test forgot to close): the drop waits a little for backends to exit, then fails loudly.
 */
export async function dropDatabase(name: string): Promise<void> {
  await withAdmin(async (admin) => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const { rows } = await admin.query<{ n: number; apps: string[] }>(
        "select count(*)::int as n, array_agg(distinct application_name) as apps from pg_stat_activity where datname = $1",
        [name],
      );
      const open = rows[0]?.n ?? 0;
      if (open === 0) break;
      if (Date.now() > deadline) {
        await admin.query(`drop database if exists ${name} with (force)`);
        throw new Error(
          `leak: ${open} connection(s) to ${name} still open after the file finished (${rows[0]?.apps.join(", ")})`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await admin.query(`drop database if exists ${name}`);
  });
}

/** One fresh, migrated database for the calling test file; dropped (with the leak check) after it. */
export function useTestDatabase(options: { migrated?: boolean } = {}): TestDatabase {
  const db = {} as TestDatabase;
  beforeAll(async () => {
    const created = await createDatabase(options.migrated ?? true);
    db.name = created.name;
    db.url = created.url;
    db.pool = new pg.Pool({ connectionString: created.url, max: 5 });
  });
  afterAll(async () => {
    await db.pool?.end();
    if (db.name) await dropDatabase(db.name);
  });
  return db;
}
