/**
 * Travel booking (the saga guide's scenario 2): book flight → book hotel → book car → process payment → send
 * confirmation, across independent providers. When one booking fails, every booking already made is cancelled,
 * newest first. A traveller who changes their mind mid-booking is cancelled by an operator (`engine.cancel`) and
 * compensated the same way.
 *
 * Run it: `npm run example:travel` (DATABASE_URL, or an embedded PostgreSQL).
 */
import { z } from "zod";
import { BusinessError, compensation, defineSaga, retry } from "../src/index.js";
import { type Log, isMain, runFromCommandLine, settle, withEngine } from "./run-example.js";

/** One provider (airline, hotel chain, car rental): bookings by idempotency key, and a log of calls. */
export class Provider {
  readonly bookings = new Map<string, "booked" | "cancelled">();
  readonly calls: string[] = [];
  constructor(readonly name: string) {}

  book(key: string, what: string): string {
    this.calls.push(`book ${what}`);
    if (!this.bookings.has(key)) this.bookings.set(key, "booked");
    return `${this.name}-${key.slice(0, 8)}`;
  }

  cancel(key: string, what: string): void {
    this.calls.push(`cancel ${what}`);
    if (this.bookings.has(key)) this.bookings.set(key, "cancelled");
  }

  get active(): number {
    return [...this.bookings.values()].filter((b) => b === "booked").length;
  }
}

export interface TravelWorld {
  airline: Provider;
  hotels: Provider;
  cars: Provider;
  payments: Map<string, number>;
  emails: string[];
  /** A hold point: the car step waits while this saga id is in it. */
  slowCars: Set<string>;
}

export const newTravelWorld = (): TravelWorld => ({
  airline: new Provider("airline"),
  hotels: new Provider("hotel"),
  cars: new Provider("car"),
  payments: new Map(),
  emails: [],
  slowCars: new Set(),
});

const input = z.object({
  traveller: z.string(),
  from: z.string(),
  to: z.string(),
  nights: z.number().int().positive(),
  car: z.enum(["compact", "convertible"]),
  total: z.number().positive(),
});

/**
 * A booking's key at its provider: the step's idempotency key (`<saga id>:<step>`). The compensation derives the
 * same key, so it can cancel a booking whose confirmation never came back (`ctx.outcome === "unknown"`).
 */
const bookingKey = (ctx: { sagaId: string; step: string }) => `${ctx.sagaId}:${ctx.step}`;

/** The travel saga over a {@link TravelWorld}. */
export function travelBookingSaga(w: TravelWorld) {
  return defineSaga({
    name: "travel-booking",
    input,
    timeout: "60m",
    retry: retry.exponential({ maxAttempts: 5, initialDelay: "100ms", maxDelay: "1s" }),
    compensation: compensation.sequential({ timeout: "60s" }),
  })
    .step("book-flight", {
      execute: (d, ctx) => ({ ...d, flight: w.airline.book(bookingKey(ctx), `${d.from}→${d.to}`) }),
      compensate: (_d, ctx) => w.airline.cancel(bookingKey(ctx), "flight"),
    })
    .step("book-hotel", {
      execute: (d, ctx) => ({ ...d, hotel: w.hotels.book(bookingKey(ctx), `${d.nights} nights in ${d.to}`) }),
      compensate: (_d, ctx) => w.hotels.cancel(bookingKey(ctx), "hotel"),
    })
    .step("book-car", {
      execute: async (d, ctx) => {
        while (w.slowCars.has(ctx.sagaId)) {
          if (ctx.signal.aborted) throw ctx.signal.reason;
          await new Promise((r) => setTimeout(r, 20));
        }
        if (d.car === "convertible") throw new BusinessError("NO_CAR_AVAILABLE", `no convertible in ${d.to}`);
        return { ...d, car: w.cars.book(bookingKey(ctx), `${d.car} in ${d.to}`) };
      },
      compensate: (_d, ctx) => w.cars.cancel(bookingKey(ctx), "car"),
    })
    .step("process-payment", {
      execute: (d, ctx) => {
        if (!w.payments.has(ctx.idempotencyKey)) w.payments.set(ctx.idempotencyKey, d.total);
        return { ...d, paymentId: ctx.idempotencyKey };
      },
      compensate: (d) => {
        w.payments.delete(d.paymentId);
      },
    })
    .step("send-confirmation", {
      execute: (d) => {
        w.emails.push(`${d.traveller}: ${d.flight}, ${d.hotel}, ${d.car}`);
        return d;
      },
    });
}

/** A trip that books, one with no car (compensated), one the traveller cancels while the car is booked. */
export async function runTravelExample(url: string, log: Log = () => {}) {
  const w = newTravelWorld();
  const saga = travelBookingSaga(w);
  return withEngine(url, [saga], async (engine) => {
    const trip = { traveller: "Ana", from: "LIS", to: "OSL", nights: 3, total: 1450 };
    const ok = await engine.start(saga, { ...trip, car: "compact" });
    const booked = await settle(engine, ok.id, "trip with a compact car", log);

    const noCar = await engine.start(saga, { ...trip, car: "convertible" });
    const compensated = await settle(engine, noCar.id, "trip with a convertible (none left)", log);

    // The traveller changes their mind while the car rental is still answering.
    const slow = await engine.start(saga, { ...trip, car: "compact" });
    w.slowCars.add(slow.id);
    await engine.waitFor(slow.id, { timeoutMs: 10_000, states: ["running"] });
    for (let i = 0; i < 500 && (await engine.get(slow.id))?.steps[2]?.status !== "running"; i++)
      await new Promise((r) => setTimeout(r, 20));
    await engine.cancel(slow.id, "traveller changed their mind");
    // The car step ends through its aborted ctx.signal, as a handler should: it books nothing after the cancel.
    const cancelled = await settle(engine, slow.id, "trip cancelled while booking the car", log);
    w.slowCars.delete(slow.id);

    log(
      `active bookings: ${w.airline.active} flight(s), ${w.hotels.active} hotel(s), ${w.cars.active} car(s)`,
    );
    return { world: w, sagas: { booked, compensated, cancelled } };
  });
}

if (isMain(import.meta.url)) await runFromCommandLine(runTravelExample);
