/**
 * sql/*.sql as repeatable migrations: migrate() re-applies a file when its text changes (and only then), drops
 * what sql/drops.sql lists, and commits table migrations and files together or not at all. Shown with copies of
 * sql/ in a temporary folder, on this file's own database.
 */
import { appendFileSync, cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SagaError } from "../src/errors.js";
import { migrate } from "../src/migrate.js";
import { SQL_FOLDER, readRepeatableFiles } from "../src/repeatable.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
const copies: string[] = [];
function copyOfSql(): string {
  const dir = mkdtempSync(join(tmpdir(), "pgsaga-sql-"));
  cpSync(SQL_FOLDER, dir, { recursive: true });
  copies.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

const probe = async () =>
  (
    await db.pool.query<{ n: number }>(
      "select count(*)::int as n from pg_proc where proname = '_probe' and pronamespace = 'saga'::regnamespace",
    )
  ).rows[0]!.n;

describe("repeatable sql/ files", () => {
  it("orders drops first, then functions, views, relay, operator, then any other file by name", () => {
    expect(readRepeatableFiles().map((f) => f.name)).toEqual(
      expect.arrayContaining(["drops.sql", "functions.sql", "views.sql", "relay.sql", "operator.sql"]),
    );
    const names = readRepeatableFiles().map((f) => f.name);
    expect(names.slice(0, 5)).toEqual(["drops.sql", "functions.sql", "views.sql", "relay.sql", "operator.sql"]);
    expect(names).not.toContain("schema.sql");
  });

  it("re-applies only the file whose text changed, and drops what drops.sql lists", async () => {
    const sql = copyOfSql();
    expect(await migrate(db.pool, { sqlFolder: sql })).toEqual({ applied: 0, repeatable: [] });

    appendFileSync(
      join(sql, "views.sql"),
      "\n--> statement-breakpoint\ncreate or replace function saga._probe() returns int language sql as $$ select 1 $$;\n",
    );
    expect(await migrate(db.pool, { sqlFolder: sql })).toEqual({ applied: 0, repeatable: ["views.sql"] });
    expect(await probe()).toBe(1);
    expect(await migrate(db.pool, { sqlFolder: sql })).toEqual({ applied: 0, repeatable: [] });

    // The function leaves sql/ (back to the shipped views.sql) and enters the drop list.
    cpSync(join(SQL_FOLDER, "views.sql"), join(sql, "views.sql"));
    appendFileSync(join(sql, "drops.sql"), "drop function if exists saga._probe();\n");
    expect(await migrate(db.pool, { sqlFolder: sql })).toEqual({
      applied: 0,
      repeatable: ["drops.sql", "views.sql"],
    });
    expect(await probe()).toBe(0);

    expect(await migrate(db.pool)).toEqual({ applied: 0, repeatable: ["drops.sql"] });
  });

  it("applies nothing when one file fails: the error names the file, the other changes roll back", async () => {
    const sql = copyOfSql();
    appendFileSync(
      join(sql, "functions.sql"),
      "\n--> statement-breakpoint\ncreate or replace function saga._probe() returns int language sql as $$ select 1 $$;\n",
    );
    appendFileSync(join(sql, "operator.sql"), "\n--> statement-breakpoint\nselect * from saga.no_such_table;\n");
    const err = await migrate(db.pool, { sqlFolder: sql }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SagaError);
    expect((err as SagaError).code).toBe("MIGRATION_FAILED");
    expect((err as SagaError).message).toMatch(/sql\/operator\.sql failed at statement \d+ \(nothing was applied\)/);
    expect(await probe()).toBe(0);
    const { rows } = await db.pool.query("select checksum from saga.__repeatable where file = 'functions.sql'");
    expect(rows[0].checksum).toBe(readRepeatableFiles().find((f) => f.name === "functions.sql")!.checksum);
    expect(await migrate(db.pool)).toEqual({ applied: 0, repeatable: [] });
  });
});
