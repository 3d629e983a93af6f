/** `engine.list()`: its filters, checked before any query, and the keyset cursor it pages with. */
import { z } from "zod";
import { SagaError } from "./errors.js";
import { isStorableString } from "./jsonb.js";
import { SAGA_STATES, type SagaState, isUuid } from "./model.js";
import { formatIssues, toJsonText } from "./options.js";
import type { InstanceRow, ListFilter } from "./sql/read-sagas.js";

/** Filters of `engine.list()`. */
export interface ListOptions {
  states?: SagaState[];
  /** One saga name (`name`) or several (`names`). */
  name?: string;
  names?: string[];
  createdAfter?: Date;
  createdBefore?: Date;
  /** Sagas whose metadata contains this object (jsonb `@>`). */
  metadata?: Record<string, unknown>;
  /** Default 50, at most 1000. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string | null;
  /** By creation time; default `desc` (newest first). */
  order?: "asc" | "desc";
}

const storableString = z.string().refine(isStorableString, "must not hold NUL characters or lone surrogates");

const listSchema = z.strictObject({
  states: z.array(z.enum(SAGA_STATES)).optional(),
  name: storableString.optional(),
  names: z.array(storableString).optional(),
  createdAfter: z.date().optional(),
  createdBefore: z.date().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  limit: z.number().int().min(1).max(1000).default(50),
  cursor: z.string().nullable().optional(),
  order: z.enum(["asc", "desc"]).default("desc"),
});

export function resolveListOptions(o: ListOptions, decode: (c: string) => ListFilter["cursor"]): ListFilter {
  const parsed = listSchema.safeParse(o);
  if (!parsed.success) throw new SagaError("INVALID_OPTIONS", `list: ${formatIssues(parsed.error.issues)}`);
  const f = parsed.data;
  const names = [...(f.names ?? []), ...(f.name === undefined ? [] : [f.name])];
  // The caller's object, not zod's copy: a record copy drops a "__proto__" key, and the filter would then
  // match every saga.
  const metadata =
    f.metadata === undefined ? null : toJsonText(o.metadata, "list: metadata", Infinity, "INVALID_OPTIONS");
  return {
    states: f.states ?? null,
    names: names.length > 0 ? names : null,
    createdAfter: f.createdAfter ?? null,
    createdBefore: f.createdBefore ?? null,
    metadata,
    cursor: f.cursor ? decode(f.cursor) : null,
    limit: f.limit,
    order: f.order,
  };
}

export function encodeCursor(row: Pick<InstanceRow, "id"> & { created_key: string }): string {
  // created_at in microseconds since the epoch: keyset order needs them all, and a number has one spelling.
  return Buffer.from(JSON.stringify([row.created_key, row.id])).toString("base64url");
}

// Microseconds since the epoch: 16 digits reach past the year 2200, and stay far inside timestamptz's range.
const MICROS = /^-?\d{1,16}$/;

export function decodeCursor(cursor: string): ListFilter["cursor"] {
  try {
    const decoded = JSON.parse(Buffer.from(cursor, "base64url").toString()) as unknown;
    if (Array.isArray(decoded) && decoded.length === 2) {
      const [createdMicros, id] = decoded as unknown[];
      if (
        typeof createdMicros === "string" &&
        MICROS.test(createdMicros) &&
        typeof id === "string" &&
        isUuid(id)
      )
        return { createdMicros, id };
    }
  } catch {
    // fall through
  }
  throw new SagaError("INVALID_OPTIONS", "list: cursor is not one that list() returned");
}
