import { type PayloadCodec, decodeValue, plainCodec } from "../codec/codec.js";
import type { DeadLetterRow } from "../sql/outbox-dead-letters.js";
import type { OutboxRow } from "../sql/outbox-read.js";
import type { DeadLetter, SagaEvent } from "./types.js";

/** The event a handler receives, from an outbox row. */
export function eventFromRow(row: OutboxRow, codec: PayloadCodec = plainCodec): SagaEvent {
  return {
    id: Number(row.id),
    sagaId: row.saga_id,
    seq: row.seq,
    type: row.type,
    step: row.step,
    name: row.name,
    key: row.key,
    payload: decodeValue(codec, row.payload),
    createdAt: row.created_at,
  };
}

/** The relay's NOTIFY message, as pg-listen parsed it (sql/relay.sql saga._event_message). */
export interface EventMessage {
  id: number;
  sagaId: string | null;
  seq: number | null;
  type: string;
  step: string | null;
  name: string | null;
  key?: string | null;
  payload?: unknown;
  createdAt: string;
  truncated?: boolean;
}

export function isEventMessage(value: unknown): value is EventMessage {
  const m = value as EventMessage | null;
  return typeof m === "object" && m !== null && typeof m.id === "number" && typeof m.type === "string";
}

export function eventFromMessage(m: EventMessage, payload: unknown): SagaEvent {
  return {
    id: m.id,
    sagaId: m.sagaId ?? null,
    seq: m.seq ?? null,
    type: m.type,
    step: m.step ?? null,
    name: m.name ?? null,
    key: m.key ?? null,
    payload,
    createdAt: new Date(m.createdAt),
  };
}

/** A stored event (dead letter) back into its live shape. */
function eventFromJson(json: Record<string, unknown>, codec: PayloadCodec): SagaEvent {
  return {
    ...(json as unknown as SagaEvent),
    payload: decodeValue(codec, json.payload),
    createdAt: new Date(json.createdAt as string),
  };
}

export function deadLetterFromRow(row: DeadLetterRow, codec: PayloadCodec = plainCodec): DeadLetter {
  return {
    id: Number(row.id),
    subscription: row.subscription,
    eventId: Number(row.event_id),
    event: eventFromJson(row.event, codec),
    error: row.error,
    attempts: row.attempts,
    createdAt: row.created_at,
    redrivenAt: row.redriven_at,
    deliveredAt: row.delivered_at,
  };
}

/**
 * Puts each saga's events of a batch in `seq` order, keeping the slots the saga had: the (xid, id) order
 * already gives it, since transitions of one saga lock its row in turn, but a handler must be able to rely on it.
 */
export function inSagaOrder(events: readonly SagaEvent[]): SagaEvent[] {
  const bySaga = new Map<string, SagaEvent[]>();
  for (const e of events) {
    if (e.sagaId === null || e.seq === null) continue;
    const list = bySaga.get(e.sagaId);
    if (list) list.push(e);
    else bySaga.set(e.sagaId, [e]);
  }
  for (const list of bySaga.values()) list.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  const taken = new Map<string, number>();
  return events.map((e) => {
    if (e.sagaId === null || e.seq === null) return e;
    const i = taken.get(e.sagaId) ?? 0;
    taken.set(e.sagaId, i + 1);
    return bySaga.get(e.sagaId)![i]!;
  });
}
