/** HTML building blocks: every value from the database goes through `esc` (saga input can hold markup). */

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for element content and quoted attribute values. */
export function esc(value: unknown): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Marks a string as already-escaped HTML. */
export interface Html {
  readonly html: string;
}

export const raw = (html: string): Html => ({ html });

/** A tagged template: interpolated values are escaped unless they are {@link Html} (or arrays of it). */
export function h(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return { html: out };
}

function render(v: unknown): string {
  if (v === null || v === undefined || v === false) return "";
  if (Array.isArray(v)) return v.map(render).join("");
  if (typeof v === "object" && "html" in v) return (v as Html).html;
  return esc(v);
}

/** JSON, pretty-printed and escaped, in a collapsible block. */
export function jsonBlock(label: string, value: unknown, open = false): Html {
  const text = value === undefined ? "null" : JSON.stringify(value, null, 2);
  return h`<details class="json"${open ? raw(" open") : ""}><summary>${label}</summary><pre>${text}</pre></details>`;
}

export function time(value: Date | string | null | undefined): Html {
  if (!value) return h`<span class="muted">—</span>`;
  const d = value instanceof Date ? value : new Date(value);
  return h`<time datetime="${d.toISOString()}">${d.toISOString().replace("T", " ").slice(0, 23)}</time>`;
}

export function stateBadge(state: string): Html {
  return h`<span class="state state-${state}">${state}</span>`;
}

/** Duration in a short human form. */
export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)} s`;
  if (value < 3_600_000) return `${(value / 60_000).toFixed(1)} min`;
  return `${(value / 3_600_000).toFixed(1)} h`;
}
