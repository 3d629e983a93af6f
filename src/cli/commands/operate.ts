/** `pg-saga migrate`, `retry <id>`, `cancel <id> --reason`: the commands that change things. */
import { userInfo } from "node:os";
import { describeNewer, migrate } from "../../migrate.js";
import { isNewer, isUpToDate, planMigration } from "../../migration-plan.js";
import { CliError, type Cli } from "../context.js";
import { formatError, paintState } from "../format.js";
import { parseInteger } from "./read.js";

export async function migrateCommand(cli: Cli, options: { dryRun?: boolean } = {}): Promise<void> {
  if (options.dryRun) return migrationPlanCommand(cli);
  const result = await migrate(cli.engine().pool);
  const { applied, repeatable } = result;
  cli.print(result, () =>
    applied === 0 && repeatable.length === 0
      ? "schema saga is up to date"
      : `applied ${applied} table migration(s) and ${repeatable.length} sql file(s)` +
        `${repeatable.length > 0 ? ` (${repeatable.join(", ")})` : ""}; schema saga is up to date`,
  );
}

/** `migrate --dry-run`: what migrate would apply, changing nothing. */
async function migrationPlanCommand(cli: Cli): Promise<void> {
  const plan = await planMigration(cli.engine().pool);
  const newer = isNewer(plan) ? describeNewer(plan) : null;
  const report = {
    dryRun: true,
    upToDate: isUpToDate(plan) && !newer,
    tables: plan.tables.map((m) => m.tag),
    files: plan.files.map((f) => ({ file: f.name, reason: f.reason })),
    forgotten: plan.forgotten,
    newer,
  };
  cli.print(report, () => {
    if (newer) return `${newer}: migrate would refuse`;
    if (report.upToDate) return "schema saga is up to date: nothing to apply";
    return [
      "migrate would apply, in one transaction:",
      ...report.tables.map((tag) => `  table migration  ${tag}`),
      ...report.files.map((f) => `  sql file         ${f.file} (${f.reason})`),
      ...report.forgotten.map((file) => `  forget           ${file} (no longer in sql/)`),
    ].join("\n");
  });
}

function operator(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return "cli";
  }
}

export interface WaitOptions {
  wait?: boolean;
  timeout: string;
}

/** With --wait, the saga's end state after the operation; otherwise the state the operation left. */
async function settle(cli: Cli, id: string, state: string, o: WaitOptions) {
  if (!o.wait) return { id, state, error: null as unknown };
  const done = await cli.engine().waitFor(id, { timeoutMs: parseInteger(o.timeout, "--timeout") });
  return { id, state: done.state as string, error: done.error as unknown };
}

export async function retryCommand(
  cli: Cli,
  id: string,
  o: WaitOptions & { reason?: string },
): Promise<void> {
  const { state, queued } = await cli
    .engine()
    .retry(id, { by: operator(), ...(o.reason ? { reason: o.reason } : {}) });
  const result = await settle(cli, id, state, o);
  // A retry that ends failed or compensation_failed again did not do what was asked.
  if (o.wait && (result.state === "failed" || result.state === "compensation_failed")) process.exitCode = 1;
  cli.print(result, () =>
    o.wait
      ? `saga ${id} retried and ended ${paintState(cli.c, result.state)}${result.error ? `: ${formatError(result.error)}` : ""}`
      : queued
        ? `saga ${id} retry queued for a worker: it resumes ${paintState(cli.c, state)}`
        : `saga ${id} retried: now ${paintState(cli.c, state)}`,
  );
}

export async function cancelCommand(
  cli: Cli,
  id: string,
  o: WaitOptions & { reason: string },
): Promise<void> {
  const { state } = await cli.engine().cancel(id, o.reason, { by: operator() });
  if (o.wait && state === "running") {
    // Waiting makes sense only if a worker will compensate it: say so now rather than after --timeout.
    const health = await cli.engine().health();
    if (health.workers.live === 0)
      throw new CliError(
        "NO_WORKER",
        `cancel of saga ${id} recorded, but no worker is running: start one with its definition (pg-saga worker --sagas <module>) and it compensates the saga, which then ends cancelled`,
      );
  }
  const result = await settle(cli, id, state, o);
  if (o.wait && (result.state === "failed" || result.state === "compensation_failed")) process.exitCode = 1;
  cli.print(result, () => {
    if (o.wait) return `saga ${id} ended ${paintState(cli.c, result.state)}`;
    return state === "running"
      ? `cancel of saga ${id} requested: a worker that runs its definition compensates it (--wait to follow)`
      : `saga ${id} is already ${paintState(cli.c, state)}`;
  });
}
