/**
 * A committed table migration is history: migrations/lock.json holds the sha256 of every migration file and
 * drizzle-kit snapshot, and the journal entries in order. test/migration-lock.test.ts fails when a locked file
 * changes, disappears, or the journal is rewritten instead of appended to.
 *
 * `npm run db:generate` runs drizzle-kit, then this script: it locks the new files (and lets the first one
 * create schema `saga` only if it does not exist). It never touches a file that is already locked.
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "../src/repeatable.js";
import { MIGRATIONS_FOLDER } from "../src/migration-plan.js";

export interface MigrationLock {
  /** `tag@when` of each journal entry, in order. */
  journal: string[];
  /** File path inside migrations/ → sha256 of its text. */
  files: Record<string, string>;
}

const LOCK_FILE = "lock.json";

function journalEntries(folder: string): string[] {
  const journal = JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: { tag: string; when: number }[];
  };
  return journal.entries.map((e) => `${e.tag}@${e.when}`);
}

/** Every file the lock covers: the migrations and drizzle-kit's snapshots (the journal is checked by entry). */
function lockedPaths(folder: string): string[] {
  const sql = readdirSync(folder).filter((f) => f.endsWith(".sql"));
  const snapshots = readdirSync(join(folder, "meta"))
    .filter((f) => f.endsWith("_snapshot.json"))
    .map((f) => `meta/${f}`);
  return [...sql, ...snapshots].sort();
}

export function readLock(folder = MIGRATIONS_FOLDER): MigrationLock {
  return JSON.parse(readFileSync(join(folder, LOCK_FILE), "utf8")) as MigrationLock;
}

/** What is wrong with `folder` against its lock, one readable line each; empty when it keeps its history. */
export function checkMigrationLock(folder = MIGRATIONS_FOLDER, lock = readLock(folder)): string[] {
  const problems: string[] = [];
  for (const [path, hash] of Object.entries(lock.files)) {
    let text: string;
    try {
      text = readFileSync(join(folder, path), "utf8");
    } catch {
      problems.push(`${path} is locked but missing: committed migrations are never deleted`);
      continue;
    }
    if (sha256(text) !== hash)
      problems.push(
        `${path} changed after it was committed: restore it and put the change in a new migration ` +
          "(tables: drizzle-kit generate; functions, views, triggers: edit sql/)",
      );
  }
  const entries = journalEntries(folder);
  lock.journal.forEach((entry, i) => {
    if (entries[i] !== entry)
      problems.push(`journal entry ${i} is ${entries[i] ?? "missing"}, locked as ${entry}: the journal is append-only`);
  });
  for (const path of lockedPaths(folder))
    if (!(path in lock.files)) problems.push(`${path} is not locked: run \`npm run db:generate\``);
  for (const entry of entries.slice(lock.journal.length))
    problems.push(`journal entry ${entry} is not locked: run \`npm run db:generate\``);
  return problems;
}

/** Locks the files and journal entries the lock does not cover yet; locked ones are left as they are. */
export function extendLock(folder = MIGRATIONS_FOLDER): string[] {
  let lock: MigrationLock;
  try {
    lock = readLock(folder);
  } catch {
    lock = { journal: [], files: {} };
  }
  const added: string[] = [];
  for (const path of lockedPaths(folder)) {
    if (path in lock.files) continue;
    const file = join(folder, path);
    let text = readFileSync(file, "utf8");
    if (path.endsWith(".sql")) {
      // drizzle-kit writes CREATE SCHEMA in the first migration of a schema; pg-saga's migrate() creates it
      // before the journal table.
      const fixed = text.replace(/^CREATE SCHEMA "saga";/m, 'CREATE SCHEMA IF NOT EXISTS "saga";');
      if (fixed !== text) writeFileSync(file, (text = fixed));
    }
    lock.files[path] = sha256(text);
    added.push(path);
  }
  const entries = journalEntries(folder);
  if (lock.journal.every((e, i) => entries[i] === e)) lock.journal = entries;
  lock.files = Object.fromEntries(Object.entries(lock.files).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(join(folder, LOCK_FILE), JSON.stringify(lock, null, 2) + "\n");
  return added;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const added = extendLock();
  for (const path of added) console.log(`locked ${path}`);
  const problems = checkMigrationLock();
  for (const problem of problems) console.error(problem);
  process.exitCode = problems.length > 0 ? 1 : 0;
}
