import type { Executor } from "../executor.js";
import { deleteOldEvents, purgeFinishedSagas } from "../sql/outbox-retention.js";
import type { ResolvedRetention } from "./options.js";

export interface RetentionResult {
  /** Events deleted. */
  events: number;
  /** Sagas purged (with their steps and passed events). */
  sagas: number;
}

/**
 * One bounded retention run: at most `maxBatches` short delete statements of `batchSize` rows each, every
 * one its own transaction, so a large backlog is worked off over several runs instead of one long one.
 *
 * @example
 * await runRetention(pool, resolveRetention({ events: "7d", sagas: "30d" }));
 */
export async function runRetention(db: Executor, options: ResolvedRetention): Promise<RetentionResult> {
  const result: RetentionResult = { events: 0, sagas: 0 };
  let budget = options.maxBatches;
  if (options.sagasMs !== null) {
    while (budget > 0) {
      budget--;
      const n = await purgeFinishedSagas(db, options.sagasMs, options.batchSize);
      result.sagas += n;
      if (n < options.batchSize) break;
    }
  }
  if (options.eventsMs !== null) {
    while (budget > 0) {
      budget--;
      const n = await deleteOldEvents(db, options.eventsMs, options.batchSize);
      result.events += n;
      if (n < options.batchSize) break;
    }
  }
  return result;
}
