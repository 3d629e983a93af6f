/**
 * The NATS JetStream bridge against the real server: subjects, message ids, the JSON and CloudEvents
 * envelopes, a broker unreachable for 10 s, two databases feeding one stream, and an event the stream
 * refuses for good.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type CloudEvent, HTTP } from "cloudevents";
import type { NatsConnection } from "nats";
import pg from "pg";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { type SagaEngine, type SagaWorker, createSagaEngine, natsBridge } from "../src/index.js";
import { createDatabase, dropDatabase, useTestDatabase } from "./helpers/database.js";
import {
  NATS_URL,
  deleteStream,
  natsConnection,
  readStream,
  tcpProxy,
  uniqueName,
} from "./helpers/brokers.js";
import { eventIdOf, firstOrderViolation, outboxEvents, relaySaga } from "./fixtures/bridge-sagas.js";
import { sleep, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
let nc: NatsConnection;
const streams: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  nc = await natsConnection();
});
// Each test closes its engines, workers and databases when it ends: the Postgres server is shared.
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});
afterAll(async () => {
  for (const s of streams) await deleteStream(nc, s);
  await nc.close();
});

/** A stream and subject prefix of the test's own. */
function names() {
  const stream = uniqueName("T");
  streams.push(stream);
  return { stream, subjectPrefix: stream.toLowerCase() };
}

async function runWith(
  url: string,
  bridges: Parameters<SagaEngine["runWorker"]>[0],
): Promise<{ engine: SagaEngine; worker: SagaWorker }> {
  const engine = createSagaEngine({ connectionString: url, sagas: [relaySaga], poolSize: 4 });
  const worker = await engine.runWorker({ concurrency: 4, pollInterval: 100, ...bridges });
  const stop = async () => {
    await worker.stop();
    await engine.close();
  };
  cleanups.push(stop);
  return { engine, worker };
}

it("publishes every event once to saga.<name>.<type> / app.<type>, Nats-Msg-Id <source>:<id>, in saga order", async () => {
  const { stream, subjectPrefix } = names();
  const { engine, worker } = await runWith(db.url, {
    bridges: [natsBridge({ name: "nats-basic", servers: NATS_URL, stream, subjectPrefix })],
    metrics: {},
  });
  const ids = await Promise.all(Array.from({ length: 20 }, (_, n) => engine.start(relaySaga, { n })));
  await engine.publish([{ type: "order.placed", payload: { total: 3 }, key: "o-1" }]);
  await Promise.all(ids.map(({ id }) => engine.waitFor(id, { timeoutMs: 30_000 })));
  const expected = await outboxEvents(db.pool);
  await waitUntil(
    "the stream holds every event",
    async () => (await readStream(nc, stream)).length >= expected.length,
  );
  const messages = await readStream(nc, stream);
  expect(messages).toHaveLength(expected.length);
  const { rows } = await db.pool.query<{ id: string; db: string }>(
    "select system_identifier::text as id, current_database() as db from pg_control_system()",
  );
  const source = `urn:pg-saga:${rows[0]!.id}:${rows[0]!.db}`;
  const byId = new Map(expected.map((e) => [e.id, e]));
  for (const m of messages) {
    expect(m.msgId.startsWith(`${source}:`)).toBe(true);
    const event = byId.get(eventIdOf(m.msgId))!;
    const body = JSON.parse(m.body.toString()) as {
      id: number;
      type: string;
      sagaId: string | null;
      seq: number | null;
    };
    expect(body).toMatchObject({ id: event.id, type: event.type, sagaId: event.saga_id, seq: event.seq });
    expect(m.subject).toBe(
      event.name === null
        ? `${subjectPrefix}.app.${event.type}`
        : `${subjectPrefix}.saga.bridge-order.${event.type}`,
    );
  }
  expect(new Set(messages.map((m) => m.msgId)).size).toBe(expected.length);
  const received = messages.map(
    (m) => JSON.parse(m.body.toString()) as { sagaId: string | null; seq: number | null },
  );
  expect(firstOrderViolation(received)).toBeNull();
  const metrics = await worker.metrics!.registry.metrics();
  expect(metrics).toMatch(
    new RegExp(`pg_saga_bridge_acked_total\\{bridge="nats-basic"\\} ${expected.length}`),
  );
  expect(metrics).toMatch(/pg_saga_bridge_connected\{bridge="nats-basic"\} 1/);
});

it("CloudEvents, structured and binary, parse with the cloudevents SDK", async () => {
  const url = await createDatabase();
  cleanups.push(() => dropDatabase(url.name));
  const { stream, subjectPrefix } = names();
  const bridge = (envelope: "cloudevents-structured" | "cloudevents-binary", prefix: string) =>
    natsBridge({
      name: envelope,
      servers: NATS_URL,
      stream,
      subjectPrefix: prefix,
      envelope,
      source: `/orders-db/${envelope}`,
      subjects: [`${subjectPrefix}.>`],
    });
  const { engine } = await runWith(url.url, {
    bridges: [
      bridge("cloudevents-structured", `${subjectPrefix}.s`),
      bridge("cloudevents-binary", `${subjectPrefix}.b`),
    ],
  });
  const { id } = await engine.start(relaySaga, { n: 7 });
  await engine.waitFor(id, { timeoutMs: 30_000 });
  await waitUntil(
    "both envelopes of all four events",
    async () => (await readStream(nc, stream)).length >= 8,
  );
  const messages = await readStream(nc, stream);
  const pool = new pg.Pool({ connectionString: url.url, max: 1 });
  cleanups.push(() => pool.end());
  for (const m of messages) {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(m.headers)) headers[k.toLowerCase()] = v;
    const event = HTTP.toEvent({ headers, body: m.body.toString() });
    const ce = (Array.isArray(event) ? event[0] : event) as CloudEvent<unknown>;
    expect(ce.validate()).toBe(true);
    expect(ce.specversion).toBe("1.0");
    expect(ce.source).toMatch(/^\/orders-db\/cloudevents-(structured|binary)$/);
    expect(ce.subject).toBe(id);
    expect(String(ce.id)).toBe(String(eventIdOf(m.msgId)));
    expect(ce.type).toMatch(/^(saga|compensation)\./);
    expect(ce.saganame).toBe("bridge-order");
    const { rows } = await pool.query<{ payload: unknown }>("select payload from saga.outbox where id = $1", [
      eventIdOf(m.msgId),
    ]);
    expect(ce.data).toEqual(rows[0]!.payload);
  }
  expect(messages.filter((m) => m.subject.startsWith(`${subjectPrefix}.b.`))).toHaveLength(4);
});

it("broker unreachable for 10 s: lag shows it, the backlog goes out after, nothing lost or doubled", async () => {
  const url = await createDatabase();
  cleanups.push(() => dropDatabase(url.name));
  const proxy = await tcpProxy(4222);
  cleanups.push(() => proxy.close());
  const { stream, subjectPrefix } = names();
  const { engine, worker } = await runWith(url.url, {
    bridges: [
      natsBridge({
        name: "nats-outage",
        servers: `nats://127.0.0.1:${proxy.port}`,
        stream,
        subjectPrefix,
        ackTimeout: 1_000,
      }),
    ],
    metrics: {},
  });
  await engine.publish({ type: "before" });
  await waitUntil("the first event is out", async () => (await readStream(nc, stream)).length === 1);

  await proxy.stop();
  const started = Date.now();
  const during = await Promise.all(Array.from({ length: 50 }, (_, n) => engine.start(relaySaga, { n })));
  await Promise.all(during.map(({ id }) => engine.waitFor(id, { timeoutMs: 30_000 })));
  await sleep(Math.max(0, 10_000 - (Date.now() - started)));
  const health = await engine.health();
  const lag = health.relay!.subscriptions.find((s) => s.name === "nats-outage")!;
  expect(lag.pendingEvents).toBe(200);
  expect(lag.lagMs).toBeGreaterThan(5_000);
  expect((await readStream(nc, stream)).length).toBe(1);
  expect(await worker.metrics!.registry.metrics()).toMatch(
    /pg_saga_bridge_failures_total\{bridge="nats-outage"\} [1-9]/,
  );

  await proxy.start();
  await waitUntil("the backlog is out", async () => (await readStream(nc, stream)).length >= 201, 30_000);
  await sleep(500);
  const messages = await readStream(nc, stream);
  expect(messages).toHaveLength(201);
  expect(new Set(messages.map((m) => m.msgId)).size).toBe(201);
  expect(
    firstOrderViolation(
      messages.map((m) => JSON.parse(m.body.toString()) as { sagaId: string; seq: number }),
    ),
  ).toBeNull();
  await waitUntil(
    "the cursor caught up",
    async () => (await engine.subscriptionMetrics("nats-outage"))?.lagMs === 0,
  );
});

it("two databases into one stream: ids 1.. of both arrive, neither is taken for the other's duplicate", async () => {
  const other = await createDatabase();
  cleanups.push(() => dropDatabase(other.name));
  const { stream, subjectPrefix } = names();
  const bridge = () =>
    natsBridge({
      name: "nats-shared",
      servers: NATS_URL,
      stream,
      subjectPrefix,
      filter: { types: ["shared.event"] },
    });
  const a = await runWith(db.url, { bridges: [bridge()] });
  const b = await runWith(other.url, { bridges: [bridge()] });
  const events = Array.from({ length: 100 }, (_, n) => ({ type: "shared.event", payload: { n } }));
  const [idsA, idsB] = await Promise.all([a.engine.publish(events), b.engine.publish(events)]);
  // Both outboxes hand out the same ids: only the source tells their messages apart.
  expect(idsB.ids.filter((id) => idsA.ids.includes(id)).length).toBeGreaterThan(0);
  await waitUntil("both databases' events", async () => (await readStream(nc, stream)).length >= 200);
  await waitUntil(
    "both bridges caught up",
    async () =>
      (await a.engine.subscriptionMetrics("nats-shared"))?.lagMs === 0 &&
      (await b.engine.subscriptionMetrics("nats-shared"))?.lagMs === 0,
  );
  const shared = await readStream(nc, stream);
  expect(shared).toHaveLength(200);
  const sources = new Set(shared.map((m) => m.msgId.slice(0, m.msgId.lastIndexOf(":"))));
  expect(sources.size).toBe(2);
});

it("an event the stream refuses for good becomes a dead letter; the ones after it go on", async () => {
  const other = await createDatabase();
  cleanups.push(() => dropDatabase(other.name));
  const { stream, subjectPrefix } = names();
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${subjectPrefix}.>`], max_msg_size: 1_024 });
  const { engine } = await runWith(other.url, {
    bridges: [natsBridge({ name: "nats-small", servers: NATS_URL, stream, subjectPrefix })],
  });
  const { ids } = await engine.publish([
    { type: "small", payload: { n: 1 } },
    { type: "big", payload: { blob: "x".repeat(4_000) } },
    { type: "small", payload: { n: 2 } },
  ]);
  await waitUntil("the dead letter", async () => (await engine.deadLetters("nats-small")).length === 1);
  await waitUntil("caught up", async () => (await engine.subscriptionMetrics("nats-small"))?.lagMs === 0);
  const letters = await engine.deadLetters("nats-small");
  expect(letters[0]!.eventId).toBe(ids[1]);
  expect(letters[0]!.error.code).toBe("MESSAGE_TOO_LARGE");
  const messages = await readStream(nc, stream);
  expect(messages.map((m) => eventIdOf(m.msgId))).toEqual([ids[0], ids[2]]);
});

it("pg-saga bridge nats: publishes with --types, serves /metrics, stops on SIGTERM", async () => {
  const other = await createDatabase();
  cleanups.push(() => dropDatabase(other.name));
  const { stream, subjectPrefix } = names();
  const bin = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));
  const child = spawn(
    process.execPath,
    [
      bin,
      "bridge",
      "nats",
      "--url",
      NATS_URL,
      "--stream",
      stream,
      "--subject-prefix",
      subjectPrefix,
      "--types",
      "wanted",
      "--metrics-port",
      "0",
      "--json",
    ],
    {
      env: { ...process.env, DATABASE_URL: other.url, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  await waitUntil("ready", () => out.includes('"event":"ready"'), 30_000);
  const ready = JSON.parse(out.split("\n")[0]!) as { bridge: string; metricsUrl: string };
  expect(ready.bridge).toBe("bridge.nats");
  const engine = createSagaEngine({ connectionString: other.url, sagas: [], poolSize: 2 });
  cleanups.push(() => engine.close());
  // No worker (and so no relay notifications) here: the bridge finds the events by polling.
  const { ids } = await engine.publish([{ type: "wanted" }, { type: "unwanted" }, { type: "wanted" }]);
  await waitUntil("both wanted events", async () => (await readStream(nc, stream)).length >= 2, 30_000);
  await waitUntil("caught up", async () => (await engine.subscriptionMetrics("bridge.nats"))?.lagMs === 0);
  expect((await readStream(nc, stream)).map((m) => eventIdOf(m.msgId))).toEqual([ids[0], ids[2]]);
  const metrics = await fetch(`${ready.metricsUrl}/metrics`).then((r) => r.text());
  expect(metrics).toMatch(/pg_saga_bridge_acked_total\{bridge="bridge.nats"\} 2/);
  child.kill("SIGTERM");
  expect(await exited).toBe(0);
});
