/** Which page or API answers a request path; the handler in index.ts does auth and errors around it. */

export type Route =
  | { kind: "asset"; file: "dashboard.js" | "dashboard.css" }
  | { kind: "login" }
  | { kind: "logout" }
  | { kind: "page"; page: "overview" | "sagas" | "live" | "stuck" | "dead-letters" }
  | { kind: "saga"; id: string }
  | { kind: "action"; id: string; action: "cancel" | "retry"; api: boolean }
  | { kind: "redrive"; id: number | null; api: boolean }
  | { kind: "api"; what: "overview" | "sagas" | "stuck" | "dead-letters" | "session" }
  | { kind: "api-saga"; id: string }
  | { kind: "stream" }
  | { kind: "not-found" };

const PAGES = new Set(["sagas", "live", "stuck", "dead-letters"]);
const APIS = new Set(["overview", "sagas", "stuck", "dead-letters", "session"]);

export function route(method: string, path: string): Route {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const [a, b, c, d] = parts;
  const get = method === "GET" || method === "HEAD";
  const post = method === "POST";
  if (a === "assets" && get && (b === "dashboard.js" || b === "dashboard.css") && parts.length === 2)
    return { kind: "asset", file: b };
  if (a === "login" && parts.length === 1 && (get || post)) return { kind: "login" };
  if (a === "logout" && parts.length === 1 && post) return { kind: "logout" };
  if (parts.length === 0 && get) return { kind: "page", page: "overview" };
  if (a && parts.length === 1 && get && PAGES.has(a))
    return { kind: "page", page: a as "sagas" | "live" | "stuck" | "dead-letters" };
  if (a === "sagas" && b && parts.length === 2 && get) return { kind: "saga", id: b };
  if (a === "sagas" && b && (c === "cancel" || c === "retry") && parts.length === 3 && post)
    return { kind: "action", id: b, action: c, api: false };
  if (a === "dead-letters" && b === "redrive" && parts.length === 2 && post)
    return { kind: "redrive", id: null, api: false };
  if (a === "api") {
    if (b === "events" && c === "stream" && parts.length === 3 && get) return { kind: "stream" };
    if (b && parts.length === 2 && get && APIS.has(b))
      return { kind: "api", what: b as "overview" | "sagas" | "stuck" | "dead-letters" | "session" };
    if (b === "sagas" && c && parts.length === 3 && get) return { kind: "api-saga", id: c };
    if (b === "sagas" && c && (d === "cancel" || d === "retry") && parts.length === 4 && post)
      return { kind: "action", id: c, action: d, api: true };
    if (b === "dead-letters" && d === "redrive" && parts.length === 4 && post)
      return { kind: "redrive", id: c === "all" ? null : Number(c), api: true };
  }
  return { kind: "not-found" };
}
