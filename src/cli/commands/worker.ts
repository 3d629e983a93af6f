/**
 * `pg-saga worker --sagas <module>`: runs the saga definitions a module exports. The first SIGTERM/SIGINT stops
 * taking work and lets running steps finish (up to --shutdown-timeout, then they are aborted and released); a
 * second one exits at once, and the other workers' reapers recover what was running.
 */
import { codecFromEnv } from "../codec-from-env.js";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { AnySaga } from "../../definition.js";
import { createSagaEngine } from "../../engine.js";
import { migrate } from "../../migrate.js";
import { CliError, type Cli } from "../context.js";
import { parseInteger } from "./read.js";

export interface WorkerCommandOptions {
  sagas: string[];
  concurrency: string;
  pollInterval: string;
  shutdownTimeout: string;
  abortGrace: string;
  migrate?: boolean;
  metricsPort?: string;
}

const TSX_FLAG = Symbol.for("pg-saga.tsx");

/** Whether a value is a saga definition, also one built by another copy of pg-saga (dist vs src). */
function isSaga(value: unknown): value is AnySaga {
  const v = value as Partial<AnySaga> | null;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.name === "string" &&
    typeof v.version === "number" &&
    Array.isArray(v.steps) &&
    typeof (v as { step?: unknown }).step === "function"
  );
}

/**
 * One line saying where a module failed to load and why: esbuild's (tsx) "Transform failed" message has the
 * file:line:column on a later line; node's SyntaxError has it at the top of its stack.
 */
export function loadError(err: unknown): string {
  const e = err as { message?: unknown; stack?: unknown };
  const message = typeof e?.message === "string" ? e.message : String(err);
  const esbuild = /^(.+?):(\d+):(\d+): ERROR: (.+)$/m.exec(message);
  if (esbuild) return `${esbuild[1]}:${esbuild[2]}:${esbuild[3]}: ${esbuild[4]}`;
  const at = typeof e?.stack === "string" ? /^(file:\/\/\S+:\d+)$/m.exec(e.stack) : null;
  const first = message.split("\n")[0] ?? message;
  if (at?.[1])
    return `${at[1].replace(/^file:\/\//, "")}: ${err instanceof Error ? err.name : "Error"}: ${first}`;
  return first;
}

/**
 * The saga definitions a module exports: named exports, the default export, and arrays of definitions.
 *
 * @example
 * const sagas = await loadSagas(["./src/sagas.ts"]);
 */
export async function loadSagas(specs: string[], cwd = process.cwd()): Promise<AnySaga[]> {
  const found = new Map<string, AnySaga>();
  for (const spec of specs) {
    const path =
      isAbsolute(spec) || spec.startsWith(".") || existsSync(resolve(cwd, spec)) ? resolve(cwd, spec) : null;
    let url: string;
    try {
      url = path
        ? pathToFileURL(path).href
        : pathToFileURL(createRequire(resolve(cwd, "package.json")).resolve(spec)).href;
    } catch {
      throw new CliError("MODULE_NOT_FOUND", `cannot find saga module ${spec} (from ${cwd})`, 2);
    }
    if (path && !existsSync(path))
      throw new CliError("MODULE_NOT_FOUND", `no file ${path} (--sagas ${spec})`, 2);
    if (/\.[mc]?tsx?$/.test(url) && !(globalThis as Record<symbol, unknown>)[TSX_FLAG]) {
      // A TypeScript module under the built CLI: tsx (a devDependency of most TypeScript apps) loads it.
      const { register } = await import("tsx/esm/api").catch(() => {
        throw new CliError(
          "MODULE_NOT_LOADABLE",
          `${spec} is TypeScript: install tsx, or point --sagas at built JavaScript`,
          2,
        );
      });
      register();
      (globalThis as Record<symbol, unknown>)[TSX_FLAG] = true;
    }
    const exports = (await import(url).catch((err: unknown) => {
      throw new CliError("MODULE_NOT_LOADABLE", `cannot load saga module ${spec}: ${loadError(err)}`, 2);
    })) as Record<string, unknown>;
    const values = Object.values(exports).flatMap((v) => (Array.isArray(v) ? (v as unknown[]) : [v]));
    const sagas = values.filter(isSaga);
    if (sagas.length === 0)
      throw new CliError(
        "NO_SAGAS",
        `${spec} exports no saga definitions: export the values defineSaga() returns`,
        2,
      );
    for (const saga of sagas) found.set(saga.key, saga);
  }
  return [...found.values()];
}

export async function workerCommand(cli: Cli, o: WorkerCommandOptions): Promise<void> {
  if (!o.sagas || o.sagas.length === 0)
    throw new CliError("INVALID_OPTIONS", "--sagas <module> is required", 2);
  const concurrency = parseInteger(o.concurrency, "--concurrency", 1, 1000);
  const pollInterval = parseInteger(o.pollInterval, "--poll-interval", 10);
  const shutdownTimeout = parseInteger(o.shutdownTimeout, "--shutdown-timeout", 0);
  const abortGrace = parseInteger(o.abortGrace, "--abort-grace", 0);
  const metricsPort =
    o.metricsPort === undefined ? undefined : parseInteger(o.metricsPort, "--metrics-port", 0, 65_535);
  const sagas = await loadSagas(o.sagas);
  const logger = cli.logger("info");
  const engine = createSagaEngine({
    connectionString: cli.databaseUrl(),
    sagas,
    logger,
    poolSize: 2,
    codec: codecFromEnv(),
  });
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  try {
    if (o.migrate) await migrate(engine.pool);
    const worker = await engine.runWorker({
      concurrency,
      pollInterval,
      abortGrace,
      ...(metricsPort === undefined ? {} : { metrics: { port: metricsPort } }),
    });
    const keys = sagas.map((s) => s.key);
    const metricsUrl = worker.metrics?.url ?? null;
    logger.info("worker started", { workerId: worker.id, sagas: keys, concurrency, metricsUrl });
    cli.print(
      { event: "ready", workerId: worker.id, sagas: keys, concurrency, metricsUrl },
      () =>
        `ready ${worker.id} running ${keys.join(", ")}${metricsUrl ? ` (${metricsUrl}/metrics, /healthz)` : ""}`,
    );

    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn("second signal: exiting now; running steps are recovered by the other workers", {
          signal,
        });
        process.exit(128 + (constants.signals[signal] ?? 0));
      }
      stopping = true;
      logger.info("stopping: no new work; running steps may finish", { signal, timeoutMs: shutdownTimeout });
      worker
        .stop({ timeoutMs: shutdownTimeout })
        .then(() => logger.info("worker stopped", { workerId: worker.id }))
        .catch((err: unknown) => logger.error("worker stop failed", { error: String(err) }))
        .finally(resolveDone);
    };
    process.on("SIGTERM", onSignal).on("SIGINT", onSignal);
    // A newer release migrated the database: the worker stopped on its own; the error line says why.
    const endedWith = await Promise.race([done.then(() => null), worker.ended]);
    process.off("SIGTERM", onSignal).off("SIGINT", onSignal);
    if (endedWith) throw endedWith;
  } finally {
    await engine.close();
  }
}
