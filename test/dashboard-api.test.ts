/**
 * The dashboard's JSON API and its access rules over HTTP, without a browser: filters and keyset pages,
 * detail with events, cancel and retry recorded with who and why, CSRF, read-only, the token and the login
 * cookie, safe headers, escaping, and the live event stream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli/main.js";
import { Access } from "../src/dashboard/auth.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventPayloads, useEngine } from "./helpers/engine.js";
import { serveDashboard } from "./helpers/dashboard-server.js";
import { control, dashboardSagas, echoSaga, flakySaga, slowSaga } from "./fixtures/dashboard-sagas.js";

const db = useTestDatabase();
const harness = useEngine(db, () => dashboardSagas);
const TOKEN = "test-token-0123456789";
let base = "";
let stop: () => Promise<void> = async () => {};
let csrf = "";

const auth = { authorization: `Bearer ${TOKEN}` };

async function api(path: string, init: RequestInit = {}) {
  const res = await fetch(`${base}${path}`, {
    ...init,
    headers: { ...auth, ...(init.headers ?? {}) },
    redirect: "manual",
  });
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  api(path, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
  });

beforeAll(async () => {
  const handler = harness.engine.dashboard({ token: TOKEN, user: () => "alice" });
  ({ url: base, stop } = await serveDashboard(handler));
  csrf = (await api("/api/session")).body.csrf;
});
afterAll(async () => {
  await stop();
});

describe("dashboard access", () => {
  it("answers 401 without the token, and with a wrong one", async () => {
    const none = await fetch(`${base}/api/overview`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as any).error.code).toBe("UNAUTHORIZED");
    const wrong = await fetch(`${base}/api/sagas`, { headers: { authorization: "Bearer nope-nope-nope" } });
    expect(wrong.status).toBe(401);
    const page = await fetch(`${base}/sagas`);
    expect(page.status).toBe(401);
    expect(await page.text()).toContain('action="/login"');
  });

  it("logs in through the form with an HttpOnly SameSite cookie, never the token itself", async () => {
    const bad = await fetch(`${base}/login`, {
      method: "POST",
      body: new URLSearchParams({ token: "wrong-token" }),
      redirect: "manual",
    });
    expect(bad.status).toBe(401);
    const ok = await fetch(`${base}/login`, {
      method: "POST",
      body: new URLSearchParams({ token: TOKEN }),
      redirect: "manual",
    });
    expect(ok.status).toBe(303);
    const cookie = ok.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toContain(TOKEN);
    const session = cookie.split(";")[0]!;
    const overview = await fetch(`${base}/api/overview`, { headers: { cookie: session } });
    expect(overview.status).toBe(200);
  });

  it("without a token serves loopback clients only", () => {
    const access = new Access(null);
    const req = (remoteAddress: string) => ({ headers: {}, socket: { remoteAddress } }) as never;
    expect(access.allowed(req("127.0.0.1"))).toBe(true);
    expect(access.allowed(req("::1"))).toBe(true);
    expect(access.allowed(req("10.1.2.3"))).toBe(false);
    expect(access.allowed(req("::ffff:192.168.0.9"))).toBe(false);
  });

  it("the CLI refuses to bind beyond loopback without a token", async () => {
    const saved = process.env.PG_SAGA_DASHBOARD_TOKEN;
    delete process.env.PG_SAGA_DASHBOARD_TOKEN;
    const stderr = process.stderr.write;
    let said = "";
    process.stderr.write = ((chunk: string) => ((said += chunk), true)) as typeof process.stderr.write;
    try {
      const code = await main([
        "node",
        "pg-saga",
        "--database",
        db.url,
        "dashboard",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
      ]);
      expect(code).toBe(2);
      expect(said).toContain("INSECURE_BIND");
    } finally {
      process.stderr.write = stderr;
      if (saved !== undefined) process.env.PG_SAGA_DASHBOARD_TOKEN = saved;
    }
  });

  it("sends safe headers and escapes saga input", async () => {
    const { id } = await harness.engine.start(echoSaga, {
      note: '<script>window.__xss=1</script><img src=x onerror="x()">',
    });
    await harness.engine.waitFor(id);
    const res = await fetch(`${base}/sagas/${id}`, { headers: auth });
    const html = await res.text();
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(html).toContain("&lt;script&gt;window.__xss=1&lt;/script&gt;");
    expect(html).not.toContain("<script>window");
    expect(html).not.toContain("<img src=x");
    // The only script is our own file.
    expect(html.match(/<script/g)).toHaveLength(1);
  });
});

describe("dashboard API", () => {
  it("lists with filters and keyset pages", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { id } = await harness.engine.start(
        echoSaga,
        { note: `n${i}` },
        { idempotencyKey: `echo-${i}`, metadata: { tenant: i % 2 === 0 ? "acme" : "globex" } },
      );
      ids.push(id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await api(`/api/sagas?name=dash-echo&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((s: { id: string }) => s.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of ids) expect(seen).toContain(id);

    const acme = await api("/api/sagas?name=dash-echo&meta=tenant%3Dacme");
    expect(acme.body.items.map((s: { id: string }) => s.id).sort()).toEqual([ids[0], ids[2], ids[4]].sort());
    const byKey = await api("/api/sagas?q=echo-3");
    expect(byKey.body.items.map((s: { id: string }) => s.id)).toEqual([ids[3]]);
    const byId = await api(`/api/sagas?q=${ids[1]}`);
    expect(byId.body.items.map((s: { id: string }) => s.id)).toEqual([ids[1]]);
    expect((await api("/api/sagas?name=dash-echo&version=2")).body.items).toEqual([]);
    expect((await api("/api/sagas?name=dash-echo&version=1&limit=1")).body.items).toHaveLength(1);
    const old = await api("/api/sagas?name=dash-echo&until=2000-01-01T00:00:00Z");
    expect(old.body.items).toEqual([]);
    const asc = await api("/api/sagas?name=dash-echo&order=asc&limit=500");
    const desc = await api("/api/sagas?name=dash-echo&limit=500");
    expect(asc.body.items.map((s: { id: string }) => s.id)).toEqual(
      desc.body.items.map((s: { id: string }) => s.id).reverse(),
    );
  });

  it("answers a bad filter with 400 and a code", async () => {
    const bad = await api("/api/sagas?state=exploded");
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("INVALID_OPTIONS");
    expect((await api("/api/sagas?meta=novalue")).status).toBe(400);
    expect((await api("/api/sagas?cursor=garbage")).status).toBe(400);
    expect((await api("/api/sagas/not-a-uuid")).status).toBe(404);
  });

  it("shows the overview: counts by state and name, workers, the last hour", async () => {
    const { body, status } = await api("/api/overview");
    expect(status).toBe(200);
    const completed = body.states.find((s: { state: string }) => s.state === "completed");
    expect(completed.count).toBeGreaterThan(0);
    expect(body.names).toContain("dash-echo");
    expect(body.health.workers.live).toBeGreaterThan(0);
    const ended = body.lastHour.reduce((n: number, b: { completed: number }) => n + b.completed, 0);
    expect(ended).toBeGreaterThan(0);
  });

  it("retries a failed saga, recording who and why; refuses without the CSRF token", async () => {
    control.failing = true;
    const { id } = await harness.engine.start(flakySaga, { order: "o-1" });
    await harness.engine.waitFor(id);
    expect(
      (await api(`/api/sagas?state=failed&name=dash-flaky`)).body.items.map((s: { id: string }) => s.id),
    ).toContain(id);
    const detail = await api(`/api/sagas/${id}`);
    expect(detail.body.saga.error.code).toBe("CARD_DECLINED");
    expect(detail.body.events.map((e: { type: string }) => e.type)).toContain("saga.failed");

    const refused = await post(`/api/sagas/${id}/retry`, { reason: "card fixed" });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("CSRF");
    const stale = await post(
      `/api/sagas/${id}/retry`,
      { reason: "card fixed" },
      { "x-csrf-token": "forged" },
    );
    expect(stale.status).toBe(403);
    expect((await harness.engine.get(id))?.state).toBe("failed");
    const noReason = await post(`/api/sagas/${id}/retry`, {}, { "x-csrf-token": csrf });
    expect(noReason.status).toBe(400);

    control.failing = false;
    const ok = await post(`/api/sagas/${id}/retry`, { reason: "card fixed" }, { "x-csrf-token": csrf });
    expect(ok.status).toBe(200);
    expect(ok.body.by).toBe("dashboard:alice");
    expect((await harness.engine.waitFor(id)).state).toBe("completed");
    const retrying = await eventPayloads(db, id, "saga.step.retrying");
    expect(retrying).toContainEqual(
      expect.objectContaining({ manual: true, by: "dashboard:alice", reason: "card fixed" }),
    );
    const again = await post(`/api/sagas/${id}/retry`, { reason: "twice" }, { "x-csrf-token": csrf });
    expect(again.status).toBe(409);
  });

  it("cancels a running saga, with the reason and who in its error", async () => {
    const { id } = await harness.engine.start(slowSaga, { order: "o-2" });
    for (let i = 0; i < 200; i++) {
      const s = await harness.engine.get(id);
      if (s?.steps.find((x) => x.name === "wait")?.status === "running") break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const ok = await post(`/api/sagas/${id}/cancel`, { reason: "customer left" }, { "x-csrf-token": csrf });
    expect(ok.status).toBe(200);
    const done = await harness.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("cancelled");
    expect(done.error?.message).toContain("customer left (by dashboard:alice)");
  });

  it("streams live events as they commit", async () => {
    const received = new Set<string>();
    const controller = new AbortController();
    const res = await fetch(`${base}/api/events/stream`, { headers: auth, signal: controller.signal });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    void (async () => {
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done) return;
        buffer += value;
        const blocks = buffer.split("\n\n");
        buffer = blocks.pop() ?? "";
        for (const block of blocks) {
          const data = block.split("\n").find((l) => l.startsWith("data: "));
          if (data) received.add(JSON.parse(data.slice(6)).sagaId as string);
        }
      }
    })();
    // LISTEN-only: events before the stream listens are not replayed, so start sagas until one shows up.
    const started: string[] = [];
    for (let i = 0; i < 50 && !started.some((id) => received.has(id)); i++) {
      started.push((await harness.engine.start(echoSaga, { note: `live ${i}` })).id);
      await new Promise((r) => setTimeout(r, 200));
    }
    controller.abort();
    expect(started.some((id) => received.has(id))).toBe(true);
  });
});

describe("a read-only dashboard", () => {
  let roBase = "";
  let roStop: () => Promise<void> = async () => {};
  beforeAll(async () => {
    ({ url: roBase, stop: roStop } = await serveDashboard(
      harness.engine.dashboard({ token: TOKEN, readOnly: true, basePath: "/ops" }),
    ));
  });
  afterAll(async () => roStop());

  it("hides and refuses actions; links carry its mount path", async () => {
    control.failing = true;
    const { id } = await harness.engine.start(flakySaga, { order: "o-3" });
    await harness.engine.waitFor(id);
    const session = (await (await fetch(`${roBase}/ops/api/session`, { headers: auth })).json()) as any;
    expect(session.readOnly).toBe(true);
    const page = await (await fetch(`${roBase}/ops/sagas/${id}`, { headers: auth })).text();
    expect(page).not.toContain("/retry");
    expect(page).toContain('href="/ops/sagas"');
    const res = await fetch(`${roBase}/ops/api/sagas/${id}/retry`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json", "x-csrf-token": session.csrf },
      body: JSON.stringify({ reason: "no" }),
    });
    expect(res.status).toBe(403);
    expect((await harness.engine.get(id))?.state).toBe("failed");
  });
});
