/**
 * What PostgreSQL jsonb can store, checked in one place, on the JSON text that will be sent.
 *
 * `JSON.stringify` (well-formed since Node 12) escapes only control characters and lone surrogates as `\uXXXX`,
 * so a NUL character or a lone surrogate in a string or a key shows in the text as the escape `\u0000` or
 * `\udXXX` preceded by an even number of backslashes; jsonb refuses both (SQLSTATE 22P05, 22P02). Text that
 * merely spells `\u0000` (six characters) is escaped as `\\u0000` and is fine.
 */

/** Deepest nesting of arrays and objects accepted: PostgreSQL's parser runs out of stack some way past it. */
export const MAX_JSON_DEPTH = 1_000;

// A `\u0000` or `\udXXX` escape that is not itself an escaped backslash followed by text.
const UNSTORABLE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/;
const UNSTORABLE_ESCAPES = /((?:^|[^\\])(?:\\\\)*)\\u(0000|d[89a-f][0-9a-f]{2})/g;

export type JsonbProblem = "not-json" | "nul" | "lone-surrogate" | "too-deep";

export type JsonbText =
  { ok: true; text: string | undefined } | { ok: false; problem: JsonbProblem; message: string };

/** Deepest nesting of `[`/`{` in JSON text, outside strings. */
function depthOf(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) max = depth;
    } else if (c === 125 || c === 93) depth--;
  }
  return max;
}

/** Why JSON text would be refused by jsonb, or null. */
export function jsonbTextProblem(text: string): { problem: JsonbProblem; message: string } | null {
  const match = UNSTORABLE_ESCAPE.exec(text);
  if (match) {
    return match[1] === "0000"
      ? { problem: "nul", message: "contains a NUL character (\\u0000), which jsonb cannot store" }
      : {
          problem: "lone-surrogate",
          message: `contains a lone UTF-16 surrogate (\\u${match[1]}), which jsonb cannot store`,
        };
  }
  // Nesting d needs at least 2d characters: short texts need no scan.
  if (text.length > 2 * MAX_JSON_DEPTH && depthOf(text) > MAX_JSON_DEPTH)
    return { problem: "too-deep", message: `is nested deeper than ${MAX_JSON_DEPTH} levels` };
  return null;
}

/** Serializes a value to JSON text jsonb accepts (`undefined` for a value JSON drops), or says why not. */
export function toJsonb(value: unknown): JsonbText {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    return { ok: false, problem: "not-json", message: `cannot be serialized to JSON: ${describe(err)}` };
  }
  if (text === undefined) return { ok: true, text };
  const problem = jsonbTextProblem(text);
  return problem ? { ok: false, ...problem } : { ok: true, text };
}

function describe(err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err);
  } catch {
    return "unreadable error";
  }
}

/** What {@link sanitizeJsonText} replaced with U+FFFD. */
export interface Replaced {
  nul: number;
  loneSurrogates: number;
}

/** JSON text with every NUL character and lone surrogate (in strings and keys) replaced by U+FFFD. */
export function sanitizeJsonText(text: string): { text: string; replaced: Replaced } {
  const replaced: Replaced = { nul: 0, loneSurrogates: 0 };
  if (!UNSTORABLE_ESCAPE.test(text)) return { text, replaced };
  const clean = text.replace(UNSTORABLE_ESCAPES, (_m, before: string, code: string) => {
    if (code === "0000") replaced.nul++;
    else replaced.loneSurrogates++;
    return `${before}\\ufffd`;
  });
  return { text: clean, replaced };
}

/** A string with NUL characters and lone surrogates replaced by U+FFFD (see {@link sanitizeJsonText}). */
export function sanitizeString(value: string): string {
  return value.replace(
    /\0|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    "\ufffd",
  );
}

/**
 * Whether a string can be stored in a text or jsonb column: no NUL character, no lone surrogate (node-postgres
 * would send it as U+FFFD, silently).
 */
export function isStorableString(value: string): boolean {
  return sanitizeString(value) === value;
}

const encoder = new TextEncoder();

/**
 * jsonb's key order: shorter keys (in UTF-8 bytes) first, then bytewise. JavaScript then lists integer-like
 * keys first whatever the insertion order, for a parsed row as for this copy.
 */
function jsonbKeyOrder(a: [string, Uint8Array], b: [string, Uint8Array]): number {
  const x = a[1];
  const y = b[1];
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

function reorder(_key: string, value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  if (keys.length < 2) return value;
  const sorted = keys.map((k): [string, Uint8Array] => [k, encoder.encode(k)]).sort(jsonbKeyOrder);
  // Object.fromEntries defines own properties: a "__proto__" key stays a key, as JSON.parse makes it.
  return Object.fromEntries(sorted.map(([k]) => [k, (value as Record<string, unknown>)[k]]));
}

/**
 * The value a jsonb column holding `text` gives back through node-postgres: JSON types only, object keys in
 * jsonb's order. What a step receives in-process is this, so it never depends on where the step runs.
 */
export function fromJsonbText(text: string): unknown {
  return JSON.parse(text, reorder) as unknown;
}
