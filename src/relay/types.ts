import type { Duration } from "../duration.js";
import type { RetryPolicy } from "../retry.js";

/** One outbox event, as a subscription handler receives it. */
export interface SagaEvent<P = unknown> {
  /** The outbox id: unique, but not commit-ordered (see delivery docs). */
  id: number;
  /** The saga that wrote it; null for an application event from `engine.publish()`. */
  sagaId: string | null;
  /** Position in its saga's history (1, 2, …); null for an application event. */
  seq: number | null;
  type: string;
  step: string | null;
  /** The saga's name; null for an application event. */
  name: string | null;
  /** The key given to `engine.publish()`; null for saga events. */
  key: string | null;
  payload: P;
  createdAt: Date;
}

/** Which events a subscription receives; every given list must match (an empty filter takes all). */
export interface EventFilter {
  /** Event types, e.g. `["saga.completed", "order.placed"]`. */
  types?: readonly string[];
  /** Saga names; application events have none, so this filter excludes them. */
  names?: readonly string[];
  sagaIds?: readonly string[];
}

/** Called once per event (durable: at least once). Throwing means "not handled": durable subscriptions retry. */
export type EventHandler = (event: SagaEvent) => unknown;

/** Options of `engine.subscribe()`. */
export interface SubscribeOptions {
  /**
   * The name of a durable subscription: at-least-once from the outbox table through a persisted cursor.
   * Without it the subscription is LISTEN-only: lowest latency, at-most-once.
   */
  durable?: string;
  /** Durable: where a new subscription starts: the oldest retained event (default) or `"now"`. */
  from?: "oldest" | "now";
  /**
   * Durable: events read and handled per cursor commit, fixed. Without it a batch starts at 100 and doubles
   * while each comes back full (a backlog), up to 1,000.
   */
  batchSize?: number;
  /** Durable: calls of the handler per event before it becomes a dead letter. Default 5 (or `retry`'s). */
  maxAttempts?: number;
  /** Durable: the wait between attempts. Default exponential from 100 ms to 5 s with jitter. */
  retry?: RetryPolicy;
  /** Durable: how long a consumer's lease lasts without renewal; another process takes over after. Default 15 s. */
  lease?: Duration;
  /** Durable: how often the table is read when no notification arrives. Default 1 s. */
  pollInterval?: Duration;
}

/** A subscription's counters since it started in this process, and its lag. */
export interface SubscriptionMetrics {
  name: string | null;
  mode: "durable" | "ephemeral";
  /** Handler calls that succeeded. */
  delivered: number;
  /** Handler calls that threw (each attempt counts). */
  failed: number;
  deadLettered: number;
  batches: number;
  averageBatchSize: number;
  /**
   * Durable: age in ms of the oldest event the cursor has not passed (0 when caught up). Ephemeral: the age of
   * the last event when it was delivered. Null when unknown.
   */
  lagMs: number | null;
  /** Durable: whether this process holds the lease (consumes) rather than standing by. */
  active: boolean;
  /** Ephemeral: notifications dropped because saga.outbox has no such event (forged, or already removed). */
  rejected?: number;
}

/** A running subscription. */
export interface Subscription {
  readonly name: string | null;
  /** Resolves once listening (ephemeral) or once the first lease attempt is done (durable). */
  readonly ready: Promise<void>;
  metrics(): Promise<SubscriptionMetrics>;
  /** Stops after the event being handled; a durable subscription hands its lease over at once. */
  close(): Promise<void>;
}

/** An event of the application's own, published with `engine.publish()`. */
export interface AppEvent {
  /** Must not start with `saga.` or `compensation.` (those are the engine's). */
  type: string;
  payload?: unknown;
  /** Free-form key, e.g. an aggregate id, delivered as `event.key`. */
  key?: string;
}

/** A dead letter of a durable subscription. */
export interface DeadLetter {
  id: number;
  subscription: string;
  eventId: number;
  event: SagaEvent;
  error: { code: string; message: string; type: string };
  attempts: number;
  createdAt: Date;
  /** When `redrive()` queued it (cleared if that delivery failed too). */
  redrivenAt: Date | null;
  /** When a redrive delivered it. */
  deliveredAt: Date | null;
}

/** The relay that runs inside every worker (one active per database). `false` turns it off. */
export interface RelayOptions {
  /**
   * What each notification on `saga_events` carries. `"ids"` (default): `{ id, sagaId, seq, type }` only, so a
   * role that can merely connect and LISTEN learns no payload, saga name, key or metadata. `"full"`: the whole
   * event (payload included when it fits under 8000 bytes), for listeners outside pg-saga.
   */
  notify?: "ids" | "full";
  /** Events per NOTIFY transaction. Default 200. */
  batchSize?: number;
  /** How often the outbox is read when no hint arrives (a commit inside your own transaction sends none). Default 100 ms. */
  pollInterval?: Duration;
  /** How long the active relay's lease lasts without renewal; another worker takes over after. Default 10 s. */
  lease?: Duration;
}

/** What the worker deletes, in small batches, from the active relay. */
export interface RetentionOptions {
  /** Delete events older than this that every durable subscription (and the relay) has passed. Default "7d"; false keeps them. */
  events?: Duration | false;
  /** Purge sagas finished longer ago than this, with their steps and events. Default false (keep). */
  sagas?: Duration | false;
  /** How often retention runs. Default "1m". */
  interval?: Duration;
  /** Rows per delete statement. Default 1000. */
  batchSize?: number;
  /** Statements per run, so one run stays short. Default 10. */
  maxBatches?: number;
}
