/**
 * What migrate() would do to a database: the table migrations of the journal it has not applied, and the
 * repeatable sql/ files whose text it does not run. Read by migrate() itself, `migrate --dry-run`, health and
 * the workers' schema check.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Executor } from "./executor.js";
import { type RepeatableFile, SQL_FOLDER, readRepeatableFiles, sha256 } from "./repeatable.js";

/** Where drizzle-kit writes pg-saga's table migrations; shipped with the package. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../migrations", import.meta.url));

/** This package's version (two levels up from both src/ and dist/), recorded with each repeatable file. */
export const PACKAGE_VERSION = (
  createRequire(import.meta.url)("../package.json") as { version: string }
).version;

/** Orders `x.y.z` versions; a pre-release sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const [core = "", pre] = v.split("-", 2);
    return { nums: core.split(".").map((n) => Number(n) || 0), pre };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.nums[i] ?? 0) - (y.nums[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}

export interface TableMigration {
  /** drizzle-kit's tag, e.g. `0005_relay_tables`. */
  tag: string;
  /** The journal's `when`: the key of its row in `saga.__drizzle_migrations` (`created_at`). */
  folderMillis: number;
  /** sha256 of the file, as drizzle records it. */
  hash: string;
  statements: string[];
}

/** The journal's table migrations in order (append-only history; scripts/migration-lock.ts guards it). */
export function readTableMigrations(folder = MIGRATIONS_FOLDER): TableMigration[] {
  const journal = JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: { tag: string; when: number }[];
  };
  return journal.entries.map(({ tag, when }) => {
    const text = readFileSync(join(folder, `${tag}.sql`), "utf8");
    return {
      tag,
      folderMillis: when,
      hash: sha256(text),
      statements: text.split("--> statement-breakpoint").filter((s) => s.trim() !== ""),
    };
  });
}

export type RepeatableReason = "new" | "changed" | "tables changed";

export interface MigrationPlan {
  /** Table migrations not applied yet, in journal order. */
  tables: TableMigration[];
  /** sql/ files to re-apply, in dependency order. */
  files: (RepeatableFile & { reason: RepeatableReason })[];
  /** Recorded files that sql/ no longer has: their rows are removed (their objects stay unless drops.sql drops them). */
  forgotten: string[];
  /** Table migrations the database has and this package does not know: the database is newer than the code. */
  unknown: number[];
  /** The newest pg-saga version that applied a repeatable file, when it is newer than this package. */
  newerVersion: string | null;
}

/** Absent schema or table: nothing of it applied yet. */
async function rowsOrNone<R>(db: Executor, text: string): Promise<R[] | null> {
  try {
    return (await db.query<R>(text)).rows;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "42P01" || code === "3F000") return null;
    throw err;
  }
}

export async function planMigration(
  db: Executor,
  source: { migrationsFolder?: string; sqlFolder?: string } = {},
): Promise<MigrationPlan> {
  const migrations = readTableMigrations(source.migrationsFolder ?? MIGRATIONS_FOLDER);
  const files = readRepeatableFiles(source.sqlFolder ?? SQL_FOLDER);
  const applied = await rowsOrNone<{ created_at: string }>(
    db,
    "select created_at from saga.__drizzle_migrations",
  );
  const recorded = await rowsOrNone<{ file: string; checksum: string; version: string }>(
    db,
    "select file, checksum, version from saga.__repeatable",
  );
  const done = new Set((applied ?? []).map((r) => Number(r.created_at)));
  const known = new Set(migrations.map((m) => m.folderMillis));
  const checksums = new Map((recorded ?? []).map((r) => [r.file, r.checksum]));
  const tables = migrations.filter((m) => !done.has(m.folderMillis));
  const names = new Set(files.map((f) => f.name));
  return {
    tables,
    // A table migration may drop a view or function to change what it reads: everything is re-created after.
    files: files.flatMap((f) => {
      const was = checksums.get(f.name);
      const reason: RepeatableReason | null =
        was === undefined ? "new" : was !== f.checksum ? "changed" : tables.length > 0 ? "tables changed" : null;
      return reason ? [{ ...f, reason }] : [];
    }),
    forgotten: [...checksums.keys()].filter((name) => !names.has(name)),
    unknown: [...done].filter((when) => !known.has(when)).sort((a, b) => a - b),
    newerVersion:
      (recorded ?? [])
        .map((r) => r.version)
        .filter((v) => compareVersions(v, PACKAGE_VERSION) > 0)
        .sort(compareVersions)
        .pop() ?? null,
  };
}

/** The database was migrated by a newer pg-saga than this one. */
export function isNewer(plan: MigrationPlan): boolean {
  return plan.unknown.length > 0 || plan.newerVersion !== null;
}

/** Nothing to apply. */
export function isUpToDate(plan: MigrationPlan): boolean {
  return plan.tables.length === 0 && plan.files.length === 0;
}
