/**
 * 1,000 sagas bridged to JetStream while the bridge process is killed with SIGKILL five times: the stream
 * holds every committed event exactly once (its duplicate window drops the republished open batches), each
 * saga's events in seq order.
 */
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, expect, it } from "vitest";
import { useTestDatabase } from "./helpers/database.js";
import { NATS_URL, deleteStream, natsConnection, readStream, uniqueName } from "./helpers/brokers.js";
import { crashScenario } from "./fixtures/bridge-crash.js";

const db = useTestDatabase();
const stream = uniqueName("CRASH");
let nc: NatsConnection;

beforeAll(async () => {
  nc = await natsConnection();
});
afterAll(async () => {
  await deleteStream(nc, stream);
  await nc.close();
});

it("five SIGKILLs of the bridge: every event exactly once in the stream, per-saga order intact", async () => {
  const { kills } = await crashScenario(
    db,
    { KIND: "nats", BROKER_URL: NATS_URL, STREAM: stream, PREFIX: stream.toLowerCase() },
    async () => (await readStream(nc, stream)).map((m) => ({ msgId: m.msgId, body: m.body })),
  );
  expect(kills).toBe(5);
  const info = await (await nc.jetstreamManager()).streams.info(stream);
  expect(info.state.messages).toBe(4_000);
}, 120_000);
