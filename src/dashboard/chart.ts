/** The overview's chart: sagas that ended per minute over the last hour, as server-rendered SVG. */
import { type Html, h } from "./html.js";
import type { ChartBucket } from "./queries.js";

const WIDTH = 720;
const HEIGHT = 140;
const PAD = 24;

export function lastHourChart(buckets: ChartBucket[], now = new Date()): Html {
  const byMinute = new Map(buckets.map((b) => [b.minute, b]));
  const start = Math.floor(now.getTime() / 60_000) * 60_000 - 59 * 60_000;
  const minutes = Array.from(
    { length: 60 },
    (_, i) => new Date(start + i * 60_000).toISOString().slice(0, 16) + "Z",
  );
  const top = Math.max(1, ...buckets.map((b) => Math.max(b.completed, b.failed)));
  const slot = (WIDTH - PAD * 2) / 60;
  const barW = Math.max(1, slot / 2 - 1);
  const y = (n: number) => HEIGHT - PAD - (n / top) * (HEIGHT - PAD * 2);
  const bars = minutes.map((m, i) => {
    const b = byMinute.get(m);
    if (!b) return h``;
    const x = PAD + i * slot;
    return h`<g><title>${m.slice(11, 16)} UTC: ${b.completed} completed, ${b.failed} failed or compensated</title>
<rect class="bar-ok" x="${x.toFixed(1)}" y="${y(b.completed).toFixed(1)}" width="${barW.toFixed(1)}" height="${(HEIGHT - PAD - y(b.completed)).toFixed(1)}"></rect>
<rect class="bar-bad" x="${(x + barW + 1).toFixed(1)}" y="${y(b.failed).toFixed(1)}" width="${barW.toFixed(1)}" height="${(HEIGHT - PAD - y(b.failed)).toFixed(1)}"></rect></g>`;
  });
  const total = buckets.reduce((a, b) => ({ ok: a.ok + b.completed, bad: a.bad + b.failed }), {
    ok: 0,
    bad: 0,
  });
  return h`<figure class="chart">
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="sagas ended per minute, last hour">
<line class="axis" x1="${PAD}" y1="${HEIGHT - PAD}" x2="${WIDTH - PAD}" y2="${HEIGHT - PAD}"></line>
<text class="tick" x="${PAD}" y="${HEIGHT - 6}">−60 min</text>
<text class="tick" x="${WIDTH - PAD}" y="${HEIGHT - 6}" text-anchor="end">now</text>
<text class="tick" x="${PAD - 4}" y="${PAD}" text-anchor="end">${top}</text>
${bars}
</svg>
<figcaption><span class="key key-ok"></span> completed ${total.ok} · <span class="key key-bad"></span> failed, compensated, cancelled or timed out ${total.bad}</figcaption>
</figure>`;
}
