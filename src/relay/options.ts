import { toMs } from "../duration.js";
import { SagaError } from "../errors.js";
import { isUuid } from "../model.js";
import { type RetryPolicy, isRetryPolicy, retry } from "../retry.js";
import type { EventFilter, RelayOptions, RetentionOptions, SubscribeOptions } from "./types.js";

/** The filter as the read query binds it: null means "any". */
export interface ResolvedFilter {
  readonly types: readonly string[] | null;
  readonly names: readonly string[] | null;
  readonly sagaIds: readonly string[] | null;
}

export interface ResolvedSubscribe {
  readonly filter: ResolvedFilter;
  readonly durable: string | null;
  readonly fromNow: boolean;
  /** The first batch's size; while a backlog remains, batches grow up to `maxBatchSize`. */
  readonly batchSize: number;
  readonly maxBatchSize: number;
  readonly retry: RetryPolicy;
  readonly leaseMs: number;
  readonly pollMs: number;
}

export interface ResolvedRelay {
  readonly batchSize: number;
  readonly pollMs: number;
  readonly leaseMs: number;
  readonly notify: "ids" | "full";
}

export interface ResolvedRetention {
  readonly eventsMs: number | null;
  readonly sagasMs: number | null;
  readonly intervalMs: number;
  readonly batchSize: number;
  readonly maxBatches: number;
}

/** The relay's own cursor row in saga.subscriptions; durable names may not start with `$`. */
export const RELAY_CURSOR = "$relay";

const DEFAULTS = Object.freeze({
  batchSize: 100,
  // Without an explicit batchSize a durable subscription's batch doubles while a backlog remains, up to this.
  maxBatchSize: 1_000,
  maxAttempts: 5,
  leaseMs: 15_000,
  pollMs: 1_000,
  relayBatchSize: 200,
  relayPollMs: 100,
  relayLeaseMs: 10_000,
  retentionEventsMs: 7 * 86_400_000,
  retentionIntervalMs: 60_000,
  retentionBatchSize: 1_000,
  retentionMaxBatches: 10,
});

function invalid(message: string): never {
  throw new SagaError("INVALID_OPTIONS", message);
}

/** Re-labels duration errors as option errors. */
function duration(value: unknown, field: string): number {
  try {
    return toMs(value, field);
  } catch (err) {
    throw new SagaError("INVALID_OPTIONS", (err as Error).message);
  }
}

function positiveInt(value: unknown, field: string, fallback: number, max = 100_000): number {
  if (value === undefined) return fallback;
  if (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= max) return value;
  return invalid(`${field} must be an integer from 1 to ${max}; got ${JSON.stringify(value)}`);
}

function list(value: unknown, field: string, check?: (s: string) => boolean): readonly string[] | null {
  if (value === undefined) return null;
  if (
    !Array.isArray(value) ||
    !value.every((v) => typeof v === "string" && v.length > 0 && (check?.(v) ?? true))
  )
    return invalid(`filter.${field} must be an array of ${check ? "uuids" : "non-empty strings"}`);
  return Object.freeze((value as string[]).map((v) => (check ? v.toLowerCase() : v)));
}

/** Checks a subscribe() call before anything starts. */
export function resolveSubscribe(filter: EventFilter, options: SubscribeOptions): ResolvedSubscribe {
  if (typeof filter !== "object" || filter === null) invalid("subscribe: filter must be an object");
  const o = (options ?? {}) as SubscribeOptions;
  const durable = o.durable ?? null;
  if (durable !== null && (typeof durable !== "string" || !/^[^$\s][^\s]{0,199}$/.test(durable)))
    invalid("durable must be a name of 1 to 200 characters without spaces, not starting with $");
  if (o.from !== undefined && o.from !== "oldest" && o.from !== "now")
    invalid('from must be "oldest" or "now"');
  if (o.retry !== undefined && !isRetryPolicy(o.retry)) invalid("retry must be a policy from retry.*()");
  const maxAttempts = positiveInt(o.maxAttempts, "maxAttempts", o.retry?.maxAttempts ?? DEFAULTS.maxAttempts);
  const base = o.retry ?? retry.exponential({ maxAttempts, initialDelay: 100, maxDelay: 5_000 });
  return Object.freeze({
    filter: Object.freeze({
      types: list(filter.types, "types"),
      names: list(filter.names, "names"),
      sagaIds: list(filter.sagaIds, "sagaIds", isUuid),
    }),
    durable,
    fromNow: o.from === "now",
    batchSize: positiveInt(o.batchSize, "batchSize", DEFAULTS.batchSize, 10_000),
    maxBatchSize: o.batchSize === undefined ? DEFAULTS.maxBatchSize : (o.batchSize as number),
    retry: Object.freeze({ ...base, maxAttempts }),
    leaseMs: Math.max(100, o.lease === undefined ? DEFAULTS.leaseMs : duration(o.lease, "lease")),
    pollMs: Math.max(
      10,
      o.pollInterval === undefined ? DEFAULTS.pollMs : duration(o.pollInterval, "pollInterval"),
    ),
  });
}

function notifyMode(v: unknown): "ids" | "full" {
  if (v === undefined || v === "ids" || v === "full") return v ?? "ids";
  throw new SagaError("INVALID_OPTIONS", `relay.notify must be "ids" or "full", got ${JSON.stringify(v)}`);
}

export function resolveRelay(o: RelayOptions = {}): ResolvedRelay {
  return Object.freeze({
    batchSize: positiveInt(o.batchSize, "relay.batchSize", DEFAULTS.relayBatchSize, 10_000),
    pollMs: Math.max(
      5,
      o.pollInterval === undefined ? DEFAULTS.relayPollMs : duration(o.pollInterval, "relay.pollInterval"),
    ),
    leaseMs: Math.max(50, o.lease === undefined ? DEFAULTS.relayLeaseMs : duration(o.lease, "relay.lease")),
    notify: notifyMode(o.notify),
  });
}

export function resolveRetention(o: RetentionOptions = {}): ResolvedRetention {
  const age = (v: unknown, field: string, fallback: number | null) =>
    v === undefined ? fallback : v === false ? null : duration(v, field);
  return Object.freeze({
    eventsMs: age(o.events, "retention.events", DEFAULTS.retentionEventsMs),
    sagasMs: age(o.sagas, "retention.sagas", null),
    intervalMs: Math.max(
      10,
      o.interval === undefined ? DEFAULTS.retentionIntervalMs : duration(o.interval, "retention.interval"),
    ),
    batchSize: positiveInt(o.batchSize, "retention.batchSize", DEFAULTS.retentionBatchSize),
    maxBatches: positiveInt(o.maxBatches, "retention.maxBatches", DEFAULTS.retentionMaxBatches),
  });
}

/** Whether an event passes a filter (the same rule as the read query's). */
export function matches(
  filter: ResolvedFilter,
  e: { type: string; name: string | null; sagaId: string | null },
): boolean {
  return (
    (filter.types === null || filter.types.includes(e.type)) &&
    (filter.names === null || (e.name !== null && filter.names.includes(e.name))) &&
    (filter.sagaIds === null || (e.sagaId !== null && filter.sagaIds.includes(e.sagaId.toLowerCase())))
  );
}
