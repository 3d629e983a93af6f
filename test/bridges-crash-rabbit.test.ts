/**
 * 1,000 sagas bridged to RabbitMQ while the bridge process is killed with SIGKILL five times. RabbitMQ keeps
 * the republished open batches, so the consumer deduplicates by messageId with processOnce (in Postgres, in
 * the transaction of its effect): it then sees every committed event exactly once, each saga's in seq order.
 */
import { afterAll, expect, it } from "vitest";
import { processOnce } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { RABBIT_URL, rabbitCapture, uniqueName } from "./helpers/brokers.js";
import { crashScenario } from "./fixtures/bridge-crash.js";

const db = useTestDatabase();
const exchange = uniqueName("crash.");
const captures: Awaited<ReturnType<typeof rabbitCapture>>[] = [];
afterAll(async () => {
  for (const c of captures) await c.close();
});

it("five SIGKILLs of the bridge: after dedupe by messageId every event exactly once, per-saga order intact", async () => {
  const capture = await rabbitCapture(exchange);
  captures.push(capture);
  await db.pool.query("create table effects (event_id bigint primary key)");
  let delivered = 0;
  await crashScenario(db, { KIND: "rabbitmq", BROKER_URL: RABBIT_URL, EXCHANGE: exchange }, async () => {
    const messages = await capture.drain();
    delivered = messages.length;
    const once = [];
    for (const m of messages) {
      const messageId = m.properties.messageId as string;
      const done = await processOnce(db.pool, { consumer: "crash-test", messageId }, (tx) =>
        tx.query("insert into effects (event_id) values ($1)", [Number(messageId.slice(messageId.lastIndexOf(":") + 1))]),
      );
      if (done.processed) once.push({ msgId: messageId, body: m.content });
    }
    return once;
  });
  const { rows } = await db.pool.query<{ n: number }>("select count(*)::int as n from effects");
  expect(rows[0]!.n).toBe(6_000);
  expect(delivered).toBeGreaterThanOrEqual(6_000);
}, 120_000);
