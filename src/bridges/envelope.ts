/**
 * Event → message body and headers: plain JSON (the event as `subscribe` gives it) or CloudEvents 1.0, in
 * structured mode (one `application/cloudevents+json` document) or binary mode (attributes as headers, the
 * payload as the body). CloudEvents are written by hand (the format is a dozen fields) so the bridges need
 * no extra dependency; the tests parse them with the `cloudevents` SDK.
 */
import type { SagaEvent } from "../relay/types.js";
import type { BridgeEnvelope } from "./bridge.js";

export interface Encoded {
  headers: Record<string, string>;
  body: Buffer;
}

/** `<source>:<event id>`: unique across databases as long as sources are. */
export const messageId = (source: string, event: SagaEvent): string => `${source}:${event.id}`;

/** CloudEvents attributes of an event; extension names are lowercase letters only (spec 1.0). */
function cloudAttributes(source: string, e: SagaEvent): Record<string, string | number> {
  const attributes: Record<string, string | number> = {
    specversion: "1.0",
    id: String(e.id),
    source,
    type: e.type,
    time: e.createdAt.toISOString(),
    datacontenttype: "application/json",
  };
  if (e.sagaId !== null) attributes.subject = e.sagaId;
  if (e.name !== null) attributes.saganame = e.name;
  if (e.seq !== null) attributes.sagaseq = e.seq;
  if (e.step !== null) attributes.sagastep = e.step;
  if (e.key !== null) attributes.eventkey = e.key;
  return attributes;
}

/**
 * Encodes an event. `headerPrefix` is the binding's for binary mode: `ce-` (NATS, HTTP, Kafka-like) or
 * `cloudEvents:` (AMQP).
 */
export function encodeEvent(
  event: SagaEvent,
  source: string,
  envelope: BridgeEnvelope,
  headerPrefix: string,
): Encoded {
  if (envelope === "json")
    return { headers: { "content-type": "application/json" }, body: Buffer.from(JSON.stringify(event)) };
  const attributes = cloudAttributes(source, event);
  if (envelope === "cloudevents-structured") {
    return {
      headers: { "content-type": "application/cloudevents+json; charset=utf-8" },
      body: Buffer.from(JSON.stringify({ ...attributes, data: event.payload ?? null })),
    };
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  for (const [k, v] of Object.entries(attributes))
    if (k !== "datacontenttype") headers[`${headerPrefix}${k}`] = String(v);
  return { headers, body: Buffer.from(JSON.stringify(event.payload ?? null)) };
}
