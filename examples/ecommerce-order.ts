/**
 * E-commerce order (the saga guide's scenario 1): create order → reserve inventory → process payment → send
 * notification → confirm order, with sequential compensation: a declined payment releases the stock and cancels
 * the order, in reverse order. A flaky payment gateway is retried with exponential backoff, and charged once
 * because the gateway sees the same idempotency key on every attempt.
 *
 * Run it: `npm run example:order` (DATABASE_URL, or an embedded PostgreSQL).
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { BusinessError, RetryableError, compensation, defineSaga, retry } from "../src/index.js";
import { type Log, isMain, runFromCommandLine, settle, withEngine } from "./run-example.js";

/** Stand-ins for the services an order touches; each call is keyed like a real idempotent API. */
export class Shop {
  readonly orders = new Map<string, "open" | "confirmed" | "cancelled">();
  readonly stock = new Map<string, number>([["keyboard", 5]]);
  readonly charges = new Map<string, number>(); // idempotency key → amount
  readonly notifications: string[] = [];
  /** Gateway calls that fail with a timeout before one gets through. */
  gatewayHiccups = 0;
}

const input = z.object({
  customerId: z.string(),
  sku: z.string(),
  quantity: z.number().int().positive(),
  amount: z.number().positive(),
  card: z.enum(["valid", "declined"]),
});

/** The order saga over a {@link Shop}. */
export function ecommerceOrderSaga(shop: Shop) {
  return defineSaga({
    name: "ecommerce-order",
    input,
    timeout: "30m",
    // The guide's policy is 3 attempts, 1s to 10s; shortened so the example runs in a moment.
    retry: retry.exponential({ maxAttempts: 3, initialDelay: "100ms", maxDelay: "1s" }),
    compensation: compensation.sequential({ timeout: "30s" }),
  })
    .step("create-order", {
      execute: (d, ctx) => {
        shop.orders.set(ctx.idempotencyKey, "open");
        return { ...d, orderId: ctx.idempotencyKey };
      },
      compensate: (d) => {
        shop.orders.set(d.orderId, "cancelled");
      },
    })
    .step("reserve-inventory", {
      execute: (d) => {
        const left = shop.stock.get(d.sku) ?? 0;
        if (left < d.quantity) throw new BusinessError("OUT_OF_STOCK", `only ${left} ${d.sku} left`);
        shop.stock.set(d.sku, left - d.quantity);
        return { ...d, reserved: d.quantity };
      },
      compensate: (d) => {
        shop.stock.set(d.sku, (shop.stock.get(d.sku) ?? 0) + d.reserved);
      },
    })
    .step("process-payment", {
      execute: (d, ctx) => {
        if (shop.gatewayHiccups > 0) {
          shop.gatewayHiccups--;
          throw new RetryableError(new Error("payment gateway timed out"));
        }
        if (d.card === "declined") throw new BusinessError("PAYMENT_DECLINED", "the card was declined");
        if (!shop.charges.has(ctx.idempotencyKey)) shop.charges.set(ctx.idempotencyKey, d.amount);
        return { ...d, paymentId: ctx.idempotencyKey };
      },
      compensate: (d) => {
        shop.charges.delete(d.paymentId);
      },
    })
    .step("send-notification", {
      execute: (d) => {
        shop.notifications.push(`${d.customerId}: order ${d.orderId} paid`);
        return d;
      },
    })
    .step("confirm-order", {
      execute: (d) => {
        shop.orders.set(d.orderId, "confirmed");
        return { ...d, confirmed: true };
      },
    });
}

/** Three orders: one completes, one is declined and compensated, one survives a flaky gateway. */
export async function runEcommerceExample(url: string, log: Log = () => {}) {
  const shop = new Shop();
  const saga = ecommerceOrderSaga(shop);
  // Keys of this run: a second run starts new sagas instead of finding the first run's.
  const run = randomUUID().slice(0, 8);
  return withEngine(url, [saga], async (engine) => {
    const order = { customerId: "c-1", sku: "keyboard", quantity: 2, amount: 120 };
    const ok = await engine.start(saga, { ...order, card: "valid" }, { idempotencyKey: `order-1001-${run}` });
    const okSaga = await settle(engine, ok.id, "order-1001 (valid card)", log);

    const declined = await engine.start(
      saga,
      { ...order, card: "declined" },
      { idempotencyKey: `order-1002-${run}` },
    );
    const declinedSaga = await settle(engine, declined.id, "order-1002 (declined card)", log);

    shop.gatewayHiccups = 2;
    const flaky = await engine.start(
      saga,
      { ...order, card: "valid" },
      { idempotencyKey: `order-1003-${run}` },
    );
    const flakySaga = await settle(engine, flaky.id, "order-1003 (gateway timed out twice)", log);

    log(
      `stock left: ${shop.stock.get("keyboard")} keyboards; charges: ${[...shop.charges.values()].join(", ")}`,
    );
    return { shop, sagas: { ok: okSaga, declined: declinedSaga, flaky: flakySaga } };
  });
}

if (isMain(import.meta.url)) await runFromCommandLine(runEcommerceExample);
