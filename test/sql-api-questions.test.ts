/**
 * The example questions of the SQL reference (docs/sql.md), each query run as written against sagas
 * that completed, failed, were compensated, and one that is stuck.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, compensation, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const declined = new Set<string>();

const order = defineSaga({
  name: "order",
  input: z.object({ orderId: z.number(), card: z.enum(["ok", "declined", "stolen"]) }),
  // A declined card waits for the customer (failed, retryable); a stolen one is undone (compensated).
  compensation: compensation.custom({ shouldCompensate: (e) => e?.code !== "PAYMENT_DECLINED" }),
})
  .step("reserve", { execute: (d) => d, compensate: () => {} })
  .step("charge", {
    execute: (d) => {
      if (d.card === "stolen") throw new BusinessError("CARD_STOLEN", "card reported stolen");
      if (d.card === "declined" && declined.has(String(d.orderId)))
        throw new BusinessError("PAYMENT_DECLINED", "card declined");
      return { ...d, charged: true };
    },
  });

const t = useEngine(db, () => [order], { pollInterval: 50 });

/** The SQL blocks under "Questions answered with SQL", in order. */
function questions(): string[] {
  const doc = readFileSync(new URL("../docs/sql.md", import.meta.url), "utf8");
  const from = doc.indexOf("## Questions answered with SQL");
  const to = doc.indexOf("\n## ", from);
  const section = doc.slice(from, to === -1 ? undefined : to);
  return [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const ids: Record<string, string> = {};

beforeAll(async () => {
  declined.add("1002");
  const inputs = {
    ok: { orderId: 1001, card: "ok" },
    declined: { orderId: 1002, card: "declined" },
    stolen: { orderId: 1003, card: "stolen" },
  } as const;
  for (const [key, input] of Object.entries(inputs)) {
    const { id } = await t.engine.start(order, input, {
      idempotencyKey: `order-${input.orderId}`,
      metadata: { orderId: input.orderId },
    });
    ids[key] = id;
    await t.engine.waitFor(id, { timeoutMs: 20_000 });
  }
  await db.pool.query(
    `insert into saga.definitions (name, version, fingerprint, steps) values ('refund', 1, 'f', '[{"name":"pay-back"}]')`,
  );
  ids.stuck = (await db.pool.query("select saga.start('refund', '{}') as id")).rows[0].id;
});

describe("docs/sql.md SQL questions", () => {
  it("has the nine questions", () => {
    expect(questions()).toHaveLength(9);
  });

  it("answers each question from the views", async () => {
    const [byState, failedRecently, steps, durations, timeline, operator, stuck, lookup, retryAll] =
      questions();
    const run = async (sql: string, values: unknown[] = []) => (await db.pool.query(sql, values)).rows;

    expect(await run(byState!)).toEqual([
      { name: "order", state: "compensated", sagas: "1" },
      { name: "order", state: "completed", sagas: "1" },
      { name: "order", state: "failed", sagas: "1" },
      { name: "refund", state: "running", sagas: "1" },
    ]);
    const failed = await run(failedRecently!);
    expect(failed.map((r) => [r.id, r.state, r.step, r.code])).toEqual(
      expect.arrayContaining([
        [ids.declined, "failed", "charge", "PAYMENT_DECLINED"],
        [ids.stolen, "compensated", "charge", "CARD_STOLEN"],
      ]),
    );
    expect(failed).toHaveLength(2);
    expect((await run(steps!))[0]).toMatchObject({ saga: "order", step: "charge", failed: "2" });
    expect(await run(durations!)).toEqual([
      { name: "order", finished: "1", p50_seconds: expect.any(Number), p95_seconds: expect.any(Number) },
    ]);
    const events = await run(timeline!.replace(":'saga_id'", "$1"), [ids.stolen]);
    expect(events.map((e) => e.type)).toEqual([
      "saga.started",
      "saga.step.started",
      "saga.step.completed",
      "saga.step.started",
      "saga.step.failed",
      "compensation.started",
      "compensation.step.completed",
      "compensation.completed",
    ]);
    expect((await run(operator!)).map((r) => r.id)).toEqual([ids.declined]);
    expect(await run(stuck!)).toEqual([
      expect.objectContaining({ id: ids.stuck, reason: "no_worker_for_version", step: "pay-back" }),
    ]);
    expect((await run(lookup!)).map((r) => r.id)).toEqual([ids.ok]);

    declined.clear();
    expect(await run(retryAll!)).toEqual([{ id: ids.declined, state: "running" }]);
    expect((await t.engine.waitFor(ids.declined!, { timeoutMs: 20_000 })).state).toBe("completed");
    await db.pool.query("delete from saga.instances where id = $1", [ids.stuck]);
  });
});
