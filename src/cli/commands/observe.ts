/** `pg-saga stats`, `stuck` and `health`: how the installation is doing. */
import { sagaKey } from "../../definition.js";
import type { HealthReport } from "../../health.js";
import { type StuckReason, readStuck } from "../../sql/stuck-sagas.js";
import { SAGA_STATES } from "../../model.js";
import { CliError, type Cli } from "../context.js";
import { between, formatDuration, formatTime, table } from "../format.js";
import { parseInteger } from "./read.js";

const STATE_COLUMNS = SAGA_STATES;

// instances_state_created_at_idx is no help for a full count; fine for an operator's command.
const BY_NAME_SQL = `
select name, jsonb_object_agg(state, n) as states
from (select name, state, count(*)::int as n from saga.instances where $1::text is null or name = $1 group by 1, 2) t
group by name order by name`;

export async function statsCommand(cli: Cli, o: { name?: string }): Promise<void> {
  const engine = cli.engine();
  const [metrics, byName] = await Promise.all([
    engine.metrics(o.name ? { name: o.name } : {}),
    engine.pool.query<{ name: string; states: Record<string, number> }>(BY_NAME_SQL, [o.name ?? null]),
  ]);
  cli.print({ metrics, byName: byName.rows }, () => {
    const m = metrics;
    const summary = table(
      ["metric", "value"],
      [
        ["sagas", String(m.total)],
        ["active", String(m.active)],
        ["completed", String(m.completed)],
        ["compensated", String(m.compensated)],
        ["failed", String(m.failed)],
        ["cancelled", String(m.cancelled)],
        ["timed out", String(m.timedOut)],
        ["compensation failed", String(m.compensationFailed)],
        ["steps run", String(m.totalSteps)],
        ["steps failed", String(m.failedSteps)],
        ["retries", String(m.totalRetries)],
        ["compensations", String(m.totalCompensations)],
        ["avg saga duration", formatDuration(m.averageSagaDurationMs)],
        ["avg step duration", formatDuration(m.averageStepDurationMs)],
      ],
      cli.c,
    );
    if (byName.rows.length === 0) return summary;
    const perName = table(
      ["saga", ...STATE_COLUMNS],
      byName.rows.map((r) => [r.name, ...STATE_COLUMNS.map((s) => String(r.states[s] ?? 0))]),
      cli.c,
    );
    return `${summary}\n\n${perName}`;
  });
}

const REASONS: readonly StuckReason[] = [
  "no_worker_for_version",
  "lease_expired",
  "no_job",
  "retry_scheduled",
  "waiting_compensation",
];

export async function stuckCommand(
  cli: Cli,
  o: { name?: string; reason?: string[]; limit: string },
): Promise<void> {
  const reasons = o.reason ?? [];
  const bad = reasons.filter((r) => !REASONS.includes(r as StuckReason));
  if (bad.length > 0)
    throw new CliError(
      "INVALID_OPTIONS",
      `unknown reason ${bad.join(", ")}; reasons are ${REASONS.join(", ")}`,
      2,
    );
  const rows = await readStuck(cli.engine().pool, {
    ...(o.name ? { name: o.name } : {}),
    ...(reasons.length > 0 ? { reasons: reasons as StuckReason[] } : {}),
    limit: parseInteger(o.limit, "--limit", 1, 100_000),
  });
  cli.print({ items: rows }, () => {
    if (rows.length === 0) return cli.c.green("no stuck sagas");
    return table(
      ["id", "saga", "state", "reason", "step", "retry at", "for", "detail"],
      rows.map((r) => [
        r.id,
        sagaKey(r.name, r.version),
        r.state,
        cli.c.yellow(r.reason),
        r.step ?? "",
        r.retryAt ? formatTime(r.retryAt) : "",
        formatDuration(between(r.since, new Date())),
        r.detail,
      ]),
      cli.c,
      90,
    );
  });
}

export async function healthCommand(
  cli: Cli,
  o: { requireWorkers?: boolean; staleAfter: string; maxRelayLag?: string },
): Promise<void> {
  const report = await cli.engine().health({
    requireWorkers: o.requireWorkers === true,
    staleAfterMs: parseInteger(o.staleAfter, "--stale-after"),
    ...(o.maxRelayLag ? { maxRelayLagMs: parseInteger(o.maxRelayLag, "--max-relay-lag", 0) } : {}),
  });
  cli.print(report, () => renderHealth(cli, report));
  if (!report.healthy) process.exitCode = 1;
}

function renderHealth(cli: Cli, r: HealthReport): string {
  const { c } = cli;
  const ok = (good: boolean, text: string) => (good ? c.green(text) : c.red(text));
  const lines = [
    r.healthy ? c.green(c.bold("healthy")) : c.red(c.bold("UNHEALTHY")),
    `database      ${r.database.ok ? ok(true, `ok (${r.database.latencyMs} ms)`) : ok(false, r.database.error ?? "down")}`,
  ];
  if (r.database.ok) {
    lines.push(
      `migrations    ${ok(r.migrations.ok, `${r.migrations.applied}/${r.migrations.expected} applied`)}${
        r.migrations.pending.length ? ` (pending: ${r.migrations.pending.join(", ")})` : ""
      }${r.migrations.repeatable.length ? ` (sql files to re-apply: ${r.migrations.repeatable.join(", ")})` : ""}${
        r.migrations.newer ? ` (${r.migrations.newer})` : ""
      }`,
      `workers       ${r.workers.live} live, ${r.workers.stale} silent`,
      ...r.workers.list.map(
        (w) =>
          `  ${w.live ? c.green("●") : c.red("○")} ${w.id}  ${w.sagas.join(", ")}  heartbeat ${formatDuration(w.ageMs)} ago`,
      ),
      `versions      ${r.versions.served.join(", ") || c.dim("none served")}`,
      `relay         ${
        r.relay
          ? `${r.relay.subscriptions.length} durable subscription(s), max lag ${formatDuration(r.relay.maxLagMs)}`
          : c.dim("n/a")
      }`,
      `oldest xact   ${
        r.oldestTransaction
          ? `${formatDuration(r.oldestTransaction.ageMs)} (pid ${r.oldestTransaction.pid}, database ${r.oldestTransaction.database ?? "?"}; a vacuum risk, delays no event)`
          : c.dim("none open")
      }`,
      `dead letters  ${r.deadLetters ?? c.dim("n/a")}`,
      `stuck sagas   ${r.stuck ?? c.dim("n/a")}`,
    );
  }
  if (r.problems.length > 0) lines.push("problems:", ...r.problems.map((p) => `  - ${c.red(p)}`));
  if (r.warnings.length > 0) lines.push("warnings:", ...r.warnings.map((w) => `  - ${c.yellow(w)}`));
  return lines.join("\n");
}
