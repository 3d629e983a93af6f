/** The saga list: filters in the URL, keyset pagination, newest or oldest first. */
import { type ListParams, LIST_PARAMS, type SagaSummary } from "../data.js";
import { type Html, h, stateBadge, time } from "../html.js";
import { STATES } from "../queries.js";
import type { PageContext } from "./layout.js";

export function listMain(
  ctx: PageContext,
  p: ListParams,
  page: { items: SagaSummary[]; nextCursor: string | null },
): Html {
  const keep = (extra: Record<string, string | undefined>) => {
    const q = new URLSearchParams();
    for (const k of LIST_PARAMS) if (p[k]) q.set(k, p[k]);
    for (const [k, v] of Object.entries(extra))
      if (v === undefined) q.delete(k);
      else q.set(k, v);
    return `${ctx.base}/sagas?${q.toString()}`;
  };
  const desc = p.order !== "asc";
  const rows = page.items.map(
    (s) => h`<tr data-id="${s.id}">
  <td><a class="saga-link" href="${ctx.base}/sagas/${s.id}">${s.id.slice(0, 8)}</a></td>
  <td>${s.name} <span class="muted">v${s.version}</span></td>
  <td>${stateBadge(s.state)}</td>
  <td>${s.error ? h`<code>${s.error.code}</code> ${s.error.message}` : ""}</td>
  <td>${s.idempotencyKey ?? ""}</td>
  <td>${time(s.createdAt)}</td>
  <td>${time(s.finishedAt)}</td>
</tr>`,
  );
  const field = (name: keyof ListParams, label: string, placeholder: string) =>
    h`<label>${label}<input name="${name}" value="${p[name] ?? ""}" placeholder="${placeholder}"></label>`;
  return h`
<h1>Sagas</h1>
<form class="filters" method="get" action="${ctx.base}/sagas">
  <label>state<select name="state"><option value="">any</option>${STATES.map((s) => h`<option${p.state === s ? h` selected` : ""}>${s}</option>`)}</select></label>
  ${field("name", "name", "order-processing")}
  ${field("version", "version", "1")}
  ${field("since", "since", "1h or 2026-01-01T00:00Z")}
  ${field("until", "until", "ISO time or age")}
  ${field("meta", "metadata", "key=value")}
  ${field("q", "id or idempotency key", "")}
  <input type="hidden" name="order" value="${desc ? "desc" : "asc"}">
  <button type="submit">Filter</button>
  <a href="${ctx.base}/sagas">clear</a>
</form>
<table class="list">
<thead><tr><th>id</th><th>saga</th><th>state</th><th>error</th><th>idempotency key</th>
<th><a href="${keep({ order: desc ? "asc" : "desc", cursor: undefined })}" title="sort by creation time">created ${desc ? "↓" : "↑"}</a></th><th>finished</th></tr></thead>
<tbody>${rows.length > 0 ? rows : h`<tr><td colspan="7" class="muted">no saga matches</td></tr>`}</tbody>
</table>
<nav class="pager">
  ${p.cursor ? h`<a href="${keep({ cursor: undefined })}">first page</a>` : ""}
  ${page.nextCursor ? h`<a rel="next" href="${keep({ cursor: page.nextCursor })}">next page →</a>` : ""}
</nav>`;
}
