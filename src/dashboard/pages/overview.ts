/** Overview: counts by state and name, the last hour, workers, relay lag, dead letters, stuck. */
import { lastHourChart } from "../chart.js";
import type { Overview } from "../data.js";
import { type Html, h, ms, stateBadge } from "../html.js";
import { COUNT_CAP } from "../queries.js";
import type { PageContext } from "./layout.js";

const fmt = (n: number) => n.toLocaleString("en-US");

export function overviewMain(ctx: PageContext, o: Overview): Html {
  const link = (query: Record<string, string>) =>
    `${ctx.base}/sagas?${new URLSearchParams(query).toString()}`;
  const states = o.states.map((s) => {
    const shown = s.capped
      ? h`<span title="more than ${fmt(COUNT_CAP)}; the statistics estimate ${fmt(s.estimate ?? 0)}">${s.estimate !== null && s.estimate > COUNT_CAP ? `≈ ${fmt(s.estimate)}` : `${fmt(COUNT_CAP)}+`}</span>`
      : fmt(s.count);
    return h`<a class="tile" href="${link({ state: s.state })}" data-state="${s.state}">${stateBadge(s.state)}<span class="count">${shown}</span></a>`;
  });
  const watched = ["running", "compensating", "failed", "compensation_failed"];
  const byName = o.names.map((name) => {
    const cells = watched.map((state) => {
      const n = o.byName.find((r) => r.name === name && r.state === state)?.count ?? 0;
      return h`<td class="num">${n > 0 ? h`<a href="${link({ name, state })}">${fmt(n)}</a>` : h`<span class="muted">0</span>`}</td>`;
    });
    return h`<tr><td><a href="${link({ name })}">${name}</a></td>${cells}</tr>`;
  });
  const hl = o.health;
  const workers = hl.workers.list.map(
    (w) =>
      h`<tr><td>${w.hostname}:${w.pid}</td><td>${w.sagas.join(", ")}</td><td>${w.live ? "live" : h`<span class="warn">silent</span>`}</td><td class="num">${ms(w.ageMs)}</td></tr>`,
  );
  const unserved = hl.versions.unserved.map(
    (u) =>
      h`<li class="warn"><a href="${link({ name: u.saga.split("@")[0] ?? u.saga, version: u.saga.split("@")[1] ?? "" })}">${u.saga}</a>: ${u.active} active, no live worker serves it</li>`,
  );
  const relay = (hl.relay?.subscriptions ?? []).map(
    (s) =>
      h`<tr><td>${s.name}</td><td class="num">${fmt(s.pendingEvents)}</td><td class="num">${ms(s.lagMs)}</td></tr>`,
  );
  return h`
<h1>Overview</h1>
${hl.problems.length > 0 ? h`<section class="panel error"><h2>Problems</h2><ul>${hl.problems.map((p) => h`<li>${p}</li>`)}</ul></section>` : ""}
<section class="tiles">${states}</section>
<section class="grid">
  <div class="panel"><h2>Last hour</h2>${lastHourChart(o.lastHour)}</div>
  <div class="panel">
    <h2>Attention</h2>
    <ul class="facts">
      <li><a href="${ctx.base}/stuck">Stuck sagas</a>: <strong id="stuck-count">${hl.stuck === null ? "—" : fmt(hl.stuck)}</strong></li>
      <li><a href="${ctx.base}/dead-letters">Dead letters</a>: <strong id="dead-letter-count">${hl.deadLetters === null ? "—" : fmt(hl.deadLetters)}</strong></li>
      <li>Relay lag: <strong>${hl.relay ? ms(hl.relay.maxLagMs) : "—"}</strong></li>
      <li>Database: ${hl.database.ok ? h`ok (${ms(hl.database.latencyMs)})` : h`<span class="warn">unreachable</span>`}</li>
      ${hl.migrations.pending.length > 0 ? h`<li class="warn">pending migrations: ${hl.migrations.pending.join(", ")}</li>` : ""}
    </ul>
    ${unserved.length > 0 ? h`<ul>${unserved}</ul>` : ""}
  </div>
</section>
<section class="grid">
  <div class="panel"><h2>By name</h2>
    <table><thead><tr><th>saga</th>${watched.map((s) => h`<th class="num">${s}</th>`)}</tr></thead>
    <tbody>${byName.length > 0 ? byName : h`<tr><td colspan="5" class="muted">no sagas yet</td></tr>`}</tbody></table>
  </div>
  <div class="panel"><h2>Workers (${hl.workers.live} live)</h2>
    <table><thead><tr><th>worker</th><th>serves</th><th>status</th><th class="num">heartbeat</th></tr></thead>
    <tbody>${workers.length > 0 ? workers : h`<tr><td colspan="4" class="muted">no worker has registered</td></tr>`}</tbody></table>
    <p class="muted">Versions served: ${hl.versions.served.join(", ") || "none"}</p>
    ${relay.length > 0 ? h`<h3>Durable subscriptions</h3><table><thead><tr><th>name</th><th class="num">pending</th><th class="num">lag</th></tr></thead><tbody>${relay}</tbody></table>` : ""}
  </div>
</section>`;
}
