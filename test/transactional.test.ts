import { beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, RetryableError, defineSaga, retry } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();

const input = z.object({
  account: z.string(),
  amount: z.number().int().positive(),
  failAfterWrite: z.enum(["never", "once", "always"]),
});

const payment = defineSaga({ name: "payment", input, retry: retry.fixed({ maxAttempts: 2, delay: 5 }) }).step(
  "debit",
  {
    transactional: true,
    execute: async (data, ctx) => {
      await ctx.tx.query("update accounts set balance = balance - $1 where id = $2", [
        data.amount,
        data.account,
      ]);
      await ctx.tx.query("insert into ledger (saga_id, account, amount) values ($1, $2, $3)", [
        ctx.sagaId,
        data.account,
        -data.amount,
      ]);
      if (data.failAfterWrite === "always") throw new BusinessError("REJECTED", "rejected after writing");
      if (data.failAfterWrite === "once" && ctx.attempt === 1)
        throw new RetryableError(new Error("lost the race"));
      const { rows } = await ctx.tx.query<{ balance: number }>("select balance from accounts where id = $1", [
        data.account,
      ]);
      return { ...data, balance: rows[0]!.balance };
    },
  },
);

/** A transactional step whose query outlives the step's timeout once, then succeeds. */
const slowWrite = defineSaga({
  name: "slow-write",
  input: z.object({ account: z.string() }),
  retry: retry.fixed({ maxAttempts: 2, delay: 5 }),
}).step("write", {
  transactional: true,
  timeout: 300,
  execute: async (data, ctx) => {
    await ctx.tx.query("insert into ledger (saga_id, account, amount) values ($1, $2, $3)", [
      ctx.sagaId,
      data.account,
      ctx.attempt,
    ]);
    // The statement timeout set for the step cancels this query: the attempt fails, its insert rolls back.
    if (ctx.attempt === 1) await ctx.tx.query("select pg_sleep(30)");
    const { rows } = await ctx.tx.query<{ t: string }>("select current_setting('statement_timeout') as t");
    return { ...data, timeoutInStep: rows[0]!.t };
  },
});

const harness = useEngine(db, () => [payment, slowWrite]);
const e = () => harness.engine;

beforeAll(async () => {
  await db.pool.query("create table accounts (id text primary key, balance int not null)");
  await db.pool.query(
    "create table ledger (id serial primary key, saga_id uuid not null, account text not null, amount int not null, txid xid8 not null default pg_current_xact_id())",
  );
  await db.pool.query("insert into accounts values ('a', 1000), ('b', 1000), ('c', 1000)");
});

async function state(sagaId: string, account: string) {
  const ledger = await db.pool.query("select count(*)::int as n from ledger where saga_id = $1", [sagaId]);
  const balance = await db.pool.query("select balance from accounts where id = $1", [account]);
  return { ledgerRows: ledger.rows[0].n as number, balance: balance.rows[0].balance as number };
}

describe("transactional steps", () => {
  it("commit their writes in the very transaction that records the step", async () => {
    const { id } = await e().start(payment, { account: "a", amount: 100, failAfterWrite: "never" });
    const done = await e().waitFor(id);
    expect(done.state).toBe("completed");
    expect(done.result).toMatchObject({ balance: 900 });
    expect(await state(id, "a")).toEqual({ ledgerRows: 1, balance: 900 });
    // Same top-level transaction: the ledger row was written by the transaction that wrote the step's
    // saga.step.completed event (pg_current_xact_id() names the top-level transaction, savepoints or not).
    const { rows } = await db.pool.query(
      `select l.txid = o.xid as together from ledger l
       join saga.outbox o on o.saga_id = l.saga_id and o.type = 'saga.step.completed' and o.step = 'debit'
       where l.saga_id = $1`,
      [id],
    );
    expect(rows).toEqual([{ together: true }]);
  });

  it("roll back their writes when they throw: a failed attempt leaves no trace", async () => {
    const { id } = await e().start(payment, { account: "b", amount: 100, failAfterWrite: "always" });
    const done = await e().waitFor(id);
    expect(done.state).toBe("failed");
    expect(done.steps[0]).toMatchObject({ status: "failed", attempt: 1 });
    expect(done.error).toMatchObject({ code: "REJECTED" });
    expect(await state(id, "b")).toEqual({ ledgerRows: 0, balance: 1000 });
  });

  it("are bounded by their timeout inside the database: the slow attempt rolls back, the retry commits", async () => {
    const { id } = await e().start(slowWrite, { account: "d" });
    const done = await e().waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("completed");
    expect(done.result).toMatchObject({ timeoutInStep: "300ms" });
    const retried = await db.pool.query<{ payload: { error: { outcome: string } } }>(
      "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
      [id],
    );
    // Its writes and its record share one transaction: the attempt that timed out had no effect.
    expect(retried.rows.map((r) => r.payload.error.outcome)).toEqual(["failed"]);
    const ledger = await db.pool.query("select amount from ledger where saga_id = $1", [id]);
    expect(ledger.rows).toEqual([{ amount: 2 }]);
  });

  it("take effect exactly once across a retry", async () => {
    const { id } = await e().start(payment, { account: "c", amount: 250, failAfterWrite: "once" });
    const done = await e().waitFor(id);
    expect(done.state).toBe("completed");
    expect(done.steps[0]).toMatchObject({ status: "succeeded", attempt: 2 });
    expect(await state(id, "c")).toEqual({ ledgerRows: 1, balance: 750 });
  });
});
