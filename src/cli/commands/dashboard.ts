/**
 * `pg-saga dashboard`: serves the web dashboard until SIGINT/SIGTERM. Without a token it binds only to
 * loopback; a token comes from --token or PG_SAGA_DASHBOARD_TOKEN.
 */
import { createServer } from "node:http";
import { userInfo } from "node:os";
import type { Command } from "commander";
import { CliError, type Cli } from "../context.js";
import { parseInteger } from "./read.js";

export interface DashboardCommandOptions {
  port: string;
  host: string;
  token?: string;
  readOnly?: boolean;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

function operator(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

export async function dashboardCommand(cli: Cli, o: DashboardCommandOptions): Promise<void> {
  const port = parseInteger(o.port, "--port", 0, 65_535);
  const token = o.token ?? process.env.PG_SAGA_DASHBOARD_TOKEN;
  if (!LOOPBACK.has(o.host) && !token)
    throw new CliError(
      "INSECURE_BIND",
      `--host ${o.host} would expose the dashboard beyond this machine without a token: pass --token <secret> or set PG_SAGA_DASHBOARD_TOKEN`,
      2,
    );
  const user = operator();
  const dashboard = cli.engine().dashboard({
    ...(token ? { token } : {}),
    readOnly: o.readOnly === true,
    user: () => user,
  });
  const server = createServer(dashboard);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new CliError("LISTEN_FAILED", `cannot listen on ${o.host}:${port}: ${err.code ?? err.message}`)),
    );
    server.listen(port, o.host, resolve);
  });
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  cli.print(
    { url: `http://${host}:${bound}/`, readOnly: o.readOnly === true, token: Boolean(token) },
    () =>
      `pg-saga dashboard on http://${host}:${bound}/${o.readOnly ? " (read-only)" : ""}${token ? " (token required)" : ""}; Ctrl-C stops it`,
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve).once("SIGTERM", resolve);
  });
  await dashboard.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Adds the command to the program (one line in main.ts). */
export function addDashboardCommand(
  program: Command,
  run: (
    action: (cli: Cli, o: DashboardCommandOptions) => Promise<void>,
  ) => (...args: unknown[]) => Promise<void>,
): void {
  program
    .command("dashboard")
    .description(
      "serve the web dashboard: overview, sagas, live events, stuck sagas, dead letters, cancel/retry",
    )
    .option("-p, --port <port>", "port (0: any free port)", "7070")
    .option("--host <host>", "address to bind; beyond loopback a token is required", "127.0.0.1")
    .option("--token <secret>", "access token (default: $PG_SAGA_DASHBOARD_TOKEN)")
    .option("--read-only", "hide and refuse cancel, retry and redrive")
    .action(run((cli, o: DashboardCommandOptions) => dashboardCommand(cli, o)));
}
