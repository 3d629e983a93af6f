import { SagaError } from "./errors.js";

/** Milliseconds as a number, or a string such as `"250ms"`, `"1s"`, `"5m"`, `"2h"`, `"1d"`. */
export type Duration = number | `${number}${"ms" | "s" | "m" | "h" | "d"}`;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Longest duration accepted (100 years): beyond it a deadline or a retry time would leave the range of a
 * PostgreSQL timestamp. Timeouts past Node's timer limit (about 24.8 days) work: their timers are chained.
 */
export const MAX_DURATION_MS = 3_155_760_000_000;

/** Parses a {@link Duration}; anything else is an `INVALID_DEFINITION` naming the field. */
export function toMs(value: unknown, field: string): number {
  let ms: number | undefined;
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0) ms = Math.round(value);
  } else if (typeof value === "string") {
    const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
    if (match) ms = Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
  }
  if (ms !== undefined && ms > MAX_DURATION_MS)
    throw new SagaError(
      "INVALID_DEFINITION",
      `${field} must be at most ${MAX_DURATION_MS} ms (100 years); got ${JSON.stringify(value)}`,
    );
  if (ms !== undefined) return ms;
  throw new SagaError(
    "INVALID_DEFINITION",
    `${field} must be a non-negative number of milliseconds or a string like "500ms", "1s", "5m"; got ${JSON.stringify(value)}`,
  );
}
