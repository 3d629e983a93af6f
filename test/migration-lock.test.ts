/**
 * Committed migrations are history: migrations/lock.json pins every file and journal entry, and the check
 * fails on an edit, a deletion or a rewritten journal. Shown on copies of migrations/ in a temporary folder.
 */
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkMigrationLock, extendLock, readLock } from "../scripts/migration-lock.js";
import { MIGRATIONS_FOLDER } from "../src/migration-plan.js";
import { MIGRATIONS_0_1_0 } from "./helpers/released-schema.js";

const copies: string[] = [];
function copyOfMigrations(): string {
  const dir = mkdtempSync(join(tmpdir(), "pgsaga-lock-"));
  cpSync(MIGRATIONS_FOLDER, dir, { recursive: true });
  copies.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of copies.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("migration lock", () => {
  it("holds for the committed migrations/", () => {
    expect(checkMigrationLock()).toEqual([]);
  });

  it("locks every file of the frozen 0.1.0 release, unchanged", () => {
    const lock = readLock();
    const released = JSON.parse(readFileSync(join(MIGRATIONS_0_1_0, "meta", "_journal.json"), "utf8")) as {
      entries: { tag: string; when: number }[];
    };
    expect(lock.journal.slice(0, released.entries.length)).toEqual(
      released.entries.map((e) => `${e.tag}@${e.when}`),
    );
    for (const e of released.entries)
      expect(readFileSync(join(MIGRATIONS_0_1_0, `${e.tag}.sql`), "utf8"), e.tag).toBe(
        readFileSync(join(MIGRATIONS_FOLDER, `${e.tag}.sql`), "utf8"),
      );
  });

  it("fails when a committed migration is edited", () => {
    const dir = copyOfMigrations();
    expect(checkMigrationLock(dir)).toEqual([]);
    appendFileSync(join(dir, "0001_functions.sql"), "\n-- a fix made in place\n");
    expect(checkMigrationLock(dir)).toEqual([expect.stringMatching(/^0001_functions\.sql changed after it was committed/)]);
  });

  it("fails when a migration is deleted or the journal rewritten", () => {
    const dir = copyOfMigrations();
    rmSync(join(dir, "0002_views.sql"));
    const journalPath = join(dir, "meta", "_journal.json");
    const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { when: number }[] };
    journal.entries[3]!.when += 1;
    writeFileSync(journalPath, JSON.stringify(journal));
    const problems = checkMigrationLock(dir);
    expect(problems).toContainEqual(expect.stringMatching(/^0002_views\.sql is locked but missing/));
    expect(problems).toContainEqual(expect.stringMatching(/^journal entry 3 is 0003_relay@\d+, locked as/));
  });

  it("locks a new migration once, and never re-locks an edited one", () => {
    const dir = copyOfMigrations();
    writeFileSync(join(dir, "0006_next.sql"), 'ALTER TABLE "saga"."workers" ADD COLUMN "zone" text;');
    const journalPath = join(dir, "meta", "_journal.json");
    const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: object[] };
    journal.entries.push({ idx: 6, version: "7", when: 1795700000000, tag: "0006_next", breakpoints: true });
    writeFileSync(journalPath, JSON.stringify(journal));
    expect(checkMigrationLock(dir)).toEqual([
      "0006_next.sql is not locked: run `npm run db:generate`",
      "journal entry 0006_next@1795700000000 is not locked: run `npm run db:generate`",
    ]);
    expect(extendLock(dir)).toEqual(["0006_next.sql"]);
    expect(checkMigrationLock(dir)).toEqual([]);

    appendFileSync(join(dir, "0000_init.sql"), "\n-- edited\n");
    expect(extendLock(dir)).toEqual([]);
    expect(checkMigrationLock(dir)).toEqual([expect.stringMatching(/^0000_init\.sql changed/)]);
  });
});
