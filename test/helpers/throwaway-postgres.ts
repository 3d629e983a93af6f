/**
 * A PostgreSQL server of the test's own, for the suites that stop, restart or overload Postgres: initdb into a
 * temporary folder owned by the postgres user, on a free port, started and stopped with pg_ctl. The shared
 * server other suites use is never touched.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { createSagaEngine } from "../../src/index.js";

const run = promisify(execFile);

export interface ThrowawayPostgres {
  /** Superuser `root` URL of the `saga` database (migrated). */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server (`fast`: sessions are terminated, like a real restart). */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  start(): Promise<void>;
  /** `pg_ctl restart`: every connection drops; the server answers again when this resolves. */
  restart(mode?: "fast" | "immediate"): Promise<void>;
  /** Stops the server and deletes its folder. */
  destroy(): Promise<void>;
}

function binDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "pg_ctl")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions[0]) throw new Error(`no PostgreSQL binaries under ${root}`);
  return join(root, versions[0], "bin");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Runs a PostgreSQL binary as the postgres user (initdb and pg_ctl refuse to run as root). */
async function asPostgres(bin: string, args: string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const { stdout } = await run(cmd, argv, { timeout: 60_000 });
  return stdout;
}

/**
 * Creates, starts and migrates a throwaway server.
 *
 * @example
 * const server = await startThrowawayPostgres();
 * await server.restart();
 * await server.destroy();
 */
export async function startThrowawayPostgres(
  options: {
    maxConnections?: number;
    /** More server settings (`-c name=value`), e.g. `{ ssl: "on" }`. */
    settings?: Record<string, string>;
    /** Files written into the data folder before the server starts (mode 0600, the server's own). */
    files?: Record<string, string>;
  } = {},
): Promise<ThrowawayPostgres> {
  const bin = binDir();
  const dataDir = await mkdtemp(join(tmpdir(), "pgsaga-pg-"));
  if (process.getuid?.() === 0) {
    const { stdout } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    await chown(dataDir, Number(stdout.trim()), Number(gid.trim()));
  }
  const port = await freePort();
  await asPostgres(join(bin, "initdb"), [
    "-D",
    dataDir,
    "-A",
    "trust",
    "-U",
    "root",
    "--no-sync",
    "-E",
    "UTF8",
  ]);
  for (const [name, content] of Object.entries(options.files ?? {})) {
    const path = join(dataDir, name);
    await writeFile(path, content);
    await chmod(path, 0o600);
    if (process.getuid?.() === 0) {
      const { stdout } = await run("id", ["-u", "postgres"]);
      const { stdout: gid } = await run("id", ["-g", "postgres"]);
      await chown(path, Number(stdout.trim()), Number(gid.trim()));
    }
  }
  const settings = [
    `-p ${port}`,
    `-k ${dataDir}`,
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    `-c max_connections=${options.maxConnections ?? 200}`,
    ...Object.entries(options.settings ?? {}).map(([name, value]) => `-c ${name}=${value}`),
  ].join(" ");
  const pgCtl = (args: string[]) => asPostgres(join(bin, "pg_ctl"), ["-D", dataDir, ...args]);
  const start = async () => {
    await pgCtl(["-o", settings, "-l", join(dataDir, "server.log"), "-w", "-t", "60", "start"]);
  };
  await start();
  const base = `postgres://root@127.0.0.1:${port}`;
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  await admin.query("create database saga");
  await admin.end();
  const url = `${base}/saga`;
  const engine = createSagaEngine({ connectionString: url, sagas: [] });
  await engine.migrate();
  await engine.close();

  let stopped = false;
  return {
    url,
    port,
    dataDir,
    async stop(mode = "fast") {
      await pgCtl(["-m", mode, "-w", "-t", "60", "stop"]);
      stopped = true;
    },
    async start() {
      await start();
      stopped = false;
    },
    async restart(mode = "fast") {
      await pgCtl([
        "-m",
        mode,
        "-w",
        "-t",
        "60",
        "-o",
        settings,
        "-l",
        join(dataDir, "server.log"),
        "restart",
      ]);
      stopped = false;
    },
    async destroy() {
      if (!stopped) await pgCtl(["-m", "immediate", "-w", "-t", "60", "stop"]).catch(() => {});
      stopped = true;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ThrowawayDatabase {
  server: ThrowawayPostgres;
  url: string;
  /** A pool for the test's own assertions; closed by the harness. */
  pool: pg.Pool;
}

/**
 * A throwaway server for the calling test file, with `setup` SQL run once; destroyed after the file, with a
 * leak check first (a connection still open from this process is a pool or worker the test forgot).
 *
 * @example
 * const db = useThrowawayDatabase({ setup: CALLS_TABLE });
 */
export function useThrowawayDatabase(options: { setup?: string[] } = {}): ThrowawayDatabase {
  const db = {} as ThrowawayDatabase;
  beforeAll(async () => {
    db.server = await startThrowawayPostgres();
    db.url = db.server.url;
    db.pool = new pg.Pool({ connectionString: db.url, max: 5 });
    db.pool.on("error", () => {});
    for (const sql of options.setup ?? []) await db.pool.query(sql);
  }, 120_000);
  afterAll(async () => {
    await db.pool?.end();
    if (!db.server) return;
    try {
      const admin = new pg.Client({ connectionString: db.url.replace(/\/saga$/, "/postgres") });
      await admin.connect();
      try {
        const deadline = Date.now() + 5_000;
        for (;;) {
          const { rows } = await admin.query<{ n: number; apps: string[] }>(
            `select count(*)::int as n, array_agg(distinct application_name) as apps from pg_stat_activity
             where datname = 'saga' and pid <> pg_backend_pid()`,
          );
          if ((rows[0]?.n ?? 0) === 0) break;
          if (Date.now() > deadline)
            throw new Error(`leak: ${rows[0]?.n} connection(s) still open (${rows[0]?.apps.join(", ")})`);
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await admin.end();
      }
    } finally {
      await db.server.destroy();
    }
  }, 120_000);
  return db;
}
