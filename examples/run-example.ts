/**
 * What every example shares: an engine with a worker around the example's scenarios, a one-line summary of each
 * saga, and the entry point that runs an example from the command line on DATABASE_URL or an embedded Postgres.
 */
import { type AnySaga, type SagaEngine, type SagaInstance, createSagaEngine } from "../src/index.js";
import { exampleDatabase } from "./database.js";

export type Log = (line: string) => void;

/** Runs `fn` with a migrated engine and a worker for `sagas`; both are closed after it. */
export async function withEngine<T>(
  url: string,
  sagas: AnySaga[],
  fn: (engine: SagaEngine) => Promise<T>,
): Promise<T> {
  const engine = createSagaEngine({ connectionString: url, sagas });
  try {
    await engine.migrate();
    const worker = await engine.runWorker({ concurrency: 8, pollInterval: 100 });
    try {
      return await fn(engine);
    } finally {
      await worker.stop();
    }
  } finally {
    await engine.close();
  }
}

/** `state` plus the error and each step's status, as one line. */
export function summary(saga: SagaInstance): string {
  const steps = saga.steps.map((s) => `${s.name}:${s.status}`).join(" → ");
  const error = saga.error ? ` (${saga.error.code}: ${saga.error.message})` : "";
  return `${saga.state}${error}\n    ${steps}`;
}

/** Starts nothing itself: waits for a started saga and logs its summary under `label`. */
export async function settle(engine: SagaEngine, id: string, label: string, log: Log): Promise<SagaInstance> {
  const saga = await engine.waitFor(id, { timeoutMs: 30_000 });
  log(`${label}: ${summary(saga)}`);
  return saga;
}

/**
 * The command-line entry of an example: `tsx examples/<name>.ts`, on DATABASE_URL or an embedded PostgreSQL.
 * Exits non-zero when the example's own checks fail.
 */
export async function runFromCommandLine(run: (url: string, log: Log) => Promise<unknown>): Promise<void> {
  const database = await exampleDatabase();
  console.log(
    process.env.DATABASE_URL
      ? "using DATABASE_URL"
      : "using an embedded PostgreSQL (set DATABASE_URL to use yours)",
  );
  try {
    await run(database.url, (line) => console.log(line));
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  } finally {
    await database.stop();
  }
}

/** Whether this module is the script node was started with. */
export const isMain = (url: string) =>
  process.argv[1] !== undefined && url === new URL(`file://${process.argv[1]}`).href;
