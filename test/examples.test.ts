/**
 * The runnable examples (examples/), each run as its command would run it, against a test database: their sagas
 * end as the scenario says, and their side effects are exactly what the scenario promises.
 */
import { describe, expect, it } from "vitest";
import { runEcommerceExample } from "../examples/ecommerce-order.js";
import { runTransferExample } from "../examples/money-transfer.js";
import { runTravelExample } from "../examples/travel-booking.js";
import { runRegistrationExample } from "../examples/user-registration.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
const steps = (saga: { steps: { name: string; status: string }[] }) =>
  saga.steps.map((s) => `${s.name}:${s.status}`);

describe("examples", () => {
  it("e-commerce order: completes, compensates a declined card in reverse order, survives a flaky gateway", async () => {
    const lines: string[] = [];
    const { shop, sagas } = await runEcommerceExample(db.url, (l) => lines.push(l));
    expect(sagas.ok.state).toBe("completed");
    expect(sagas.declined).toMatchObject({ state: "compensated", error: { code: "PAYMENT_DECLINED" } });
    expect(steps(sagas.declined)).toEqual([
      "create-order:compensated",
      "reserve-inventory:compensated",
      "process-payment:failed",
      "send-notification:skipped",
      "confirm-order:skipped",
    ]);
    const { rows } = await db.pool.query<{ step: string }>(
      "select step from saga.events where saga_id = $1 and type = 'compensation.step.completed' order by seq",
      [sagas.declined.id],
    );
    expect(rows.map((r) => r.step)).toEqual(["reserve-inventory", "create-order"]);
    expect(sagas.flaky.state).toBe("completed");
    expect(sagas.flaky.steps.find((s) => s.name === "process-payment")?.attempt).toBe(3);
    expect(shop.stock.get("keyboard")).toBe(1); // 5 - 2 - 2, the declined order's 2 released
    expect([...shop.charges.values()]).toEqual([120, 120]);
    expect([...shop.orders.values()].sort()).toEqual(["cancelled", "confirmed", "confirmed"]);
    expect(lines).toHaveLength(4);
  });

  it("travel booking: books, cancels every booking when no car is left, and when the traveller cancels", async () => {
    const { world, sagas } = await runTravelExample(db.url);
    expect(sagas.booked.state).toBe("completed");
    expect(sagas.compensated).toMatchObject({ state: "compensated", error: { code: "NO_CAR_AVAILABLE" } });
    expect(steps(sagas.compensated).slice(0, 3)).toEqual([
      "book-flight:compensated",
      "book-hotel:compensated",
      "book-car:failed",
    ]);
    expect(sagas.cancelled).toMatchObject({ state: "cancelled", error: { code: "CANCELLED" } });
    // Only the completed trip holds bookings; the others were cancelled at every provider.
    expect([world.airline.active, world.hotels.active, world.cars.active]).toEqual([1, 1, 1]);
    expect(world.airline.calls.filter((c) => c === "cancel flight")).toHaveLength(2);
    expect(world.payments.size).toBe(1);
    expect(world.emails).toHaveLength(1);
  });

  it("money transfer: exactly-once balances, a retried debit applied once, failures undone, money conserved", async () => {
    const { before, after, ledger, sagas } = await runTransferExample(db.url);
    expect(sagas.concurrent.map((s) => s.state)).toEqual(Array(20).fill("completed"));
    expect(before.total).toBe(1500);
    expect(after).toEqual({
      balances: { alice: 1000 - 100 - 100 + 50, bob: 500 + 100 + 100 - 50, carol: 0 },
      held: 0,
      total: 1500,
    });
    const entries = (id: string) =>
      ledger.filter((l) => l.transfer_id === id).map((l) => `${l.entry}:${l.amount}`);
    expect(sagas.retried.state).toBe("completed");
    expect(sagas.retried.steps.find((s) => s.name === "execute-transfer")?.attempt).toBe(2);
    expect(entries(sagas.retried.id)).toEqual(["credit:100", "debit:-100", "settled:0"]);
    expect(sagas.short).toMatchObject({ state: "failed", error: { code: "INSUFFICIENT_FUNDS" } });
    expect(entries(sagas.short.id)).toEqual([]);
    expect(sagas.frozen).toMatchObject({ state: "compensated", error: { code: "ACCOUNT_FROZEN" } });
    expect(entries(sagas.frozen.id)).toEqual(["debit:-50", "refund:50", "release-hold:0"]);
    for (const s of sagas.concurrent) expect(entries(s.id)).toHaveLength(3);
  });

  it("user registration: non-critical steps do not fail it; best-effort compensation undoes the rest", async () => {
    const { services, sagas } = await runRegistrationExample(db.url);
    expect(sagas.ok).toMatchObject({
      state: "completed",
      result: { push: "sent", analytics: "recorded", active: true },
    });
    expect(sagas.degraded).toMatchObject({
      state: "completed",
      result: {
        push: "push: push service unavailable",
        analytics: "analytics: analytics ingest timed out",
        active: true,
      },
    });
    expect(sagas.refused.state).toBe("compensation_failed");
    expect(steps(sagas.refused)).toEqual([
      "create-user:compensated",
      "send-welcome-email:compensated",
      "push-notification:compensation_failed",
      "record-analytics:succeeded", // nothing to undo
      "activate-account:failed",
    ]);
    // The push could not be retracted, yet the user was deleted and told.
    expect([...services.users.values()].map((u) => u.email)).toEqual(["ana@example.com", "bo@example.com"]);
    expect(services.emails).toContain("sorry cy@example.com");
    expect([...services.pushes]).toEqual([sagas.ok.id, sagas.refused.id]);
  });
});
