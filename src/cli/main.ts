/**
 * `pg-saga`: operate pg-saga from a terminal. Every command takes --database (else DATABASE_URL) and --json;
 * errors are one line on stderr and a non-zero exit code.
 */
import { createRequire } from "node:module";
import { Command, CommanderError, Option } from "commander";
import { Cli, type GlobalOptions, describeError, isSqlState } from "./context.js";
import { addDashboardCommand } from "./commands/dashboard.js";
import { demoCommand } from "./commands/demo.js";
import { eventsCommand } from "./commands/events.js";
import { healthCommand, statsCommand, stuckCommand } from "./commands/observe.js";
import { cancelCommand, migrateCommand, retryCommand } from "./commands/operate.js";
import { collect, listCommand, showCommand } from "./commands/read.js";
import { resetCommand } from "./commands/reset.js";
import { workerCommand } from "./commands/worker.js";
import { addBridgeCommand } from "./commands/bridge.js";
import { reencryptCommand } from "./commands/reencrypt.js";
import { WORKER_DEFAULTS } from "../worker/worker-defaults.js";

// Two levels up from both src/cli/ and dist/cli/.
const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

type Action<A extends unknown[]> = (cli: Cli, ...args: A) => Promise<void>;

/**
 * Builds the program; `run` wraps each action so it gets the invocation's {@link Cli}.
 *
 * @example
 * await buildProgram(() => {}).parseAsync(["node", "pg-saga", "list", "--json"]);
 */
export function buildProgram(onCli: (cli: Cli) => void): Command {
  const program = new Command("pg-saga")
    .description("Operate pg-saga: sagas whose every state change is a PostgreSQL transaction")
    .version(version)
    .option("-d, --database <url>", "PostgreSQL connection string (default: $DATABASE_URL)")
    .option("--json", "machine-readable output: one JSON document (or one per line for streams)")
    .option("--no-color", "no ANSI colours (also NO_COLOR=1); colour is only used on a terminal anyway")
    .option(
      "--log-level <level>",
      "pino level on stderr: trace, debug, info, warn, error (default: $LOG_LEVEL or warn)",
    )
    .showHelpAfterError("(pg-saga --help lists the commands)")
    // Before the subcommands: they inherit it, so main() decides every exit code.
    .exitOverride();

  function run<A extends unknown[]>(action: Action<A>) {
    return async (...args: unknown[]) => {
      const command = args[args.length - 1] as Command;
      const cli = new Cli(command.optsWithGlobals<GlobalOptions>());
      onCli(cli);
      await action(cli, ...(args.slice(0, -1) as A));
    };
  }

  program
    .command("migrate")
    .description("install or upgrade schema saga and graphile-worker's schema (idempotent)")
    .option("--dry-run", "list the table migrations and sql files migrate would apply; change nothing")
    .action(run(migrateCommand));

  program
    .command("worker")
    .description(
      "run the saga definitions a module exports; SIGTERM stops gracefully, a second signal at once",
    )
    .requiredOption(
      "-s, --sagas <module>",
      "module exporting saga definitions (repeatable, comma-separated)",
      collect,
    )
    .option("-c, --concurrency <n>", "jobs run at once", String(WORKER_DEFAULTS.concurrency))
    .option(
      "--poll-interval <ms>",
      "how often to look for jobs scheduled for later",
      String(WORKER_DEFAULTS.pollInterval),
    )
    .option(
      "--shutdown-timeout <ms>",
      "on SIGTERM, how long running steps may take to finish",
      String(WORKER_DEFAULTS.stopTimeout),
    )
    .option(
      "--abort-grace <ms>",
      "how long a step aborted by a cancel or deadline may take to return before its compensation runs",
      String(WORKER_DEFAULTS.abortGrace),
    )
    .option("--migrate", "migrate before starting")
    .option("--metrics-port <port>", "serve Prometheus /metrics and /healthz on this port (0: any free port)")
    .action(run((cli, o: Parameters<typeof workerCommand>[1]) => workerCommand(cli, o)));

  program
    .command("list")
    .description("sagas, newest first, with filters and paging")
    .option("--state <states>", "only these states (repeatable, comma-separated)", collect)
    .option("--name <names>", "only these saga names (repeatable, comma-separated)", collect)
    .option("--since <time>", "created at or after: an ISO time or an age (15m, 2h, 7d)")
    .option("--until <time>", "created before: an ISO time or an age")
    .option("--metadata <json>", "metadata containing this JSON object")
    .option("-n, --limit <n>", "page size (at most 1000)", "20")
    .option("--cursor <cursor>", "the next page, as printed by the previous one")
    .addOption(new Option("--order <order>", "by creation time").choices(["asc", "desc"]).default("desc"))
    .action(run((cli, o: Parameters<typeof listCommand>[1]) => listCommand(cli, o)));

  program
    .command("show <id>")
    .description(
      "one saga's timeline: steps with attempts, durations, errors and compensations, and its events",
    )
    .action(run((cli, id: string) => showCommand(cli, id)));

  program
    .command("retry <id>")
    .description(
      "resume a failed saga (from its failed step) or a compensation_failed one (its compensations)",
    )
    .option("--reason <text>", "recorded on the saga.step.retrying / compensation.started event")
    .option("--wait", "wait until the saga ends")
    .option("--timeout <ms>", "with --wait, give up after this long", "30000")
    .action(run((cli, id: string, o: Parameters<typeof retryCommand>[2]) => retryCommand(cli, id, o)));

  program
    .command("cancel <id>")
    .description("cancel a running saga: a worker with its definition compensates it, then it ends cancelled")
    .requiredOption("--reason <text>", "why: stored on the saga's error and events")
    .option("--wait", "wait until the saga ends")
    .option("--timeout <ms>", "with --wait, give up after this long", "30000")
    .action(run((cli, id: string, o: Parameters<typeof cancelCommand>[2]) => cancelCommand(cli, id, o)));

  program
    .command("events")
    .description("the event log; --follow streams new events as they commit")
    .option("--saga <id>", "one saga's events")
    .option("--name <names>", "only these saga names (repeatable, comma-separated)", collect)
    .option("--type <types>", "only these types; a trailing * matches a prefix (compensation.*)", collect)
    .option("--from <event-id>", 'catch up from this position: the events after event id (or "start")')
    .option("-n, --limit <n>", "how many events (without --from: the newest ones)", "50")
    .option("-f, --follow", "keep printing new events until SIGINT/SIGTERM")
    .option("--interval <ms>", "with --follow, how often to poll", "500")
    .action(run((cli, o: Parameters<typeof eventsCommand>[1]) => eventsCommand(cli, o)));

  program
    .command("stats")
    .description("counts by state, steps, retries and durations, per saga name")
    .option("--name <name>", "one saga name")
    .action(run((cli, o: { name?: string }) => statsCommand(cli, o)));

  program
    .command("reencrypt")
    .description(
      "rewrite values encrypted under an old key with the current one (keys: PG_SAGA_KEYS, PG_SAGA_KEY)",
    )
    .option("--batch-size <n>", "values read per query", "500")
    .action(run((cli, o: { batchSize: string }) => reencryptCommand(cli, o)));

  program
    .command("stuck")
    .description("sagas that have not ended and are not moving, with the reason (the saga.stuck view)")
    .option("--name <name>", "one saga name")
    .option("--reason <reasons>", "only these reasons (repeatable, comma-separated)", collect)
    .option("-n, --limit <n>", "at most this many", "100")
    .action(run((cli, o: Parameters<typeof stuckCommand>[1]) => stuckCommand(cli, o)));

  program
    .command("health")
    .description(
      "database, migrations, live workers and the versions they serve, relay lag, dead letters; exit 1 when unhealthy",
    )
    .option("--require-workers", "unhealthy when no worker is live")
    .option("--stale-after <ms>", "a worker silent this long is not live", String(WORKER_DEFAULTS.deadWorkerAfter))
    .option("--max-relay-lag <ms>", "unhealthy when a durable subscription lags more")
    .action(run((cli, o: Parameters<typeof healthCommand>[1]) => healthCommand(cli, o)));

  addDashboardCommand(program, run);
  addBridgeCommand(program, run);

  program
    .command("reset")
    .description(
      "development only: drop schemas saga and graphile_worker (every saga, event and job); needs --yes",
    )
    .option("--yes", "yes, drop them")
    .action(run((cli, o: { yes?: boolean }) => resetCommand(cli, o)));

  program
    .command("demo")
    .description("run an order saga twice (completed, then compensated) and print its events live")
    .action(run(demoCommand));

  return program;
}

/**
 * Runs the CLI and resolves with the exit code; never throws.
 *
 * @example
 * process.exitCode = await main(process.argv);
 */
export async function main(argv: string[]): Promise<number> {
  const clis: Cli[] = [];
  const program = buildProgram((cli) => clis.push(cli));
  let code = 0;
  try {
    await program.parseAsync(argv);
    code = typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed the usage error (or the help/version, with exit code 0).
      code = err.exitCode === 0 ? 0 : 2;
    } else {
      const { code: errorCode, message, exitCode } = describeError(err);
      const json = clis[0]?.json ?? argv.includes("--json");
      process.stderr.write(
        json
          ? `${JSON.stringify({ error: { code: errorCode, message } })}\n`
          : `pg-saga: ${message} (${isSqlState(errorCode) ? `SQLSTATE ${errorCode}` : errorCode})\n`,
      );
      code = exitCode;
    }
  } finally {
    for (const cli of clis) await cli.close().catch(() => {});
  }
  return code;
}
