import { type Duration, toMs } from "./duration.js";
import type { StoredError } from "./errors.js";

/** A completed step as a custom strategy sees it. */
export interface CompletedStep {
  readonly name: string;
  readonly index: number;
  /** `unknown` when the step may have had its effect but did not report (timeout, lost worker, cancel). */
  readonly outcome: "succeeded" | "unknown";
}

/** A resolved compensation strategy. */
export interface CompensationStrategy {
  readonly kind: "sequential" | "parallel" | "bestEffort" | "custom";
  /** Per-compensation call timeout, in ms; `undefined` means none. */
  readonly timeoutMs: number | undefined;
  /** `false` → the saga ends `failed` without undoing anything. */
  readonly shouldCompensate: (error: StoredError | null) => boolean;
  /** The order of compensation for sequential kinds; default reverse order of completion. */
  readonly order: (completed: readonly CompletedStep[]) => readonly CompletedStep[];
  /** Whether one exhausted compensation stops the rest (`sequential`) or the others still run. */
  readonly continueOnFailure: boolean;
  readonly concurrent: boolean;
}

const reverse = (steps: readonly CompletedStep[]) => [...steps].sort((a, b) => b.index - a.index);
const timeout = (o?: { timeout?: Duration }) =>
  o?.timeout === undefined ? undefined : toMs(o.timeout, "compensation timeout");

/**
 * How completed steps are undone when a saga fails, is cancelled or times out.
 *
 * @example
 * compensation.sequential({ timeout: "30s" })   // reverse order, one at a time (default)
 * compensation.parallel()                        // all at once, each its own job
 * compensation.bestEffort()                      // one failing does not stop the others
 * compensation.custom({ shouldCompensate: (e) => e?.code !== "OUT_OF_STOCK", order: (s) => s })
 */
export const compensation = {
  sequential(o?: { timeout?: Duration }): CompensationStrategy {
    return Object.freeze({
      kind: "sequential" as const,
      timeoutMs: timeout(o),
      shouldCompensate: () => true,
      order: reverse,
      continueOnFailure: false,
      concurrent: false,
    });
  },
  parallel(o?: { timeout?: Duration }): CompensationStrategy {
    return Object.freeze({
      kind: "parallel" as const,
      timeoutMs: timeout(o),
      shouldCompensate: () => true,
      order: reverse,
      continueOnFailure: true,
      concurrent: true,
    });
  },
  bestEffort(o?: { timeout?: Duration }): CompensationStrategy {
    return Object.freeze({
      kind: "bestEffort" as const,
      timeoutMs: timeout(o),
      shouldCompensate: () => true,
      order: reverse,
      continueOnFailure: true,
      concurrent: false,
    });
  },
  custom(o: {
    timeout?: Duration;
    shouldCompensate?: (error: StoredError | null) => boolean;
    order?: (completed: readonly CompletedStep[]) => readonly CompletedStep[];
    continueOnFailure?: boolean;
  }): CompensationStrategy {
    return Object.freeze({
      kind: "custom" as const,
      timeoutMs: timeout(o),
      shouldCompensate: o.shouldCompensate ?? (() => true),
      order: o.order ?? reverse,
      continueOnFailure: o.continueOnFailure ?? false,
      concurrent: false,
    });
  },
};
