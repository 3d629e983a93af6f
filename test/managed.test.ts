/**
 * A managed-server setup: the application's role is no superuser (it owns its database, as on hosted
 * offerings), and the server sets `statement_timeout = 30s` and `idle_in_transaction_session_timeout = 60s`
 * for it. A bounded soak with three real worker processes (SOAK_SECONDS, default 30; longer behind the flag)
 * ends with every saga terminal, no statement of ours cancelled, no session of ours terminated, and nothing
 * left behind: no job, no worker row, no connection.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { type SagaEngine, createSagaEngine } from "../src/index.js";
import { type ChaosWorker, spawnChaosWorker, stopChaosWorker } from "./chaos/worker-processes.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { type ThrowawayPostgres, startThrowawayPostgres } from "./helpers/throwaway-postgres.js";

const SOAK_MS = Number(process.env.SOAK_SECONDS ?? 30) * 1_000;
vi.setConfig({ testTimeout: SOAK_MS + 180_000, hookTimeout: 120_000 });

let server: ThrowawayPostgres;
let admin: pg.Pool;
let url: string;
let engine: SagaEngine | undefined;
const workers: ChaosWorker[] = [];

beforeAll(async () => {
  server = await startThrowawayPostgres({ settings: { log_min_messages: "warning" } });
  admin = new pg.Pool({ connectionString: server.url.replace(/\/saga$/, "/postgres"), max: 2 });
  await admin.query("create role app login nosuperuser nocreatedb nocreaterole");
  await admin.query("alter role app set statement_timeout = '30s'");
  await admin.query("alter role app set idle_in_transaction_session_timeout = '60s'");
  await admin.query("create database managed owner app");
  url = `postgres://app@127.0.0.1:${server.port}/managed`;
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  try {
    const { rows } = await setup.query<{ st: string; iit: string; su: boolean }>(
      `select current_setting('statement_timeout') as st, current_setting('idle_in_transaction_session_timeout') as iit,
              (select rolsuper from pg_roles where rolname = current_user) as su`,
    );
    expect(rows[0]).toEqual({ st: "30s", iit: "1min", su: false });
    await setup.query(CALLS_TABLE);
  } finally {
    await setup.end();
  }
});

afterAll(async () => {
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  await engine?.close();
  await admin?.end();
  await server?.destroy();
});

it(`soak for ${SOAK_MS / 1000} s with three worker processes: every saga terminal, nothing cancelled or leaked`, async () => {
  const effects = new pg.Pool({ connectionString: url, max: 2 });
  try {
    engine = createSagaEngine({ connectionString: url, sagas: [orderSaga(effects)], poolSize: 4 });
    // The application's own role migrates: it owns the database, it is no superuser.
    await engine.migrate();
    const env = { DATABASE_URL: url, CONCURRENCY: "4", DEAD_AFTER_MS: "5000", HEARTBEAT_MS: "1000" };
    for (let i = 0; i < 3; i++) workers.push(await spawnChaosWorker(env));

    const ids: { id: string; fails: boolean }[] = [];
    const until = Date.now() + SOAK_MS;
    const steps = ["create-order", "reserve-inventory", "process-payment", "confirm-order"] as const;
    for (let n = 0; Date.now() < until; n++) {
      const failAt = n % 7 === 0 ? steps[n % steps.length] : undefined;
      const input = { customerId: `c${n}`, amount: 1 + (n % 50), delayMs: n % 5 === 0 ? 200 : 0, failAt };
      ids.push({ id: (await engine.start(orderSaga(effects), input)).id, fails: failAt !== undefined });
      await new Promise((r) => setTimeout(r, 40));
    }
    for (const { id, fails } of ids) {
      const saga = await engine.waitFor(id, { timeoutMs: 120_000 });
      // A saga failing at its first step has nothing to compensate: it ends failed.
      expect(fails ? ["compensated", "failed"] : ["completed"]).toContain(saga.state);
    }
    expect(workers.every((w) => w.alive)).toBe(true);
    await Promise.all(workers.map((w) => stopChaosWorker(w)));
    for (const w of workers) expect(await w.exited).toBe(0);
    await engine.close();
    engine = undefined;
  } finally {
    await effects.end();
  }

  const count = async (sql: string) =>
    Number((await admin.query<{ n: number }>(sql.replace("$db", "'managed'"))).rows[0]!.n);
  const check = new pg.Client({ connectionString: url });
  await check.connect();
  try {
    const left = async (sql: string) => Number((await check.query<{ n: number }>(sql)).rows[0]!.n);
    expect(await left("select count(*)::int as n from graphile_worker.jobs")).toBe(0);
    expect(await left("select count(*)::int as n from saga.workers")).toBe(0);
    expect(
      await left(
        "select count(*)::int as n from saga.instances where state not in ('completed', 'compensated', 'failed')",
      ),
    ).toBe(0);
  } finally {
    await check.end();
  }
  // Only the check connection above might still be closing.
  for (
    let i = 0;
    i < 100 && (await count("select count(*)::int as n from pg_stat_activity where datname = $db")) > 0;
    i++
  )
    await new Promise((r) => setTimeout(r, 50));
  expect(await count("select count(*)::int as n from pg_stat_activity where datname = $db")).toBe(0);

  const log = await readFile(join(server.dataDir, "server.log"), "utf8");
  expect(log).not.toMatch(/canceling statement due to statement timeout/);
  expect(log).not.toMatch(/idle-in-transaction timeout/);
});
