/** The stylesheet, served as /assets/dashboard.css (the CSP forbids inline style). */
export const STYLES_CSS = String.raw`
:root { --bg: #f7f7f5; --fg: #1d1f21; --muted: #6b7075; --line: #dcdcd6; --panel: #fff;
  --ok: #2f8f46; --bad: #c23b22; --warn: #b7791f; --run: #2b6cb0; --comp: #805ad5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
a { color: var(--run); }
header.top { display: flex; align-items: center; gap: 16px; padding: 8px 20px; background: #20242a; color: #eee; }
header.top a { color: #ddd; text-decoration: none; margin-right: 12px; }
header.top a[aria-current] { color: #fff; border-bottom: 2px solid #fff; }
.brand { font-weight: 700; }
.spacer { flex: 1; }
.badge { background: #555; border-radius: 3px; padding: 1px 6px; font-size: 12px; }
.live-status { font-size: 12px; color: #bbb; }
.live-status.ok::before { content: "● "; color: #5c5; }
.live-status.warn { color: #fc6; }
main { padding: 16px 20px 40px; max-width: 1280px; }
h1 { font-size: 20px; margin: 4px 0 16px; }
h2 { font-size: 15px; margin: 0 0 10px; }
.muted { color: var(--muted); }
.warn { color: var(--warn); }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; margin-bottom: 16px; overflow-x: auto; }
.panel.error, .flash.error { border-color: var(--bad); color: var(--bad); }
.flash { background: #eef6ee; border: 1px solid var(--ok); padding: 6px 10px; border-radius: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 16px; }
.tile { display: flex; flex-direction: column; gap: 4px; min-width: 130px; padding: 10px 12px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 6px; text-decoration: none; color: inherit; }
.tile .count { font-size: 22px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.num, th.num { text-align: right; }
.state { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; background: #e6e6e0; }
.state-completed, .state-succeeded { background: #dcf1e0; color: #1d5e2c; }
.state-failed, .state-compensation_failed, .state-timed_out { background: #f8dcd6; color: #8a2414; }
.state-running, .state-pending { background: #dde8f7; color: #1f4e85; }
.state-compensating, .state-compensated, .state-cancelled { background: #ebe2f8; color: #4d2f86; }
.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; margin-bottom: 12px; }
.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
input, select, button { font: inherit; padding: 3px 6px; }
button { cursor: pointer; }
button.danger { background: var(--bad); color: #fff; border: 0; border-radius: 3px; padding: 4px 10px; }
button.link { background: none; border: 0; color: #ddd; text-decoration: underline; }
form.inline { display: inline; }
.pager { display: flex; gap: 16px; margin-top: 10px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
ul.facts { list-style: none; padding: 0; margin: 0; }
.error-box { border-left: 3px solid var(--bad); padding: 4px 10px; margin: 6px 0; background: #fdf3f1; }
code.code { font-weight: 700; }
details.json pre, details pre { max-height: 320px; overflow: auto; background: #f2f2ee; padding: 6px; margin: 4px 0; white-space: pre-wrap; word-break: break-word; }
.actions { display: flex; gap: 16px; margin: 10px 0 16px; }
.actions details { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.actions summary { cursor: pointer; font-weight: 600; }
svg { width: 100%; height: auto; }
svg .axis { stroke: #999; }
svg .tick, svg .label, svg .status { font-size: 11px; fill: var(--muted); }
svg .label { fill: var(--fg); }
svg .label.comp { fill: var(--comp); }
svg .bar-ok, .key-ok, svg .seg-ok { fill: var(--ok); background: var(--ok); }
svg .bar-bad, .key-bad, svg .seg-failed { fill: var(--bad); background: var(--bad); }
svg .seg-retry { fill: var(--warn); }
svg .seg-running { fill: var(--run); }
svg .seg-compensated, svg .seg-compensating { fill: var(--comp); }
svg .wait { stroke: var(--warn); stroke-dasharray: 3 3; }
.key { display: inline-block; width: 10px; height: 10px; }
figure.chart { margin: 0; }
figcaption { font-size: 12px; color: var(--muted); }
tr.fresh { animation: fresh 1.5s ease-out; }
@keyframes fresh { from { background: #fff3b0; } to { background: transparent; } }
.login { max-width: 380px; margin: 40px auto; }
.login label { display: flex; flex-direction: column; gap: 4px; margin-bottom: 10px; }
`;
