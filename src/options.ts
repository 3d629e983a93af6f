import type pg from "pg";
import { z } from "zod";
import type { AnySaga } from "./definition.js";
import { SagaError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { RetentionOptions } from "./relay/types.js";
import { parseTraceparent } from "./observability/tracing.js";
import type { InstanceRow, ListFilter } from "./sql/read-sagas.js";
import type { SagaState } from "./sql/lock-instance.js";

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
   * A W3C `traceparent` to parent the saga's trace on, instead of the caller's active OpenTelemetry context.
   *
   * @example
   * await engine.start(orderSaga, input, { traceContext: req.headers.traceparent });
   */
  traceContext?: string;
}

const engineSchema = z.object({
  connectionString: z.string().min(1).optional(),
  pool: z.unknown().optional(),
  sagas: z.array(z.unknown()),
  logger: z.unknown().optional(),
  maxPayloadBytes: z.number().int().positive().default(1_048_576),
  poolSize: z.number().int().positive().default(10),
  listenConnectionString: z.string().min(1).optional(),
  ssl: z.union([z.boolean(), z.record(z.string(), z.unknown())]).optional(),
  preparedStatements: z.boolean().optional(),
});

export interface ResolvedEngineOptions {
  readonly connectionString: string | undefined;
  readonly sagas: readonly AnySaga[];
  readonly maxPayloadBytes: number;
  readonly poolSize: number;
  readonly listenConnectionString: string | undefined;
  readonly ssl: pg.ClientConfig["ssl"];
  readonly preparedStatements: boolean | undefined;
}

export function resolveEngineOptions(options: EngineOptions): ResolvedEngineOptions {
  const parsed = engineSchema.safeParse(options ?? {});
  if (!parsed.success) {
    throw new SagaError(
      "INVALID_OPTIONS",
      `createSagaEngine: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
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
    listenConnectionString: parsed.data.listenConnectionString,
    ssl: options.ssl,
    preparedStatements: parsed.data.preparedStatements,
  });
}

/** Serializes to JSON that jsonb accepts: no NUL characters, within the size limit. */
function toJsonText(
  value: unknown,
  what: string,
  maxBytes: number,
  code: "INVALID_INPUT" | "INVALID_OPTIONS",
): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new SagaError(code, `${what} cannot be serialized to JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (text === undefined) throw new SagaError(code, `${what} cannot be serialized to JSON`);
  if (text.includes("\\u0000"))
    throw new SagaError(
      code,
      `${what} contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store`,
    );
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

/** Validates everything `start()` writes, before anything is written. */
export function checkStart(def: AnySaga, input: unknown, o: StartOptions, maxBytes: number) {
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
    (typeof o.idempotencyKey !== "string" || o.idempotencyKey.length === 0 || o.idempotencyKey.length > 255)
  ) {
    throw new SagaError("INVALID_OPTIONS", "idempotencyKey must be a string of 1 to 255 characters");
  }
  if (
    o.metadata !== undefined &&
    (typeof o.metadata !== "object" || o.metadata === null || Array.isArray(o.metadata))
  ) {
    throw new SagaError("INVALID_OPTIONS", "metadata must be a plain JSON object");
  }
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

const listSchema = z.object({
  states: z.array(z.string()).optional(),
  name: z.string().optional(),
  names: z.array(z.string()).optional(),
  createdAfter: z.date().optional(),
  createdBefore: z.date().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  limit: z.number().int().min(1).max(1000).default(50),
  cursor: z.string().nullable().optional(),
  order: z.enum(["asc", "desc"]).default("desc"),
});

export function resolveListOptions(o: ListOptions, decode: (c: string) => ListFilter["cursor"]): ListFilter {
  const parsed = listSchema.safeParse(o);
  if (!parsed.success) {
    throw new SagaError(
      "INVALID_OPTIONS",
      `list: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  }
  const f = parsed.data;
  const names = [...(f.names ?? []), ...(f.name === undefined ? [] : [f.name])];
  return {
    states: f.states ?? null,
    names: names.length > 0 ? names : null,
    createdAfter: f.createdAfter ?? null,
    createdBefore: f.createdBefore ?? null,
    metadata: f.metadata ? JSON.stringify(f.metadata) : null,
    cursor: f.cursor ? decode(f.cursor) : null,
    limit: f.limit,
    order: f.order,
  };
}

export function encodeCursor(row: Pick<InstanceRow, "id"> & { created_key: string }): string {
  // Microseconds matter for keyset order: the text form keeps them, a JS Date would not.
  return Buffer.from(JSON.stringify([row.created_key, row.id])).toString("base64url");
}

export function decodeCursor(cursor: string): ListFilter["cursor"] {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString()) as [string, string];
    if (typeof createdAt === "string" && typeof id === "string") return { createdAt, id };
  } catch {
    // fall through
  }
  throw new SagaError("INVALID_OPTIONS", "list: cursor is not one that list() returned");
}
