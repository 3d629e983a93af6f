/** The dashboard's read side: each page, and each JSON answer under /api, from the engine's data. */
import * as data from "./data.js";
import type { Html } from "./html.js";
import type { PageContext, PageOptions } from "./pages/layout.js";
import { listMain } from "./pages/list.js";
import { deadLettersMain, liveMain, stuckMain } from "./pages/other.js";
import { overviewMain } from "./pages/overview.js";
import type { Route } from "./router.js";
import type { DashboardEngine } from "./types.js";

export async function pageOf(
  engine: DashboardEngine,
  which: Extract<Route, { kind: "page" }>["page"],
  query: URLSearchParams,
  ctx: PageContext,
  render: (status: number, o: PageOptions, main: Html) => void,
) {
  switch (which) {
    case "overview":
      return render(
        200,
        { title: "Overview", nav: "overview", stream: "/api/events/stream" },
        overviewMain(ctx, await data.overview(engine)),
      );
    case "sagas": {
      const params = Object.fromEntries(query) as data.ListParams;
      // Only the first page refreshes itself: a later page would shift under the reader.
      return render(
        200,
        { title: "Sagas", nav: "sagas", ...(params.cursor ? {} : { refreshMs: 5_000 }) },
        listMain(ctx, params, await data.listSagas(engine, params)),
      );
    }
    case "live":
      return render(
        200,
        { title: "Live", nav: "live", stream: "/api/events/stream", onEvent: "append" },
        liveMain(),
      );
    case "stuck":
      return render(
        200,
        { title: "Stuck", nav: "stuck", refreshMs: 5_000 },
        stuckMain(ctx, await data.stuck(engine, query.get("name") ?? undefined)),
      );
    case "dead-letters":
      return render(
        200,
        { title: "Dead letters", nav: "dead-letters" },
        deadLettersMain(ctx, await data.deadLetters(engine, query.get("subscription") ?? undefined)),
      );
  }
}

export async function apiOf(
  engine: DashboardEngine,
  what: Extract<Route, { kind: "api" }>["what"],
  query: URLSearchParams,
  ctx: PageContext,
) {
  switch (what) {
    case "overview":
      return data.overview(engine);
    case "sagas":
      return data.listSagas(engine, Object.fromEntries(query) as data.ListParams);
    case "stuck":
      return data.stuck(engine, query.get("name") ?? undefined);
    case "dead-letters":
      return data.deadLetters(engine, query.get("subscription") ?? undefined);
    case "session":
      return { csrf: ctx.csrf, readOnly: ctx.readOnly, auth: ctx.auth };
  }
}
