import { MAX_JSON_DEPTH, jsonbTextProblem, sanitizeJsonText } from "./jsonb.js";

/**
 * Every error pg-saga throws on purpose is a {@link SagaError} with a string `code`.
 * Branch on `code`, never on the message.
 */
export type SagaErrorCode =
  | "INVALID_DEFINITION"
  | "INVALID_INPUT"
  | "INVALID_OPTIONS"
  | "UNKNOWN_SAGA"
  | "PAYLOAD_TOO_LARGE"
  | "SAGA_NOT_FOUND"
  | "SAGA_TERMINAL"
  | "INVALID_STATE"
  | "INVALID_EVENT"
  | "IDEMPOTENCY_CONFLICT"
  | "DEFINITION_MISMATCH"
  | "WAIT_TIMEOUT"
  | "ENGINE_CLOSED"
  | "MIGRATION_FAILED"
  | "SCHEMA_OUTDATED"
  | "SCHEMA_NEWER"
  | "DATABASE_ERROR"
  | "BRIDGE_DEPENDENCY_MISSING"
  | "CODEC_KEY_MISSING"
  | "CODEC_DECRYPT_FAILED"
  | "DATABASE_TLS"
  | "CHILD_FAILED"
  | "CHILD_COMPENSATION_FAILED"
  | "PARENT_COMPENSATING";

/**
 * The one error type the engine throws.
 *
 * @example
 * try { await engine.start(orderSaga, input); }
 * catch (err) { if (err instanceof SagaError && err.code === "INVALID_INPUT") logger.warn(err.message, { details: err.details }); }
 */
export class SagaError extends Error {
  override readonly name = "SagaError";
  readonly code: SagaErrorCode;
  readonly details: unknown;

  constructor(code: SagaErrorCode, message: string, options: { cause?: unknown; details?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }
}

/**
 * A failure of the business rules: never retried, the saga goes straight to compensation.
 *
 * @example
 * if (balance < amount) throw new BusinessError("INSUFFICIENT_FUNDS", "balance too low", { balance });
 */
export class BusinessError extends Error {
  override readonly name = "BusinessError";
  readonly code: string;
  readonly details: unknown;

  constructor(code: string, message: string, details?: unknown) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/**
 * A failure that is always retried while the step has attempts left.
 *
 * @example
 * if (res.status === 503) throw new RetryableError(new Error("payment gateway unavailable"));
 */
export class RetryableError extends Error {
  override readonly name = "RetryableError";
  readonly code: string;

  constructor(cause: unknown, code = "RETRYABLE") {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.code = code;
  }
}

/** The shape an error takes once stored on a step, an instance or an event. */
export interface StoredError {
  code: string;
  message: string;
  type: string;
  retryable: boolean;
  details?: unknown;
  step?: string;
  /** `unknown` when the step may have had its effect (timeout, lost worker, cancel mid-call). */
  outcome?: "failed" | "unknown";
  /**
   * What was changed so that the error could be stored: NUL characters and lone UTF-16 surrogates replaced by
   * U+FFFD (jsonb cannot store them), `details` left out when too large or too deeply nested.
   */
  sanitized?: { nul?: number; loneSurrogates?: number; details?: string };
}

const MAX_MESSAGE = 2_000;
const MAX_CODE = 200;
/** Largest `details` stored with an error, as JSON: the error is copied onto the step, the saga and events. */
export const MAX_ERROR_DETAILS_BYTES = 65_536;

/**
 * Turns anything thrown into JSON that jsonb stores: circular details, non-Error throws, NUL characters and
 * lone surrogates (replaced, and said so in `sanitized`), getters that throw. Never throws itself.
 */
export function toStoredError(err: unknown, retryable: boolean): StoredError {
  let raw: StoredError;
  try {
    raw = readError(err, retryable);
  } catch {
    raw = {
      code: "STEP_ERROR",
      message: "the thrown value could not be read (a property getter or toString threw)",
      type: "unknown",
      retryable,
    };
  }
  return storableError(raw);
}

function readError(err: unknown, retryable: boolean): StoredError {
  if (err instanceof Error) {
    const raw = (err as Error & { code?: unknown }).code;
    const code = typeof raw === "string" ? clip(maskConnectionString(raw), MAX_CODE) : "STEP_ERROR";
    const message = err.message as unknown;
    const stored: StoredError = {
      code,
      // A message quoting a connection string keeps its password out of the tables and events.
      message: clip(
        maskConnectionString(typeof message === "string" ? message : String(safeJson(message))),
        MAX_MESSAGE,
      ),
      type: clip(String(err.name), MAX_CODE),
      retryable,
    };
    const details = safeJson((err as { details?: unknown }).details);
    if (details !== undefined) stored.details = details;
    return stored;
  }
  const json = safeJson(err);
  const message = typeof err === "string" ? err : json === undefined ? String(err) : JSON.stringify(json);
  return {
    code: "NON_ERROR_THROWN",
    message: clip(maskConnectionString(message), MAX_MESSAGE),
    type: typeof err,
    retryable,
  };
}

/** The first `max` UTF-16 units, without cutting a surrogate pair in two. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/** The error as jsonb stores it: strings and keys cleaned, details bounded (see StoredError.sanitized). */
function storableError(raw: StoredError): StoredError {
  const sanitized: NonNullable<StoredError["sanitized"]> = {};
  if (raw.details !== undefined) {
    const text = JSON.stringify(raw.details);
    const why =
      Buffer.byteLength(text) > MAX_ERROR_DETAILS_BYTES
        ? `left out: larger than ${MAX_ERROR_DETAILS_BYTES} bytes`
        : jsonbTextProblem(text)?.problem === "too-deep"
          ? `left out: nested deeper than ${MAX_JSON_DEPTH} levels`
          : undefined;
    if (why !== undefined) {
      delete raw.details;
      sanitized.details = why;
    }
  }
  const clean = sanitizeJsonText(JSON.stringify(raw));
  const stored = JSON.parse(clean.text) as StoredError;
  if (clean.replaced.nul > 0) sanitized.nul = clean.replaced.nul;
  if (clean.replaced.loneSurrogates > 0) sanitized.loneSurrogates = clean.replaced.loneSurrogates;
  if (Object.keys(sanitized).length > 0) stored.sanitized = sanitized;
  return stored;
}

/** JSON-safe copy: cycles become "[Circular]", bigint becomes a string, functions vanish. */
export function safeJson(value: unknown): unknown {
  if (value === undefined) return undefined;
  const seen = new WeakSet<object>();
  try {
    const text = JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === "bigint") return v.toString();
      if (typeof v === "object" && v !== null) {
        if (seen.has(v)) return "[Circular]";
        seen.add(v);
      }
      return v;
    });
    return text === undefined ? undefined : (JSON.parse(text) as unknown);
  } catch {
    return "[Unserializable]";
  }
}

/** Hides the password in a connection string before it reaches a message or a log. */
export function maskConnectionString(text: string): string {
  return text.replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]+@/gi, "$1****@");
}
