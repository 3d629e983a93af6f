/**
 * Runs bridges: each is a durable subscription whose batch handler publishes to a broker and resolves only
 * once every message of the batch is acknowledged, so the cursor never passes an event the broker does not
 * have. A crash republishes the open batch; the broker (JetStream's duplicate window) or the consumer
 * (RabbitMQ, by messageId) drops what it already had.
 */
import type pg from "pg";
import type { Registry } from "prom-client";
import { SagaError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { EventBus } from "../relay/event-bus.js";
import type { SagaEvent, Subscription } from "../relay/types.js";
import { type Bridge, type BridgeMessage, type BridgeOptions, BridgeRefusal } from "./bridge.js";
import { type BridgeMeters, type BridgeStats, bridgeMeters } from "./bridge-metrics.js";
import { encodeEvent, messageId } from "./envelope.js";
import { databaseSource } from "./source.js";

export type { BridgeStats };

/** What the bridges of one process run on. @internal */
export interface BridgeRuntime {
  pool: pg.Pool;
  logger: Logger;
  subscribe: EventBus["subscribe"];
  /** Where their metrics go; none without it. */
  registry?: Registry | null | undefined;
}

/** Bridges running in this process. */
export interface RunningBridges {
  /** Resolves once every bridge made its first lease attempt. */
  readonly ready: Promise<void>;
  stats(): Record<string, BridgeStats>;
  /** Finishes the batch in flight, hands the leases over, closes the broker connections. */
  stop(): Promise<void>;
}

const DEFAULT_MAX_IN_FLIGHT = 1_024;
const ENVELOPES = ["json", "cloudevents-structured", "cloudevents-binary"];

/** Checks the options every bridge shares; the factories call it so mistakes surface at configuration. */
export function checkBridgeOptions(o: BridgeOptions): void {
  const bad = (message: string): never => {
    throw new SagaError("INVALID_OPTIONS", message);
  };
  if (o.envelope !== undefined && !ENVELOPES.includes(o.envelope))
    bad(`envelope must be one of ${ENVELOPES.join(", ")}; got ${JSON.stringify(o.envelope)}`);
  if (
    o.source !== undefined &&
    (typeof o.source !== "string" || o.source.length === 0 || o.source.length > 200)
  )
    bad("source must be a string of 1 to 200 characters naming this database");
  if (o.maxInFlight !== undefined && (!Number.isInteger(o.maxInFlight) || o.maxInFlight < 1))
    bad("maxInFlight must be a positive integer");
  if (o.topic !== undefined && typeof o.topic !== "function")
    bad("topic must be a function from an event to a subject or routing key");
}

/** The chain an event is published in: one saga's (or one application key's) events, one at a time. */
const chainOf = (e: SagaEvent): string =>
  e.sagaId !== null ? e.sagaId : e.key !== null ? `key:${e.key}` : `id:${e.id}`;

function runOne(rt: BridgeRuntime, bridge: Bridge, meters: BridgeMeters | null) {
  const { transport, options: o, name } = bridge;
  const log = rt.logger;
  const stats: BridgeStats = {
    published: 0,
    acked: 0,
    republished: 0,
    refused: 0,
    failures: 0,
    connected: false,
  };
  const untrack = meters?.track({ name, stats });
  const envelope = o.envelope ?? "json";
  const maxInFlight = o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  let source = o.source ?? null;
  // Events of the last batch that failed here: publishing them again is a republish.
  let attempted = new Set<number>();
  let stopped = false;

  const count = (what: "published" | "acked" | "republished" | "refused" | "failures") => {
    stats[what]++;
    meters?.count(name, what);
  };

  let connecting: Promise<void> | null = null;
  async function ensureConnected(): Promise<string> {
    source ??= await databaseSource(rt.pool);
    if (!transport.connected) {
      connecting ??= transport
        .connect(log)
        .then(() => log.info("bridge connected", { bridge: name, kind: transport.kind }))
        .finally(() => {
          connecting = null;
          stats.connected = transport.connected;
        });
      await connecting;
    }
    return source;
  }

  const toMessage = (event: SagaEvent, from: string): BridgeMessage => {
    const { headers, body } = encodeEvent(event, from, envelope, transport.headerPrefix ?? "ce-");
    return { id: messageId(from, event), topic: o.topic(event), headers, body, event };
  };

  async function publish(message: BridgeMessage): Promise<void> {
    count("published");
    const again = attempted.has(message.event.id);
    const { duplicate } = await transport.publish(message);
    count("acked");
    if (again || duplicate) count("republished");
  }

  /** The durable subscription's batch handler. */
  async function onBatch(events: readonly SagaEvent[]): Promise<ReadonlyMap<number, unknown>> {
    let from: string;
    try {
      from = await ensureConnected();
    } catch (err) {
      count("failures");
      throw err;
    }
    const chains = new Map<string, BridgeMessage[]>();
    for (const event of events) {
      const message = toMessage(event, from);
      const chain = chains.get(chainOf(event));
      if (chain) chain.push(message);
      else chains.set(chainOf(event), [message]);
    }
    const refused = new Map<number, unknown>();
    const tried = new Set<number>();
    let failure: unknown = null;
    const queue = [...chains.values()];
    let next = 0;
    // Up to maxInFlight chains at once; each publishes its messages in order, one acknowledgement at a time.
    const lane = async () => {
      while (failure === null && next < queue.length) {
        for (const message of queue[next++]!) {
          if (failure !== null) return;
          tried.add(message.event.id);
          try {
            await publish(message);
          } catch (err) {
            if (!(err instanceof BridgeRefusal)) {
              failure = err;
              return;
            }
            // Later events of this saga still go: a dead letter is redriven on its own, as for subscriptions.
            count("refused");
            refused.set(message.event.id, err);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(maxInFlight, queue.length) }, lane));
    stats.connected = transport.connected;
    if (failure !== null) {
      count("failures");
      attempted = tried;
      log.warn("bridge batch failed; it is published again after a backoff", {
        bridge: name,
        events: events.length,
        error: String(failure),
      });
      throw failure;
    }
    attempted = new Set();
    return refused;
  }

  /** Redrive of a dead letter: one event, alone. */
  async function redrive(event: SagaEvent): Promise<void> {
    await publish(toMessage(event, await ensureConnected()));
  }

  const subscription: Subscription = rt.subscribe(
    o.filter ?? {},
    redrive,
    {
      durable: name,
      ...(o.from === undefined ? {} : { from: o.from }),
      ...(o.batchSize === undefined ? {} : { batchSize: o.batchSize }),
      ...(o.lease === undefined ? {} : { lease: o.lease }),
      ...(o.pollInterval === undefined ? {} : { pollInterval: o.pollInterval }),
    },
    onBatch,
  );

  // Creates or verifies the stream/exchange now rather than at the first event; a failure is retried then.
  ensureConnected().catch((err: unknown) =>
    log.warn("bridge cannot connect yet; it tries again with the first batch", {
      bridge: name,
      error: String(err),
    }),
  );

  return {
    name,
    stats,
    ready: subscription.ready,
    async stop() {
      if (stopped) return;
      stopped = true;
      await subscription.close();
      untrack?.();
      await transport
        .close()
        .catch((err: unknown) =>
          log.warn("bridge connection did not close cleanly", { bridge: name, error: String(err) }),
        );
      stats.connected = false;
    },
  };
}

/**
 * Starts bridges on an engine's event bus.
 * @internal `runWorker({ bridges })` and `pg-saga bridge` call it.
 */
export function startBridges(rt: BridgeRuntime, bridges: readonly Bridge[]): RunningBridges {
  const names = new Set<string>();
  for (const b of bridges) {
    if (typeof b !== "object" || b === null || typeof b.transport?.publish !== "function")
      throw new SagaError(
        "INVALID_OPTIONS",
        "bridges: pass the values natsBridge() and rabbitBridge() return",
      );
    if (names.has(b.name))
      throw new SagaError(
        "INVALID_OPTIONS",
        `two bridges are named "${b.name}": give one a \`name\` of its own`,
      );
    names.add(b.name);
  }
  const meters = rt.registry ? bridgeMeters(rt.registry, rt.pool) : null;
  const running = bridges.map((b) => runOne(rt, b, meters));
  return {
    ready: Promise.all(running.map((r) => r.ready)).then(() => {}),
    stats: () => Object.fromEntries(running.map((r) => [r.name, { ...r.stats }])),
    async stop() {
      await Promise.all(running.map((r) => r.stop()));
    },
  };
}
