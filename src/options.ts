import type pg from "pg";
import { z } from "zod";
import type { AnySaga } from "./definition.js";
import { SagaError } from "./errors.js";
import { isStorableString, toJsonb } from "./jsonb.js";
import type { Logger } from "./logger.js";
import { type PayloadCodec, plainCodec } from "./codec/codec.js";
import type { RetentionOptions } from "./relay/types.js";
import { parseTraceparent } from "./observability/tracing.js";
import type { InstanceRow, ListFilter } from "./sql/read-sagas.js";
import { SAGA_STATES, type SagaState } from "./model.js";

/** Options of {@link createSagaEngine}. Give `connectionString` or your own `pool`. */
export interface EngineOptions {
  connectionString?: string | undefined;
  pool?: pg.Pool;
  sagas: readonly AnySaga[];
  logger?: Logger;
  /** Largest serialized input or metadata `start()` accepts, in bytes. Default 1 MB. */
  maxPayloadBytes?: number;
  /** Connections of the engine's own pool (not the worker's). Default 10. */
  poolSize?: number;
  /**
   * A direct connection to the server for LISTEN, when `connectionString` goes through a pooler in
   * transaction mode (PgBouncer), which cannot carry notifications. Given, graphile-worker's named prepared
   * statements are off too (see `preparedStatements`). See docs/deployment.md.
   *
   * @example
   * createSagaEngine({ connectionString: process.env.DATABASE_URL, listenConnectionString: process.env.DATABASE_DIRECT_URL, sagas });
   */
  listenConnectionString?: string | undefined;
  /**
   * TLS for every connection the engine opens (pools, listeners, the relay, graphile-worker, the migrator):
   * node-postgres's `ssl` (`true`, or tls options such as `{ ca, rejectUnauthorized }`). An `sslmode` in the
   * connection string takes precedence. Not used with your own `pool`.
   */
  ssl?: pg.ClientConfig["ssl"];
  /**
   * graphile-worker's named prepared statements. Default: on, off when `listenConnectionString` is given
   * (PgBouncer before 1.21 in transaction mode cannot track them).
   */
  preparedStatements?: boolean | undefined;
  /** What this engine's workers delete from the outbox and saga tables (see RetentionOptions). */
  retention?: RetentionOptions | undefined;
  /**
   * Encrypts inputs, step outputs, results, error details and event payloads before they are written (see
   * docs/security.md). Every engine and worker of a database needs the same keys.
   *
   * @example
   * createSagaEngine({ connectionString, sagas, codec: aes256gcm({ keys: { k1: process.env.SAGA_KEY! }, current: "k1" }) });
   */
  codec?: PayloadCodec | undefined;
}

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

// Strict: a misspelt or unsupported option is refused, not ignored.
const engineSchema = z.strictObject({
  connectionString: z.string().min(1).optional(),
  pool: z.unknown().optional(),
  sagas: z.array(z.unknown()),
  logger: z.unknown().optional(),
  maxPayloadBytes: z.number().int().positive().default(1_048_576),
  poolSize: z.number().int().positive().default(10),
  listenConnectionString: z.string().min(1).optional(),
  ssl: z.union([z.boolean(), z.record(z.string(), z.unknown())]).optional(),
  preparedStatements: z.boolean().optional(),
  retention: z.unknown().optional(),
  codec: z
    .custom<PayloadCodec>(
      (v) =>
        typeof v === "object" &&
        v !== null &&
        typeof (v as PayloadCodec).encode === "function" &&
        typeof (v as PayloadCodec).decode === "function",
      "codec must have encode(value) and decode(stored)",
    )
    .optional(),
});

export interface ResolvedEngineOptions {
  readonly connectionString: string | undefined;
  readonly sagas: readonly AnySaga[];
  readonly maxPayloadBytes: number;
  readonly poolSize: number;
  /** `plainCodec` when none was given. */
  readonly codec: PayloadCodec;
  readonly listenConnectionString: string | undefined;
  readonly ssl: pg.ClientConfig["ssl"];
  readonly preparedStatements: boolean | undefined;
}

export function resolveEngineOptions(options: EngineOptions): ResolvedEngineOptions {
  const parsed = engineSchema.safeParse(options ?? {});
  if (!parsed.success) {
    throw new SagaError("INVALID_OPTIONS", `createSagaEngine: ${formatIssues(parsed.error.issues)}`);
  }
  if (!options.pool && !options.connectionString) {
    throw new SagaError(
      "INVALID_OPTIONS",
      "createSagaEngine needs connectionString (e.g. process.env.DATABASE_URL) or pool",
    );
  }
  return Object.freeze({
    connectionString: options.connectionString,
    sagas: Object.freeze([...options.sagas]),
    maxPayloadBytes: parsed.data.maxPayloadBytes,
    poolSize: parsed.data.poolSize,
    codec: options.codec ?? plainCodec,
    listenConnectionString: parsed.data.listenConnectionString,
    ssl: options.ssl,
    preparedStatements: parsed.data.preparedStatements,
  });
}

/** Serializes to JSON that jsonb accepts (see jsonb.ts), within the size limit. */
function toJsonText(
  value: unknown,
  what: string,
  maxBytes: number,
  code: "INVALID_INPUT" | "INVALID_OPTIONS",
): string {
  const json = toJsonb(value);
  if (!json.ok) throw new SagaError(code, `${what} ${json.message}`, { details: { problem: json.problem } });
  const { text } = json;
  if (text === undefined) throw new SagaError(code, `${what} cannot be serialized to JSON`);
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) {
    throw new SagaError(
      "PAYLOAD_TOO_LARGE",
      `${what} is ${bytes} bytes; the limit is ${maxBytes} (maxPayloadBytes)`,
      { details: { bytes, maxBytes } },
    );
  }
  return text;
}

/** Longest idempotency key, in characters (saga.start in SQL has the same limit). */
export const MAX_IDEMPOTENCY_KEY = 255;

const START_OPTIONS = new Set(["idempotencyKey", "client", "metadata", "parentId", "traceContext", "tenant"]);

/** Refuses keys an options object does not know, instead of ignoring a misspelt one. */
export function refuseUnknownKeys(where: string, value: unknown, known: ReadonlySet<string>): void {
  if (typeof value !== "object" || value === null) return;
  const unknown = Object.keys(value).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new SagaError(
      "INVALID_OPTIONS",
      `${where}: unknown option(s) ${unknown.join(", ")}; expected ${[...known].join(", ")}`,
    );
  }
}

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
    throw new SagaError("INVALID_OPTIONS", "tenant must be a non-empty string without NUL characters or lone surrogates");
  if (o.parentId !== undefined && !/^[0-9a-f-]{36}$/i.test(o.parentId))
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

/** Filters of `engine.list()`. */
export interface ListOptions {
  states?: SagaState[];
  /** One saga name (`name`) or several (`names`). */
  name?: string;
  names?: string[];
  createdAfter?: Date;
  createdBefore?: Date;
  /** Sagas whose metadata contains this object (jsonb `@>`). */
  metadata?: Record<string, unknown>;
  /** Default 50, at most 1000. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string | null;
  /** By creation time; default `desc` (newest first). */
  order?: "asc" | "desc";
}


const storableString = z.string().refine(isStorableString, "must not hold NUL characters or lone surrogates");

const listSchema = z.strictObject({
  states: z.array(z.enum(SAGA_STATES)).optional(),
  name: storableString.optional(),
  names: z.array(storableString).optional(),
  createdAfter: z.date().optional(),
  createdBefore: z.date().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  limit: z.number().int().min(1).max(1000).default(50),
  cursor: z.string().nullable().optional(),
  order: z.enum(["asc", "desc"]).default("desc"),
});

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.length > 0 ? `${i.path.join(".")}: ` : ""}${i.message}`).join("; ");
}

export function resolveListOptions(o: ListOptions, decode: (c: string) => ListFilter["cursor"]): ListFilter {
  const parsed = listSchema.safeParse(o);
  if (!parsed.success) throw new SagaError("INVALID_OPTIONS", `list: ${formatIssues(parsed.error.issues)}`);
  const f = parsed.data;
  const names = [...(f.names ?? []), ...(f.name === undefined ? [] : [f.name])];
  // The caller's object, not zod's copy: a record copy drops a "__proto__" key, and the filter would then
  // match every saga.
  const metadata =
    f.metadata === undefined ? null : toJsonText(o.metadata, "list: metadata", Infinity, "INVALID_OPTIONS");
  return {
    states: f.states ?? null,
    names: names.length > 0 ? names : null,
    createdAfter: f.createdAfter ?? null,
    createdBefore: f.createdBefore ?? null,
    metadata,
    cursor: f.cursor ? decode(f.cursor) : null,
    limit: f.limit,
    order: f.order,
  };
}

export function encodeCursor(row: Pick<InstanceRow, "id"> & { created_key: string }): string {
  // created_at in microseconds since the epoch: keyset order needs them all, and a number has one spelling.
  return Buffer.from(JSON.stringify([row.created_key, row.id])).toString("base64url");
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Microseconds since the epoch: 16 digits reach past the year 2200, and stay far inside timestamptz's range.
const MICROS = /^-?\d{1,16}$/;

export function decodeCursor(cursor: string): ListFilter["cursor"] {
  try {
    const decoded = JSON.parse(Buffer.from(cursor, "base64url").toString()) as unknown;
    if (Array.isArray(decoded) && decoded.length === 2) {
      const [createdMicros, id] = decoded as unknown[];
      if (
        typeof createdMicros === "string" &&
        MICROS.test(createdMicros) &&
        typeof id === "string" &&
        UUID.test(id)
      )
        return { createdMicros, id };
    }
  } catch {
    // fall through
  }
  throw new SagaError("INVALID_OPTIONS", "list: cursor is not one that list() returned");
}

/** A cancel or retry reason: stored in the saga's error and events. */
export function checkReason(reason: unknown, what = "reason"): void {
  if (typeof reason !== "string" || reason.length > 1_000 || !isStorableString(reason))
    throw new SagaError(
      "INVALID_OPTIONS",
      `${what} must be a string of at most 1000 characters, without NUL characters or lone surrogates`,
    );
}

/**
 * Refuses worker options out of range, as start() refuses bad input: nothing starts with them.
 *
 * @example
 * checkWorkerOptions({ concurrency: 0 }); // throws SagaError INVALID_OPTIONS
 */
export function checkWorkerOptions(o: {
  concurrency?: unknown;
  pollInterval?: unknown;
  heartbeatInterval?: unknown;
  deadWorkerAfter?: unknown;
  reapInterval?: unknown;
  abortGrace?: unknown;
}): void {
  const limits: [keyof typeof o, number, number][] = [
    ["concurrency", 1, 1000],
    ["pollInterval", 1, 3_600_000],
    ["heartbeatInterval", 1, 3_600_000],
    ["deadWorkerAfter", 1, 86_400_000],
    ["reapInterval", 1, 3_600_000],
    ["abortGrace", 0, 3_600_000],
  ];
  for (const [key, min, max] of limits) {
    const value = o[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)
      throw new SagaError(
        "INVALID_OPTIONS",
        `runWorker: ${key} must be an integer from ${min} to ${max}; got ${JSON.stringify(value)}`,
      );
  }
}
