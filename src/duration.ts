import { SagaError } from "./errors.js";

/** Milliseconds as a number, or a string such as `"250ms"`, `"1s"`, `"5m"`, `"2h"`, `"1d"`. */
export type Duration = number | `${number}${"ms" | "s" | "m" | "h" | "d"}`;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses a {@link Duration}; anything else is an `INVALID_DEFINITION` naming the field. */
export function toMs(value: unknown, field: string): number {
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0) return Math.round(value);
  } else if (typeof value === "string") {
    const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
    if (match) return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
  }
  throw new SagaError(
    "INVALID_DEFINITION",
    `${field} must be a non-negative number of milliseconds or a string like "500ms", "1s", "5m"; got ${JSON.stringify(value)}`,
  );
}
