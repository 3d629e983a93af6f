import type pg from "pg";
import { SagaError } from "./errors.js";

/** What a query returns: the rows and how many were touched. */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number | null;
}

/**
 * All database access goes through this one method, so a caller's open transaction plugs in:
 * a `pg` Client or PoolClient already is one, and {@link toExecutor} adapts a drizzle transaction.
 */
export interface Executor {
  query<R = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** A drizzle `node-postgres` database or transaction, as far as pg-saga needs it. */
interface DrizzleLike {
  execute(query: unknown): Promise<unknown>;
  _: unknown;
}

interface DrizzleSql {
  raw(text: string): unknown;
  join(chunks: unknown[]): unknown;
  param(value: unknown): unknown;
}

let drizzleSql: DrizzleSql | undefined;
/** drizzle is an optional peer at run time: loaded the first time a drizzle transaction is passed in. */
async function loadDrizzleSql(): Promise<DrizzleSql> {
  if (!drizzleSql) {
    const mod = (await import("drizzle-orm")) as unknown as {
      sql: DrizzleSql & ((...a: unknown[]) => unknown);
    };
    drizzleSql = mod.sql;
  }
  return drizzleSql;
}

function isPgQueryable(c: unknown): c is pg.ClientBase {
  return typeof c === "object" && c !== null && typeof (c as pg.ClientBase).query === "function";
}

function isDrizzle(c: unknown): c is DrizzleLike {
  return typeof c === "object" && c !== null && typeof (c as DrizzleLike).execute === "function" && "_" in c;
}

/** Turns `$1`-style text and values into a drizzle SQL object, values still bound, never inlined. */
async function toDrizzleQuery(text: string, values: readonly unknown[]): Promise<unknown> {
  const sql = await loadDrizzleSql();
  const chunks: unknown[] = [];
  let last = 0;
  for (const m of text.matchAll(/\$(\d+)/g)) {
    chunks.push(sql.raw(text.slice(last, m.index)));
    chunks.push(sql.param(values[Number(m[1]) - 1]));
    last = m.index + m[0].length;
  }
  chunks.push(sql.raw(text.slice(last)));
  return sql.join(chunks);
}

/**
 * Adapts what a caller hands in as `client` to an {@link Executor}: a `pg` Client/PoolClient, a drizzle
 * transaction or database, or anything with `query(text, values)`.
 *
 * @example
 * await db.transaction(async (tx) => { await tx.insert(orders).values(o); await engine.start(orderSaga, o, { client: tx }); });
 */
export function toExecutor(client: unknown): Executor {
  if (isDrizzle(client)) {
    return {
      async query<R>(text: string, values: readonly unknown[] = []) {
        const result = (await client.execute(await toDrizzleQuery(text, values))) as
          { rows?: R[]; rowCount?: number | null } | R[];
        if (Array.isArray(result)) return { rows: result, rowCount: result.length };
        return { rows: result.rows ?? [], rowCount: result.rowCount ?? null };
      },
    };
  }
  if (isPgQueryable(client)) {
    return {
      async query<R>(text: string, values: readonly unknown[] = []) {
        const result = await client.query(text, values as unknown[]);
        return { rows: result.rows as R[], rowCount: result.rowCount };
      },
    };
  }
  throw new SagaError(
    "INVALID_OPTIONS",
    "client must be a pg Client/PoolClient, a drizzle transaction, or an object with query(text, values)",
  );
}
