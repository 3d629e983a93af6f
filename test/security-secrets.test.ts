/**
 * A connection password never leaves the process: not in log lines, errors, health output, /metrics and
 * /healthz, CLI output, events or any table. The login role has a real password (the local server trusts
 * local connections, so it is not checked, but it is in every URL below).
 */
import { execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { RetryableError, type SagaEngine, createSagaEngine, defineSaga, retry } from "../src/index.js";
import type { Logger } from "../src/logger.js";
import { useTestDatabase } from "./helpers/database.js";
import { loginRole, passwordOf } from "./helpers/roles.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();
const ROLE = "pgsaga_t_secret";
const PASSWORD = passwordOf(ROLE);
const BIN = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const seen: string[] = [];
let url = "";
let engine: SagaEngine;

const recording: Logger = {
  debug: (m, f) => void seen.push(JSON.stringify([m, f])),
  info: (m, f) => void seen.push(JSON.stringify([m, f])),
  warn: (m, f) => void seen.push(JSON.stringify([m, f])),
  error: (m, f) => void seen.push(JSON.stringify([m, f])),
};

let failures = 1;
const shaky = defineSaga({
  name: "shaky",
  input: z.object({ n: z.number() }),
  retry: retry.fixed({ maxAttempts: 3, delay: 10 }),
}).step("call", {
  execute: (data) => {
    if (failures-- > 0) throw new RetryableError(`upstream said no to ${url}`, "UPSTREAM");
    return data;
  },
});

const errorText = (err: unknown): string => {
  const parts: string[] = [];
  for (
    let e = err as { message?: unknown; stack?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 5;
    i++
  ) {
    parts.push(String(e), String(e.stack), JSON.stringify(e, Object.getOwnPropertyNames(e)));
    e = e.cause as typeof e;
  }
  return parts.join("\n");
};

function cli(args: string[], databaseUrl: string): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: "debug", FORCE_COLOR: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.on("close", () => resolve(out)));
}

beforeAll(async () => {
  url = await loginRole(db.url, ROLE, ["saga_app", "saga_worker"]);
  expect(url).toContain(PASSWORD);
  engine = createSagaEngine({ connectionString: url, sagas: [shaky], logger: recording });
});
afterAll(async () => {
  await engine?.close();
});

describe("secrets", () => {
  it("no password in logs, errors, health, metrics, CLI output, events or tables", async () => {
    const outputs: string[] = [];
    const worker = await engine.runWorker({ pollInterval: 50, metrics: { port: 0, host: "127.0.0.1" } });
    try {
      const { id } = await engine.start(shaky, { n: 1 });
      await engine.waitFor(id, { timeoutMs: 20_000 });
      outputs.push(JSON.stringify(await engine.get(id)));
      outputs.push(JSON.stringify(await engine.health()));
      outputs.push(JSON.stringify(await engine.metrics()));
      const base = worker.metrics!.url!.replace(/\/metrics$/, "");
      outputs.push(await (await fetch(`${base}/metrics`)).text());
      outputs.push(await (await fetch(`${base}/healthz`)).text());
      for (const args of [
        ["list"],
        ["show", id, "--json"],
        ["stats"],
        ["health", "--json"],
        ["events", "--json"],
      ])
        outputs.push(await cli(args, url));
    } finally {
      await worker.stop();
    }

    // Connections that fail: an unknown database, a closed port, a URL that does not parse.
    const broken = [
      url.replace(`/${db.name}`, "/pgsaga_no_such_database"),
      url.replace(/:\d+\//, ":1/"),
      url.replace("@", "@@:x"),
    ];
    for (const bad of broken) {
      const lines: string[] = [];
      const logger: Logger = {
        debug: (m, f) => void lines.push(JSON.stringify([m, f])),
        info: (m, f) => void lines.push(JSON.stringify([m, f])),
        warn: (m, f) => void lines.push(JSON.stringify([m, f])),
        error: (m, f) => void lines.push(JSON.stringify([m, f])),
      };
      let e: SagaEngine | undefined;
      try {
        e = createSagaEngine({ connectionString: bad, sagas: [shaky], logger });
        await e.start(shaky, { n: 1 });
        outputs.push("no error?");
      } catch (err) {
        outputs.push(errorText(err));
      }
      try {
        if (e) outputs.push(JSON.stringify(await e.health()));
      } catch (err) {
        outputs.push(errorText(err));
      }
      await e?.close().catch((err: unknown) => outputs.push(errorText(err)));
      outputs.push(...lines, await cli(["health", "--json"], bad));
    }

    const dump = execFileSync("pg_dump", ["--data-only", db.url], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(dump).toContain("upstream said no to postgres://");
    const all = [...seen, ...outputs, dump];
    expect(seen.length).toBeGreaterThan(0);
    const leaks = all.filter(
      (text) => text.includes(PASSWORD) || text.includes(encodeURIComponent(PASSWORD)),
    );
    expect(leaks.map((text) => text.slice(0, 2_000))).toEqual([]);
  });
});
