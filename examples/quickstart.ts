import pg from "pg";
import { z } from "zod";
import { BusinessError, createSagaEngine, defineSaga, retry } from "pg-saga";

// DATABASE_URL=postgres://localhost/app npx tsx examples/quickstart.ts   (run it three times: the wallet runs dry)
const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
await db.query(`create schema if not exists quickstart;
  create table if not exists quickstart.wallets (customer text primary key, balance numeric not null);
  create table if not exists quickstart.orders (id serial primary key, customer text, amount numeric, paid boolean);
  insert into quickstart.wallets values ('c-1', 100) on conflict do nothing;`);

const checkout = defineSaga({
  name: "quickstart-checkout",
  input: z.object({ orderId: z.number(), customer: z.string(), amount: z.number().positive() }),
  timeout: "30m", // deadline of the whole saga
  retry: retry.exponential({ maxAttempts: 3, initialDelay: "1s" }),
})
  .step("reserve-stock", {
    // Calls the outside world: at least once, so pass ctx.idempotencyKey to the service.
    execute: async (data, ctx) => ({ ...data, reservation: `stock:${ctx.idempotencyKey}` }),
    compensate: async (data) => console.log(`released ${data.reservation}`),
  })
  .step("charge", {
    transactional: true, // runs on the engine's own transaction: exactly once with the step record
    execute: async (data, ctx) => {
      const { rowCount } = await ctx.tx.query(
        "update quickstart.wallets set balance = balance - $1 where customer = $2 and balance >= $1",
        [data.amount, data.customer],
      );
      if (rowCount === 0) throw new BusinessError("INSUFFICIENT_FUNDS", "balance too low");
      await ctx.tx.query("update quickstart.orders set paid = true where id = $1", [data.orderId]);
    },
  });

const engine = createSagaEngine({ connectionString: process.env.DATABASE_URL, sagas: [checkout] });
await engine.migrate();
await engine.runWorker({ concurrency: 10 });

// Start the saga in your own transaction: if it rolls back, the saga never existed.
const client = await db.connect();
await client.query("begin");
const insert = "insert into quickstart.orders (customer, amount, paid) values ($1, $2, false) returning id";
const orderId: number = (await client.query(insert, ["c-1", 42])).rows[0].id;
const input = { orderId, customer: "c-1", amount: 42 };
const { id } = await engine.start(checkout, input, { client, idempotencyKey: `order-${orderId}` });
await client.query("commit");
client.release();

const done = await engine.waitFor(id, { timeoutMs: 30_000 });
console.log(`order ${orderId}: saga ${done.state}`); // completed; compensated once the balance is too low
await engine.close();
await db.end();
