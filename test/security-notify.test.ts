/**
 * Nothing that arrives by NOTIFY is trusted: a role with no grant at all can LISTEN and NOTIFY on any channel.
 * A forged saga_control message aborts nothing; a forged saga_events message is not delivered; and what such a
 * role hears on saga_events is ids and types only.
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { type SagaEvent, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";
import { loginRole } from "./helpers/roles.js";
import { rawListener, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const running = new Set<string>();
const aborted = new Map<string, string>();
const release = new Map<string, () => void>();

const held = defineSaga({ name: "held", input: z.object({ secret: z.string() }) }).step("wait", {
  execute: async (data, ctx) => {
    running.add(ctx.sagaId);
    await new Promise<void>((resolve) => {
      release.set(ctx.sagaId, resolve);
      ctx.signal.addEventListener("abort", () => {
        aborted.set(ctx.sagaId, String((ctx.signal.reason as { code?: string })?.code));
        resolve();
      });
    });
    return data;
  },
  compensate: () => {},
});

const harness = useEngine(db, () => [held]);

/** A client of a role that has no grant on anything (PUBLIC may connect). */
async function nobody(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: await loginRole(db.url, "pgsaga_nobody") });
  await client.connect();
  return client;
}

describe("notifications are hints", () => {
  it("a forged saga_control message aborts nothing; a real cancel still does", async () => {
    const { engine } = harness;
    const forger = await nobody();
    try {
      const { id } = await engine.start(held, { secret: "s" });
      await waitUntil("the step runs", () => running.has(id));
      for (const abort of ["cancel", "timeout"])
        await forger.query("select pg_notify('saga_control', $1)", [JSON.stringify({ id, abort, step: 0 })]);
      await sleep(300);
      expect(aborted.has(id)).toBe(false);
      release.get(id)!();
      expect((await engine.waitFor(id, { timeoutMs: 10_000 })).state).toBe("completed");

      const { id: cancelled } = await engine.start(held, { secret: "s" });
      await waitUntil("the step runs", () => running.has(cancelled));
      await engine.cancel(cancelled, "really");
      expect((await engine.waitFor(cancelled, { timeoutMs: 10_000 })).state).toBe("cancelled");
      expect(aborted.get(cancelled)).toBe("SAGA_CANCELLED");
    } finally {
      await forger.end();
    }
  });

  it("a LISTEN-only subscriber delivers only events the outbox has, as the outbox has them", async () => {
    const { engine } = harness;
    const forger = await nobody();
    const got: SagaEvent[] = [];
    const sub = engine.subscribe({ types: ["saga.completed"] }, (e) => void got.push(e));
    try {
      await sub.ready;
      const { rows } = await db.pool.query<{ id: string; saga_id: string }>(
        "select id, saga_id from saga.outbox where type = 'saga.started' order by id limit 1",
      );
      const real = rows[0]!;
      const forged = [
        { id: 999_999_999, sagaId: real.saga_id, seq: 99, type: "saga.completed", payload: { forged: true } },
        // A real event's id under a forged type: the row says saga.started, so it does not pass the filter.
        {
          id: Number(real.id),
          sagaId: real.saga_id,
          seq: 1,
          type: "saga.completed",
          payload: { forged: true },
        },
      ];
      for (const message of forged)
        await forger.query("select pg_notify('saga_events', $1)", [JSON.stringify(message)]);
      const { id } = await engine.start(held, { secret: "s" });
      await waitUntil("the step runs", () => running.has(id));
      release.get(id)!();
      await waitUntil("the real saga.completed delivered", () => got.some((e) => e.sagaId === id));
      expect(got.map((e) => [e.sagaId, e.type])).toEqual([[id, "saga.completed"]]);
      expect(JSON.stringify(got)).not.toContain("forged");
      expect((await sub.metrics()).rejected).toBe(1);
    } finally {
      await sub.close();
      await forger.end();
    }
  });

  it("a role that can only connect hears ids and types on saga_events, no payload or metadata", async () => {
    const { engine } = harness;
    const raw = await rawListener(await loginRole(db.url, "pgsaga_nobody"));
    try {
      const { id } = await engine.start(held, { secret: "card-4242" }, { metadata: { tenant: "acme" } });
      await waitUntil("the step runs", () => running.has(id));
      release.get(id)!();
      await engine.waitFor(id, { timeoutMs: 10_000 });
      await waitUntil("saga.completed heard", () =>
        raw.messages.some((m) => m.sagaId === id && m.type === "saga.completed"),
      );
      const heard = raw.messages.filter((m) => m.sagaId === id);
      for (const m of heard) expect(Object.keys(m).sort()).toEqual(["bytes", "id", "sagaId", "seq", "type"]);
      expect(JSON.stringify(heard)).not.toMatch(/card-4242|acme|held/);
    } finally {
      await raw.close();
    }
  });
});
