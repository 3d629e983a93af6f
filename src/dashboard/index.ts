/**
 * The dashboard as a plain Node request handler: server-rendered pages, a JSON API under /api, server-sent
 * events, and a small script and stylesheet of its own. No framework and no build: it mounts under any
 * server that hands out Node's (req, res).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { SagaError, maskConnectionString } from "../errors.js";
import { CLIENT_JS } from "./assets/client-js.js";
import { STYLES_CSS } from "./assets/styles-css.js";
import { Access, sessionCookie } from "./auth.js";
import * as data from "./data.js";
import { type Html } from "./html.js";
import { readBody, redirect, send, sendJson, statusOf } from "./http.js";
import { LiveEvents } from "./live.js";
import { detailMain } from "./pages/detail.js";
import { type PageContext, type PageOptions, errorPanel, mainSection, page } from "./pages/layout.js";
import { loginMain } from "./pages/other.js";
import { type Route, route } from "./router.js";
import { apiOf, pageOf } from "./views.js";
import type { DashboardEngine, DashboardHandler, DashboardOptions } from "./types.js";

export type { DashboardEngine, DashboardHandler, DashboardOptions } from "./types.js";

const HTML = "text/html; charset=utf-8";

function normalizeBase(base: string | undefined): string {
  if (!base || base === "/") return "";
  return `/${base.replace(/^\/+|\/+$/g, "")}`;
}

/**
 * Creates the dashboard's request handler over an engine (see `engine.dashboard()`).
 *
 * @example
 * const dashboard = createDashboard(engine, { token: process.env.PG_SAGA_DASHBOARD_TOKEN });
 * http.createServer(dashboard).listen(7070, "127.0.0.1");
 */
export function createDashboard(engine: DashboardEngine, options: DashboardOptions = {}): DashboardHandler {
  const token = options.token ?? process.env.PG_SAGA_DASHBOARD_TOKEN ?? null;
  if (token !== null && token.length < 8)
    throw new SagaError("INVALID_OPTIONS", "dashboard: the token must be at least 8 characters long");
  const access = new Access(token);
  const readOnly = options.readOnly ?? false;
  const fixedBase = options.basePath === undefined ? null : normalizeBase(options.basePath);
  const live = new LiveEvents(engine);
  let closed = false;

  /** The mount path and the path inside the dashboard. */
  function locate(req: IncomingMessage): { base: string; path: string; query: URLSearchParams } {
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    let base = fixedBase ?? "";
    let path = url.pathname;
    if (fixedBase !== null && fixedBase !== "" && (path === fixedBase || path.startsWith(`${fixedBase}/`)))
      path = path.slice(fixedBase.length);
    // Express strips the mount path from req.url and keeps it in req.baseUrl.
    const baseUrl = (req as { baseUrl?: unknown }).baseUrl;
    if (fixedBase === null && typeof baseUrl === "string") base = normalizeBase(baseUrl);
    return { base, path: path || "/", query: url.searchParams };
  }

  function who(req: IncomingMessage): string {
    const name = options.user?.(req);
    return name ? `dashboard:${name}` : "dashboard";
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { base, path, query } = locate(req);
    const ctx: PageContext = { base, csrf: access.csrf, readOnly, auth: token !== null };
    const partial = req.headers["x-partial"] === "1";
    const render = (status: number, o: PageOptions, main: Html) =>
      send(res, status, HTML, partial ? mainSection(main).html : page(ctx, o, main));
    let r: Route = { kind: "not-found" };
    try {
      r = route(req.method ?? "GET", path);
      if (r.kind === "asset") {
        const [type, body] =
          r.file === "dashboard.js"
            ? ["text/javascript; charset=utf-8", CLIENT_JS]
            : ["text/css; charset=utf-8", STYLES_CSS];
        return send(res, 200, type, body, { "Cache-Control": "no-cache" });
      }
      if (r.kind === "login") return await login(req, res, ctx);
      if (!access.allowed(req)) return refuse(res, ctx, path);
      if (closed) throw new SagaError("ENGINE_CLOSED", "this dashboard was closed");
      switch (r.kind) {
        case "logout":
          await csrfFromForm(req);
          return redirect(res, `${base}/login`, {
            "Set-Cookie": sessionCookie("", base || "/", secure(req), 0),
          });
        case "page":
          return await pageOf(engine, r.page, query, ctx, render);
        case "saga": {
          const d = await data.sagaDetail(engine, r.id);
          if (!d)
            return render(
              404,
              { title: "Not found", nav: "sagas" },
              errorPanel(404, `no saga with id ${r.id}`),
            );
          const done = query.get("done");
          const flash =
            done === "cancel" ? "Cancel requested." : done === "retry" ? "Retry requested." : undefined;
          return render(
            200,
            {
              title: `${d.saga.name} ${d.saga.id.slice(0, 8)}`,
              nav: "sagas",
              stream: `/api/events/stream?saga=${d.saga.id}`,
            },
            detailMain(ctx, d, flash),
          );
        }
        case "action":
          return await act(req, res, r, base);
        case "redrive":
          return await redriveAction(req, res, r, base);
        case "api":
          return sendJson(res, 200, await apiOf(engine, r.what, query, ctx));
        case "api-saga": {
          const d = await data.sagaDetail(engine, r.id);
          if (!d) throw new SagaError("SAGA_NOT_FOUND", `no saga with id ${r.id}`);
          return sendJson(res, 200, d);
        }
        case "stream":
          return live.open(req, res, query.get("saga"));
        case "not-found":
          if (path.startsWith("/api/"))
            return sendJson(res, 404, {
              error: { code: "NOT_FOUND", message: `no route ${req.method} ${path}` },
            });
          return render(404, { title: "Not found", nav: "overview" }, errorPanel(404, `nothing at ${path}`));
      }
    } catch (err) {
      const status = err instanceof URIError ? 400 : statusOf(err);
      const code =
        err instanceof SagaError ? err.code : err instanceof URIError ? "INVALID_OPTIONS" : "INTERNAL";
      const message =
        status < 500 || err instanceof SagaError
          ? maskConnectionString(err instanceof Error ? err.message : String(err))
          : `the dashboard could not answer (${String((err as { code?: unknown }).code ?? "error")}); see the server's logs`;
      if (res.headersSent) return void res.end();
      if (path.startsWith("/api/") || (r.kind === "action" && r.api))
        return sendJson(res, status, { error: { code, message } });
      return render(status, { title: "Error", nav: "overview" }, errorPanel(status, message));
    }
  }

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => {
      // Rendering the error failed too (the client went away): end the response, never the process.
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
  }) as DashboardHandler;

  const secure = (req: IncomingMessage) =>
    (req.socket as { encrypted?: boolean }).encrypted === true ||
    req.headers["x-forwarded-proto"] === "https";

  function refuse(res: ServerResponse, ctx: PageContext, path: string): void {
    const message =
      token === null
        ? "this dashboard has no token, so it serves only this machine (loopback)"
        : "send the dashboard's token as Authorization: Bearer <token>, or sign in";
    if (path.startsWith("/api/")) return sendJson(res, 401, { error: { code: "UNAUTHORIZED", message } });
    const body = token === null ? errorPanel(401, message) : loginMain(ctx, false);
    send(res, 401, HTML, page(ctx, { title: "Sign in", nav: "login" }, body), {
      ...(token === null ? {} : { "WWW-Authenticate": 'Bearer realm="pg-saga"' }),
    });
  }

  async function login(req: IncomingMessage, res: ServerResponse, ctx: PageContext): Promise<void> {
    if (token === null) return redirect(res, `${ctx.base}/`);
    if (req.method === "GET")
      return send(res, 200, HTML, page(ctx, { title: "Sign in", nav: "login" }, loginMain(ctx, false)));
    const form = await readBody(req);
    const cookie = access.login(form.token ?? "");
    if (cookie === null)
      return send(res, 401, HTML, page(ctx, { title: "Sign in", nav: "login" }, loginMain(ctx, true)));
    redirect(res, `${ctx.base}/`, { "Set-Cookie": sessionCookie(cookie, ctx.base || "/", secure(req)) });
  }

  /** Reads a form and checks its CSRF field; the same-origin check is the browser's (SameSite cookie, CSP). */
  async function csrfFromForm(req: IncomingMessage): Promise<Record<string, string>> {
    const form = await readBody(req);
    const given = req.headers["x-csrf-token"];
    if (!access.csrfValid(typeof given === "string" ? given : form.csrf))
      throw new SagaError("INVALID_OPTIONS", "missing or stale CSRF token: reload the page and try again");
    return form;
  }

  async function act(
    req: IncomingMessage,
    res: ServerResponse,
    r: Extract<Route, { kind: "action" }>,
    base: string,
  ) {
    if (readOnly) return forbidden(res, r.api);
    const form = await csrfFromForm(req).catch((err: unknown) => err);
    if (form instanceof Error) return csrfRefused(res, r.api, form);
    const reason = (form as Record<string, string>).reason?.trim();
    if (!reason) throw new SagaError("INVALID_OPTIONS", `${r.action}: give a reason`);
    const by = who(req);
    const { state } =
      r.action === "retry"
        ? await engine.retry(r.id, { by, reason })
        : await engine.cancel(r.id, `${reason} (by ${by})`);
    if (r.api) return sendJson(res, 200, { id: r.id, state, by });
    redirect(res, `${base}/sagas/${encodeURIComponent(r.id)}?done=${r.action}`);
  }

  async function redriveAction(
    req: IncomingMessage,
    res: ServerResponse,
    r: Extract<Route, { kind: "redrive" }>,
    base: string,
  ) {
    if (readOnly) return forbidden(res, r.api);
    const form = await csrfFromForm(req).catch((err: unknown) => err);
    if (form instanceof Error) return csrfRefused(res, r.api, form);
    const fields = form as Record<string, string>;
    const id = r.id ?? (fields.id ? Number(fields.id) : null);
    if (id !== null && !Number.isSafeInteger(id))
      throw new SagaError("INVALID_OPTIONS", "redrive: id is not a dead letter id");
    const subscription = fields.subscription;
    if (id === null && !subscription)
      throw new SagaError("INVALID_OPTIONS", "redrive: give a dead letter id or a subscription");
    const result = await engine.redrive(id ?? { subscription: subscription! });
    if (r.api) return sendJson(res, 200, result);
    redirect(res, `${base}/dead-letters`);
  }

  function forbidden(res: ServerResponse, api: boolean): void {
    const message = "this dashboard is read-only";
    if (api) return sendJson(res, 403, { error: { code: "READ_ONLY", message } });
    send(res, 403, "text/plain; charset=utf-8", message);
  }

  function csrfRefused(res: ServerResponse, api: boolean, err: Error): void {
    if (api) return sendJson(res, 403, { error: { code: "CSRF", message: err.message } });
    send(res, 403, "text/plain; charset=utf-8", err.message);
  }

  handler.close = async () => {
    closed = true;
    await live.close();
  };
  /** @internal Resolves once the live stream listens (tests and benches). */
  (handler as DashboardHandler & { liveReady?: () => Promise<void> }).liveReady = () => live.ready();
  return handler;
}
