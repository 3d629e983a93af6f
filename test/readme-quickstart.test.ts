/**
 * The README's saga is examples/quickstart.ts, shown verbatim, and it runs as the README says: three runs
 * against an empty database complete two orders and compensate the third, whose charge finds the wallet dry.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "./helpers/database.js";
import { codeBlocks, readDoc, repoRoot } from "./helpers/markdown.js";

const db = useTestDatabase({ migrated: false });
const program = readFileSync(`${repoRoot}examples/quickstart.ts`, "utf8");

function runQuickstart(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // As `npx tsx examples/quickstart.ts` runs it: from the repository root, where tsconfig maps "pg-saga".
    const child = spawn(process.execPath, ["--import", "tsx", "examples/quickstart.ts"], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: db.url },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("the README's quick start saga", () => {
  it("is examples/quickstart.ts, verbatim", () => {
    const readme = readDoc("README.md");
    const section = readme.slice(readme.indexOf("## A saga, start to finish"));
    const block = codeBlocks(section).find((b) => b.lang === "ts");
    expect(block?.code).toBe(program);
  });

  it("uses names of its own, not the demo's", () => {
    expect(program).toContain('name: "quickstart-checkout"');
    expect(program).not.toContain("order-processing");
  });

  it("runs: two orders paid, the third compensated when the wallet runs dry", async () => {
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await runQuickstart());
    expect(
      runs.map((r) => r.code),
      runs.map((r) => r.stderr).join("\n"),
    ).toEqual([0, 0, 0]);
    expect(runs[0]!.stdout).toBe("order 1: saga completed\n");
    expect(runs[1]!.stdout).toBe("order 2: saga completed\n");
    expect(runs[2]!.stdout).toMatch(
      /^released stock:[0-9a-f-]{36}:reserve-stock\norder 3: saga compensated\n$/,
    );

    const wallet = await db.pool.query("select balance::int as balance from quickstart.wallets");
    expect(wallet.rows).toEqual([{ balance: 16 }]);
    const orders = await db.pool.query("select id, paid from quickstart.orders order by id");
    expect(orders.rows).toEqual([
      { id: 1, paid: true },
      { id: 2, paid: true },
      { id: 3, paid: false },
    ]);
    const sagas = await db.pool.query(
      "select state, error->>'code' as code from saga.instances where name = 'quickstart-checkout' order by created_at",
    );
    expect(sagas.rows).toEqual([
      { state: "completed", code: null },
      { state: "completed", code: null },
      { state: "compensated", code: "INSUFFICIENT_FUNDS" },
    ]);
  }, 120_000);
});
