import { SagaError } from "../errors.js";
import { isStorableString, toJsonb } from "../jsonb.js";
import type { AppEvent } from "./types.js";

/** Prefixes of the engine's own event types: an application event may not pretend to be one. */
const RESERVED = ["saga.", "compensation."];
const MAX_TYPE = 200;

function bad(message: string, index: number): never {
  throw new SagaError("INVALID_EVENT", `publish: event ${index}: ${message}`, { details: { index } });
}

/**
 * Validates every event before anything is written (all or nothing): type, key, and a payload that jsonb
 * accepts within the engine's size limit. Returns the rows to insert, payloads serialized.
 */
export function checkAppEvents(
  events: AppEvent | readonly AppEvent[],
  maxPayloadBytes: number,
): { type: string; key: string | null; payload: string }[] {
  const list: readonly unknown[] = Array.isArray(events) ? events : [events];
  if (list.length === 0) throw new SagaError("INVALID_EVENT", "publish: no events given");
  return list.map((raw, i) => {
    if (typeof raw !== "object" || raw === null) bad("must be an object { type, payload?, key? }", i);
    const e = raw as AppEvent;
    if (typeof e.type !== "string" || e.type.trim().length === 0 || e.type.length > MAX_TYPE)
      bad(`type must be a non-empty string of at most ${MAX_TYPE} characters`, i);
    const reserved = RESERVED.find((p) => e.type.startsWith(p));
    if (reserved) bad(`type "${e.type}" uses the engine's reserved prefix "${reserved}"`, i);
    if (
      e.key !== undefined &&
      (typeof e.key !== "string" || e.key.length > 1_000 || !isStorableString(e.key))
    )
      bad("key must be a string of at most 1000 characters, without NUL characters or lone surrogates", i);
    // jsonb.ts's check: a NUL character or lone surrogate is refused, text that spells `\u0000` is not.
    const json = toJsonb(e.payload === undefined ? {} : e.payload);
    if (!json.ok) bad(`payload ${json.message}`, i);
    const payload = json.text;
    if (payload === undefined) bad("payload cannot be serialized to JSON", i);
    const bytes = Buffer.byteLength(payload);
    if (bytes > maxPayloadBytes) {
      throw new SagaError(
        "PAYLOAD_TOO_LARGE",
        `publish: event ${i} payload is ${bytes} bytes; the limit is ${maxPayloadBytes}`,
        {
          details: { index: i, bytes, maxBytes: maxPayloadBytes },
        },
      );
    }
    return { type: e.type, key: e.key ?? null, payload };
  });
}
