/** Sagas started by RabbitMQ messages: acknowledged after the start committed; reconnects on its own. */
import type * as Amqp from "amqplib";
import { type Duration, toMs } from "../duration.js";
import type { SagaEngine } from "../engine.js";
import { SagaError } from "../errors.js";
import { type Logger, silentLogger } from "../logger.js";
import {
  type InboundConsumer,
  type InboundHandler,
  applyInbound,
  countOutcome,
  emptyInboundStats,
  inboundMessage,
} from "./inbound.js";
import { loadDependency } from "./load-dependency.js";

export interface RabbitInboundOptions {
  url: string;
  /** The queue to consume; it must exist (declare and bind it as your topology needs). */
  queue: string;
  /** Messages handled at once. Default 10. */
  prefetch?: number;
  handle: InboundHandler;
  /** Wait before a message that failed for now goes back to the queue. Default 1 s. */
  retryDelay?: Duration;
  logger?: Logger;
}

/**
 * Consumes a queue and starts (or cancels) a saga per message, its `messageId` as idempotency key, and acks
 * the message only after the start committed. A message without `messageId` is rejected: nothing could tell
 * its redelivery from a new message.
 *
 * @example
 * const inbound = await rabbitInbound(engine, {
 *   url: "amqp://127.0.0.1", queue: "order-requests",
 *   handle: (m) => ({ start: orderSaga, input: m.json() }),
 * });
 */
export async function rabbitInbound(
  engine: SagaEngine,
  options: RabbitInboundOptions,
): Promise<InboundConsumer> {
  if (typeof options?.handle !== "function" || !options.queue || !options.url)
    throw new SagaError("INVALID_OPTIONS", "rabbitInbound: url, queue and handle are required");
  const logger = options.logger ?? silentLogger;
  const retryMs = toMs(options.retryDelay ?? "1s", "retryDelay");
  const amqp = await loadDependency<typeof Amqp>("amqplib", "npm install amqplib@^2.3", "rabbitInbound");
  const stats = emptyInboundStats();
  const inFlight = new Set<Promise<void>>();
  let closed = false;
  let connection: Amqp.ChannelModel | null = null;
  let wakeClosed: () => void = () => {};

  async function handle(ch: Amqp.Channel, msg: Amqp.ConsumeMessage): Promise<void> {
    const id = msg.properties.messageId as string | undefined;
    if (!id) {
      stats.rejected++;
      logger.warn("inbound message without messageId rejected", { routingKey: msg.fields.routingKey });
      ch.nack(msg, false, false);
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(msg.properties.headers ?? {})) headers[k] = String(v);
    const message = inboundMessage({
      id,
      subject: msg.fields.routingKey,
      headers,
      body: msg.content,
      redelivered: msg.fields.redelivered,
    });
    try {
      const outcome = await applyInbound(engine, message, options.handle);
      countOutcome(stats, outcome);
      if (outcome.action === "rejected") {
        logger.warn("inbound message rejected", { id, error: String(outcome.error) });
        ch.nack(msg, false, false);
      } else ch.ack(msg);
    } catch (err) {
      stats.retried++;
      logger.warn("inbound message failed; it goes back to the queue", { id, error: String(err) });
      await new Promise((r) => setTimeout(r, retryMs));
      ch.nack(msg, false, true);
    }
  }

  async function open(): Promise<void> {
    const conn = await amqp.connect(options.url, {
      clientProperties: { connection_name: "pg-saga inbound" },
    });
    conn.on("error", () => {});
    const ch = await conn.createChannel();
    ch.on("error", () => {});
    await ch.prefetch(options.prefetch ?? 10);
    await ch.consume(options.queue, (msg) => {
      if (!msg) return;
      const p = handle(ch, msg).catch((err: unknown) =>
        logger.warn("inbound message left unacknowledged", { error: String(err) }),
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    });
    connection = conn;
    conn.on("close", () => {
      connection = null;
      wakeClosed();
    });
  }

  await open();
  // Reconnects with backoff while not closed; unacknowledged messages went back to the queue with the old one.
  const supervisor = (async () => {
    let delay = 250;
    while (!closed) {
      if (connection) {
        await new Promise<void>((r) => (wakeClosed = r));
        continue;
      }
      try {
        await open();
        delay = 250;
      } catch (err) {
        logger.warn("inbound consumer cannot reach RabbitMQ; will try again", { error: String(err) });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5_000);
      }
    }
  })();

  return {
    stats,
    async close() {
      closed = true;
      const conn = connection;
      await Promise.all(inFlight);
      connection = null;
      wakeClosed();
      await conn?.close().catch(() => {});
      await supervisor;
    },
  };
}
