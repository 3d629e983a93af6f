/** Sagas started by JetStream messages: a durable pull consumer, acknowledged after the start committed. */
import type * as Nats from "nats";
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

export interface NatsInboundOptions {
  servers: string | string[];
  connectOptions?: Record<string, unknown>;
  /** The stream to read. */
  stream: string;
  /** Durable consumer name, created (explicit acks) if absent. */
  consumer: string;
  /** Only these subjects, for a consumer this creates. */
  filterSubject?: string;
  handle: InboundHandler;
  /** Wait before a message that failed for now is delivered again. Default 1 s. */
  retryDelay?: Duration;
  logger?: Logger;
}

const CONSUMER_NOT_FOUND = 10014;

/**
 * Consumes a JetStream stream and starts (or cancels) a saga per message, the message id as idempotency key;
 * each message is acknowledged (and the acknowledgement confirmed) only after its start committed. A
 * redelivery finds the saga it already started.
 *
 * @example
 * const inbound = await natsInbound(engine, {
 *   servers: "nats://127.0.0.1:4222", stream: "ORDERS", consumer: "order-sagas",
 *   handle: (m) => ({ start: orderSaga, input: m.json() }),
 * });
 * await inbound.close();
 */
export async function natsInbound(engine: SagaEngine, options: NatsInboundOptions): Promise<InboundConsumer> {
  if (typeof options?.handle !== "function" || !options.stream || !options.consumer)
    throw new SagaError("INVALID_OPTIONS", "natsInbound: servers, stream, consumer and handle are required");
  const logger = options.logger ?? silentLogger;
  const retryMs = toMs(options.retryDelay ?? "1s", "retryDelay");
  const nats = await loadDependency<typeof Nats>("nats", "npm install nats@^2.29", "natsInbound");
  const nc = await nats.connect({
    ...options.connectOptions,
    servers: options.servers,
    name: "pg-saga inbound",
    maxReconnectAttempts: -1,
  });
  const stats = emptyInboundStats();
  let messages: Nats.ConsumerMessages;
  try {
    const jsm = await nc.jetstreamManager();
    try {
      await jsm.consumers.info(options.stream, options.consumer);
    } catch (err) {
      if ((err as { api_error?: { err_code?: number } }).api_error?.err_code !== CONSUMER_NOT_FOUND)
        throw err;
      await jsm.consumers.add(options.stream, {
        durable_name: options.consumer,
        ack_policy: nats.AckPolicy.Explicit,
        ...(options.filterSubject === undefined ? {} : { filter_subject: options.filterSubject }),
      });
    }
    const consumer = await nc.jetstream().consumers.get(options.stream, options.consumer);
    messages = await consumer.consume({ max_messages: 64 });
  } catch (err) {
    await nc.close();
    throw err;
  }

  const loop = (async () => {
    for await (const m of messages) {
      const id = m.headers?.get("Nats-Msg-Id") || `${m.info.stream}:${m.info.streamSequence}`;
      const headers: Record<string, string> = {};
      for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
      const message = inboundMessage({
        id,
        subject: m.subject,
        headers,
        body: Buffer.from(m.data),
        redelivered: m.info.redelivered,
      });
      try {
        const outcome = await applyInbound(engine, message, options.handle);
        countOutcome(stats, outcome);
        if (outcome.action === "rejected") {
          logger.warn("inbound message rejected", { id, subject: m.subject, error: String(outcome.error) });
          m.term();
        } else await m.ackAck();
      } catch (err) {
        stats.retried++;
        logger.warn("inbound message failed; it is delivered again", { id, error: String(err) });
        m.nak(retryMs);
      }
    }
  })();

  return {
    stats,
    async close() {
      messages.stop();
      await loop.catch(() => {});
      await nc.drain().catch(() => nc.close());
    },
  };
}
