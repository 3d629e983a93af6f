/**
 * 1,000 sagas bridged to RabbitMQ while the bridge process is killed with SIGKILL five times. RabbitMQ keeps
 * the republished open batches, so the consumer deduplicates by messageId with processOnce (in Postgres, in
 * the transaction of its effect): it then sees every committed event exactly once, each saga's in seq order.
 */
import pg from "pg";
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
    // Each saga's messages in arrival order, sagas side by side, as a consumer with several workers would.
    const chains = new Map<string, typeof messages>();
    for (const m of messages) {
      const key = (JSON.parse(m.content.toString()) as { sagaId: string }).sagaId;
      chains.set(key, [...(chains.get(key) ?? []), m]);
    }
    const once: { msgId: string; body: Buffer }[] = [];
    const queue = [...chains.values()];
    const lane = async () => {
      for (let chain = queue.pop(); chain; chain = queue.pop()) {
        for (const m of chain) {
          const messageId = m.properties.messageId as string;
          const done = await processOnce(pool, { consumer: "crash-test", messageId }, (tx) =>
            tx.query("insert into effects (event_id) values ($1)", [
              Number(messageId.slice(messageId.lastIndexOf(":") + 1)),
            ]),
          );
          if (done.processed) once.push({ msgId: messageId, body: m.content });
        }
      }
    };
    const pool = new pg.Pool({ connectionString: db.url, max: 8 });
    try {
      await Promise.all(Array.from({ length: 8 }, lane));
    } finally {
      await pool.end();
    }
    return once;
  });
  const { rows } = await db.pool.query<{ n: number }>("select count(*)::int as n from effects");
  expect(rows[0]!.n).toBe(4_000);
  expect(delivered).toBeGreaterThanOrEqual(4_000);
}, 120_000);
