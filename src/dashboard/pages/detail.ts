/** One saga: its facts, actions, the step timeline, steps with outputs and errors, and its events. */
import type { Detail } from "../data.js";
import { type Html, h, jsonBlock, stateBadge, time } from "../html.js";
import { timeline } from "../timeline.js";
import type { PageContext } from "./layout.js";

function errorView(error: unknown): Html {
  if (!error || typeof error !== "object") return h``;
  const e = error as { code?: unknown; message?: unknown; stack?: unknown; step?: unknown };
  return h`<div class="error-box"><code class="code">${e.code ?? "ERROR"}</code> ${e.message ?? ""}${e.step ? h` <span class="muted">(step ${e.step})</span>` : ""}
${typeof e.stack === "string" ? h`<details><summary>stack</summary><pre>${e.stack}</pre></details>` : ""}
${jsonBlock("error details", error)}</div>`;
}

function actions(ctx: PageContext, d: Detail): Html {
  if (ctx.readOnly) return h``;
  const { saga } = d;
  const form = (action: "cancel" | "retry", label: string, hint: string) =>
    h`<details class="action action-${action}"><summary>${label}…</summary>
<form method="post" action="${ctx.base}/sagas/${saga.id}/${action}">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<p>${hint}</p>
<label>reason <input name="reason" required maxlength="500" placeholder="why"></label>
<button type="submit" class="danger" name="confirm" value="yes">Confirm ${action}</button>
</form></details>`;
  const canCancel = saga.state === "running";
  const canRetry = saga.state === "failed" || saga.state === "compensation_failed";
  if (!canCancel && !canRetry) return h``;
  return h`<section class="actions">
${canCancel ? form("cancel", "Cancel", "The saga stops and compensates its completed steps, then ends cancelled.") : ""}
${canRetry ? form("retry", "Retry", saga.state === "failed" ? "The saga resumes from its failed step with a fresh attempt budget." : "The compensation resumes where it stopped.") : ""}
</section>`;
}

export function detailMain(ctx: PageContext, d: Detail, flash?: string): Html {
  const { saga, events, children } = d;
  const link = (id: string) => `${ctx.base}/sagas/${id}`;
  const steps = saga.steps.map(
    (s) => h`<tr>
<td>${s.index}</td><td>${s.name}</td><td>${stateBadge(s.status)}</td><td class="num">${s.attempt}</td>
<td class="num">${s.compensationAttempt}</td><td>${time(s.startedAt)}</td><td>${time(s.finishedAt)}</td>
<td>${s.output === null ? "" : jsonBlock("output", s.output)}${errorView(s.error)}${s.compensationError ? h`<div class="muted">compensation:</div>${errorView(s.compensationError)}` : ""}</td>
</tr>`,
  );
  const eventRows = events.map(
    (
      e,
    ) => h`<tr><td class="num">${e.seq}</td><td>${time(e.createdAt)}</td><td><code>${e.type}</code></td><td>${e.step ?? ""}</td>
<td>${jsonBlock("payload", e.payload)}</td></tr>`,
  );
  return h`
<h1><span class="muted">${saga.name} v${saga.version}</span> ${stateBadge(saga.state)}</h1>
${flash ? h`<p class="flash">${flash}</p>` : ""}
<dl class="facts">
  <dt>id</dt><dd><code id="saga-id">${saga.id}</code></dd>
  <dt>idempotency key</dt><dd>${saga.idempotencyKey ?? h`<span class="muted">none</span>`}</dd>
  <dt>created</dt><dd>${time(saga.createdAt)}</dd>
  <dt>updated</dt><dd>${time(saga.updatedAt)}</dd>
  <dt>finished</dt><dd>${time(saga.finishedAt)}</dd>
  ${saga.deadline ? h`<dt>deadline</dt><dd>${time(saga.deadline)}</dd>` : ""}
  ${saga.nextAttemptAt ? h`<dt>next attempt</dt><dd>${time(saga.nextAttemptAt)}</dd>` : ""}
  ${saga.parentId ? h`<dt>parent</dt><dd><a href="${link(saga.parentId)}">${saga.parentId}</a></dd>` : ""}
  ${children.length > 0 ? h`<dt>children</dt><dd><ul class="children">${children.map((c) => h`<li><a href="${link(c.id)}">${c.name}</a> ${stateBadge(c.state)}</li>`)}</ul></dd>` : ""}
</dl>
${saga.error ? errorView(saga.error) : ""}
${actions(ctx, d)}
<section class="panel"><h2>Timeline</h2>${timeline(saga, events)}</section>
<section class="panel"><h2>Data</h2>
${jsonBlock("input", saga.input, true)}${jsonBlock("data", saga.data)}${jsonBlock("result", saga.result)}${jsonBlock("metadata", saga.metadata)}
</section>
<section class="panel"><h2>Steps</h2>
<table><thead><tr><th>#</th><th>step</th><th>status</th><th class="num">attempts</th><th class="num">comp. attempts</th><th>started</th><th>finished</th><th>output / error</th></tr></thead>
<tbody>${steps}</tbody></table></section>
<section class="panel"><h2>Events (${events.length})</h2>
<table class="events"><thead><tr><th>seq</th><th>at</th><th>type</th><th>step</th><th>payload</th></tr></thead>
<tbody>${eventRows}</tbody></table></section>`;
}
