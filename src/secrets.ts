/**
 * Connection passwords never leave the process: every log line the engine writes goes through a redacting
 * logger that replaces the password of the engine's connection (as given, and URL-encoded) and any
 * `postgres://user:password@` in its text, however deep in the fields.
 */
import type pg from "pg";
import { maskConnectionString } from "./errors.js";
import { type Logger, silentLogger } from "./logger.js";

const MASK = "****";

/** The passwords an engine connects with: from its connection string, or the options of the pool it was given. */
export function secretsOf(connectionString: string | undefined, pool: pg.Pool | undefined): string[] {
  const found = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value !== "string" || value.length < 3) return;
    found.add(value);
    found.add(encodeURIComponent(value));
  };
  const fromUrl = (url: unknown) => {
    if (typeof url !== "string") return;
    try {
      add(decodeURIComponent(new URL(url).password));
    } catch {
      // Not a URL (a libpq key=value string): the masking of `postgres://` forms below still applies.
    }
  };
  fromUrl(connectionString);
  const options = pool?.options as { password?: unknown; connectionString?: unknown } | undefined;
  add(options?.password);
  fromUrl(options?.connectionString);
  return [...found].sort((a, b) => b.length - a.length);
}

/** `text` with every secret and every URL password replaced by `****`. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = maskConnectionString(text);
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(MASK);
  return out;
}

function redactValue(value: unknown, secrets: readonly string[], depth = 0): unknown {
  if (typeof value === "string") return redact(value, secrets);
  if (value instanceof Error) return redact(String(value), secrets);
  if (depth > 4 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, secrets, depth + 1));
  if (value instanceof Date) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v, secrets, depth + 1)]));
}

/** The engine's logger: what it writes is redacted before the user's logger sees it. */
export function redactingLogger(base: Logger, secrets: readonly string[]): Logger {
  if (base === silentLogger) return base;
  const line =
    (write: (m: string, f?: Record<string, unknown>) => void) => (m: string, f?: Record<string, unknown>) =>
      write(redact(m, secrets), f === undefined ? f : (redactValue(f, secrets) as Record<string, unknown>));
  return {
    debug: line((m, f) => base.debug(m, f)),
    info: line((m, f) => base.info(m, f)),
    warn: line((m, f) => base.warn(m, f)),
    error: line((m, f) => base.error(m, f)),
  };
}
