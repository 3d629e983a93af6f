/**
 * engine.close(): when it resolves, no connection, timer or listener of the engine remains, so a server that
 * then terminates every backend and drops the database never crashes the process.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { createDatabase } from "./helpers/database.js";

const run = promisify(execFile);
const fixture = fileURLToPath(new URL("./fixtures/close-then-drop.ts", import.meta.url));

async function closeThenDrop(mode: "idle" | "load") {
  const { url, name } = await createDatabase();
  try {
    const { stdout } = await run(process.execPath, ["--import", "tsx", fixture, url, inject("adminUrl"), mode], {
      timeout: 50_000,
    });
    return JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as {
      resources: string[];
      crashes: string[];
    };
  } finally {
    const admin = new pg.Client({ connectionString: inject("adminUrl") });
    await admin.connect();
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

describe("engine.close() lifecycle", () => {
  it("leaves nothing open: terminating every backend and dropping the database afterwards crashes nothing", async () => {
    const result = await closeThenDrop("idle");
    expect(result.resources).toEqual([]);
    expect(result.crashes).toEqual([]);
  });

  it("the same after worker.stop() under load", async () => {
    const result = await closeThenDrop("load");
    expect(result.resources).toEqual([]);
    expect(result.crashes).toEqual([]);
  });
});
