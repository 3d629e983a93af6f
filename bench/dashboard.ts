/**
 * The dashboard with N finished sagas in the tables (growth's generator; N = 1,000,000, 100,000 with --quick,
 * or `--dashboard-n <N>`): server time of the overview and the list (loopback round trips of the HTML pages
 * and the JSON API), and live event latency from commit to the page: an event's commit, then its row in the
 * live page's DOM in headless Chromium (a Node SSE reader when /usr/bin/chromium is missing).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSagaEngine } from "../src/index.js";
import { addHistory } from "./growth.js";
import { type BenchOptions, type Results, log, resetTables, sleep } from "./harness.js";
import { benchSagas } from "./sagas.js";
import { percentile } from "./stats.js";

const CHROMIUM = "/usr/bin/chromium";

function sizeOf(o: BenchOptions): number {
  const at = process.argv.indexOf("--dashboard-n");
  if (at >= 0) {
    const n = Number(process.argv[at + 1]);
    if (!Number.isInteger(n) || n < 1) throw new Error("--dashboard-n takes a positive integer");
    return n;
  }
  return o.quick ? 100_000 : 1_000_000;
}

async function timeGet(url: string, samples: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    const res = await fetch(url);
    await res.text();
    if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
    times.push(performance.now() - t);
  }
  return times;
}

interface Arrivals {
  /** Event id → when publish() was called (before its commit). */
  sent: Map<number, number>;
  /** Event id → when it reached the page. */
  seen: Map<number, number>;
  via: string;
}

/** Publishes events and notes when each one's row appears in the live page. */
async function liveLatency(base: string, publish: () => Promise<number>, samples: number): Promise<Arrivals> {
  if (!existsSync(CHROMIUM)) return { ...(await sseLatency(base, publish, samples)), via: "node SSE reader" };
  const { chromium } = await import("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "pgsaga-bench-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
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
  });
  try {
    const page = await context.newPage();
    await page.goto(`${base}/live`);
    await page.locator("#live-status", { hasText: /^live$/ }).waitFor({ timeout: 30_000 });
    // The page's clock and ours are the same machine's: a row's arrival time is read from the DOM's observer.
    await page.evaluate(() => {
      const seen: Record<string, number> = {};
      (globalThis as unknown as { seen: Record<string, number> }).seen = seen;
      const doc = (globalThis as unknown as { document: any }).document;
      const MO = (globalThis as unknown as { MutationObserver: any }).MutationObserver;
      new MO((records: any[]) => {
        const now = Date.now();
        for (const r of records)
          for (const n of r.addedNodes) {
            const id = n.getAttribute?.("data-event-id");
            if (id && seen[id] === undefined) seen[id] = now;
          }
      }).observe(doc.getElementById("live-events"), { childList: true });
    });
    const sent = new Map<number, number>();
    for (let i = 0; i < samples; i++) {
      const t0 = Date.now();
      sent.set(await publish(), t0);
      await sleep(20 + Math.random() * 30);
    }
    await sleep(2_000);
    const seen = (await page.evaluate(
      () => (globalThis as unknown as { seen: Record<string, number> }).seen,
    )) as Record<string, number>;
    const arrived = new Map(Object.entries(seen).map(([k, v]) => [Number(k), v]));
    return { sent, seen: arrived, via: "chromium, live page DOM" };
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function sseLatency(
  base: string,
  publish: () => Promise<number>,
  samples: number,
): Promise<{ sent: Map<number, number>; seen: Map<number, number> }> {
  const controller = new AbortController();
  const arrived = new Map<number, number>();
  const res = await fetch(`${base}/api/events/stream`, { signal: controller.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let ready = false;
  void (async () => {
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buffer += value;
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop() ?? "";
      for (const b of blocks) {
        if (b.includes("event: ready")) ready = true;
        const data = b.split("\n").find((l) => l.startsWith("data: "));
        const id = data ? (JSON.parse(data.slice(6)) as { id?: number }).id : undefined;
        if (typeof id === "number") arrived.set(id, Date.now());
      }
    }
  })();
  for (let i = 0; i < 300 && !ready; i++) await sleep(100);
  const sent = new Map<number, number>();
  for (let i = 0; i < samples; i++) {
    const t0 = Date.now();
    sent.set(await publish(), t0);
    await sleep(20 + Math.random() * 30);
  }
  await sleep(2_000);
  controller.abort();
  return { sent, seen: arrived };
}

async function measurePages(base: string, r: Results, label: string, quick: boolean): Promise<void> {
  const samples = quick ? 10 : 30;
  const first = (await (await fetch(`${base}/api/sagas?limit=50`)).json()) as { nextCursor: string | null };
  const pages: [string, string][] = [
    ["overview page", "/"],
    ["overview JSON", "/api/overview"],
    ["list page (newest 50)", "/sagas"],
    ["list page, state=completed", "/sagas?state=completed"],
    ["list page, name + version", "/sagas?name=bench-history&version=1"],
    ["list JSON, page 2", `/api/sagas?limit=50&cursor=${first.nextCursor ?? ""}`],
  ];
  for (const [name, path] of pages) {
    await timeGet(`${base}${path}`, 2);
    const times = await timeGet(`${base}${path}`, samples);
    r.add("dashboard", `${name} p50 with ${label} finished`, "ms", [percentile(times, 50)], {
      target: "< 200",
    });
    r.add("dashboard", `${name} p95 with ${label} finished`, "ms", [percentile(times, 95)]);
  }
}

/**
 * Commit → page, and the dashboard's own share: from the moment an in-process LISTEN subscriber got the
 * relay's notification to the page. The rest is the relay, which publishes an event only once every older
 * transaction of the cluster has ended (its snapshot xmin), so a busy shared server adds seconds.
 */
async function measureLive(
  base: string,
  r: Results,
  label: string,
  quick: boolean,
  publish: () => Promise<number>,
  delivered: Map<number, number>,
): Promise<void> {
  const { sent, seen, via } = await liveLatency(base, publish, quick ? 50 : 200);
  const total = [...sent].map(([id, t0]) => (seen.has(id) ? seen.get(id)! - t0 : Number.POSITIVE_INFINITY));
  const own = [...sent]
    .filter(([id]) => seen.has(id) && delivered.has(id))
    .map(([id]) => seen.get(id)! - delivered.get(id)!);
  const lost = total.filter((m) => !Number.isFinite(m)).length;
  const name = `live event commit → page (${via}) with ${label} finished`;
  r.add("dashboard", `${name} p50`, "ms", [percentile(total.filter(Number.isFinite), 50)]);
  r.add("dashboard", `${name} p99`, "ms", [percentile(total, 99)], { target: "≤ 1000" });
  r.add("dashboard", `live event NOTIFY received → page p99 with ${label} finished`, "ms", [
    percentile(own, 99),
  ]);
  if (lost > 0) log(`  ${lost} of ${total.length} live events had not reached the page 2 s after the last`);
}

/** Measures a database as it is (also usable on its own against a kept bench database). */
export async function measureDashboard(
  url: string,
  r: Results,
  label: string,
  quick: boolean,
  what: { pages: boolean; live: boolean } = { pages: true, live: true },
): Promise<void> {
  const engine = createSagaEngine({ connectionString: url, sagas: benchSagas, poolSize: 4 });
  const worker = await engine.runWorker({ concurrency: 4 });
  const handler = engine.dashboard();
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    if (what.pages) await measurePages(base, r, label, quick);
    if (what.live) {
      const delivered = new Map<number, number>();
      const probe = engine.subscribe({ types: ["bench.ping"] }, (e) => void delivered.set(e.id, Date.now()));
      await probe.ready;
      try {
        const publish = async () => (await engine.publish({ type: "bench.ping", payload: {} })).ids[0]!;
        await measureLive(base, r, label, quick, publish, delivered);
      } finally {
        await probe.close();
      }
    }
  } finally {
    await handler.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await worker.stop();
    await engine.close();
  }
}

export async function dashboardScenario(o: BenchOptions, r: Results): Promise<void> {
  const n = sizeOf(o);
  await resetTables(o);
  // Live latency first on empty tables (the dashboard's own path), then again with the history in place.
  await measureDashboard(o.url, r, "0", o.quick, { pages: false, live: true });
  const t0 = Date.now();
  await addHistory(o, 0, n);
  log(
    `  ${n.toLocaleString("en-US")} finished sagas generated in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  await measureDashboard(o.url, r, n.toLocaleString("en-US"), o.quick);
}
