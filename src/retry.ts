import { type Duration, MAX_DURATION_MS, toMs } from "./duration.js";
import { SagaError } from "./errors.js";

/** How random the wait between attempts is: `full` draws from [0, d], `equal` from [d/2, d], `none` waits d. */
export type Jitter = "full" | "equal" | "none";

/** A resolved retry policy. `maxAttempts` counts the first try: `maxAttempts: 3` means one try and two retries. */
export interface RetryPolicy {
  readonly kind: "exponential" | "fixed" | "linear" | "none";
  readonly maxAttempts: number;
  /** Wait before attempt `attempt + 1`, given that `attempt` (1-based) just failed; before jitter. */
  readonly baseDelayMs: (attempt: number) => number;
  readonly jitter: Jitter;
}

function attempts(value: unknown): number {
  if (typeof value === "number" && Number.isInteger(value) && value >= 1) return value;
  throw new SagaError(
    "INVALID_DEFINITION",
    `retry maxAttempts must be an integer >= 1 (it counts the first try); got ${JSON.stringify(value)}`,
  );
}

function jitterOf(value: unknown): Jitter {
  if (value === undefined || value === true) return "full";
  if (value === false) return "none";
  if (value === "full" || value === "equal" || value === "none") return value;
  throw new SagaError(
    "INVALID_DEFINITION",
    `retry jitter must be "full", "equal", "none" or a boolean; got ${JSON.stringify(value)}`,
  );
}

/**
 * Retry policies for steps and compensations.
 *
 * @example
 * retry.exponential({ maxAttempts: 5, initialDelay: "100ms", maxDelay: "10s" }) // 100ms, 200ms, 400ms … with full jitter
 * retry.fixed({ maxAttempts: 3, delay: "1s" })
 * retry.linear({ maxAttempts: 4, initialDelay: "1s", increment: "2s", maxDelay: "10s" })
 * retry.none()
 */
export const retry = {
  exponential(o: {
    maxAttempts: number;
    initialDelay: Duration;
    maxDelay?: Duration;
    multiplier?: number;
    jitter?: Jitter | boolean;
  }): RetryPolicy {
    const initial = toMs(o.initialDelay, "retry initialDelay");
    const max = o.maxDelay === undefined ? Number.MAX_SAFE_INTEGER : toMs(o.maxDelay, "retry maxDelay");
    const multiplier = o.multiplier ?? 2;
    if (!(typeof multiplier === "number" && multiplier >= 1)) {
      throw new SagaError(
        "INVALID_DEFINITION",
        `retry multiplier must be a number >= 1; got ${JSON.stringify(multiplier)}`,
      );
    }
    return Object.freeze({
      kind: "exponential" as const,
      maxAttempts: attempts(o.maxAttempts),
      baseDelayMs: (attempt: number) => Math.min(max, initial * multiplier ** (attempt - 1)),
      jitter: jitterOf(o.jitter),
    });
  },
  fixed(o: { maxAttempts: number; delay: Duration; jitter?: Jitter | boolean }): RetryPolicy {
    const delay = toMs(o.delay, "retry delay");
    return Object.freeze({
      kind: "fixed" as const,
      maxAttempts: attempts(o.maxAttempts),
      baseDelayMs: () => delay,
      jitter: jitterOf(o.jitter ?? "none"),
    });
  },
  linear(o: {
    maxAttempts: number;
    initialDelay: Duration;
    increment: Duration;
    maxDelay?: Duration;
    jitter?: Jitter | boolean;
  }): RetryPolicy {
    const initial = toMs(o.initialDelay, "retry initialDelay");
    const increment = toMs(o.increment, "retry increment");
    const max = o.maxDelay === undefined ? Number.MAX_SAFE_INTEGER : toMs(o.maxDelay, "retry maxDelay");
    return Object.freeze({
      kind: "linear" as const,
      maxAttempts: attempts(o.maxAttempts),
      baseDelayMs: (attempt: number) => Math.min(max, initial + increment * (attempt - 1)),
      jitter: jitterOf(o.jitter),
    });
  },
  none(): RetryPolicy {
    return Object.freeze({
      kind: "none" as const,
      maxAttempts: 1,
      baseDelayMs: () => 0,
      jitter: "none" as const,
    });
  },
};

/** The wait after `attempt` failed, jitter applied. */
export function delayFor(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  // An exponential policy without maxDelay grows past any timestamp after enough attempts.
  const base = Math.min(policy.baseDelayMs(attempt), MAX_DURATION_MS);
  switch (policy.jitter) {
    case "full":
      return Math.round(random() * base);
    case "equal":
      return Math.round(base / 2 + random() * (base / 2));
    case "none":
      return Math.round(base);
  }
}

/** Steps try once unless told otherwise. */
export const DEFAULT_STEP_RETRY = retry.none();
/** Compensations must finish: many attempts, backing off to a minute. */
export const DEFAULT_COMPENSATION_RETRY = retry.exponential({
  maxAttempts: 10,
  initialDelay: "100ms",
  maxDelay: "1m",
});

export function isRetryPolicy(value: unknown): value is RetryPolicy {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as RetryPolicy).baseDelayMs === "function" &&
    typeof (value as RetryPolicy).maxAttempts === "number"
  );
}
