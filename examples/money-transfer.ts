/**
 * Money transfer (the saga guide's scenario 3): validate accounts → lock funds → execute transfer → update
 * balance → settle. Every step is `transactional`: its SQL runs on `ctx.tx`, the engine's own transaction, so a
 * balance changes exactly once, together with the step's record; an attempt that fails after writing rolls its
 * writes back. Compensations (release the hold, refund, reverse the credit) are idempotent through the ledger's
 * unique key, since they may run more than once. Money is never created or lost: the example checks it.
 *
 * Run it: `npm run example:transfer` (DATABASE_URL, or an embedded PostgreSQL).
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { z } from "zod";
import { BusinessError, RetryableError, compensation, defineSaga, retry } from "../src/index.js";
import { type Log, isMain, runFromCommandLine, settle, withEngine } from "./run-example.js";

// The example's tables live in a schema of their own, never in an application's public schema.
export const TRANSFER_TABLES = `
create schema if not exists examples;
create table if not exists examples.accounts (
  id text primary key, balance bigint not null check (balance >= 0), held bigint not null default 0 check (held >= 0),
  frozen boolean not null default false);
create table if not exists examples.ledger (
  transfer_id uuid not null, entry text not null, account text not null, amount bigint not null,
  primary key (transfer_id, entry));`;

const input = z.object({ from: z.string(), to: z.string(), amount: z.number().int().positive() });

/** One idempotent compensation: the ledger entry and the balance change commit together, at most once. */
const COMPENSATE_SQL = `
with entry as (insert into examples.ledger (transfer_id, entry, account, amount) values ($1, $2, $3, $4)
               on conflict do nothing returning 1)
update examples.accounts set balance = balance + $5, held = held + $6
where id = $3 and exists (select 1 from entry)`;

/** The transfer saga. `flaky`: transfers whose debit fails once, after writing (rolled back, then retried). */
export function moneyTransferSaga(pool: pg.Pool, flaky = new Set<string>()) {
  const compensate = (id: string, entry: string, account: string, balance: number, held: number) =>
    pool.query(COMPENSATE_SQL, [id, entry, account, balance, balance, held]);
  return defineSaga({
    name: "money-transfer",
    input,
    timeout: "10m",
    retry: retry.exponential({ maxAttempts: 3, initialDelay: "50ms", maxDelay: "500ms" }),
    compensation: compensation.sequential({ timeout: "20s" }),
  })
    .step("validate-accounts", {
      transactional: true,
      execute: async (d, ctx) => {
        const { rows } = await ctx.tx.query<{ id: string; available: string }>(
          "select id, balance - held as available from examples.accounts where id = any($1)",
          [[d.from, d.to]],
        );
        const found = new Set(rows.map((r) => r.id));
        for (const id of [d.from, d.to])
          if (!found.has(id)) throw new BusinessError("ACCOUNT_NOT_FOUND", `no account ${id}`);
        const available = Number(rows.find((r) => r.id === d.from)?.available ?? 0);
        if (available < d.amount)
          throw new BusinessError("INSUFFICIENT_FUNDS", `${d.from} has ${available}, needs ${d.amount}`);
        return d;
      },
    })
    .step("lock-funds", {
      transactional: true,
      execute: async (d, ctx) => {
        const held = await ctx.tx.query(
          "update examples.accounts set held = held + $2 where id = $1 and balance - held >= $2",
          [d.from, d.amount],
        );
        if (held.rowCount === 0)
          throw new BusinessError("INSUFFICIENT_FUNDS", `${d.from} cannot cover ${d.amount}`);
        return d;
      },
      compensate: (d, ctx) => compensate(ctx.sagaId, "release-hold", d.from, 0, -d.amount),
    })
    .step("execute-transfer", {
      transactional: true,
      retry: retry.fixed({ maxAttempts: 3, delay: "50ms" }),
      execute: async (d, ctx) => {
        await ctx.tx.query(
          "update examples.accounts set balance = balance - $2, held = held - $2 where id = $1",
          [d.from, d.amount],
        );
        await ctx.tx.query(
          "insert into examples.ledger (transfer_id, entry, account, amount) values ($1, 'debit', $2, $3)",
          [ctx.sagaId, d.from, -d.amount],
        );
        if (flaky.delete(ctx.sagaId))
          throw new RetryableError(new Error("connection to the core banking system reset"));
        return d;
      },
      // Puts the money back on hold: the hold's own compensation then releases it.
      compensate: (d, ctx) => compensate(ctx.sagaId, "refund", d.from, d.amount, d.amount),
    })
    .step("update-balance", {
      transactional: true,
      execute: async (d, ctx) => {
        const to = await ctx.tx.query<{ frozen: boolean }>(
          "select frozen from examples.accounts where id = $1",
          [d.to],
        );
        if (to.rows[0]?.frozen) throw new BusinessError("ACCOUNT_FROZEN", `${d.to} is frozen`);
        await ctx.tx.query("update examples.accounts set balance = balance + $2 where id = $1", [
          d.to,
          d.amount,
        ]);
        await ctx.tx.query(
          "insert into examples.ledger (transfer_id, entry, account, amount) values ($1, 'credit', $2, $3)",
          [ctx.sagaId, d.to, d.amount],
        );
        return d;
      },
      compensate: (d, ctx) => compensate(ctx.sagaId, "reverse-credit", d.to, -d.amount, 0),
    })
    .step("settle", {
      transactional: true,
      execute: async (d, ctx) => {
        await ctx.tx.query(
          "insert into examples.ledger (transfer_id, entry, account, amount) values ($1, 'settled', $2, 0)",
          [ctx.sagaId, d.from],
        );
        return { ...d, settled: true };
      },
    });
}

export interface Books {
  balances: Record<string, number>;
  held: number;
  total: number;
}

export async function books(pool: pg.Pool): Promise<Books> {
  const { rows } = await pool.query<{ id: string; balance: string; held: string }>(
    "select id, balance, held from examples.accounts order by id",
  );
  return {
    balances: Object.fromEntries(rows.map((r) => [r.id, Number(r.balance)])),
    held: rows.reduce((sum, r) => sum + Number(r.held), 0),
    total: rows.reduce((sum, r) => sum + Number(r.balance), 0),
  };
}

/** 20 concurrent transfers, one whose debit fails once after writing, one short of funds, one to a frozen account. */
export async function runTransferExample(url: string, log: Log = () => {}) {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  try {
    await pool.query(TRANSFER_TABLES);
    await pool.query("truncate examples.accounts, examples.ledger");
    await pool.query(
      "insert into examples.accounts (id, balance, frozen) values ('alice', 1000, false), ('bob', 500, false), ('carol', 0, true)",
    );
    const flaky = new Set<string>();
    const saga = moneyTransferSaga(pool, flaky);
    return await withEngine(url, [saga], async (engine) => {
      const before = await books(pool);
      const started = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          engine.start(
            saga,
            i % 2 ? { from: "bob", to: "alice", amount: 5 } : { from: "alice", to: "bob", amount: 10 },
          ),
        ),
      );
      const concurrent = await Promise.all(started.map((s) => engine.waitFor(s.id, { timeoutMs: 30_000 })));
      log(`20 concurrent transfers: ${concurrent.filter((s) => s.state === "completed").length} completed`);

      const { id: flakyId } = await engine.start(
        saga,
        { from: "alice", to: "bob", amount: 100 },
        { idempotencyKey: `t-flaky-${randomUUID()}` },
      );
      flaky.add(flakyId);
      const retried = await settle(engine, flakyId, "debit fails once after writing", log);
      const short = await settle(
        engine,
        (await engine.start(saga, { from: "bob", to: "alice", amount: 10_000 })).id,
        "more than bob has",
        log,
      );
      const frozen = await settle(
        engine,
        (await engine.start(saga, { from: "alice", to: "carol", amount: 50 })).id,
        "to a frozen account",
        log,
      );

      const after = await books(pool);
      log(
        `balances: ${JSON.stringify(after.balances)}; held ${after.held}; total ${before.total} → ${after.total}`,
      );
      if (after.total !== before.total || after.held !== 0) throw new Error("the books do not balance");
      const ledger = await pool.query<{ transfer_id: string; entry: string; amount: string }>(
        "select transfer_id, entry, amount from examples.ledger order by transfer_id, entry",
      );
      return { before, after, ledger: ledger.rows, sagas: { concurrent, retried, short, frozen } };
    });
  } finally {
    await pool.end();
  }
}

if (isMain(import.meta.url)) await runFromCommandLine(runTransferExample);
