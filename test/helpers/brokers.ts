/**
 * The brokers every machine here runs (NATS JetStream on 4222, RabbitMQ on 5672), with names unique to a
 * test so parallel runs never share a stream, exchange or queue, and a TCP proxy a test stops and starts to
 * make a broker unreachable.
 */
import { randomBytes } from "node:crypto";
import { type Server, type Socket, createServer } from "node:net";
import amqp from "amqplib";
import { AckPolicy, DeliverPolicy, type JsMsg, type NatsConnection, connect } from "nats";

export const NATS_URL = "nats://127.0.0.1:4222";
export const RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672";

/** A name no other test run uses: letters and digits, safe for subjects, streams and exchanges. */
export const uniqueName = (prefix: string) =>
  `${prefix}${Date.now().toString(36)}${randomBytes(4).toString("hex")}`;

export interface StreamMessage {
  subject: string;
  msgId: string;
  headers: Record<string, string>;
  body: Buffer;
  seq: number;
}

export async function natsConnection(): Promise<NatsConnection> {
  return connect({ servers: NATS_URL, name: "pg-saga test" });
}

/** Every message of a stream, in stream order. */
export async function readStream(nc: NatsConnection, stream: string): Promise<StreamMessage[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(stream).catch((err: { api_error?: { err_code?: number } }) => {
    if (err.api_error?.err_code === 10059) return null; // not created yet
    throw err;
  });
  if (info === null) return [];
  const total = info.state.messages;
  if (total === 0) return [];
  const name = uniqueName("reader");
  await jsm.consumers.add(stream, {
    name,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    inactive_threshold: 60e9,
  });
  const consumer = await nc.jetstream().consumers.get(stream, name);
  const out: StreamMessage[] = [];
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
    let got = 0;
    for await (const m of batch as AsyncIterable<JsMsg>) {
      got++;
      const headers: Record<string, string> = {};
      for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
      out.push({
        subject: m.subject,
        msgId: headers["Nats-Msg-Id"] ?? "",
        headers,
        body: Buffer.from(m.data),
        seq: m.seq,
      });
    }
    if (got === 0) break;
  }
  await jsm.consumers.delete(stream, name).catch(() => {});
  return out;
}

export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.delete(stream).catch(() => {});
}

/** A RabbitMQ topic exchange with one queue bound to everything, both unique to the test. */
export async function rabbitCapture(exchange: string) {
  const conn = await amqp.connect(RABBIT_URL);
  const ch = await conn.createChannel();
  await ch.assertExchange(exchange, "topic", { durable: true });
  const queue = `${exchange}.all`;
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, exchange, "#");
  return {
    conn,
    ch,
    exchange,
    queue,
    /** Takes every message now in the queue (acknowledged). */
    async drain(): Promise<amqp.GetMessage[]> {
      const out: amqp.GetMessage[] = [];
      for (;;) {
        const m = await ch.get(queue, { noAck: true });
        if (m === false) return out;
        out.push(m);
      }
    },
    async close() {
      await ch.deleteQueue(queue).catch(() => {});
      await ch.deleteExchange(exchange).catch(() => {});
      await conn.close().catch(() => {});
    },
  };
}

/** A TCP proxy to a broker: `stop()` closes every connection and refuses new ones until `start()`. */
export async function tcpProxy(
  targetPort: number,
): Promise<{ port: number; stop(): Promise<void>; start(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = connectTo(targetPort);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on("error", end).on("close", end);
        upstream.on("error", end).on("close", end);
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        port = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  const stop = async () => {
    const s = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  };
  await listen();
  return { port, stop, start: listen, close: stop };
}

import { connect as netConnect } from "node:net";
const connectTo = (port: number) => netConnect({ host: "127.0.0.1", port });
