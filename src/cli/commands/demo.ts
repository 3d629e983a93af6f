/**
 * `pg-saga demo`: an order saga (create order → reserve inventory → process payment → confirm order) run twice
 * on a worker in this process: once to completion, once with a declined card, compensated. Each event is
 * printed as it commits. Uses --database / DATABASE_URL, else an embedded PostgreSQL when installed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { defineSaga } from "../../definition.js";
import { createSagaEngine } from "../../engine.js";
import { BusinessError } from "../../errors.js";
import { retry } from "../../retry.js";
import { type Cli } from "../context.js";
import { embeddedDatabase } from "../embedded-database.js";
import { formatError, paintState } from "../format.js";

/** The demo's saga: its name is namespaced so it never meets an application's own. */
export const demoSaga = defineSaga({
  name: "pg-saga-demo.order",
  input: z.object({ customerId: z.string(), amount: z.number().positive(), cardValid: z.boolean() }),
  retry: retry.exponential({ maxAttempts: 3, initialDelay: "50ms", maxDelay: "200ms" }),
})
  .step("create-order", {
    execute: async (data, ctx) => ({ ...data, orderId: `ord-${ctx.sagaId.slice(0, 8)}` }),
    compensate: async () => {},
  })
  .step("reserve-inventory", {
    execute: async (data) => ({ ...data, reservationId: `res-${data.orderId}` }),
    compensate: async () => {},
  })
  .step("process-payment", {
    execute: async (data) => {
      if (!data.cardValid) throw new BusinessError("PAYMENT_DECLINED", "the card was declined");
      return { ...data, paymentId: `pay-${data.orderId}` };
    },
    compensate: async () => {},
  })
  .step("confirm-order", { execute: async (data) => ({ ...data, confirmed: true }) });

export async function demoCommand(cli: Cli): Promise<void> {
  const given = cli.options.database ?? process.env.DATABASE_URL;
  const database = given ? { url: given, stop: async () => {} } : await embeddedDatabase();
  if (!given && !cli.json)
    cli.line(cli.c.dim("using an embedded PostgreSQL (set DATABASE_URL to use yours)"));
  const engine = createSagaEngine({
    connectionString: database.url,
    sagas: [demoSaga],
    // A declined card is the point of the demo, not a warning.
    logger: cli.logger("error"),
  });
  const results: { id: string; state: string; error: unknown }[] = [];
  try {
    await engine.migrate();
    const worker = await engine.runWorker({ concurrency: 4, pollInterval: 100 });
    try {
      for (const [label, cardValid] of [
        ["a good card", true],
        ["a declined card", false],
      ] as const) {
        if (!cli.json) cli.line(`\n${cli.c.bold(`order with ${label}:`)}`);
        const { id } = await engine.start(demoSaga, { customerId: "cust-1", amount: 99.5, cardValid });
        let seen = 0;
        for (;;) {
          const { rows } = await engine.pool.query<{ seq: number; type: string; step: string | null }>(
            "select seq, type, step from saga.events where saga_id = $1 and seq > $2 order by seq",
            [id, seen],
          );
          for (const e of rows) {
            cli.print(
              { sagaId: id, ...e },
              () => `  ${String(e.seq).padStart(2)} ${e.type}${e.step ? ` (${e.step})` : ""}`,
            );
            seen = e.seq;
          }
          const saga = await engine.get(id);
          if (saga?.finishedAt && rows.length === 0) {
            results.push({ id, state: saga.state, error: saga.error });
            if (!cli.json)
              cli.line(
                `  → ${paintState(cli.c, saga.state)}${saga.error ? `: ${formatError(saga.error)}` : ""}`,
              );
            break;
          }
          await sleep(20);
        }
      }
    } finally {
      await worker.stop();
    }
    if (cli.json) cli.line(JSON.stringify({ sagas: results }));
    // The embedded database is gone once the demo ends: only a given one can be looked at afterwards.
    else if (given) cli.line(cli.c.dim(`\nlook closer: pg-saga show ${results[1]?.id ?? ""}`));
  } finally {
    await engine.close();
    await database.stop();
  }
}
