/**
 * The worker's view of one handler call, for tracing and metrics. The step loop reaches it only through the
 * optional `observeStep` hook of its environment, and gets no probe at all when metrics are off and no
 * OpenTelemetry SDK is registered: then a step costs what it cost before.
 */
import type pg from "pg";
import type { AnySaga } from "../definition.js";
import type { Executor } from "../executor.js";
import { type AbortCode, AbortError, type Claim, type Outcome } from "../model.js";
import {
  type StepSpan,
  type StepSpanInfo,
  recordError,
  startStepSpan,
  tracingEnabled,
  withStepSpan,
} from "./tracing.js";

/**
 * How a handler call ended, as a label: it threw (`failed`), hit its step timeout, was interrupted by a cancel
 * or the saga deadline, or was handed back on worker shutdown (`released`).
 */
export type StepOutcome = "succeeded" | "failed" | "timeout" | "cancelled" | "deadline" | "released";

const ABORTED: Record<AbortCode, StepOutcome> = {
  STEP_TIMEOUT: "timeout",
  SAGA_CANCELLED: "cancelled",
  SAGA_TIMEOUT: "deadline",
  WORKER_SHUTDOWN: "released",
};

export function outcomeLabel(outcome: Outcome): StepOutcome {
  if (outcome.ok) return "succeeded";
  if (outcome.kind === "error") return "failed";
  return outcome.error instanceof AbortError
    ? ABORTED[outcome.error.code]
    : outcome.kind === "released"
      ? "released"
      : "timeout";
}

/** One observed handler call: `run` wraps the call, `end` reports how it went. @internal */
export interface StepProbe {
  run(fn: () => unknown): Promise<unknown>;
  end(outcome: Outcome, durationMs: number): void;
}

/** `db`: the open transaction of a transactional step, which must not wait for a second connection. @internal */
export type StepObserver = (
  def: AnySaga,
  sagaId: string,
  claim: Claim,
  db?: Executor,
) => StepProbe | undefined;

/** What a step's metrics see. */
export type StepInfo = Omit<StepSpanInfo, "traceContext">;

// trace_context never changes after start(): a bounded cache spares the lookup for the saga's next steps.
const CACHE_SIZE = 10_000;
const TRACE_SQL = "select trace_context from saga.instances where id = $1"; // primary key

/**
 * A span per handler call when an SDK is registered, plus `onEnd` (the step histograms) when metrics are on.
 * @internal
 */
export function createStepObserver(
  pool: pg.Pool,
  onEnd?: (info: StepInfo, outcome: StepOutcome, durationMs: number) => void,
): StepObserver {
  const cache = new Map<string, string | null>();
  const traceContextOf = async (sagaId: string, db: Executor): Promise<string | null> => {
    if (cache.has(sagaId)) return cache.get(sagaId) ?? null;
    try {
      const { rows } = await db.query<{ trace_context: string | null }>(TRACE_SQL, [sagaId]);
      const value = rows[0]?.trace_context ?? null;
      if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      cache.set(sagaId, value);
      return value;
    } catch {
      return null; // the span becomes a root; the step itself is not affected
    }
  };

  return (def, sagaId, claim, db) => {
    const tracing = tracingEnabled();
    if (!tracing && !onEnd) return undefined;
    const info: StepInfo = {
      sagaId,
      sagaName: def.name,
      kind: claim.kind,
      step: claim.step.name,
      index: claim.index,
      attempt: claim.attempt,
    };
    let span: StepSpan | undefined;
    return {
      async run(fn) {
        if (!tracing) return fn();
        span = startStepSpan({ ...info, traceContext: await traceContextOf(sagaId, db ?? pool) });
        return withStepSpan(span, fn);
      },
      end(outcome, durationMs) {
        const label = outcomeLabel(outcome);
        if (span?.span.isRecording()) {
          span.span.setAttribute("saga.outcome", label);
          if (!outcome.ok) recordError(span.span, outcome.error);
        }
        span?.span.end();
        onEnd?.(info, label, durationMs);
      },
    };
  };
}
