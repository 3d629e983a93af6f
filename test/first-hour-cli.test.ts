/**
 * The first hour at a terminal: every mistake is one line on stderr saying what to do, with the right exit code;
 * reset for development databases; a sagas module that does not compile says where; options are validated.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logDestination } from "../src/cli/log-format.js";
import { colours } from "../src/cli/format.js";
import { type SagaEngine, type SagaWorker, createSagaEngine } from "../src/index.js";
import { cliOrder } from "./fixtures/cli-sagas.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
const BIN = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));

function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: "warn", ...env } },
      (err, stdout, stderr) =>
        resolve({ code: (err as { code?: number } | null)?.code ?? 0, stdout, stderr }),
    );
  });
}

/** stderr is exactly one line, matching `pattern`. */
const oneLine = (stderr: string, pattern: RegExp) => {
  const lines = stderr.trim().split("\n");
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
};

let engine: SagaEngine;
let worker: SagaWorker;
let folder: string;
beforeAll(async () => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [cliOrder] });
  worker = await engine.runWorker({ concurrency: 2, pollInterval: 50 });
  folder = await mkdtemp(join(tmpdir(), "pg-saga-first-hour-"));
});
afterAll(async () => {
  await worker?.stop();
  await engine?.close();
  await rm(folder, { recursive: true, force: true });
});

describe("one line, and the right exit code", () => {
  it("refuses a saga id that is not a uuid, a URL that is not one, and an unknown log level (exit 2)", async () => {
    const events = await cli(["events", "--saga", "abc"]);
    expect(events.code).toBe(2);
    oneLine(events.stderr, /--saga takes a saga id \(a uuid.*"abc"/);

    const url = await cli(["-d", "not-a-url", "list"]);
    expect(url.code).toBe(2);
    oneLine(url.stderr, /--database is not a PostgreSQL URL: expected a URL like postgres:\/\//);

    const level = await cli(["--log-level", "loud", "list"]);
    expect(level.code).toBe(2);
    oneLine(
      level.stderr,
      /--log-level must be one of trace, debug, info, warn, error, fatal, silent; got "loud"/,
    );
  });

  it("names a SQLSTATE once", async () => {
    const url = new URL(db.url);
    url.pathname = "/pgsaga_no_such_database";
    const run = await cli(["-d", url.toString(), "list"]);
    expect(run.code).toBe(1);
    oneLine(run.stderr, /does not exist \(SQLSTATE 3D000\)$/);
    expect(run.stderr.match(/3D000/g)).toHaveLength(1);
  });

  it("retry --wait exits 1 when the saga ends failed again", async () => {
    const { id } = await engine.start(cliOrder, { item: "x", failUntilAttempt: 10 });
    expect((await engine.waitFor(id)).state).toBe("failed");
    const run = await cli(["retry", id, "--wait"]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/retried and ended failed/);
  });

  it("a sagas module with a syntax error names its file, line and message (exit 2)", async () => {
    await writeFile(join(folder, "package.json"), JSON.stringify({ type: "module" }));
    await writeFile(join(folder, "broken.ts"), "export const x = 1;\nexport const y = { a: 1 ;\n");
    const run = await cli(["worker", "--sagas", join(folder, "broken.ts")]);
    expect(run.code).toBe(2);
    oneLine(
      run.stderr,
      /cannot load saga module .*broken\.ts: .*broken\.ts:2:\d+: .+ \(MODULE_NOT_LOADABLE\)$/,
    );
  });
});

describe("pg-saga reset", () => {
  it("refuses without --yes, then drops schemas saga and graphile_worker; migrate installs them again", async () => {
    const refused = await cli(["reset"]);
    expect(refused.code).toBe(2);
    oneLine(refused.stderr, /reset drops schemas saga and graphile_worker of .*pg-saga reset --yes/);
    const schemas = async () =>
      (
        await db.pool.query<{ n: string }>(
          "select nspname as n from pg_namespace where nspname in ('saga', 'graphile_worker') order by 1",
        )
      ).rows.map((r) => r.n);
    expect(await schemas()).toEqual(["graphile_worker", "saga"]);
    // The in-process worker holds connections: it goes first, as a developer stops theirs.
    await worker.stop();
    await engine.close();
    const reset = await cli(["reset", "--yes"]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(await schemas()).toEqual([]);
    expect((await cli(["migrate"])).code).toBe(0);
    expect(await schemas()).toEqual(["graphile_worker", "saga"]);
  });
});

describe("library options", () => {
  it("list({ states }) and runWorker({ concurrency: 0 }) are refused with INVALID_OPTIONS", async () => {
    const e = createSagaEngine({ connectionString: db.url, sagas: [cliOrder] });
    try {
      await expect(e.list({ states: ["nope" as never] })).rejects.toMatchObject({ code: "INVALID_OPTIONS" });
      await expect(e.runWorker({ concurrency: 0 })).rejects.toMatchObject({
        code: "INVALID_OPTIONS",
        message: expect.stringMatching(/concurrency must be an integer from 1/),
      });
    } finally {
      await e.close();
    }
  });
});

describe("worker logs", () => {
  it("are readable lines on a terminal, and a repeated message is written once, then counted", () => {
    const out: string[] = [];
    let t = 0;
    const sink = logDestination(
      { write: (s) => out.push(s) },
      { pretty: true, c: colours(false), now: () => t },
    );
    const record = (msg: string) => `${JSON.stringify({ level: 40, time: 0, pid: 1, msg, error: "down" })}\n`;
    for (let i = 0; i < 30; i++) {
      sink.write(record("database connection failed"));
      t += 100;
    }
    t += 5_000;
    sink.write(record("database connection failed"));
    expect(out).toEqual([
      "00:00:00 WARN  database connection failed error=down\n",
      "00:00:00 WARN  database connection failed error=down repeated=29\n",
    ]);
  });
});
