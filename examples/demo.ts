/**
 * `npm run demo`: the order saga (create order → reserve inventory → process payment → confirm order), run
 * twice: once to completion, once failing at payment and compensating. Every transition is printed from
 * saga.events as it commits.
 */
import pg from "pg";
import { z } from "zod";
import { BusinessError, createSagaEngine, defineSaga } from "../src/index.js";
import { exampleDatabase } from "./database.js";

// What each compensation did, printed under the event that records it (handlers run before their event commits).
const notes = new Map<string, string>();
const note = (sagaId: string, step: string, line: string) => notes.set(`${sagaId}/${step}`, line);

const orderSaga = defineSaga({
  // Its own name: an application's "order-processing" saga never meets the demo's in the same database.
  name: "demo.order-processing",
  input: z.object({ customerId: z.string(), amount: z.number().positive(), cardValid: z.boolean() }),
})
  .step("create-order", {
    execute: async (data, ctx) => ({ ...data, orderId: `ord-${ctx.sagaId.slice(0, 8)}` }),
    compensate: async (data, ctx) => note(ctx.sagaId, "create-order", `cancel order ${data.orderId}`),
  })
  .step("reserve-inventory", {
    execute: async (data) => ({ ...data, reservationId: `res-${data.orderId}` }),
    compensate: async (data, ctx) =>
      note(ctx.sagaId, "reserve-inventory", `release reservation ${data.reservationId}`),
  })
  .step("process-payment", {
    execute: async (data) => {
      if (!data.cardValid) throw new BusinessError("PAYMENT_DECLINED", "the card was declined");
      return { ...data, paymentId: `pay-${data.orderId}` };
    },
    compensate: async (data, ctx) => note(ctx.sagaId, "process-payment", `refund payment ${data.paymentId}`),
  })
  .step("confirm-order", { execute: async (data) => ({ ...data, confirmed: true }) });

async function main() {
  const database = await exampleDatabase();
  console.log(
    process.env.DATABASE_URL
      ? "using DATABASE_URL"
      : "using an embedded PostgreSQL (set DATABASE_URL to use yours)",
  );
  const engine = createSagaEngine({ connectionString: database.url, sagas: [orderSaga] });
  const reader = new pg.Pool({ connectionString: database.url, max: 1 });
  try {
    await engine.migrate();
    const worker = await engine.runWorker({ concurrency: 4 });
    for (const [label, cardValid] of [
      ["a good card", true],
      ["a declined card", false],
    ] as const) {
      console.log(`\norder with ${label}:`);
      const { id } = await engine.start(orderSaga, { customerId: "cust-1", amount: 99.5, cardValid });
      let seen = 0;
      for (;;) {
        const { rows } = await reader.query<{ seq: number; type: string; step: string | null }>(
          "select seq, type, step from saga.events where saga_id = $1 and seq > $2 order by seq",
          [id, seen],
        );
        for (const e of rows) {
          console.log(`  ${String(e.seq).padStart(2)} ${e.type}${e.step ? ` (${e.step})` : ""}`);
          const done = e.type === "compensation.step.completed" && notes.get(`${id}/${e.step}`);
          if (done) console.log(`      ↩ ${done}`);
          seen = e.seq;
        }
        const saga = await engine.get(id);
        if (saga && saga.finishedAt && rows.length === 0) {
          console.log(`  → ${saga.state}${saga.error ? `: ${saga.error.code} ${saga.error.message}` : ""}`);
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await worker.stop();
  } finally {
    await reader.end();
    await engine.close();
    await database.stop();
  }
}

await main().catch((err: unknown) => {
  const e = err as { message?: string; code?: string };
  console.error(`demo failed: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ""}`);
  process.exitCode = 1;
});
