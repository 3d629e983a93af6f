/**
 * The RabbitMQ bridge: persistent messages on a durable topic exchange over a confirm channel, `messageId` =
 * `<source>:<event id>`, `mandatory` so an event no queue takes comes back (and becomes a dead letter)
 * instead of vanishing. RabbitMQ does not deduplicate: consumers drop republished messages by `messageId`
 * (see `processOnce`).
 */
import type * as Amqp from "amqplib";
import { toMs } from "../duration.js";
import type { Duration } from "../duration.js";
import { SagaError, maskConnectionString } from "../errors.js";
import type { SagaEvent } from "../relay/types.js";
import {
  type Bridge,
  type BridgeMessage,
  type BridgeOptions,
  BridgeRefusal,
  type BridgeTransport,
} from "./bridge.js";
import { loadDependency } from "./load-dependency.js";
import { checkBridgeOptions } from "./outbound.js";

/** Options of {@link rabbitBridge}. */
export interface RabbitBridgeOptions extends BridgeOptions {
  /** e.g. `"amqp://guest:guest@127.0.0.1:5672"`. */
  url: string;
  /** A durable topic exchange, declared at connect. Default `saga.events`. */
  exchange?: string;
  /**
   * Messages no queue is bound for come back and become dead letters (default true). `false`: RabbitMQ drops
   * them silently.
   */
  mandatory?: boolean;
  /** Larger messages are refused (dead letters) before publishing. Default 16 MiB (RabbitMQ 4's limit). */
  maxMessageBytes?: number;
  /** How long to wait for a publisher confirm before the batch is retried. Default 10 s. */
  confirmTimeout?: Duration;
}

/** `<saga name>.<event type>`; application events `app.<type>`. */
export function defaultRoutingKey(e: SagaEvent): string {
  return e.name === null ? `app.${e.type}` : `${e.name.replace(/\./g, "_")}.${e.type}`;
}

interface Pending {
  resolve: () => void;
  reject: (err: unknown) => void;
}

function rabbitTransport(o: RabbitBridgeOptions): BridgeTransport {
  const exchange = o.exchange ?? "saga.events";
  const mandatory = o.mandatory ?? true;
  const maxBytes = o.maxMessageBytes ?? 16 * 1024 * 1024;
  const confirmMs = toMs(o.confirmTimeout ?? "10s", "confirmTimeout");
  let amqp: typeof Amqp | null = null;
  let connection: Amqp.ChannelModel | null = null;
  let channel: Amqp.ConfirmChannel | null = null;
  // basic.return comes before the confirm of the same message: the confirm then settles it as refused.
  const returned = new Map<string, string>();
  const pending = new Set<Pending>();

  const drop = (why: unknown) => {
    const c = connection;
    connection = null;
    channel = null;
    for (const p of pending) p.reject(why);
    pending.clear();
    returned.clear();
    void c?.close().catch(() => {});
  };

  return {
    kind: "rabbitmq",
    headerPrefix: "cloudEvents:",
    get connected() {
      return channel !== null;
    },
    async connect() {
      amqp ??= await loadDependency<typeof Amqp>(
        "amqplib",
        "npm install amqplib@^2.3",
        "the RabbitMQ bridge",
      );
      drop(new Error("reconnecting"));
      const conn = await amqp.connect(o.url, { clientProperties: { connection_name: "pg-saga bridge" } });
      try {
        conn.on("error", () => {});
        conn.on("close", () => {
          if (connection === conn) drop(new Error("the RabbitMQ connection closed"));
        });
        const ch = await conn.createConfirmChannel();
        ch.on("error", () => {});
        ch.on("close", () => {
          if (channel === ch) drop(new Error("the RabbitMQ channel closed"));
        });
        ch.on("return", (msg: Amqp.Message) => {
          const id = msg.properties.messageId as string | undefined;
          const f = msg.fields as { replyCode?: number; replyText?: string };
          if (id) returned.set(id, `${f.replyCode} ${f.replyText}`);
        });
        await ch.assertExchange(exchange, "topic", { durable: true });
        connection = conn;
        channel = ch;
      } catch (err) {
        await conn.close().catch(() => {});
        throw err;
      }
    },
    async publish(m: BridgeMessage) {
      const ch = channel;
      if (!ch) throw new Error("the RabbitMQ bridge is not connected");
      if (m.body.length > maxBytes)
        throw new BridgeRefusal(
          "MESSAGE_TOO_LARGE",
          `event ${m.event.id} is ${m.body.length} bytes, above maxMessageBytes ${maxBytes}`,
        );
      const { "content-type": contentType, ...headers } = m.headers;
      await new Promise<void>((resolve, reject) => {
        const p: Pending = { resolve, reject };
        const timer = setTimeout(
          () => settle(new Error(`no publisher confirm within ${confirmMs} ms`)),
          confirmMs,
        );
        function settle(err: unknown) {
          if (!pending.delete(p)) return;
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        }
        p.resolve = () => settle(null);
        p.reject = (err) => settle(err);
        pending.add(p);
        ch.publish(
          exchange,
          m.topic,
          m.body,
          {
            persistent: true,
            mandatory,
            messageId: m.id,
            contentType: contentType ?? "application/json",
            type: m.event.type,
            timestamp: Math.floor(m.event.createdAt.getTime() / 1_000),
            appId: "pg-saga",
            headers,
          },
          (err) => {
            const why = returned.get(m.id);
            returned.delete(m.id);
            if (err) settle(err instanceof Error ? err : new Error(`RabbitMQ nacked event ${m.event.id}`));
            else if (why !== undefined)
              settle(
                new BridgeRefusal("UNROUTABLE", `no queue took event ${m.event.id} (${m.topic}): ${why}`),
              );
            else settle(null);
          },
        );
      });
      return {};
    },
    async close() {
      const c = connection;
      drop(new Error("the bridge is closing"));
      await c?.close().catch(() => {});
    },
  };
}

/**
 * A bridge from the outbox to a RabbitMQ topic exchange. Run it with `runWorker({ bridges: [...] })` or
 * `pg-saga bridge rabbitmq --url amqp://…`.
 *
 * @example
 * const worker = await engine.runWorker({ bridges: [rabbitBridge({ url: "amqp://guest:guest@127.0.0.1" })] });
 * // bind a queue to exchange saga.events with "order-processing.#" or "#.saga.completed"
 */
export function rabbitBridge(options: RabbitBridgeOptions): Bridge {
  if (typeof options?.url !== "string" || !/^amqps?:\/\//.test(options.url))
    throw new SagaError(
      "INVALID_OPTIONS",
      'rabbitBridge: url must be an amqp:// or amqps:// URL, e.g. "amqp://127.0.0.1"',
    );
  checkBridgeOptions(options);
  if (
    options.exchange !== undefined &&
    (typeof options.exchange !== "string" || options.exchange.length === 0)
  )
    throw new SagaError("INVALID_OPTIONS", "rabbitBridge: exchange must be a non-empty string");
  if (
    options.maxMessageBytes !== undefined &&
    (!Number.isInteger(options.maxMessageBytes) || options.maxMessageBytes < 1)
  )
    throw new SagaError("INVALID_OPTIONS", "rabbitBridge: maxMessageBytes must be a positive integer");
  try {
    if (options.confirmTimeout !== undefined) toMs(options.confirmTimeout, "confirmTimeout");
  } catch (err) {
    throw new SagaError("INVALID_OPTIONS", `rabbitBridge: ${maskConnectionString((err as Error).message)}`);
  }
  return {
    name: options.name ?? "bridge.rabbitmq",
    transport: rabbitTransport(options),
    options: { ...options, topic: options.topic ?? defaultRoutingKey },
  };
}
