/**
 * Functions, views and triggers are code, not history: each sql/*.sql file is a "repeatable migration",
 * re-applied by migrate() whenever its checksum differs from the one recorded in `saga.__repeatable`.
 */
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Hand-written SQL shipped with the package; each file but {@link NOT_REPEATABLE} is re-creatable code. */
export const SQL_FOLDER = fileURLToPath(new URL("../sql", import.meta.url));

/**
 * Dependency order: drops first (a function whose signature or return type changes must be dropped before
 * its new text can be created), then the files in the order their objects use each other. A file not listed
 * here runs after these, in name order. graphile.sql (graphile-worker's boundary) may come last: its functions
 * are called only from plpgsql bodies, which are resolved when they run, not when they are created.
 */
const ORDER = ["drops.sql", "functions.sql", "views.sql", "relay.sql", "operator.sql", "graphile.sql"];

/** sql/schema.sql is the normalized dump the drift test compares against, not code to run. */
const NOT_REPEATABLE = new Set(["schema.sql"]);

export interface RepeatableFile {
  /** File name in sql/, the key of its row in `saga.__repeatable`. */
  name: string;
  /** sha256 of the file's text, hex. */
  checksum: string;
  /** The file cut at drizzle's `--> statement-breakpoint` markers, empty statements left out. */
  statements: string[];
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function rank(name: string): number {
  const i = ORDER.indexOf(name);
  return i === -1 ? ORDER.length : i;
}

/** Every repeatable file of `folder`, in the order migrate() applies them. */
export function readRepeatableFiles(folder = SQL_FOLDER): RepeatableFile[] {
  return readdirSync(folder)
    .filter((name) => name.endsWith(".sql") && !NOT_REPEATABLE.has(name))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((name) => {
      const text = readFileSync(join(folder, name), "utf8");
      return {
        name,
        checksum: sha256(text),
        statements: text
          .split("--> statement-breakpoint")
          .filter((s) => s.replace(/--.*$/gm, "").trim() !== ""),
      };
    });
}

/** Which text of each file the database runs, and the pg-saga version that applied it. */
export const REPEATABLE_TABLE_SQL = `create table if not exists saga.__repeatable (
  file text primary key,
  checksum text not null,
  version text not null,
  applied_at timestamptz not null default now()
)`;
