/**
 * Sagas started (or cancelled) by broker messages, each message's effect once: the message id is the saga's
 * idempotency key, so a redelivered message finds the saga it started; the broker consumers (nats-inbound.ts,
 * rabbit-inbound.ts) acknowledge a message only after this resolved, i.e. after the start committed.
 */
import type { AnySaga } from "../definition.js";
import type { SagaEngine } from "../engine.js";
import { RetryableError, SagaError, type SagaErrorCode } from "../errors.js";

/** A broker message as an inbound handler sees it. */
export interface InboundMessage {
  /** Its idempotency key: NATS `Nats-Msg-Id` (else `<stream>:<stream sequence>`), AMQP `messageId`. */
  readonly id: string;
  /** NATS subject or AMQP routing key. */
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** Whether the broker delivered it before (the saga may already exist; that is fine). */
  readonly redelivered: boolean;
  /** The body as JSON; a body that is not JSON rejects the message. */
  json<T = unknown>(): T;
}

/** What a message asks for: start a saga, cancel one, or nothing (`null`: acknowledged and dropped). */
export type InboundAction =
  | { start: AnySaga; input: unknown; metadata?: Record<string, unknown> }
  | { cancel: string; reason?: string }
  | null;

/**
 * Decides what a message does. Throwing rejects the message for good (NATS `term`, AMQP `nack` without
 * requeue: to the queue's dead-letter exchange if it has one), except a `RetryableError`, which has it
 * delivered again later.
 */
export type InboundHandler = (message: InboundMessage) => InboundAction | Promise<InboundAction>;

export type InboundOutcome =
  | { action: "started" | "duplicate" | "cancelled"; sagaId: string }
  | { action: "ignored" }
  | { action: "rejected"; error: unknown };

/** Counters of an inbound consumer since it started. */
export interface InboundStats {
  started: number;
  duplicates: number;
  cancelled: number;
  ignored: number;
  rejected: number;
  /** Messages handed back to the broker for a later attempt (database down, RetryableError). */
  retried: number;
}

/** A running inbound consumer. */
export interface InboundConsumer {
  readonly stats: InboundStats;
  /** Stops taking messages, lets the ones being handled finish, closes the connection. */
  close(): Promise<void>;
}

// The message itself is wrong: another delivery cannot succeed.
const PERMANENT = new Set<SagaErrorCode>([
  "INVALID_INPUT",
  "INVALID_OPTIONS",
  "UNKNOWN_SAGA",
  "PAYLOAD_TOO_LARGE",
  "SAGA_NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "INVALID_DEFINITION",
]);

export function inboundMessage(fields: Omit<InboundMessage, "json">): InboundMessage {
  return {
    ...fields,
    json<T>() {
      try {
        return JSON.parse(fields.body.toString("utf8")) as T;
      } catch (err) {
        throw new SagaError("INVALID_INPUT", `message ${fields.id} is not JSON: ${(err as Error).message}`);
      }
    },
  };
}

/**
 * Applies one message. Resolves once its effect is committed (or known to be there already); throws when it
 * should be delivered again later.
 *
 * @example
 * const outcome = await applyInbound(engine, message, (m) => ({ start: orderSaga, input: m.json() }));
 */
export async function applyInbound(
  engine: SagaEngine,
  message: InboundMessage,
  handle: InboundHandler,
): Promise<InboundOutcome> {
  let action: InboundAction;
  try {
    action = await handle(message);
  } catch (err) {
    if (err instanceof RetryableError) throw err;
    return { action: "rejected", error: err };
  }
  if (action === null || action === undefined) return { action: "ignored" };
  try {
    if ("start" in action) {
      const { id, created } = await engine.start(action.start, action.input as never, {
        idempotencyKey: message.id,
        ...(action.metadata === undefined ? {} : { metadata: action.metadata }),
      });
      return { action: created ? "started" : "duplicate", sagaId: id };
    }
    if ("cancel" in action) {
      await engine.cancel(action.cancel, action.reason ?? `message ${message.id}`);
      return { action: "cancelled", sagaId: action.cancel };
    }
    return {
      action: "rejected",
      error: new SagaError(
        "INVALID_OPTIONS",
        "an inbound handler returns { start, input }, { cancel } or null",
      ),
    };
  } catch (err) {
    if (err instanceof SagaError && err.code === "SAGA_TERMINAL") return { action: "ignored" };
    if (err instanceof SagaError && PERMANENT.has(err.code)) return { action: "rejected", error: err };
    throw err;
  }
}

export function emptyInboundStats(): InboundStats {
  return { started: 0, duplicates: 0, cancelled: 0, ignored: 0, rejected: 0, retried: 0 };
}

export function countOutcome(stats: InboundStats, outcome: InboundOutcome): void {
  if (outcome.action === "started") stats.started++;
  else if (outcome.action === "duplicate") stats.duplicates++;
  else if (outcome.action === "cancelled") stats.cancelled++;
  else if (outcome.action === "ignored") stats.ignored++;
  else stats.rejected++;
}
