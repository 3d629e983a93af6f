/** `pg-saga migrate`, `retry <id>`, `cancel <id> --reason`: the commands that change things. */
import { userInfo } from "node:os";
import { migrate } from "../../migrate.js";
import { type Cli } from "../context.js";
import { formatError, paintState } from "../format.js";
import { parseInteger } from "./read.js";

export async function migrateCommand(cli: Cli): Promise<void> {
  const result = await migrate(cli.engine().pool);
  const { applied, repeatable } = result;
  cli.print(result, () =>
    applied === 0 && repeatable.length === 0
      ? "schema saga is up to date"
      : `applied ${applied} table migration(s) and ${repeatable.length} sql file(s)` +
        `${repeatable.length > 0 ? ` (${repeatable.join(", ")})` : ""}; schema saga is up to date`,
  );
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
  const { state } = await cli
    .engine()
    .retry(id, { by: operator(), ...(o.reason ? { reason: o.reason } : {}) });
  const result = await settle(cli, id, state, o);
  cli.print(result, () =>
    o.wait
      ? `saga ${id} retried and ended ${paintState(cli.c, result.state)}${result.error ? `: ${formatError(result.error)}` : ""}`
      : `saga ${id} retried: now ${paintState(cli.c, state)}`,
  );
}

export async function cancelCommand(
  cli: Cli,
  id: string,
  o: WaitOptions & { reason: string },
): Promise<void> {
  const { state } = await cli.engine().cancel(id, o.reason, { by: operator() });
  const result = await settle(cli, id, state, o);
  cli.print(result, () => {
    if (o.wait) return `saga ${id} ended ${paintState(cli.c, result.state)}`;
    return state === "running"
      ? `cancel of saga ${id} requested: a worker that runs its definition compensates it (--wait to follow)`
      : `saga ${id} is already ${paintState(cli.c, state)}`;
  });
}
