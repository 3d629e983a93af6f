/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core): sign in, overview, the
 * list filtered to failed, a saga retried and seen completing live, a running saga cancelled, a live event
 * arriving, a saga input holding markup rendered as text, 401 without the token, actions refused without the
 * CSRF token. Screenshots go to test-results/dashboard/ on every run (docs/dashboard.png with
 * UPDATE_DOCS_SCREENSHOT=1).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, type Page, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestDatabase } from "./helpers/database.js";
import { serveDashboard } from "./helpers/dashboard-server.js";
import { useEngine } from "./helpers/engine.js";
import { control, dashboardSagas, echoSaga, flakySaga, slowSaga } from "./fixtures/dashboard-sagas.js";

const CHROMIUM = "/usr/bin/chromium";
const TOKEN = "browser-test-token-42";
const SHOTS = join(process.cwd(), "test-results", "dashboard");

const db = useTestDatabase();
const harness = useEngine(db, () => dashboardSagas);
let base = "";
let stop: () => Promise<void> = async () => {};
let context: BrowserContext;
let page: Page;
let profile = "";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function screenshot(name: string) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Waits until the page's event stream listens (the server said "ready"). */
async function live() {
  await page.locator("#live-status", { hasText: /^live$/ }).waitFor({ timeout: 15_000 });
}

const stateOf = () => page.locator("main h1 .state");

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it when missing)`);
  mkdirSync(SHOTS, { recursive: true });
  ({ url: base, stop } = await serveDashboard(
    harness.engine.dashboard({ token: TOKEN, user: () => "carol" }),
  ));
  profile = mkdtempSync(join(tmpdir(), "pgsaga-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = await context.newPage();
  // Every confirmation is accepted; a dialog from saga data would fail the XSS check below.
  page.on("dialog", (d) => void d.accept());
});

afterAll(async () => {
  await context?.close();
  await stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe("the dashboard in Chromium", () => {
  it("refuses without the token, then signs in through the form", async () => {
    const api = await page.goto(`${base}/api/overview`);
    expect(api?.status()).toBe(401);
    const res = await page.goto(`${base}/`);
    expect(res?.status()).toBe(401);
    await page.fill('input[name="token"]', TOKEN);
    await page.click('button[type="submit"]');
    await page.locator("main h1", { hasText: "Overview" }).waitFor();
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === "pgsaga_session")?.httpOnly).toBe(true);
  });

  it("opens the overview, filters the list to failed, retries a saga and sees it complete live", async () => {
    control.failing = true;
    for (let i = 0; i < 4; i++) await harness.engine.start(echoSaga, { note: `order ${i}` });
    const { id } = await harness.engine.start(flakySaga, { order: "o-77" }, { idempotencyKey: "order-77" });
    await harness.engine.waitFor(id);

    await page.goto(`${base}/`);
    await live();
    await page.locator('a.tile[data-state="failed"] .count', { hasText: /^[1-9]/ }).waitFor();
    await screenshot("overview");

    await page.click('a.tile[data-state="failed"]');
    await page.waitForURL(/\/sagas\?state=failed/);
    await page.locator(`tr[data-id="${id}"]`).waitFor();
    expect(await page.locator("tbody tr .state").allTextContents()).toEqual(
      expect.arrayContaining(["failed"]),
    );
    expect(new Set(await page.locator("tbody tr .state").allTextContents())).toEqual(new Set(["failed"]));
    await screenshot("list");

    await page.click(`tr[data-id="${id}"] a.saga-link`);
    await page.waitForURL(new RegExp(`/sagas/${id}$`));
    await expect.poll(() => stateOf().textContent()).toBe("failed");
    expect(await page.locator(".error-box code.code").first().textContent()).toBe("CARD_DECLINED");

    // The retried attempt waits at a gate, so the page shows it running before it completes.
    control.failing = false;
    let open!: () => void;
    control.gate = new Promise<void>((resolve) => (open = resolve));
    await page.click("details.action-retry summary");
    await page.fill("details.action-retry input[name=reason]", "card replaced");
    await page.click("details.action-retry button.danger");
    await page.waitForURL(/done=retry/);
    await live();
    await expect.poll(() => stateOf().textContent()).toBe("running");
    await page.evaluate(() => ((globalThis as unknown as { stayed: boolean }).stayed = true));
    open();
    await expect.poll(() => stateOf().textContent(), { timeout: 15_000 }).toBe("completed");
    // Updated in place by the live stream, not by a reload.
    expect(await page.evaluate(() => (globalThis as unknown as { stayed?: boolean }).stayed)).toBe(true);
    control.gate = null;
    await screenshot("detail");
    if (process.env.UPDATE_DOCS_SCREENSHOT === "1")
      await page.screenshot({ path: join(process.cwd(), "docs", "dashboard.png"), fullPage: true });
    const retried = await db.pool.query(
      "select payload from saga.events where saga_id = $1 and type = 'saga.step.retrying'",
      [id],
    );
    expect(retried.rows[0]?.payload).toMatchObject({ by: "dashboard:carol", reason: "card replaced" });
  });

  it("cancels a running saga", async () => {
    const { id } = await harness.engine.start(slowSaga, { order: "o-9" });
    for (let i = 0; i < 400; i++) {
      const s = await harness.engine.get(id);
      if (s?.steps.find((x) => x.name === "wait")?.status === "running") break;
      await sleep(25);
    }
    await page.goto(`${base}/sagas/${id}`);
    await live();
    await page.click("details.action-cancel summary");
    await page.fill("details.action-cancel input[name=reason]", "customer called");
    await page.click("details.action-cancel button.danger");
    await page.waitForURL(/done=cancel/);
    await expect.poll(() => stateOf().textContent(), { timeout: 20_000 }).toBe("cancelled");
    expect((await harness.engine.get(id))?.error?.message).toContain("customer called (by dashboard:carol)");
  });

  it("shows a live event as it commits", async () => {
    await page.goto(`${base}/live`);
    await live();
    const { id } = await harness.engine.start(echoSaga, { note: "watch me" });
    const row = page.locator("#live-events tr", { hasText: id.slice(0, 8) }).first();
    // Arrival is asserted; how fast is measured by bench/dashboard.ts.
    await row.waitFor({ timeout: 10_000 });
    expect(await row.textContent()).toContain("saga.");
  });

  it("renders a saga input holding markup as text", async () => {
    const note = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">';
    const { id } = await harness.engine.start(echoSaga, { note });
    await harness.engine.waitFor(id);
    await page.goto(`${base}/sagas/${id}`);
    await page.locator("details.json pre").first().waitFor();
    expect(await page.locator("main").textContent()).toContain(JSON.stringify(note).slice(1, -1));
    expect(await page.locator("main img").count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
  });

  it("refuses actions without the CSRF token", async () => {
    control.failing = true;
    const { id } = await harness.engine.start(flakySaga, { order: "o-csrf" });
    await harness.engine.waitFor(id);
    await page.goto(`${base}/sagas/${id}`);
    const statuses = await page.evaluate(async (sagaId) => {
      const json = await fetch(`/api/sagas/${sagaId}/retry`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ reason: "no token" }),
      });
      const form = await fetch(`/sagas/${sagaId}/retry`, {
        method: "POST",
        body: new URLSearchParams({ reason: "no token", csrf: "forged" }),
        redirect: "manual",
      });
      return [json.status, form.status];
    }, id);
    expect(statuses).toEqual([403, 403]);
    expect((await harness.engine.get(id))?.state).toBe("failed");
  });

  it("answers 401 once signed out", async () => {
    await page.goto(`${base}/`);
    await page.click("header form button");
    await page.waitForURL(/\/login$/);
    const res = await page.goto(`${base}/api/sagas`);
    expect(res?.status()).toBe(401);
  });
});
