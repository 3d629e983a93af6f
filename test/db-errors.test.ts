/**
 * What is retried is decided by SQLSTATE and errno only. A connection that ends under a query (here: a TCP
 * proxy between the client and PostgreSQL that drops its sockets mid-query, as a network cut or a killed
 * server would) reaches node-postgres without a SQLSTATE; pg-saga reports it as ConnectionLostError (08006),
 * known from the client's own events.
 */
import { type Server, type Socket, connect, createServer } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  ConnectionLostError,
  isTransientDbError,
  lossAware,
  withClient,
  withTransaction,
} from "../src/db.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase({ migrated: false });
let proxy: Server;
const sockets = new Set<Socket>();
let pool: pg.Pool;

beforeAll(async () => {
  const target = new URL(db.url);
  proxy = createServer((client) => {
    const server = connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, server]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s)).on("error", () => {});
    }
    client.pipe(server).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const address = proxy.address();
  const viaProxy = new URL(db.url);
  viaProxy.hostname = "127.0.0.1";
  viaProxy.port = String(typeof address === "object" && address ? address.port : 0);
  pool = new pg.Pool({ connectionString: viaProxy.toString(), max: 2 });
  pool.on("error", () => {});
});

afterAll(async () => {
  await pool?.end();
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => proxy?.close(resolve));
});

/** Drops every proxied connection once a query is running on the server. */
async function cutMidQuery(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await db.pool.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where query like 'select pg_sleep(%' and state = 'active'",
    );
    if ((rows[0]?.n ?? 0) > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  for (const s of sockets) s.destroy();
  // The server learns of the cut only when it next writes: end the orphaned sleeps now.
  await db.pool.query(
    `select pg_terminate_backend(pid) from pg_stat_activity
     where datname = current_database() and query like 'select pg_sleep(%' and pid <> pg_backend_pid()`,
  );
}

it("a connection cut under a query is a ConnectionLostError with SQLSTATE 08006: transient, client destroyed", async () => {
  const running = lossAware(pool)
    .query("select pg_sleep(30)")
    .catch((e: unknown) => e);
  await cutMidQuery();
  const err: unknown = await running;
  expect(err).toBeInstanceOf(ConnectionLostError);
  expect((err as ConnectionLostError).code).toBe("08006");
  expect(isTransientDbError(err)).toBe(true);
  expect(pool.totalCount).toBe(0);
  // The pool carries on with a new connection.
  expect((await lossAware(pool).query<{ one: number }>("select 1 as one")).rows).toEqual([{ one: 1 }]);
});

it("an error the server reports keeps its own SQLSTATE and its client", async () => {
  const err: unknown = await withClient(pool, (c) => c.query("select 1 / 0")).catch((e: unknown) => e);
  expect(err).not.toBeInstanceOf(ConnectionLostError);
  expect((err as { code?: string }).code).toBe("22012");
  expect(isTransientDbError(err)).toBe(false);
  expect(pool.idleCount).toBeGreaterThan(0);
});

it("a transaction cut mid-way is run again on a new connection", async () => {
  let attempts = 0;
  const result = await withTransaction(pool, async (tx) => {
    attempts++;
    if (attempts === 1) {
      const running = tx.query("select pg_sleep(30)").catch((e: unknown) => e);
      await cutMidQuery();
      throw await running;
    }
    const { rows } = await tx.query<{ n: number }>("select 41 + 1 as n");
    return rows[0]?.n;
  });
  expect({ result, attempts }).toEqual({ result: 42, attempts: 2 });
});

it("an error without a code is not transient, whatever its message says", () => {
  expect(isTransientDbError(new Error("Connection terminated unexpectedly"))).toBe(false);
  expect(isTransientDbError(Object.assign(new Error("x"), { code: "ECONNRESET" }))).toBe(true);
  expect(isTransientDbError(Object.assign(new Error("x"), { code: "57014" }))).toBe(false);
});
