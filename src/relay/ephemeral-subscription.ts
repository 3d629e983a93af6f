import type pg from "pg";
import type { Logger } from "../logger.js";
import { readPayload } from "../sql/outbox-read.js";
import { type EventMessage, eventFromMessage } from "./events.js";
import { type ResolvedFilter, matches } from "./options.js";
import type { EventHandler, Subscription, SubscriptionMetrics } from "./types.js";

/** A LISTEN-only subscription as the event bus drives it. */
export interface EphemeralSubscription extends Subscription {
  offer(message: EventMessage): void;
}

/**
 * Hands each notification that passes the filter to the handler, one at a time in arrival order. At most
 * once: nothing is retried, and what was sent while the listener reconnected is not seen.
 */
export function startEphemeral(
  pool: pg.Pool,
  logger: Logger,
  filter: ResolvedFilter,
  handler: EventHandler,
  ready: Promise<void>,
): EphemeralSubscription {
  const counters = { delivered: 0, failed: 0, lagMs: null as number | null };
  let closed = false;
  let chain = Promise.resolve();

  async function handle(message: EventMessage): Promise<void> {
    if (closed) return;
    let payload = message.payload;
    if (message.truncated) {
      // The payload did not fit in the notification: read it by id (null if retention removed it meanwhile).
      payload = (await readPayload(pool, message.id)).payload;
    }
    const event = eventFromMessage(message, payload ?? null);
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

  return {
    name: null,
    ready,
    offer(message) {
      if (closed || !matches(filter, message)) return;
      chain = chain.then(() =>
        handle(message).catch((err: unknown) =>
          logger.warn("could not deliver a notification", { eventId: message.id, error: String(err) }),
        ),
      );
    },
    async metrics(): Promise<SubscriptionMetrics> {
      await Promise.resolve();
      return {
        name: null,
        mode: "ephemeral",
        delivered: counters.delivered,
        failed: counters.failed,
        deadLettered: 0,
        batches: counters.delivered + counters.failed,
        averageBatchSize: counters.delivered + counters.failed === 0 ? 0 : 1,
        lagMs: counters.lagMs,
        active: !closed,
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      await chain;
    },
  };
}
