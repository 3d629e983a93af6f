import type pg from "pg";
import type { Logger } from "./logger.js";
import { JOBS_CHANNEL, jobsInserted } from "./graphile/boundary.js";
import { HINT_CHANNEL } from "./relay/relay.js";

/**
 * The wake-ups `start()` sends after a commit, never inside a transaction (sql/functions.sql, saga._enqueue):
 * a NOTIFY in a transaction holds a cluster-wide lock through that transaction's WAL flush, which would
 * serialize the application's own commits. A NOTIFY alone writes no WAL, so it holds that lock for an instant.
 *
 * - A saga the engine started on its own connection is committed when `start()` returns: its workers are woken
 *   at once.
 * - A saga started in the caller's transaction commits later, when the caller commits: the active outbox relay
 *   is told to read the outbox often for a moment, and wakes the workers when it publishes `saga.started`.
 *
 * Each kind is sent at most once per tick, whatever the number of starts in it.
 */
export class Wakeups {
  #sagas = 0;
  #soon = false;
  #scheduled = false;
  readonly #sending = new Set<Promise<unknown>>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  /** Sagas this engine started and committed on its own connection. */
  committed(sagas = 1): void {
    this.#sagas += sagas;
    this.#schedule();
  }

  /** A saga written in the caller's transaction, which has not committed yet. */
  commitSoon(): void {
    this.#soon = true;
    this.#schedule();
  }

  /** Sends what is still waiting for its tick, and waits for every wake-up on its way. */
  async close(): Promise<void> {
    if (this.#scheduled) this.#flush();
    await Promise.all(this.#sending);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    if (!this.#scheduled) return;
    this.#scheduled = false;
    const notices: [string, string][] = [];
    if (this.#sagas > 0) notices.push([JOBS_CHANNEL, jobsInserted(this.#sagas)]);
    if (this.#soon) notices.push([HINT_CHANNEL, JSON.stringify({ soon: true })]);
    this.#sagas = 0;
    this.#soon = false;
    for (const [channel, payload] of notices) {
      const sent = this.pool.query("select pg_notify($1, $2)", [channel, payload]).catch((err: unknown) =>
        // Polling covers a lost wake-up: the worker's pollInterval, the relay's.
        this.logger.debug("wake-up not sent; polling picks the saga up", { channel, error: String(err) }),
      );
      this.#sending.add(sent);
      void sent.finally(() => this.#sending.delete(sent));
    }
  }
}
