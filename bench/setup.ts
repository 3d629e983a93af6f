/** Creates the bench database from scratch (pg-saga and graphile-worker schemas, bench tables), and drops it. */
import pg from "pg";
import { createSagaEngine } from "../src/index.js";
import type { BenchOptions } from "./harness.js";
import { benchSagas } from "./sagas.js";

async function admin<T>(o: BenchOptions, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: o.adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createBenchDatabase(o: BenchOptions): Promise<void> {
  await admin(o, async (c) => {
    await c.query(`drop database if exists ${o.dbName} with (force)`);
    await c.query(`create database ${o.dbName}`);
  });
  const engine = createSagaEngine({ connectionString: o.url, sagas: benchSagas });
  try {
    await engine.migrate();
    await engine.pool.query(`
      create table bench_rows (id int primary key, n int not null default 0, step int not null default 0);
      insert into bench_rows (id) select g from generate_series(1, 100000) g;
      create table bench_orders (id bigint generated always as identity primary key, customer text not null,
        amount numeric not null, created_at timestamptz not null default now());
      create table bench_kv (id bigint generated always as identity primary key, v int not null);`);
    await engine.pool.query("vacuum analyze bench_rows");
    // An experiment on the schema (a fillfactor, an index dropped) without a migration: BENCH_SETUP_SQL.
    if (process.env.BENCH_SETUP_SQL) await engine.pool.query(process.env.BENCH_SETUP_SQL);
  } finally {
    await engine.close();
  }
}

export async function dropBenchDatabase(o: BenchOptions): Promise<void> {
  await admin(o, (c) => c.query(`drop database if exists ${o.dbName} with (force)`));
}
