/**
 * Sagas started by broker messages: the message id is the idempotency key and the message is acknowledged
 * only after the start committed, so the same message delivered three times starts one saga.
 */
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import { headers as natsHeaders, type NatsConnection } from "nats";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  RetryableError,
  type SagaEngine,
  createSagaEngine,
  natsInbound,
  processOnce,
  rabbitInbound,
} from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { NATS_URL, RABBIT_URL, deleteStream, natsConnection, uniqueName } from "./helpers/brokers.js";
import { relaySaga } from "./fixtures/bridge-sagas.js";
import { sleep, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
let engine: SagaEngine;
let nc: NatsConnection;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [relaySaga] });
  nc = await natsConnection();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await nc.close();
  await engine.close();
});

const sagasWithKey = async (key: string) =>
  (await db.pool.query<{ id: string }>("select id from saga.instances where idempotency_key = $1", [key]))
    .rows;

it("RabbitMQ: the same message delivered 3 times starts one saga; each delivery is acked", async () => {
  const queue = uniqueName("inbound.");
  const conn = await amqp.connect(RABBIT_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: false, autoDelete: false });
  cleanups.push(async () => {
    await ch.deleteQueue(queue).catch(() => {});
    await conn.close();
  });
  const inbound = await rabbitInbound(engine, {
    url: RABBIT_URL,
    queue,
    handle: (m) => ({ start: relaySaga, input: m.json() }),
  });
  cleanups.push(() => inbound.close());
  const messageId = `order-${randomUUID()}`;
  for (let i = 0; i < 3; i++)
    ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: 1 })), { messageId, persistent: true });
  ch.sendToQueue(queue, Buffer.from("not json"), { messageId: `bad-${randomUUID()}` });
  await waitUntil(
    "all four handled",
    () => inbound.stats.started + inbound.stats.duplicates + inbound.stats.rejected === 4,
  );
  expect(inbound.stats).toMatchObject({ started: 1, duplicates: 2, rejected: 1 });
  expect(await sagasWithKey(messageId)).toHaveLength(1);
  const { messageCount } = await ch.checkQueue(queue);
  expect(messageCount).toBe(0);
});

it("NATS: three deliveries of one message id (a failure, then two redeliveries) start one saga", async () => {
  const stream = uniqueName("IN");
  const subject = `${stream.toLowerCase()}.orders`;
  const jsm = await nc.jetstreamManager();
  // A short duplicate window: the test publishes one message id three times, as a producer that retried would.
  await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: 100e6 });
  cleanups.push(() => deleteStream(nc, stream));
  let calls = 0;
  const inbound = await natsInbound(engine, {
    servers: NATS_URL,
    stream,
    consumer: "sagas",
    retryDelay: 50,
    handle: (m) => {
      // The first delivery fails for now: it is delivered again, not acknowledged.
      if (++calls === 1) throw new RetryableError(new Error("not yet"));
      return { start: relaySaga, input: m.json() };
    },
  });
  cleanups.push(() => inbound.close());
  const js = nc.jetstream();
  const id = `order-${randomUUID()}`;
  for (let i = 0; i < 3; i++) {
    const h = natsHeaders();
    h.set("Nats-Msg-Id", id);
    const ack = await js.publish(subject, JSON.stringify({ n: 2 }), { headers: h });
    expect(ack.duplicate).toBe(false);
    await sleep(250);
  }
  await waitUntil("three messages handled", () => inbound.stats.started + inbound.stats.duplicates === 3);
  expect(inbound.stats).toMatchObject({ started: 1, duplicates: 2, retried: 1 });
  expect(await sagasWithKey(id)).toHaveLength(1);
  const info = await jsm.consumers.info(stream, "sagas");
  expect(info.num_ack_pending + info.num_pending).toBe(0);
});

it("processOnce runs an effect once per message id, also for concurrent deliveries", async () => {
  await db.pool.query("create table once_effects (id serial primary key, message_id text)");
  const run = (messageId: string) =>
    processOnce(db.pool, { consumer: "c", messageId }, (tx) =>
      tx.query("insert into once_effects (message_id) values ($1)", [messageId]),
    );
  const results = await Promise.all([run("m1"), run("m1"), run("m1"), run("m2")]);
  expect(results.filter((r) => r.processed)).toHaveLength(2);
  const { rows } = await db.pool.query("select message_id from once_effects order by message_id");
  expect(rows).toEqual([{ message_id: "m1" }, { message_id: "m2" }]);
  // An effect that throws records nothing: the redelivery runs it.
  await expect(
    processOnce(db.pool, { consumer: "c", messageId: "m3" }, async () => {
      throw new Error("boom");
    }),
  ).rejects.toThrow("boom");
  expect((await run("m3")).processed).toBe(true);
});
