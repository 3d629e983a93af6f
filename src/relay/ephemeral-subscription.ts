import type pg from "pg";
import type { Logger } from "../logger.js";
import { readEventsById } from "../sql/outbox-verify.js";
import { type PayloadCodec, plainCodec } from "../codec/codec.js";
import { type EventMessage, eventFromRow } from "./events.js";
import { type ResolvedFilter, matches } from "./options.js";
import type { EventHandler, Subscription, SubscriptionMetrics } from "./types.js";

/** A LISTEN-only subscription as the event bus drives it. */
export interface EphemeralSubscription extends Subscription {
  offer(message: EventMessage): void;
}

/** Notifications verified per query: one relay batch is at most this many events by default. */
const VERIFY_BATCH = 500;

/**
 * Hands each notified event that passes the filter to the handler, one at a time in arrival order. At most
 * once: nothing is retried, and what was sent while the listener reconnected is not seen.
 *
 * A notification is a hint, never the event: any role that can connect may NOTIFY `saga_events`. The
 * notifications that arrived while the previous batch was handled are looked up in saga.outbox by id in one
 * query, and what is delivered is the row (its type, saga, payload), filtered again; an id the outbox does
 * not have is dropped and counted in `rejected`.
 */
export function startEphemeral(
  pool: pg.Pool,
  logger: Logger,
  filter: ResolvedFilter,
  handler: EventHandler,
  ready: Promise<void>,
  codec: PayloadCodec = plainCodec,
): EphemeralSubscription {
  const counters = { delivered: 0, failed: 0, rejected: 0, batches: 0, lagMs: null as number | null };
  let closed = false;
  let queue: EventMessage[] = [];
  let draining: Promise<void> | null = null;

  async function deliverBatch(batch: EventMessage[]): Promise<void> {
    const rows = await readEventsById(
      pool,
      batch.map((m) => m.id),
    );
    counters.batches++;
    for (const message of batch) {
      if (closed) return;
      const row = rows.get(message.id);
      if (!row) {
        counters.rejected++;
        logger.debug("notified event not in saga.outbox; not delivered", { eventId: message.id });
        continue;
      }
      const event = eventFromRow(row, codec);
      if (!matches(filter, event)) continue;
      try {
        await handler(event);
        counters.delivered++;
      } catch (err) {
        counters.failed++;
        logger.warn("subscription handler failed (LISTEN-only: not retried)", {
          eventId: event.id,
          error: String(err),
        });
      }
      counters.lagMs = Math.max(0, Date.now() - event.createdAt.getTime());
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0 && !closed) {
      const batch = queue.slice(0, VERIFY_BATCH);
      queue = queue.slice(batch.length);
      await deliverBatch(batch).catch((err: unknown) =>
        logger.warn("could not verify notifications against the outbox; not delivered", {
          events: batch.length,
          error: String(err),
        }),
      );
    }
    draining = null;
  }

  return {
    name: null,
    ready,
    offer(message) {
      // The notification carries ids and type only: the saga name is known once the row is read.
      if (closed || !Number.isSafeInteger(message.id) || !matches({ ...filter, names: null }, message))
        return;
      queue.push(message);
      draining ??= drain();
    },
    async metrics(): Promise<SubscriptionMetrics> {
      await Promise.resolve();
      return {
        name: null,
        mode: "ephemeral",
        delivered: counters.delivered,
        failed: counters.failed,
        deadLettered: 0,
        batches: counters.batches,
        averageBatchSize:
          counters.batches === 0 ? 0 : (counters.delivered + counters.failed) / counters.batches,
        lagMs: counters.lagMs,
        active: !closed,
        rejected: counters.rejected,
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      queue = [];
      await draining;
    },
  };
}
