import { constants } from "node:os";
import { type Logger, silentLogger } from "../logger.js";
import type { SagaWorker } from "./worker-options.js";
import { WORKER_DEFAULTS } from "./worker-defaults.js";

export interface SignalOptions {
  /** How long running steps may take to finish before they are aborted and released. Default 10 s. */
  timeoutMs?: number;
  /** Default `["SIGTERM", "SIGINT"]`. */
  signals?: NodeJS.Signals[];
  /** Runs after the worker stopped (close the engine and your pools here). */
  cleanup?: () => Promise<void> | void;
  logger?: Logger;
  /** How the process ends; default `process.exit`. */
  exit?: (code: number) => void;
}

/**
 * The worker side of a deployment's stop: the first SIGTERM/SIGINT stops taking work, lets running steps finish
 * for `timeoutMs`, then aborts and releases them (another worker retries them at once) and exits 0. A second
 * signal exits at once (128 + signal number): steps still running are then recovered by the other workers'
 * reapers once this worker's heartbeat is older than `deadWorkerAfter`.
 * Returns a function that removes the handlers.
 *
 * @example
 * const worker = await engine.runWorker({ concurrency: 10 });
 * handleSignals(worker, { timeoutMs: 20_000, cleanup: () => engine.close() });
 */
export function handleSignals(worker: Pick<SagaWorker, "stop">, options: SignalOptions = {}): () => void {
  const signals = options.signals ?? ["SIGTERM", "SIGINT"];
  const logger = options.logger ?? silentLogger;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const timeoutMs = options.timeoutMs ?? WORKER_DEFAULTS.stopTimeout;
  let stopping = false;

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn("second signal: exiting now; running steps are recovered by the other workers", { signal });
      exit(128 + (constants.signals[signal] ?? 0));
      return;
    }
    stopping = true;
    logger.info("stopping: no new work; running steps get time to finish", { signal, timeoutMs });
    void (async () => {
      let code = 0;
      try {
        await worker.stop({ timeoutMs });
        await options.cleanup?.();
      } catch (err) {
        logger.error("worker did not stop cleanly", { error: String(err) });
        code = 1;
      }
      exit(code);
    })();
  };
  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
}
