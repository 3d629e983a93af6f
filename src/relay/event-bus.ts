import type pg from "pg";
import { SagaError } from "../errors.js";
import { type Executor, toExecutor } from "../executor.js";
import type { Logger } from "../logger.js";
import { listDeadLetters, queueRedrive } from "../sql/outbox-dead-letters.js";
import { insertAppEvents } from "../sql/outbox-insert.js";
import { cursorLag } from "../sql/outbox-read.js";
import { type Channel, openChannel } from "./channel.js";
import { type BatchHandler, type DurableSubscription, startDurable } from "./durable-subscription.js";
import { type EphemeralSubscription, startEphemeral } from "./ephemeral-subscription.js";
import { deadLetterFromRow, isEventMessage } from "./events.js";
import { type PayloadCodec, plainCodec } from "../codec/codec.js";
import { resolveSubscribe } from "./options.js";
import { checkAppEvents } from "./publish-check.js";
import { EVENTS_CHANNEL, HINT_CHANNEL } from "./relay.js";
import type {
  AppEvent,
  DeadLetter,
  EventFilter,
  EventHandler,
  SubscribeOptions,
  Subscription,
  SubscriptionMetrics,
} from "./types.js";

/** Channel that tells durable subscribers "dead letters of yours were queued for redelivery". */
export const REDRIVE_CHANNEL = "saga_redrive";

/** The subscription half of the engine: what `engine.subscribe/publish/deadLetters/redrive` delegate to. */
export interface EventBus {
  /** `onBatch` (internal, durable only): the whole batch goes to it; `handler` then only serves redrives. */
  subscribe(
    filter: EventFilter,
    handler: EventHandler,
    options?: SubscribeOptions,
    onBatch?: BatchHandler,
  ): Subscription;
  publish(events: AppEvent | readonly AppEvent[], options?: { client?: unknown }): Promise<{ ids: number[] }>;
  deadLetters(
    subscription: string,
    options?: { includeDelivered?: boolean; limit?: number },
  ): Promise<DeadLetter[]>;
  redrive(target: number | { subscription: string }): Promise<{ redriven: number }>;
  subscriptionMetrics(name: string): Promise<SubscriptionMetrics | null>;
  close(): Promise<void>;
}

/**
 * Creates the engine's event bus over its pool. One LISTEN connection serves every subscription of the
 * engine; it opens with the first subscription and closes with the last.
 *
 * @example
 * const bus = createEventBus(pool, logger, 1_048_576);
 * const sub = bus.subscribe({ types: ["saga.completed"] }, async (e) => billing.invoice(e.sagaId), { durable: "billing" });
 */
export function createEventBus(
  pool: pg.Pool,
  logger: Logger,
  maxPayloadBytes: number,
  codec: PayloadCodec = plainCodec,
  listen: pg.ClientConfig = pool.options as pg.ClientConfig,
): EventBus {
  const durables = new Set<DurableSubscription>();
  const ephemerals = new Set<EphemeralSubscription>();
  const closing = new Set<Promise<void>>();
  let channel: Channel | null = null;

  const onMessage = (name: string, payload: unknown) => {
    if (name === EVENTS_CHANNEL) {
      for (const d of durables) d.wake();
      if (isEventMessage(payload)) for (const e of ephemerals) e.offer(payload);
    } else if (name === REDRIVE_CHANNEL) {
      for (const d of durables) if (d.name === payload) d.redriveSoon();
    }
  };
  const listening = (): Channel => {
    channel ??= openChannel(listen, [EVENTS_CHANNEL, REDRIVE_CHANNEL], "pg-saga subscriptions", logger, {
      onMessage,
      onConnected: () => durables.forEach((d) => d.wake()),
    });
    return channel;
  };
  const release = () => {
    if (durables.size + ephemerals.size > 0 || !channel) return;
    const c = channel;
    channel = null;
    const p = c.close().finally(() => closing.delete(p));
    closing.add(p);
  };
  const track = <S extends Subscription>(sub: S, set: Set<S>): S => {
    set.add(sub);
    return {
      ...sub,
      async close() {
        await sub.close();
        set.delete(sub);
        release();
      },
    };
  };

  return {
    subscribe(filter, handler, options = {}, onBatch) {
      if (typeof handler !== "function")
        throw new SagaError("INVALID_OPTIONS", "subscribe: handler must be a function");
      const resolved = resolveSubscribe(filter, options);
      const c = listening();
      if (resolved.durable !== null) {
        return track(
          startDurable(pool, logger, { ...resolved, durable: resolved.durable }, handler, codec, onBatch),
          durables,
        );
      }
      return track(startEphemeral(pool, logger, resolved.filter, handler, c.ready, codec), ephemerals);
    },

    async publish(events, options = {}) {
      const rows = checkAppEvents(events, maxPayloadBytes).map((r) =>
        codec === plainCodec
          ? r
          : { ...r, payload: JSON.stringify(codec.encode(JSON.parse(r.payload) as unknown)) },
      );
      const db: Executor = options.client === undefined ? pool : toExecutor(options.client);
      const ids = await insertAppEvents(db, rows);
      // Committed already (no caller transaction): wake the relay now rather than at its next poll.
      if (options.client === undefined) {
        pool.query(`select pg_notify('${HINT_CHANNEL}', '')`).catch(() => {});
      }
      return { ids };
    },

    async deadLetters(subscription, options = {}) {
      if (typeof subscription !== "string" || subscription.length === 0)
        throw new SagaError(
          "INVALID_OPTIONS",
          "deadLetters: subscription must be a durable subscription name",
        );
      const limit = options.limit ?? 1_000;
      if (!Number.isInteger(limit) || limit < 1)
        throw new SagaError("INVALID_OPTIONS", "deadLetters: limit must be a positive integer");
      const rows = await listDeadLetters(pool, subscription, options.includeDelivered ?? false, limit);
      return rows.map((r) => deadLetterFromRow(r, codec));
    },

    async redrive(target) {
      let touched: string[];
      if (typeof target === "number" && Number.isSafeInteger(target) && target > 0) {
        touched = await queueRedrive(pool, { id: target });
      } else if (typeof target === "object" && target !== null && typeof target.subscription === "string") {
        touched = await queueRedrive(pool, { subscription: target.subscription });
      } else {
        throw new SagaError("INVALID_OPTIONS", "redrive: pass a dead letter id or { subscription }");
      }
      for (const name of new Set(touched)) {
        for (const d of durables) if (d.name === name) d.redriveSoon();
        await pool
          .query("select pg_notify($1, $2)", [REDRIVE_CHANNEL, JSON.stringify(name)])
          .catch((err: unknown) =>
            logger.debug("redrive notification failed (polling covers it)", { error: String(err) }),
          );
      }
      return { redriven: touched.length };
    },

    async subscriptionMetrics(name) {
      const local = [...durables].filter((d) => d.name === name);
      const lagMs = await cursorLag(pool, name);
      if (lagMs === null && local.length === 0) return null;
      const sum = { delivered: 0, failed: 0, deadLettered: 0, batches: 0, batchEvents: 0, active: false };
      for (const d of local) {
        const c = d.counters();
        sum.delivered += c.delivered;
        sum.failed += c.failed;
        sum.deadLettered += c.deadLettered;
        sum.batches += c.batches;
        sum.batchEvents += c.batchEvents;
        sum.active ||= c.active;
      }
      return {
        name,
        mode: "durable",
        delivered: sum.delivered,
        failed: sum.failed,
        deadLettered: sum.deadLettered,
        batches: sum.batches,
        averageBatchSize: sum.batches === 0 ? 0 : sum.batchEvents / sum.batches,
        lagMs,
        active: sum.active,
      };
    },

    async close() {
      await Promise.all([...durables, ...ephemerals].map((s) => s.close()));
      durables.clear();
      ephemerals.clear();
      const c = channel;
      channel = null;
      await c?.close();
      await Promise.all(closing);
    },
  };
}
