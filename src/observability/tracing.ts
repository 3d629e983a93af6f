/**
 * OpenTelemetry spans through `@opentelemetry/api` only: without an SDK registered by the application every
 * call here lands on the API's no-op tracer and records nothing.
 *
 * One trace per saga: `engine.start()` opens a `saga.start` span (a child of the caller's active span, or a
 * new root) and stores its W3C `traceparent` on the instance (`saga.instances.trace_context`). Every step
 * execution and compensation, in whichever worker process, opens its span as a child of that stored context.
 */
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  ProxyTracerProvider,
  type Tracer,
  context,
  isSpanContextValid,
  trace,
} from "@opentelemetry/api";

/** The instrumentation scope of every pg-saga span. */
export const TRACER_NAME = "pg-saga";

// version-traceid-parentid-flags; version ff is forbidden, later versions may append fields (W3C Trace Context).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$/;

/**
 * Parses a W3C `traceparent` header value; `null` when it is not a valid one. The stored format is
 * W3C whatever propagator the application configured, so pg-saga reads and writes it itself.
 *
 * @example
 * parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?.traceId; // "4bf92f35…"
 */
export function parseTraceparent(value: string | null | undefined): SpanContext | null {
  if (!value) return null;
  const m = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return null;
  const spanContext: SpanContext = {
    traceId: m[2] as string,
    spanId: m[3] as string,
    traceFlags: Number.parseInt(m[4] as string, 16) & 0xff,
    isRemote: true,
  };
  return isSpanContextValid(spanContext) ? spanContext : null;
}

/**
 * Formats a span context as a W3C `traceparent`; `null` for the invalid context of a no-op root span.
 *
 * @example
 * formatTraceparent(trace.getActiveSpan()!.spanContext()); // "00-<trace id>-<span id>-01"
 */
export function formatTraceparent(spanContext: SpanContext): string | null {
  if (!isSpanContextValid(spanContext)) return null;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  return `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
}

// Looked up on each use: the application may register (or replace) its SDK after the engine was created.
const tracer = (): Tracer => trace.getTracer(TRACER_NAME);

// The API's no-op provider, the delegate of a proxy nobody registered an SDK into.
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether the application registered an OpenTelemetry SDK. Without one, the worker skips step spans
 * altogether (and the trace context lookup they need).
 *
 * @example
 * if (tracingEnabled()) logger.debug("spans are exported");
 */
export function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NOOP_PROVIDER;
}

/** Marks a span failed with the error's code and message. @internal */
export function recordError(span: Span, err: unknown): void {
  if (!span.isRecording()) return;
  const e = err instanceof Error ? err : new Error(String(err));
  span.recordException(e);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string") span.setAttribute("saga.error.code", code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}

/**
 * Runs `write` (the insert of the instance) inside a `saga.start <name>` span and hands it the traceparent to
 * store. Its parent is `explicit` (the `traceContext` start option) if given, else the caller's active context.
 * With no SDK the span is a no-op that carries its parent's context, so an explicit traceparent is stored as is.
 * @internal
 */
export async function traceStart<T extends { id: string; created: boolean }>(
  sagaName: string,
  explicit: string | null,
  write: (traceparent: string | null) => Promise<T>,
): Promise<T> {
  const remote = parseTraceparent(explicit);
  const parent = remote ? trace.setSpanContext(context.active(), remote) : context.active();
  const span = tracer().startSpan(
    `saga.start ${sagaName}`,
    { kind: SpanKind.PRODUCER, attributes: { "saga.name": sagaName } },
    parent,
  );
  try {
    const result = await context.with(trace.setSpan(parent, span), () =>
      write(formatTraceparent(span.spanContext())),
    );
    span.setAttribute("saga.id", result.id);
    span.setAttribute("saga.created", result.created);
    return result;
  } catch (err) {
    recordError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** What a step span needs to know. */
export interface StepSpanInfo {
  sagaId: string;
  sagaName: string;
  kind: "execute" | "compensate";
  step: string;
  index: number;
  attempt: number;
  /** The traceparent stored on the instance, if any. */
  traceContext: string | null;
}

/** A span around one handler call: `context` is active while the handler runs. @internal */
export interface StepSpan {
  readonly span: Span;
  readonly context: Context;
}

/**
 * Opens the span of one step attempt or compensation attempt, a child of the saga's stored traceparent
 * (a root when the saga has none, e.g. started from SQL without one).
 * @internal
 */
export function startStepSpan(info: StepSpanInfo): StepSpan {
  const remote = parseTraceparent(info.traceContext);
  const parent = remote ? trace.setSpanContext(ROOT_CONTEXT, remote) : ROOT_CONTEXT;
  const span = tracer().startSpan(
    `${info.kind === "execute" ? "saga.step" : "saga.compensate"} ${info.step}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "saga.id": info.sagaId,
        "saga.name": info.sagaName,
        "saga.step": info.step,
        "saga.step.index": info.index,
        "saga.attempt": info.attempt,
        "saga.operation": info.kind,
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs `fn` with the step span active, so spans the handler opens (HTTP, SQL) join the saga's trace. */
export function withStepSpan<T>(s: StepSpan, fn: () => T): T {
  return context.with(s.context, fn);
}
