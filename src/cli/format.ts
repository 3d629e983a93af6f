/** Human output of the CLI: tables, durations, times, and colour only when stdout is a terminal. */

export type Paint = (text: string) => string;

export interface Colours {
  red: Paint;
  green: Paint;
  yellow: Paint;
  cyan: Paint;
  dim: Paint;
  bold: Paint;
}

const ansi =
  (open: number, close: number): Paint =>
  (text) =>
    `\u001b[${open}m${text}\u001b[${close}m`;
const plain: Paint = (text) => text;

/**
 * ANSI colours when `enabled`, identity functions otherwise.
 *
 * @example
 * const c = colours(process.stdout.isTTY === true);
 * console.log(c.red("failed"));
 */
export function colours(enabled: boolean): Colours {
  if (!enabled) return { red: plain, green: plain, yellow: plain, cyan: plain, dim: plain, bold: plain };
  return {
    red: ansi(31, 39),
    green: ansi(32, 39),
    yellow: ansi(33, 39),
    cyan: ansi(36, 39),
    dim: ansi(2, 22),
    bold: ansi(1, 22),
  };
}

/** Colours a saga or step state by what it means to an operator. */
export function paintState(c: Colours, state: string): string {
  if (state === "completed" || state === "succeeded" || state === "compensated") return c.green(state);
  if (state === "failed" || state === "compensation_failed" || state === "timed_out") return c.red(state);
  if (state === "running" || state === "compensating" || state === "pending") return c.cyan(state);
  if (state === "cancelled" || state === "skipped") return c.yellow(state);
  return state;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const width = (text: string) => text.replace(ANSI, "").length;

/**
 * A plain-text table: a header row and left-aligned columns, cells cut at `maxCell` characters.
 *
 * @example
 * table(["id", "state"], [["a1", "running"]]) // "id  state\na1  running"
 */
export function table(
  headers: string[],
  rows: string[][],
  c: Colours = colours(false),
  maxCell = 60,
): string {
  const cut = (cell: string) =>
    width(cell) > maxCell ? `${cell.replace(ANSI, "").slice(0, maxCell - 1)}…` : cell;
  const cells = rows.map((r) => r.map(cut));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => width(r[i] ?? ""))));
  const line = (r: string[], paint: Paint = plain) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell + " ".repeat((widths[i] ?? 0) - width(cell))))
      .map((cell) => paint(cell))
      .join("  ")
      .trimEnd();
  return [line(headers, c.bold), ...cells.map((r) => line(r))].join("\n");
}

/**
 * A duration for humans: `850ms`, `4.2s`, `3m 5s`, `2h 10m`, `3d 4h`.
 *
 * @example
 * formatDuration(65_000) // "1m 5s"
 */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "-";
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const s = Math.round(ms / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3_600)}h ${Math.floor((s % 3_600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3_600)}h`;
}

/** Milliseconds between two times, or null when either is missing. */
export function between(
  from: Date | string | null | undefined,
  to: Date | string | null | undefined,
): number | null {
  if (!from || !to) return null;
  return new Date(to).getTime() - new Date(from).getTime();
}

/** An ISO time without the `T` and milliseconds, in UTC: `2026-11-25 18:02:11Z`. */
export function formatTime(value: Date | string | null | undefined): string {
  if (!value) return "-";
  return new Date(value)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");
}

/** One-line JSON, cut to `max` characters. */
export function brief(value: unknown, max = 80): string {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `{ code, message }` of a stored error as `CODE: message`. */
export function formatError(error: unknown): string {
  if (!error || typeof error !== "object") return "";
  const e = error as { code?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? e.code : "";
  const message = typeof e.message === "string" ? e.message : "";
  return code && message ? `${code}: ${message}` : code || message;
}
