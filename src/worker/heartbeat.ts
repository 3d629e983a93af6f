/**
 * A worker's background: its heartbeat, the heartbeat's check for cancelled or timed-out handlers, and the
 * reaping of lost work. While stopping, a worker keeps its heartbeat (its running steps are still its own)
 * but reaps no more.
 */
import type pg from "pg";
import type { AnySaga } from "../definition.js";
import type { PayloadCodec } from "../codec/codec.js";
import type { Logger } from "../logger.js";
import { type WorkerRow, heartbeat } from "../sql/workers.js";
import type { JobTracker } from "../graphile/boundary.js";
import type { ClaimRegistry } from "./claim-registry.js";
import { abortInterrupted, runningSagas } from "./control.js";
import { reap, reapOwn } from "./reaper.js";

/** Interval tasks and one-shot timers, all cleared by {@link Background.clear}. */
export class Background {
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly logger: Logger,
    private readonly stopping: () => boolean,
  ) {}

  /** Runs `task` every `ms`, never two at once; skipped while stopping unless `whileStopping`. */
  every(ms: number, task: () => Promise<void>, whileStopping = false): void {
    let running = false;
    const timer = setInterval(() => {
      if (running || (this.stopping() && !whileStopping)) return;
      running = true;
      task()
        .catch((err: unknown) =>
          this.logger.warn("background task failed; will try again", { error: String(err) }),
        )
        .finally(() => {
          running = false;
        });
    }, ms);
    this.#timers.add(timer);
  }

  /** Calls `fn` once after `ms`. */
  after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  clear(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

export interface LivenessOptions {
  pool: pg.Pool;
  row: WorkerRow;
  sagas: ReadonlyMap<string, AnySaga>;
  claims: ClaimRegistry;
  jobs: JobTracker;
  codec: PayloadCodec;
  logger: Logger;
  heartbeatInterval: number;
  deadWorkerAfter: number;
  reapInterval: number;
  /** Counts the steps recovered from dead workers. */
  onReaped(steps: number): void;
}

/** Starts the heartbeat and the reaper on `background`. */
export function startLiveness(background: Background, o: LivenessOptions): void {
  const { pool, row, claims, logger, heartbeatInterval: beatMs } = o;
  // After an outage (or a pause of this process) every heartbeat is stale: reap dead workers only once the
  // others have had two heartbeats' time to show they are alive.
  let troubleAt = performance.now();
  let lastBeat = performance.now();
  background.every(
    beatMs,
    () =>
      heartbeat(pool, row, o.jobs.lockIds).then(
        () => {
          if (performance.now() - lastBeat > 2 * beatMs) troubleAt = performance.now();
          lastBeat = performance.now();
        },
        (err: unknown) => {
          troubleAt = performance.now();
          throw err;
        },
      ),
    true,
  );
  // A missed saga_control notification delays a cancel's abort by one heartbeat at most (see control.ts).
  background.every(
    beatMs,
    () => abortInterrupted(pool, row.id, claims.claims, runningSagas(claims.claims)),
    true,
  );
  background.every(o.reapInterval, async () => {
    const own = await reapOwn(pool, o.sagas, {
      workerId: row.id,
      isActive: claims.isActive,
      jobPoolIds: o.jobs.poolIds,
      activeJobIds: () => [...o.jobs.held],
      codec: o.codec,
    });
    if (own.steps > 0 || own.jobs > 0)
      logger.info("recovered work this worker lost to a database error", own);
    if (performance.now() - troubleAt < 2 * beatMs) return;
    const result = await reap(pool, o.sagas, o.deadWorkerAfter, o.codec);
    o.onReaped(result.steps);
    if (result.steps > 0 || result.workers > 0) logger.info("recovered work of dead workers", result);
  });
}
