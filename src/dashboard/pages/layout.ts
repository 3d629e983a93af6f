/** The page frame: navigation, live status, and the data attributes the client script reads. */
import { type Html, h } from "../html.js";

export interface PageContext {
  /** The mount path, no trailing slash ("" at the root). */
  base: string;
  csrf: string;
  readOnly: boolean;
  /** Whether a token protects the dashboard (then a logout button shows). */
  auth: boolean;
}

export interface PageOptions {
  title: string;
  /** Which nav entry is current. */
  nav: "overview" | "sagas" | "live" | "stuck" | "dead-letters" | "login";
  /** The SSE stream path (relative to base) the page listens to, if any. */
  stream?: string;
  /** Reload the main section this often (ms), besides live events. */
  refreshMs?: number;
  /** How the page reacts to a live event: reload its main section, or append rows (live page). */
  onEvent?: "refresh" | "append";
}

const NAV: [PageOptions["nav"], string, string][] = [
  ["overview", "Overview", "/"],
  ["sagas", "Sagas", "/sagas"],
  ["live", "Live", "/live"],
  ["stuck", "Stuck", "/stuck"],
  ["dead-letters", "Dead letters", "/dead-letters"],
];

export function page(ctx: PageContext, o: PageOptions, main: Html): string {
  const nav = NAV.map(
    ([key, label, path]) =>
      h`<a href="${ctx.base}${path}"${o.nav === key ? h` aria-current="page"` : ""}>${label}</a>`,
  );
  return h`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · pg-saga</title>
<link rel="stylesheet" href="${ctx.base}/assets/dashboard.css">
<script src="${ctx.base}/assets/dashboard.js" defer></script>
</head>
<body data-base="${ctx.base}" data-stream="${o.stream ? ctx.base + o.stream : ""}" data-refresh="${o.refreshMs ?? ""}" data-on-event="${o.onEvent ?? "refresh"}">
<header class="top">
  <strong class="brand">pg-saga</strong>
  <nav>${nav}</nav>
  <span class="spacer"></span>
  ${ctx.readOnly ? h`<span class="badge">read-only</span>` : ""}
  ${o.stream ? h`<span id="live-status" class="live-status">connecting…</span>` : ""}
  ${ctx.auth && o.nav !== "login" ? h`<form method="post" action="${ctx.base}/logout" class="inline"><input type="hidden" name="csrf" value="${ctx.csrf}"><button type="submit" class="link">log out</button></form>` : ""}
</header>
${mainSection(main)}
</body>
</html>`.html;
}

/** The part of a page the client script reloads (`X-Partial: 1` requests answer with this only). */
export function mainSection(main: Html): Html {
  return h`<main id="main">${main}</main>`;
}

export function errorPanel(status: number, message: string): Html {
  return h`<section class="panel error"><h1>${status === 404 ? "Not found" : "Cannot show this"}</h1><p>${message}</p></section>`;
}
