/**
 * The real `pg-saga` binary (bin/pg-saga.js, a child process) against Postgres: migrate, a worker process that
 * loads a module, list/show/retry/cancel/events/stats/stuck/health/demo, --json, exit codes and error lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SagaEngine, createSagaEngine } from "../src/index.js";
import { cliOrder } from "./fixtures/cli-sagas.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase({ migrated: false });
const BIN = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnCli(args: string[], env: Record<string, string | undefined> = {}): ChildProcess {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: "warn", ...env };
  for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k];
  delete childEnv.FORCE_COLOR;
  return spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const child = spawnCli(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

const json = (run: Run) => {
  expect(run.stderr.split("\n").filter((l) => l && !l.startsWith("{"))).toEqual([]);
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Record<string, any>;
};

/** Resolves with the first line of `stream` (stdout by default) that matches, collecting everything. */
function waitForLine(
  child: ChildProcess,
  match: RegExp,
  timeoutMs = 40_000,
  stream: "stdout" | "stderr" = "stdout",
): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`no line matching ${match} in ${timeoutMs} ms: ${out} ${err}`)),
      timeoutMs,
    );
    const [watched, other] =
      stream === "stdout" ? [child.stdout, child.stderr] : [child.stderr, child.stdout];
    other?.on("data", (d: Buffer) => (err += d.toString()));
    watched?.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => match.test(l));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
  });
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });

let engine: SagaEngine;
let worker: ChildProcess | undefined;

beforeAll(async () => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [cliOrder] });
});

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    worker.kill("SIGKILL");
    await exited(worker);
  }
  await engine?.close();
});

describe("pg-saga CLI", () => {
  it("migrates, masks the password of a database it cannot reach, and reports usage errors", async () => {
    const [migrated, unreachable, usage] = await Promise.all([
      cli(["migrate", "--json"]),
      cli(["list", "--database", "postgres://app:s3cret@127.0.0.1:1/nowhere"]),
      cli(["cancel", "00000000-0000-0000-0000-000000000000"]),
    ]);
    expect(json(migrated).applied).toBeGreaterThan(0);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stdout).toBe("");
    expect(unreachable.stderr.trim().split("\n")).toHaveLength(1);
    expect(unreachable.stderr).toMatch(/^pg-saga: cannot reach the database: .*ECONNREFUSED/);
    expect(unreachable.stderr).not.toContain("s3cret");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/required option '--reason <text>'/);
  });

  it("runs a worker from a module, and operates its sagas: list, show, retry, cancel, stats, stuck", async () => {
    worker = spawnCli([
      "worker",
      "--sagas",
      "test/fixtures/cli-sagas.ts",
      "--concurrency",
      "4",
      "--poll-interval",
      "100",
      "--metrics-port",
      "0",
      "--json",
    ]);
    const ready = JSON.parse(await waitForLine(worker, /"event":"ready"/)) as {
      workerId: string;
      sagas: string[];
      metricsUrl: string;
    };
    expect(ready.sagas).toEqual(["cli-order@1"]);

    const ok = await engine.start(cliOrder, { item: "book" });
    const declined = await engine.start(cliOrder, { item: "lamp", failUntilAttempt: 2 });
    const held = await engine.start(cliOrder, { item: "sofa", holdMs: 600_000 });
    expect((await engine.waitFor(ok.id, { timeoutMs: 20_000 })).state).toBe("completed");
    expect((await engine.waitFor(declined.id, { timeoutMs: 20_000 })).state).toBe("failed");
    await expect
      .poll(async () => (await engine.get(held.id))?.steps[1]?.status, { timeout: 20_000 })
      .toBe("running");

    const [failedOnly, firstPage, shown, health, missing] = await Promise.all([
      cli(["list", "--state", "failed", "--json"]),
      cli(["list", "--limit", "2", "--order", "asc", "--json"]),
      cli(["show", declined.id]),
      cli(["health", "--json", "--require-workers"]),
      cli(["show", "6f1c2a3e-0000-4000-8000-000000000000"]),
    ]);
    expect(json(failedOnly).items.map((s: { id: string }) => s.id)).toEqual([declined.id]);
    const page = json(firstPage);
    expect(page.items.map((s: { id: string }) => s.id)).toEqual([ok.id, declined.id]);
    expect(page.nextCursor).toEqual(expect.any(String));
    expect(shown.code).toBe(0);
    expect(shown.stdout).not.toContain("\u001b["); // not a terminal: no colour
    expect(shown.stdout).toMatch(new RegExp(`saga ${declined.id}\\s+cli-order@1\\s+failed`));
    expect(shown.stdout).toMatch(/1\s+pay\s+failed\s+1\s+\S+\s+PAYMENT_DECLINED: declined on attempt 1/);
    expect(shown.stdout).toMatch(/saga\.step\.failed\s+pay/);
    expect(json(health)).toMatchObject({
      healthy: true,
      workers: { live: 1 },
      versions: { served: ["cli-order@1"] },
    });
    const [metrics, healthz] = await Promise.all([
      fetch(`${ready.metricsUrl}/metrics`),
      fetch(`${ready.metricsUrl}/healthz`),
    ]);
    expect(await metrics.text()).toMatch(/pg_saga_sagas_started_total/);
    expect(healthz.status).toBe(200);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      "pg-saga: no saga with id 6f1c2a3e-0000-4000-8000-000000000000 (SAGA_NOT_FOUND)\n",
    );

    const [nextPage, retried, cancelled] = await Promise.all([
      cli(["list", "--limit", "2", "--order", "asc", "--json", "--cursor", page.nextCursor]),
      cli(["retry", declined.id, "--reason", "card replaced", "--wait", "--json"]),
      cli(["cancel", held.id, "--reason", "customer changed mind", "--wait", "--json"]),
    ]);
    expect(json(nextPage).items.map((s: { id: string }) => s.id)).toEqual([held.id]);
    expect(json(retried)).toMatchObject({ id: declined.id, state: "completed" });
    expect(json(cancelled)).toMatchObject({ id: held.id, state: "cancelled" });
    const { rows } = await db.pool.query(
      "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
      [declined.id],
    );
    expect(rows[0].payload).toMatchObject({
      manual: true,
      reason: "card replaced",
      by: expect.stringMatching(/^cli:/),
    });

    // A version nobody runs is stuck; stats count what happened.
    await db.pool.query(
      `insert into saga.definitions (name, version, fingerprint, steps) values ('cli-ghost', 1, 'f', '[{"name":"boo"}]')`,
    );
    const ghost = (await db.pool.query("select saga.start('cli-ghost', '{}') as id")).rows[0].id as string;
    const [stuck, stats] = await Promise.all([cli(["stuck"]), cli(["stats", "--json"])]);
    expect(stuck.code).toBe(0);
    expect(stuck.stdout).toMatch(
      new RegExp(`${ghost}\\s+cli-ghost@1\\s+running\\s+no_worker_for_version\\s+boo`),
    );
    const s = json(stats);
    expect(s.metrics).toMatchObject({ total: 4, completed: 2, cancelled: 1, active: 1 });
    expect(s.byName).toEqual(
      expect.arrayContaining([{ name: "cli-order", states: { completed: 2, cancelled: 1 } }]),
    );
    await db.pool.query("delete from saga.instances where id = $1", [ghost]);
  }, 240_000);

  it("follows events live from a position, and stops the worker gracefully on SIGTERM", async () => {
    const { rows } = await db.pool.query<{ id: string }>("select max(id)::text as id from saga.events");
    const follow = spawnCli(["events", "--follow", "--from", rows[0]!.id, "--json", "--interval", "50"]);
    const lines: Record<string, unknown>[] = [];
    let buffer = "";
    follow.stdout?.on("data", (d: Buffer) => {
      buffer += d.toString();
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      for (const p of parts) if (p) lines.push(JSON.parse(p) as Record<string, unknown>);
    });
    // Give the follower time to start before the saga exists: what it prints is live.
    await new Promise((r) => setTimeout(r, 1_500));
    const { id } = await engine.start(cliOrder, { item: "live" });
    await expect
      .poll(() => lines.filter((l) => l.sagaId === id).map((l) => l.type), { timeout: 30_000 })
      .toEqual([
        "saga.started",
        "saga.step.started",
        "saga.step.completed",
        "saga.step.started",
        "saga.step.completed",
        "saga.completed",
      ]);
    expect(lines.every((l) => Number(l.id) > Number(rows[0]!.id))).toBe(true);
    follow.kill("SIGTERM");
    expect(await exited(follow)).toBe(0);

    worker!.kill("SIGTERM");
    expect(await exited(worker!)).toBe(0);
    const workers = await db.pool.query("select count(*)::int as n from saga.workers");
    expect(workers.rows[0].n).toBe(0);
    const unhealthy = await cli(["health", "--require-workers"]);
    expect(unhealthy.code).toBe(1);
    expect(unhealthy.stdout).toMatch(/^UNHEALTHY/);
    expect(unhealthy.stdout).toMatch(/- no live worker/);
  }, 120_000);

  it("a second SIGTERM exits at once, though a step is still running", async () => {
    const forced = spawnCli(
      [
        "worker",
        "--sagas",
        "test/fixtures/cli-sagas.ts",
        "--poll-interval",
        "100",
        "--shutdown-timeout",
        "60000",
        "--json",
      ],
      { LOG_LEVEL: "info" },
    );
    const ready = JSON.parse(await waitForLine(forced, /"event":"ready"/)) as { workerId: string };
    const { id } = await engine.start(cliOrder, { item: "held", holdMs: 60_000 });
    await expect
      .poll(
        async () =>
          (
            await db.pool.query<{ owner: string | null }>(
              "select lease_owner as owner from saga.steps where saga_id = $1 and name = 'pay'",
              [id],
            )
          ).rows[0]?.owner,
        { timeout: 30_000 },
      )
      .toBe(ready.workerId);
    const stopping = waitForLine(forced, /stopping: no new work/, 40_000, "stderr");
    forced.kill("SIGTERM");
    await stopping;
    forced.kill("SIGTERM");
    // 128 + SIGTERM: the step it held keeps its lease, for another worker's reaper to recover.
    expect(await exited(forced)).toBe(143);
    expect((await engine.get(id))?.steps.find((s) => s.name === "pay")?.status).toBe("running");
    await engine.cancel(id, "test over");
  }, 120_000);

  it("runs the demo: one order completes, one is compensated", async () => {
    const demo = await cli(["demo", "--json"]);
    expect(demo.code, demo.stderr).toBe(0);
    const out = demo.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, any>);
    expect(out.at(-1)!.sagas.map((s: { state: string }) => s.state)).toEqual(["completed", "compensated"]);
    expect(out.filter((e) => e.type === "compensation.step.completed").map((e) => e.step)).toEqual([
      "reserve-inventory",
      "create-order",
    ]);
  });
});

describe("pg-saga CLI internals", () => {
  it("parses ages and dates for --since/--until, and refuses anything else with a usage error", async () => {
    const { parseTime } = await import("../src/cli/commands/read.js");
    expect(Math.abs(parseTime("15m", "--since").getTime() - (Date.now() - 15 * 60_000))).toBeLessThan(1_000);
    expect(parseTime("2026-01-02T03:04:05Z", "--until").toISOString()).toBe("2026-01-02T03:04:05.000Z");
    expect(() => parseTime("yesterday", "--since")).toThrow(
      expect.objectContaining({ code: "INVALID_OPTIONS", exitCode: 2 }),
    );
  });

  it("loads the saga definitions a module exports and refuses a module without any", async () => {
    const { loadSagas } = await import("../src/cli/commands/worker.js");
    const sagas = await loadSagas(["test/fixtures/cli-sagas.ts", "./test/fixtures/cli-sagas.ts"], ROOT);
    expect(sagas.map((s) => `${s.name}@${s.version}`)).toEqual(["cli-order@1"]);
    await expect(loadSagas(["test/helpers/database.ts"], ROOT)).rejects.toMatchObject({ code: "NO_SAGAS" });
    await expect(loadSagas(["test/fixtures/nope.ts"], ROOT)).rejects.toMatchObject({
      code: "MODULE_NOT_FOUND",
    });
  });
});
