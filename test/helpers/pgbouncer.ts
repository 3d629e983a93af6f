/**
 * A real PgBouncer in transaction mode in front of a PostgreSQL server, for the suites that run pg-saga the
 * way production often does. Its own config in a temporary folder, a free port, `auth_type = trust` with an
 * auth_file; run as the postgres user (PgBouncer refuses to run as root).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const PGBOUNCER = "/usr/sbin/pgbouncer";

export interface Pgbouncer {
  port: number;
  /** `url` with its host and port replaced by PgBouncer's. */
  through(url: string): string;
  log(): Promise<string>;
  stop(): Promise<void>;
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

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

/**
 * Starts PgBouncer (pool_mode = transaction) in front of `target` (host:port of a server with trust auth for
 * `user`).
 *
 * @example
 * const bouncer = await startPgbouncer({ host: "127.0.0.1", port: 5432 });
 * const pooled = bouncer.through(db.url);
 */
export async function startPgbouncer(
  target: { host: string; port: number },
  options: { user?: string; poolSize?: number } = {},
): Promise<Pgbouncer> {
  if (!existsSync(PGBOUNCER)) throw new Error(`${PGBOUNCER} is missing: apt-get install -y pgbouncer`);
  const user = options.user ?? "root";
  const dir = await mkdtemp(join(tmpdir(), "pgsaga-bouncer-"));
  const port = await freePort();
  const config = [
    "[databases]",
    `* = host=${target.host} port=${target.port}`,
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = trust",
    `auth_file = ${join(dir, "users.txt")}`,
    "pool_mode = transaction",
    "max_client_conn = 1000",
    `default_pool_size = ${options.poolSize ?? 20}`,
    "server_reset_query =",
    "ignore_startup_parameters = extra_float_digits",
    `logfile = ${join(dir, "pgbouncer.log")}`,
    "log_connections = 0",
    "log_disconnections = 0",
    "",
  ].join("\n");
  await writeFile(join(dir, "pgbouncer.ini"), config);
  await writeFile(join(dir, "users.txt"), `"${user}" ""\n`);
  let uid: number | undefined;
  let gid: number | undefined;
  if (process.getuid?.() === 0) {
    uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    for (const f of ["", "pgbouncer.ini", "users.txt"]) await chown(join(dir, f), uid, gid);
  }
  const child: ChildProcess = spawn(PGBOUNCER, [join(dir, "pgbouncer.ini")], {
    stdio: ["ignore", "ignore", "pipe"],
    ...(uid === undefined ? {} : { uid, gid }),
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 15_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      const log = await readFile(join(dir, "pgbouncer.log"), "utf8").catch(() => "");
      throw new Error(`pgbouncer did not start: ${stderr} ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    through(url: string) {
      const u = new URL(url);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    log: () => readFile(join(dir, "pgbouncer.log"), "utf8").catch(() => ""),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGINT: PgBouncer closes its server connections at once.
        child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
