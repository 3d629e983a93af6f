/**
 * Health of a pg-saga installation as an operator sees it: database, migrations, live workers and the versions
 * they serve, relay lag, dead letters and stuck sagas. Used by `engine.health()`, `pg-saga health` and /healthz.
 */
import { maskConnectionString } from "./errors.js";
import type { Executor } from "./executor.js";
import { describeNewer } from "./migrate.js";
import { isNewer, isUpToDate, planMigration, readTableMigrations } from "./migration-plan.js";
import {
  countDeadLetters,
  countStuck,
  readActiveVersions,
  readAppliedMigrations,
  readOldestTransaction,
  readRelayLag,
  readWorkers,
} from "./sql/health-checks.js";
import { WORKER_DEFAULTS } from "./worker/worker-defaults.js";

/** Options of {@link checkHealth} and `engine.health()`. */
export interface HealthOptions {
  /** A worker whose heartbeat is older than this is not live, in ms. Default 15000 (the workers' deadWorkerAfter). */
  staleAfterMs?: number;
  /** Unhealthy when no worker is live. Default false: a database with no workers can be healthy. */
  requireWorkers?: boolean;
  /** Unhealthy when a durable subscription lags more than this, in ms. Default: lag is reported, never fails. */
  maxRelayLagMs?: number;
  /** Warns about a transaction open on the server for longer than this, in ms (a vacuum risk). Default 60000. */
  maxTransactionAgeMs?: number;
  /** Gives up on an unresponsive database after this many ms. Default 5000. */
  timeoutMs?: number;
}

export type { OpenTransaction, SubscriptionLag, WorkerHealth } from "./sql/health-checks.js";
import type { OpenTransaction, SubscriptionLag, WorkerHealth } from "./sql/health-checks.js";

/** What {@link checkHealth} found. `healthy` is false when `problems` is not empty. */
export interface HealthReport {
  healthy: boolean;
  /** Why it is unhealthy, one readable line each. */
  problems: string[];
  /** Worth a look, but not unhealthy: dead letters, stuck sagas, workers that went silent. */
  warnings: string[];
  database: { ok: boolean; latencyMs: number | null; error?: string };
  /**
   * `pending`: table migrations not applied; `repeatable`: sql/ files (functions, views, triggers) whose applied
   * text is not this package's; `newer`: why the database is newer than this package (then workers of this
   * package stop taking work), else null.
   */
  migrations: {
    ok: boolean;
    applied: number;
    expected: number;
    pending: string[];
    repeatable: string[];
    newer: string | null;
  };
  workers: { live: number; stale: number; list: WorkerHealth[] };
  /** `served`: versions live workers run; `unserved`: versions with active sagas and no live worker. */
  versions: { served: string[]; unserved: { saga: string; active: number }[] };
  /** Durable subscriptions' lag; null when the relay tables are not there. */
  relay: { subscriptions: SubscriptionLag[]; maxLagMs: number } | null;
  /** The oldest transaction open on the server that holds an xid or a snapshot; null when there is none. */
  oldestTransaction: OpenTransaction | null;
  deadLetters: number | null;
  stuck: number | null;
}

type Db = Executor;

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the database within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Absent table, column or function (a schema not yet migrated): the part is reported as unavailable instead of failing the whole check. */
async function optional<T>(fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "42P01" || code === "42703" || code === "42883" || code === "3F000") return null;
    throw err;
  }
}

/**
 * Checks a pg-saga database. Never throws for an unhealthy installation: an unreachable database is a report
 * with `database.ok = false`.
 *
 * @example
 * const report = await checkHealth(pool, { requireWorkers: true });
 * if (!report.healthy) alert(report.problems.join("\n"));
 */
export async function checkHealth(db: Db, options: HealthOptions = {}): Promise<HealthReport> {
  const staleAfterMs = options.staleAfterMs ?? WORKER_DEFAULTS.deadWorkerAfter;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const expected = readTableMigrations();
  const report: HealthReport = {
    healthy: false,
    problems: [],
    warnings: [],
    database: { ok: false, latencyMs: null },
    migrations: { ok: false, applied: 0, expected: expected.length, pending: [], repeatable: [], newer: null },
    workers: { live: 0, stale: 0, list: [] },
    versions: { served: [], unserved: [] },
    relay: null,
    oldestTransaction: null,
    deadLetters: null,
    stuck: null,
  };
  const started = performance.now();
  try {
    await withTimeout(db.query("select 1"), timeoutMs);
    report.database = { ok: true, latencyMs: Math.round((performance.now() - started) * 10) / 10 };
  } catch (err) {
    const message = maskConnectionString(err instanceof Error ? err.message : String(err));
    report.database.error = message || String((err as { code?: unknown }).code ?? "connection failed");
    report.problems.push(`database unreachable: ${report.database.error}`);
    return report;
  }

  const appliedRows = await optional(() => readAppliedMigrations(db));
  const plan = await planMigration(db);
  const repeatable = plan.files.filter((f) => f.reason !== "tables changed").map((f) => f.name);
  const newer = isNewer(plan) ? describeNewer(plan) : null;
  report.migrations = {
    ok: isUpToDate(plan) && newer === null,
    applied: appliedRows?.length ?? 0,
    expected: expected.length,
    pending: plan.tables.map((m) => m.tag),
    repeatable,
    newer,
  };
  if (plan.tables.length > 0) {
    report.problems.push(
      `${plan.tables.length} migration(s) not applied (${report.migrations.pending.join(", ")}): run pg-saga migrate`,
    );
  }
  if (repeatable.length > 0) {
    report.problems.push(
      `${repeatable.length} sql file(s) not applied in this version (${repeatable.join(", ")}): run pg-saga migrate`,
    );
  }
  if (newer) report.problems.push(`${newer}: upgrade this application`);
  if (appliedRows === null) return finish(report);

  const workers = await readWorkers(db, staleAfterMs);
  report.workers.list = workers.map((w) => ({ ...w, ageMs: Math.round(w.ageMs) }));
  report.workers.live = workers.filter((w) => w.live).length;
  report.workers.stale = workers.length - report.workers.live;
  const served = new Set(workers.filter((w) => w.live).flatMap((w) => w.sagas));
  report.versions.served = [...served].sort();
  const active = await readActiveVersions(db);
  report.versions.unserved = active.filter((r) => !served.has(r.saga));
  for (const u of report.versions.unserved)
    report.problems.push(`${u.active} active saga(s) of ${u.saga} and no live worker runs ${u.saga}`);
  if (options.requireWorkers && report.workers.live === 0) report.problems.push("no live worker");
  if (report.workers.stale > 0)
    report.warnings.push(`${report.workers.stale} worker(s) stopped heartbeating (not yet reaped)`);

  const relay = await optional(() => readRelayLag(db));
  if (relay) {
    const subscriptions = relay.map((r) => ({ ...r, lagMs: Math.round(r.lagMs) }));
    const maxLagMs = Math.max(0, ...subscriptions.map((s) => s.lagMs));
    report.relay = { subscriptions, maxLagMs };
    if (options.maxRelayLagMs !== undefined && maxLagMs > options.maxRelayLagMs)
      report.problems.push(`relay lag ${maxLagMs} ms is over ${options.maxRelayLagMs} ms`);
  }
  const oldest = await readOldestTransaction(db);
  if (oldest) {
    report.oldestTransaction = { ...oldest, ageMs: Math.round(oldest.ageMs) };
    if (oldest.ageMs > (options.maxTransactionAgeMs ?? 60_000))
      report.warnings.push(
        `transaction open for ${Math.round(oldest.ageMs / 1000)} s (pid ${oldest.pid}, database ${oldest.database ?? "?"}): ` +
          "it delays no event, but vacuum cannot remove dead rows behind it; end it or set idle_in_transaction_session_timeout",
      );
  }
  report.deadLetters = await optional(() => countDeadLetters(db));
  if (report.deadLetters)
    report.warnings.push(`${report.deadLetters} dead letter(s) not delivered: see engine.deadLetters()`);
  report.stuck = await optional(() => countStuck(db));
  if (report.stuck) report.warnings.push(`${report.stuck} saga(s) not moving: see pg-saga stuck`);
  return finish(report);
}

function finish(report: HealthReport): HealthReport {
  report.healthy = report.problems.length === 0;
  return report;
}
