/** Live events, stuck sagas, dead letters and the login form. */
import type { StuckSaga } from "../../sql/stuck-sagas.js";
import type { DeadLetter } from "../../relay/types.js";
import { type Html, h, jsonBlock, stateBadge, time } from "../html.js";
import type { PageContext } from "./layout.js";

export function liveMain(): Html {
  return h`<h1>Live events</h1>
<p class="muted">Events appear as they commit (LISTEN/NOTIFY from the relay; a worker must be running).</p>
<table class="events"><thead><tr><th>id</th><th>at</th><th>type</th><th>saga</th><th>step</th></tr></thead>
<tbody id="live-events"></tbody></table>`;
}

export function stuckMain(ctx: PageContext, rows: StuckSaga[]): Html {
  const body = rows.map(
    (
      s,
    ) => h`<tr><td><a href="${ctx.base}/sagas/${s.id}">${s.id.slice(0, 8)}</a></td><td>${s.name} <span class="muted">v${s.version}</span></td>
<td>${stateBadge(s.state)}</td><td>${s.step ?? ""}</td><td><code>${s.reason}</code></td><td>${s.detail}</td><td>${time(s.since)}</td></tr>`,
  );
  return h`<h1>Stuck sagas</h1>
<p class="muted">Sagas that have not ended and are not moving, with the reason (the <code>saga.stuck</code> view).</p>
<table><thead><tr><th>id</th><th>saga</th><th>state</th><th>step</th><th>reason</th><th>detail</th><th>since</th></tr></thead>
<tbody>${body.length > 0 ? body : h`<tr><td colspan="7" class="muted">nothing is stuck</td></tr>`}</tbody></table>`;
}

export function deadLettersMain(
  ctx: PageContext,
  d: { subscriptions: { subscription: string; count: number }[]; letters: DeadLetter[] },
): Html {
  const redrive = (fields: Html, label: string) =>
    ctx.readOnly
      ? h``
      : h`<form method="post" action="${ctx.base}/dead-letters/redrive" class="inline">
<input type="hidden" name="csrf" value="${ctx.csrf}">${fields}<button type="submit">${label}</button></form>`;
  const subs = d.subscriptions.map(
    (
      s,
    ) => h`<li><a href="${ctx.base}/dead-letters?subscription=${encodeURIComponent(s.subscription)}">${s.subscription}</a>: ${s.count}
${redrive(h`<input type="hidden" name="subscription" value="${s.subscription}">`, "redrive all")}</li>`,
  );
  const rows = d.letters.map(
    (
      l,
    ) => h`<tr><td>${l.id}</td><td>${l.subscription}</td><td><code>${l.event.type}</code>${l.event.sagaId ? h` <a href="${ctx.base}/sagas/${l.event.sagaId}">saga</a>` : ""}</td>
<td><code>${l.error.code}</code> ${l.error.message}</td><td class="num">${l.attempts}</td><td>${time(l.createdAt)}</td>
<td>${l.redrivenAt ? h`queued ${time(l.redrivenAt)}` : redrive(h`<input type="hidden" name="id" value="${l.id}">`, "redrive")}</td>
<td>${jsonBlock("event", l.event)}</td></tr>`,
  );
  return h`<h1>Dead letters</h1>
<ul>${subs.length > 0 ? subs : h`<li class="muted">no dead letters</li>`}</ul>
<table><thead><tr><th>id</th><th>subscription</th><th>event</th><th>error</th><th class="num">attempts</th><th>at</th><th></th><th></th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

export function loginMain(ctx: PageContext, failed: boolean): Html {
  return h`<section class="panel login"><h1>Sign in</h1>
${failed ? h`<p class="flash error">That token is not the dashboard's.</p>` : h`<p>This dashboard needs its access token.</p>`}
<form method="post" action="${ctx.base}/login">
<label>token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form></section>`;
}
