import type pg from "pg";
import { z } from "zod";
import type { AnySaga } from "./definition.js";
import { SagaError } from "./errors.js";
import { isStorableString, toJsonb } from "./jsonb.js";
import type { Logger } from "./logger.js";
import { type PayloadCodec, plainCodec } from "./codec/codec.js";
import type { RetentionOptions } from "./relay/types.js";

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

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.length > 0 ? `${i.path.join(".")}: ` : ""}${i.message}`).join("; ");
}

/** Serializes to JSON that jsonb accepts (see jsonb.ts), within the size limit. */
export function toJsonText(
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
