/**
 * The RabbitMQ bridge against the real broker: routing keys, message ids and properties, CloudEvents binary
 * mode, an event no queue takes (returned: a dead letter), and the broker unreachable for 10 s.
 */
import { type CloudEvent, HTTP } from "cloudevents";
import { afterEach, expect, it } from "vitest";
import { type SagaEngine, type SagaWorker, createSagaEngine, rabbitBridge } from "../src/index.js";
import { createDatabase, dropDatabase, useTestDatabase } from "./helpers/database.js";
import { RABBIT_URL, rabbitCapture, tcpProxy, uniqueName } from "./helpers/brokers.js";
import { eventIdOf, firstOrderViolation, outboxEvents, relaySaga } from "./fixtures/bridge-sagas.js";
import { sleep, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
const cleanups: (() => Promise<void>)[] = [];
// Each test closes its engines, workers and databases when it ends: the Postgres server is shared.
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

async function runWith(
  url: string,
  options: Parameters<SagaEngine["runWorker"]>[0],
): Promise<{ engine: SagaEngine; worker: SagaWorker }> {
  const engine = createSagaEngine({ connectionString: url, sagas: [relaySaga], poolSize: 4 });
  const worker = await engine.runWorker({ concurrency: 4, pollInterval: 100, ...options });
  cleanups.push(async () => {
    await worker.stop();
    await engine.close();
  });
  return { engine, worker };
}

async function capture() {
  const c = await rabbitCapture(uniqueName("test."));
  cleanups.push(() => c.close());
  return c;
}

it("publishes every event, persistent, routing key <saga name>.<type>, messageId <source>:<id>, in saga order", async () => {
  const c = await capture();
  const { engine, worker } = await runWith(db.url, {
    bridges: [rabbitBridge({ name: "rabbit-basic", url: RABBIT_URL, exchange: c.exchange })],
    metrics: {},
  });
  const ids = await Promise.all(Array.from({ length: 20 }, (_, n) => engine.start(relaySaga, { n })));
  await engine.publish({ type: "order.placed", payload: { total: 3 } });
  await Promise.all(ids.map(({ id }) => engine.waitFor(id, { timeoutMs: 30_000 })));
  const expected = await outboxEvents(db.pool);
  await waitUntil("caught up", async () => (await engine.subscriptionMetrics("rabbit-basic"))?.lagMs === 0);
  const messages = await c.drain();
  expect(messages).toHaveLength(expected.length);
  const byId = new Map(expected.map((e) => [e.id, e]));
  for (const m of messages) {
    const event = byId.get(eventIdOf(m.properties.messageId as string))!;
    expect(m.properties.deliveryMode).toBe(2);
    expect(m.properties.contentType).toBe("application/json");
    expect(m.properties.type).toBe(event.type);
    expect(m.fields.routingKey).toBe(
      event.name === null ? `app.${event.type}` : `bridge-order.${event.type}`,
    );
  }
  expect(
    firstOrderViolation(
      messages.map((m) => JSON.parse(m.content.toString()) as { sagaId: string; seq: number }),
    ),
  ).toBeNull();
  expect(await worker.metrics!.registry.metrics()).toMatch(
    new RegExp(`pg_saga_bridge_acked_total\\{bridge="rabbit-basic"\\} ${expected.length}`),
  );
});

it("CloudEvents binary mode: cloudEvents: headers that the SDK parses", async () => {
  const other = await createDatabase();
  cleanups.push(() => dropDatabase(other.name));
  const c = await capture();
  const { engine } = await runWith(other.url, {
    bridges: [
      rabbitBridge({
        name: "rabbit-ce",
        url: RABBIT_URL,
        exchange: c.exchange,
        envelope: "cloudevents-binary",
        source: "/billing",
      }),
    ],
  });
  const { ids } = await engine.publish({ type: "invoice.sent", payload: { amount: 12 }, key: "inv-1" });
  await waitUntil("caught up", async () => (await engine.subscriptionMetrics("rabbit-ce"))?.lagMs === 0);
  const [m] = await c.drain();
  const headers: Record<string, string> = { "content-type": m!.properties.contentType as string };
  for (const [k, v] of Object.entries(m!.properties.headers ?? {}))
    if (k.startsWith("cloudEvents:")) headers[`ce-${k.slice("cloudEvents:".length)}`] = String(v);
  const event = HTTP.toEvent({ headers, body: m!.content.toString() });
  const ce = (Array.isArray(event) ? event[0] : event) as CloudEvent<unknown>;
  expect(ce.validate()).toBe(true);
  expect(ce).toMatchObject({
    id: String(ids[0]),
    source: "/billing",
    type: "invoice.sent",
    eventkey: "inv-1",
  });
  expect(ce.data).toEqual({ amount: 12 });
});

it("an event no queue is bound for comes back and becomes a dead letter; the others go on", async () => {
  const other = await createDatabase();
  cleanups.push(() => dropDatabase(other.name));
  const c = await capture();
  await c.ch.unbindQueue(c.queue, c.exchange, "#");
  await c.ch.bindQueue(c.queue, c.exchange, "app.routed");
  const { engine } = await runWith(other.url, {
    bridges: [rabbitBridge({ name: "rabbit-route", url: RABBIT_URL, exchange: c.exchange })],
  });
  const { ids } = await engine.publish([{ type: "routed" }, { type: "nowhere" }, { type: "routed" }]);
  await waitUntil("caught up", async () => (await engine.subscriptionMetrics("rabbit-route"))?.lagMs === 0);
  const letters = await engine.deadLetters("rabbit-route");
  expect(letters.map((l) => [l.eventId, l.error.code])).toEqual([[ids[1], "UNROUTABLE"]]);
  expect((await c.drain()).map((m) => eventIdOf(m.properties.messageId as string))).toEqual([ids[0], ids[2]]);
});

it("broker unreachable for 10 s: the backlog goes out after, nothing lost", async () => {
  const other = await createDatabase();
  cleanups.push(() => dropDatabase(other.name));
  const c = await capture();
  const proxy = await tcpProxy(5672);
  cleanups.push(() => proxy.close());
  const { engine } = await runWith(other.url, {
    bridges: [
      rabbitBridge({
        name: "rabbit-outage",
        url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
        exchange: c.exchange,
      }),
    ],
  });
  await engine.publish({ type: "before" });
  await waitUntil(
    "the first event is out",
    async () => (await engine.subscriptionMetrics("rabbit-outage"))?.lagMs === 0,
  );
  await proxy.stop();
  const started = Date.now();
  const during = await Promise.all(Array.from({ length: 50 }, (_, n) => engine.start(relaySaga, { n })));
  await Promise.all(during.map(({ id }) => engine.waitFor(id, { timeoutMs: 30_000 })));
  await sleep(Math.max(0, 10_000 - (Date.now() - started)));
  const lag = (await engine.health()).relay!.subscriptions.find((s) => s.name === "rabbit-outage")!;
  expect(lag.pendingEvents).toBe(200);
  await proxy.start();
  await waitUntil(
    "caught up",
    async () => (await engine.subscriptionMetrics("rabbit-outage"))?.lagMs === 0,
    30_000,
  );
  const messages = await c.drain();
  const ids = new Set(messages.map((m) => eventIdOf(m.properties.messageId as string)));
  expect(ids.size).toBe(201);
});
