/** What every command shares: the connection, the engine, output (human or --json), colour and the logger. */
import pino, { type Logger as PinoLogger } from "pino";
import { type AnySaga } from "../definition.js";
import { type SagaEngine, createSagaEngine } from "../engine.js";
import { SagaError, maskConnectionString } from "../errors.js";
import type { Logger } from "../logger.js";
import { type Colours, colours } from "./format.js";
import { logDestination } from "./log-format.js";

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** Options every command accepts (commander's global options). */
export interface GlobalOptions {
  database?: string;
  json?: boolean;
  color?: boolean;
  logLevel?: string;
}

/** An error the CLI reports as one line, with its exit code. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface Output {
  write(text: string): void;
}

/**
 * One invocation of the CLI. Commands ask it for the engine (opened on first use, closed by `close()`) and
 * print through it, so --json and colour are decided once.
 *
 * @example
 * const cli = new Cli({ json: true });
 * cli.print({ ok: true }, () => "ok");
 * await cli.close();
 */
export class Cli {
  readonly c: Colours;
  private opened: SagaEngine | undefined;
  private log: PinoLogger | undefined;

  constructor(
    readonly options: GlobalOptions,
    readonly stdout: Output = process.stdout,
    readonly stderr: Output = process.stderr,
  ) {
    const tty = (stdout as { isTTY?: boolean }).isTTY === true;
    const forced = process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== "0";
    this.c = colours(!options.json && options.color !== false && !process.env.NO_COLOR && (tty || forced));
  }

  get json(): boolean {
    return this.options.json === true;
  }

  /** The connection string: --database, else DATABASE_URL. */
  databaseUrl(): string {
    const url = this.options.database ?? process.env.DATABASE_URL;
    if (!url) throw new CliError("NO_DATABASE", "no database: set DATABASE_URL or pass --database <url>", 2);
    const from = this.options.database === undefined ? "DATABASE_URL" : "--database";
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (
      !parsed ||
      !["postgres:", "postgresql:"].includes(parsed.protocol) ||
      (!parsed.hostname && !parsed.search)
    )
      throw new CliError(
        "INVALID_OPTIONS",
        `${from} is not a PostgreSQL URL: expected a URL like postgres://app@localhost:5432/app`,
        2,
      );
    return url;
  }

  /** An engine over the database, without definitions unless given (operating needs none). */
  engine(sagas: readonly AnySaga[] = []): SagaEngine {
    this.opened ??= createSagaEngine({
      connectionString: this.databaseUrl(),
      sagas,
      poolSize: 3,
      logger: this.logger(),
    });
    return this.opened;
  }

  /** pino on stderr (stdout stays clean for --json), adapted to the engine's logger interface. */
  logger(defaultLevel = "warn"): Logger {
    const level = this.options.logLevel ?? process.env.LOG_LEVEL ?? defaultLevel;
    if (!LOG_LEVELS.includes(level))
      throw new CliError(
        "INVALID_OPTIONS",
        `${this.options.logLevel === undefined ? "LOG_LEVEL" : "--log-level"} must be one of ${LOG_LEVELS.join(", ")}; got ${JSON.stringify(level)}`,
        2,
      );
    // Readable lines on a terminal, JSON for everything else (a log collector, a file, --json).
    const tty = (this.stderr as { isTTY?: boolean }).isTTY === true && !this.json;
    this.log ??= pino(
      { level, base: { pid: process.pid } },
      logDestination(this.stderr, {
        pretty: tty,
        c: colours(tty && this.options.color !== false && !process.env.NO_COLOR),
      }),
    );
    const p = this.log;
    return {
      debug: (message, fields) => p.debug(fields ?? {}, message),
      info: (message, fields) => p.info(fields ?? {}, message),
      warn: (message, fields) => p.warn(fields ?? {}, message),
      error: (message, fields) => p.error(fields ?? {}, message),
    };
  }

  /** A line on stdout. */
  line(text = ""): void {
    this.stdout.write(`${text}\n`);
  }

  /** `value` as one JSON line with --json, else the human rendering. */
  print(value: unknown, human: () => string): void {
    this.line(this.json ? JSON.stringify(value) : human());
  }

  async close(): Promise<void> {
    const engine = this.opened;
    this.opened = undefined;
    await engine?.close();
    this.log?.flush();
  }
}

/** The one line an error becomes: message (code), connection strings masked. */
export function describeError(err: unknown): { code: string; message: string; exitCode: number } {
  if (err instanceof CliError)
    return { code: err.code, message: maskConnectionString(err.message), exitCode: err.exitCode };
  if (err instanceof SagaError)
    return { code: err.code, message: maskConnectionString(err.message), exitCode: 1 };
  const e = err as {
    message?: unknown;
    code?: unknown;
    errors?: unknown[];
    address?: unknown;
    port?: unknown;
  };
  let message = typeof e?.message === "string" ? e.message : String(err);
  // node's connect errors to several addresses are an AggregateError with an empty message.
  if (!message && Array.isArray(e?.errors) && e.errors.length > 0) {
    message = (e.errors[0] as { message?: string }).message ?? "";
  }
  const code = typeof e?.code === "string" ? e.code : "ERROR";
  if (!message) message = code;
  if (
    ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH"].includes(code) ||
    /ECONNREFUSED/.test(message)
  )
    message = `cannot reach the database: ${message}`;
  // pg's own (client-side) error when the server asks for a password the URL does not have.
  if (/client password must be a string/.test(message))
    return {
      code: "NO_PASSWORD",
      message:
        "the server asks for a password and the connection string has none: postgres://user:PASSWORD@host/db (or set PGPASSWORD)",
      exitCode: 2,
    };
  // A SQLSTATE (five characters, at least one digit: not "ERROR") is named once by the caller: "(SQLSTATE 3D000)".
  return { code, message: maskConnectionString(message.split("\n")[0] ?? message), exitCode: 1 };
}

/** Whether an error code is a PostgreSQL SQLSTATE, what a DBA searches for. */
export function isSqlState(code: string): boolean {
  return /^[0-9A-Z]{5}$/.test(code) && /\d/.test(code);
}
