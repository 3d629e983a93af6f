/**
 * What every scenario shares: the bench database, the results table, a round-trip counter over every
 * `pg` query of this process, and xact_commit deltas read from pg_stat_database.
 */
import { loadavg } from "node:os";
import pg from "pg";
import { type Spread, fmt, fmtSpread, percentile, spread } from "./stats.js";

export interface BenchOptions {
  /** Server URL for admin work (create/drop the bench database, read pg_stat_database). */
  adminUrl: string;
  /** The bench database. */
  url: string;
  dbName: string;
  quick: boolean;
  reps: number;
  /** Sagas (and naive chains) per throughput run. */
  sagas: number;
}

export interface Figure {
  scenario: string;
  name: string;
  unit: string;
  value: Spread;
  target?: string;
  note?: string;
  /** When the target is not met: the measured cause and the change that would meet it (docs/performance.md). */
  why?: string;
  /** Server work behind the figure: postgres CPU ms and WAL records per saga (or per transaction), medians. */
  cost?: Cost;
}

/** Server work per saga (or per transaction) beside a figure, so a win is explained rather than lucky. */
export interface Cost {
  /** Postgres backend CPU, ms. */
  cpuMs: number;
  /** WAL records (pg_stat_wal, cluster-wide). */
  walRecords?: number;
  /** Who the cost is of, when the figure compares two systems ("pg-saga 2.1 ms · naive 2.9 ms"). */
  label?: string;
  /** A second system's cost (the baseline of a ratio). */
  vs?: Cost;
}

/** "≥ 2" / "≤ 0.3" / "< 200" / "≥ 20,000" → whether `value` meets it; undefined when not of that form. */
export function meets(target: string, value: number): boolean | undefined {
  const m = /^\s*(≥|>=|≤|<=|<|>)\s*([\d.,]+)/.exec(target);
  if (!m || !Number.isFinite(value)) return undefined;
  const bound = Number(m[2]!.replace(/,/g, ""));
  if (m[1] === "<") return value < bound;
  if (m[1] === ">") return value > bound;
  return m[1] === "≥" || m[1] === ">=" ? value >= bound : value <= bound;
}

export function fmtCost(c: Cost | undefined): string {
  if (!c) return "";
  const one = (x: Cost) =>
    `${x.label ? `${x.label} ` : ""}${fmt(x.cpuMs)} ms${x.walRecords === undefined ? "" : ` · ${fmt(x.walRecords)} WAL`}`;
  return c.vs ? `${one(c)}; ${one(c.vs)}` : one(c);
}

export class Results {
  readonly figures: Figure[] = [];
  readonly extra: Record<string, unknown> = {};

  add(
    scenario: string,
    name: string,
    unit: string,
    runs: number[],
    more: { target?: string; note?: string; why?: string; cost?: Cost } = {},
  ) {
    const figure: Figure = { scenario, name, unit, value: spread(runs), ...more };
    this.figures.push(figure);
    const cost = more.cost ? `  (server per saga: ${fmtCost(more.cost)})` : "";
    log(
      `  ${name}: ${fmtSpread(figure.value)} ${unit}${more.target ? `  [target ${more.target}]` : ""}${cost}`,
    );
    return figure;
  }

  table(): string {
    const header = ["scenario", "figure", "median (min–max)", "unit", "target", "server CPU · WAL records"];
    const rows = this.figures.map((f) => [
      f.scenario,
      f.name,
      fmtSpread(f.value),
      f.unit,
      f.target ?? "",
      fmtCost(f.cost),
    ]);
    return markdownTable(header, rows);
  }

  /** The figures with a target: median, target, met or not, and the server work behind each. */
  targets(): string {
    const header = ["target", "median (min–max)", "target", "met", "server CPU · WAL records per saga"];
    const rows = this.figures
      .filter((f) => f.target)
      .map((f) => {
        const met = meets(f.target!, f.value.median);
        return [
          f.name,
          `${fmtSpread(f.value)} ${f.unit}`,
          f.target!,
          met === undefined ? "?" : met ? "met" : "NOT MET",
          fmtCost(f.cost),
        ];
      });
    const missed = this.figures.filter((f) => f.target && f.why && meets(f.target, f.value.median) === false);
    const whys = missed.map((f) => `- ${f.name}: ${f.why}`);
    return [
      markdownTable(header, rows),
      ...(whys.length > 0
        ? ["", "not met, the measured cause and the change that would meet it:", ...whys]
        : []),
    ].join("\n");
  }
}

function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** The machine's load average (1, 5, 15 min): the bench shares its cores, so every run reports it. */
export function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(", ");
}

export function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts round trips per query kind for every pg.Client of this process (pools included). */
class QueryCounter {
  private counts = new Map<string, number>();
  private times = new Map<string, number[]>();
  total = 0;
  /** Keep each query's duration (client side: round trip plus server time), per kind. */
  timing = false;
  reset(): void {
    this.counts.clear();
    this.times.clear();
    this.total = 0;
  }
  note(text: string): string {
    this.total++;
    const key = classify(text);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    return key;
  }
  time(key: string, ms: number): void {
    const list = this.times.get(key) ?? [];
    list.push(ms);
    this.times.set(key, list);
  }
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort((a, b) => b[1] - a[1]));
  }
  /** Median duration in ms per query kind, for kinds seen at least `min` times. */
  medians(min = 10): Record<string, { n: number; p50: number }> {
    const out: Record<string, { n: number; p50: number }> = {};
    for (const [key, list] of this.times)
      if (list.length >= min) out[key] = { n: list.length, p50: percentile(list, 50) };
    return out;
  }
}

function classify(text: string): string {
  const t = text.replace(/\s+/g, " ").trim().toLowerCase();
  if (/^(begin|commit|rollback|savepoint|release|set local)/.test(t)) return t.split(" ")[0]!;
  const fn = /(graphile_worker\.\w+|saga\.\w+|"?graphile_worker"?\."?\w+"?)\(/.exec(t);
  if (fn) return `${t.split(" ")[0]} ${fn[1]!.replace(/"/g, "")}()`;
  if (t.includes("for update of i")) return "lock instance (select … for update)";
  if (t.includes("with j as") || t.includes("get_job")) return "graphile get_job";
  return t.slice(0, 60);
}

export const queries = new QueryCounter();
const PROBE = "pgsaga-bench-probe";
let patched = false;

/** Wraps pg.Client#query once; every pool and graphile-worker client of this process goes through it. */
export function countQueries(): void {
  if (patched) return;
  patched = true;
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (
    this: { connectionParameters?: { application_name?: string } },
    ...args: unknown[]
  ) {
    // The bench's own probe connection is not part of the system under test.
    if (this.connectionParameters?.application_name === PROBE) return original.apply(this, args);
    const first = args[0];
    const text = typeof first === "string" ? first : (first as { text?: string } | null)?.text;
    if (typeof text !== "string") return original.apply(this, args);
    const key = queries.note(text);
    if (!queries.timing) return original.apply(this, args);
    const t0 = performance.now();
    const last = args[args.length - 1];
    // pg.Pool#query calls the client with a callback; direct client calls get a promise.
    if (typeof last === "function") {
      args[args.length - 1] = (...cb: unknown[]) => {
        queries.time(key, performance.now() - t0);
        return (last as (...a: unknown[]) => unknown)(...cb);
      };
      return original.apply(this, args);
    }
    const result = original.apply(this, args);
    if (result instanceof Promise)
      result.then(
        () => queries.time(key, performance.now() - t0),
        () => {},
      );
    return result;
  };
}

/** Committed and rolled back transactions of the bench database so far (all backends, flushed ones). */
export async function xactCounts(o: BenchOptions): Promise<{ commits: number; rollbacks: number }> {
  const client = new pg.Client({ connectionString: o.adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ c: string; r: string }>(
      "select xact_commit as c, xact_rollback as r from pg_stat_database where datname = $1",
      [o.dbName],
    );
    return { commits: Number(rows[0]?.c ?? 0), rollbacks: Number(rows[0]?.r ?? 0) };
  } finally {
    await client.end();
  }
}

/**
 * The server's WAL counters (pg_stat_wal, cluster-wide: other databases' writes count too). `syncs` is the
 * number of WAL flushes to disk: on a server whose commits wait for the disk, what bounds the commit rate.
 */
export async function walCounts(o: BenchOptions): Promise<{ syncs: number; records: number; bytes: number }> {
  const client = new pg.Client({ connectionString: o.adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ s: string; r: string; b: string }>(
      "select wal_sync as s, wal_records as r, wal_bytes as b from pg_stat_wal",
    );
    return {
      syncs: Number(rows[0]?.s ?? 0),
      records: Number(rows[0]?.r ?? 0),
      bytes: Number(rows[0]?.b ?? 0),
    };
  } finally {
    await client.end();
  }
}

/**
 * Commits between two readings. Backends flush their counters on exit, so a measured phase closes its
 * pools before the second reading; the short wait lets the exiting backends report.
 */
export async function settleStats(): Promise<void> {
  await sleep(300);
}

/** One connection of the bench's own, counted apart from the system under test. */
export async function benchClient(o: BenchOptions): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: o.url, application_name: PROBE });
  await client.connect();
  return client;
}

/** Polls `check` every `intervalMs` until it returns true; throws after `timeoutMs`. */
export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 10,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`bench: condition not met after ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/** Empties every table a run writes, so each repetition starts from the same state. */
export async function resetTables(o: BenchOptions): Promise<void> {
  const client = await benchClient(o);
  try {
    await client.query(
      `truncate saga.instances, saga.steps, saga.outbox, graphile_worker._private_jobs, bench_orders;
       update bench_rows set n = 0, step = 0 where n <> 0 or step <> 0;
       delete from saga.workers;`,
    );
  } finally {
    await client.end();
  }
}

/**
 * CPU seconds used so far by the server backends of the bench database (from /proc; same machine only),
 * the probe connection excluded. NaN when /proc of the server is not readable.
 */
export async function backendCpuSeconds(o: BenchOptions): Promise<number> {
  const client = new pg.Client({ connectionString: o.adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      "select pid from pg_stat_activity where datname = $1 and application_name <> $2",
      [o.dbName, PROBE],
    );
    return await cpuSecondsOf(rows.map((r) => r.pid));
  } finally {
    await client.end();
  }
}

/** CPU seconds (user + system) used so far by these server processes; NaN when /proc is not readable. */
export async function cpuSecondsOf(pids: number[]): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      return Number.NaN;
    }
  }
  return ticks / 100;
}
