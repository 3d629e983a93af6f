/**
 * The shape every bridge shares. A bridge is a durable subscription whose consumer is a broker: the runner
 * (outbound.ts) reads the outbox, turns events into {@link BridgeMessage}s, keeps each saga's events in order,
 * and moves the cursor only once the broker acknowledged the batch. A transport only connects and publishes;
 * a Kafka bridge would be one file implementing {@link BridgeTransport}.
 */
import type { Duration } from "../duration.js";
import type { Logger } from "../logger.js";
import type { EventFilter, SagaEvent } from "../relay/types.js";

/** One outbox event as a broker message. */
export interface BridgeMessage {
  /** `<source>:<event id>`: the key the broker (JetStream) or the consumer (RabbitMQ) deduplicates by. */
  readonly id: string;
  /** Subject (NATS), routing key (RabbitMQ), topic (Kafka). */
  readonly topic: string;
  /** Envelope headers (content type, CloudEvents binary attributes); the transport adds its id header. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly event: SagaEvent;
}

/**
 * Thrown by a transport for a message the broker will never take (too large, no route): it becomes a dead
 * letter of the bridge's subscription instead of blocking the ones after it. Anything else a transport throws
 * means "not now": the whole batch is published again after a backoff.
 */
export class BridgeRefusal extends Error {
  override readonly name = "BridgeRefusal";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What a broker client implements. The runner calls `connect()` before a batch while `connected` is false,
 * never publishes two messages of one saga at once, and awaits every `publish` before moving its cursor.
 *
 * @example
 * const kafka: BridgeTransport = {
 *   kind: "kafka",
 *   get connected() { return producer !== null; },
 *   async connect() { producer = kafka.producer({ idempotent: true }); await producer.connect(); },
 *   async publish(m) { await producer!.send({ topic: "saga-events", acks: -1, messages: [{ key: m.event.sagaId, value: m.body, headers: { ...m.headers, "message-id": m.id } }] }); return {}; },
 *   async close() { await producer?.disconnect(); producer = null; },
 * };
 */
export interface BridgeTransport {
  /** `nats`, `rabbitmq`: names the CLI command and the default subscription (`bridge.<kind>`). */
  readonly kind: string;
  /** CloudEvents binary mode's header prefix in this broker's binding. Default `ce-`. */
  readonly headerPrefix?: string;
  /** Whether a connection is up: false after a failure, so the runner connects again. */
  readonly connected: boolean;
  /** Opens the connection and creates or verifies the stream/exchange. Throws to be retried with backoff. */
  connect(logger: Logger): Promise<void>;
  /**
   * Resolves once the broker has the message for good (a JetStream PubAck, a publisher confirm);
   * `duplicate: true` when the broker said it already had it. Throws {@link BridgeRefusal} for good, else
   * anything for "try again".
   */
  publish(message: BridgeMessage): Promise<{ duplicate?: boolean }>;
  close(): Promise<void>;
}

/** How an event becomes a message body. */
export type BridgeEnvelope = "json" | "cloudevents-structured" | "cloudevents-binary";

/** Options every bridge takes. */
export interface BridgeOptions {
  /** The durable subscription's name (cursor, lease, dead letters). Default `bridge.<kind>`. */
  name?: string;
  /** Which events leave; default all. */
  filter?: EventFilter;
  /**
   * Names this database in message ids (`<source>:<event id>`) and CloudEvents `source`. Default
   * `urn:pg-saga:<system identifier>:<database name>`: outbox ids restart at 1 in every database, so two
   * databases feeding one stream must never share a source.
   */
  source?: string;
  /** `json` (default): the event as `subscribe` gives it. `cloudevents-*`: CloudEvents 1.0. */
  envelope?: BridgeEnvelope;
  /** Where an event goes (subject, routing key); each bridge has its default. */
  topic?: (event: SagaEvent) => string;
  /** Messages awaiting their acknowledgement at once, across sagas (one saga has one at a time). Default 1024. */
  maxInFlight?: number;
  /** Where a new bridge starts: the oldest retained event (default) or `"now"`. */
  from?: "oldest" | "now";
  /** Events per cursor commit; default grows from 100 to 1,000 while a backlog remains. */
  batchSize?: number;
  /** How long the active bridge's lease lasts without renewal; another process takes over after. Default 15 s. */
  lease?: Duration;
  /** How often the outbox is read when no notification arrives. Default 1 s. */
  pollInterval?: Duration;
}

/** A configured bridge, as `natsBridge()` and `rabbitBridge()` return it; pass it to `runWorker({ bridges })`. */
export interface Bridge {
  readonly name: string;
  readonly transport: BridgeTransport;
  /** The options the runner applies (filter, envelope, source, …), with `topic` always given. */
  readonly options: Readonly<BridgeOptions> & { readonly topic: (event: SagaEvent) => string };
}
