/** `engine.start()`: its options, and the check of everything it writes, made before anything is written. */
import type { AnySaga } from "./definition.js";
import { SagaError } from "./errors.js";
import { isStorableString } from "./jsonb.js";
import { isUuid } from "./model.js";
import { parseTraceparent } from "./observability/tracing.js";
import { refuseUnknownKeys, toJsonText } from "./options.js";

/** Options of `engine.start()`. */
export interface StartOptions {
  /** The same key for the same saga name returns the existing saga (`created: false`). */
  idempotencyKey?: string;
  /** The caller's open transaction: a pg Client/PoolClient or a drizzle transaction. */
  client?: unknown;
  /** Free-form JSON stored on the instance; `list({ metadata })` filters by containment. */
  metadata?: Record<string, unknown>;
  /** The saga that started this one (nesting). */
  parentId?: string;
  /**
   * Opt-in tenant isolation (docs/security.md): stored on the saga and its events. Default: the session's
   * `saga.tenant` setting, else the parent saga's tenant. A session with `saga.tenant` set may start only its own.
   *
   * @example
   * await engine.start(orderSaga, input, { tenant: "acme" });
   */
  tenant?: string;
  /**
   * A W3C `traceparent` to parent the saga's trace on, instead of the caller's active OpenTelemetry context.
   *
   * @example
   * await engine.start(orderSaga, input, { traceContext: req.headers.traceparent });
   */
  traceContext?: string;
}

/** Longest idempotency key, in characters (saga.start in SQL has the same limit). */
export const MAX_IDEMPOTENCY_KEY = 255;

const START_OPTIONS = new Set(["idempotencyKey", "client", "metadata", "parentId", "traceContext", "tenant"]);

/** Validates everything `start()` writes, before anything is written. */
export function checkStart(def: AnySaga, input: unknown, o: StartOptions, maxBytes: number) {
  if (typeof o !== "object" || o === null)
    throw new SagaError("INVALID_OPTIONS", "start: options must be an object");
  refuseUnknownKeys("start", o, START_OPTIONS);
  const parsed = def.inputSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      path: i.path.map(String),
      code: i.code,
      message: i.message,
    }));
    const where = issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new SagaError("INVALID_INPUT", `input of saga "${def.name}" is invalid: ${where}`, {
      details: { issues },
    });
  }
  if (
    o.idempotencyKey !== undefined &&
    (typeof o.idempotencyKey !== "string" ||
      o.idempotencyKey.length === 0 ||
      o.idempotencyKey.length > MAX_IDEMPOTENCY_KEY ||
      !isStorableString(o.idempotencyKey))
  ) {
    throw new SagaError(
      "INVALID_OPTIONS",
      `idempotencyKey must be a string of 1 to ${MAX_IDEMPOTENCY_KEY} characters, without NUL characters or lone surrogates`,
    );
  }
  if (
    o.metadata !== undefined &&
    (typeof o.metadata !== "object" || o.metadata === null || Array.isArray(o.metadata))
  ) {
    throw new SagaError("INVALID_OPTIONS", "metadata must be a plain JSON object");
  }
  if (
    o.tenant !== undefined &&
    (typeof o.tenant !== "string" || o.tenant.length === 0 || !isStorableString(o.tenant))
  )
    throw new SagaError(
      "INVALID_OPTIONS",
      "tenant must be a non-empty string without NUL characters or lone surrogates",
    );
  if (o.parentId !== undefined && (typeof o.parentId !== "string" || !isUuid(o.parentId)))
    throw new SagaError("INVALID_OPTIONS", "parentId must be a saga id (uuid)");
  if (o.traceContext !== undefined && parseTraceparent(o.traceContext) === null)
    throw new SagaError(
      "INVALID_OPTIONS",
      "traceContext must be a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)",
    );
  return {
    name: def.name,
    version: def.version,
    input: toJsonText(parsed.data ?? null, `input of saga "${def.name}"`, maxBytes, "INVALID_INPUT"),
    idempotencyKey: o.idempotencyKey ?? null,
    metadata: toJsonText(o.metadata ?? {}, "metadata", maxBytes, "INVALID_OPTIONS"),
    timeoutMs: def.timeoutMs ?? null,
    traceContext: o.traceContext ?? null,
    parentId: o.parentId ?? null,
    tenant: o.tenant ?? null,
  };
}
