/**
 * Audit: an operator's cancel and retry are events that say who asked and why: `by` is what the caller gave
 * (the CLI gives `cli:<user>`), else the database role of the session (the login role for saga.cancel and
 * saga.retry in SQL, which run as their owner).
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, defineSaga } from "../src/index.js";
import { waitUntil } from "./fixtures/subscriber-helpers.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventPayloads, useEngine } from "./helpers/engine.js";
import { loginRole } from "./helpers/roles.js";

const db = useTestDatabase();
const running = new Set<string>();
const audited = defineSaga({ name: "audited", input: z.object({ fail: z.boolean() }) }).step("work", {
  execute: async (data, ctx) => {
    if (data.fail) throw new BusinessError("NOPE", "refused");
    running.add(ctx.sagaId);
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
    return data;
  },
  compensate: () => {},
});
const harness = useEngine(db, () => [audited]);

async function asApp<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: await loginRole(db.url, "pgsaga_t_auditor", ["saga_app"]) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const runningSaga = async () => {
  const { id } = await harness.engine.start(audited, { fail: false });
  await waitUntil("the step runs", () => running.has(id));
  return id;
};

describe("audit", () => {
  it("cancel: by and reason in saga.cancelled, from the engine, the engine's role and SQL", async () => {
    const { engine } = harness;
    const [a, b, c] = [await runningSaga(), await runningSaga(), await runningSaga()];
    await engine.cancel(a, "customer called", { by: "dashboard:ann" });
    await engine.cancel(b, "duplicate order");
    await asApp((client) => client.query("select saga.cancel($1, 'fraud check')", [c]));
    const { rows } = await db.pool.query<{ u: string }>("select session_user as u");
    const expected: [string, string, string][] = [
      [a, "dashboard:ann", "customer called"],
      [b, rows[0]!.u, "duplicate order"],
      [c, "pgsaga_t_auditor", "fraud check"],
    ];
    for (const [id, by, reason] of expected) {
      expect((await engine.waitFor(id, { timeoutMs: 10_000 })).state).toBe("cancelled");
      expect(await eventPayloads(db, id, "saga.cancelled")).toEqual([
        expect.objectContaining({ by, reason }),
      ]);
      const [started] = await eventPayloads(db, id, "compensation.started");
      expect(started).toMatchObject({ cause: "cancel", error: { message: reason, details: { by } } });
    }
  });

  it("retry: manual, by and reason in the event that resumes the saga", async () => {
    const { engine } = harness;
    const failed = async () => {
      const { id } = await engine.start(audited, { fail: true });
      expect((await engine.waitFor(id, { timeoutMs: 10_000 })).state).toBe("failed");
      return id;
    };
    const [a, b] = [await failed(), await failed()];
    await engine.retry(a, { reason: "limit raised" });
    await asApp((client) => client.query("select saga.retry($1, 'fixed upstream')", [b]));
    // The SQL retry is queued: waitFor() waits for the worker to perform it (the step fails again).
    expect((await engine.waitFor(b, { timeoutMs: 10_000 })).state).toBe("failed");
    const { rows } = await db.pool.query<{ u: string }>("select session_user as u");
    expect(await eventPayloads(db, a, "saga.step.retrying")).toEqual([
      expect.objectContaining({ manual: true, by: rows[0]!.u, reason: "limit raised" }),
    ]);
    expect(await eventPayloads(db, b, "saga.step.retrying")).toEqual([
      expect.objectContaining({ manual: true, by: "pgsaga_t_auditor", reason: "fixed upstream" }),
    ]);
  });
});
