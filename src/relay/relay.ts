import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import pg from "pg";
import { sqlState } from "../db.js";
import type { Logger } from "../logger.js";
import { releaseLease } from "../sql/outbox-leases.js";
import { acquireRelayLease, publishBatch } from "../sql/outbox-relay.js";
import { type Channel, openChannel } from "./channel.js";
import { RELAY_CURSOR, type ResolvedRelay, type ResolvedRetention } from "./options.js";
import { type RetentionResult, runRetention } from "./retention.js";
import { Waker } from "./waker.js";

/** Channel the relay publishes events on (one JSON message per event). */
export const EVENTS_CHANNEL = "saga_events";
/** Channel that wakes the relay: "there may be new outbox rows". Sent after commit, never inside one. */
export const HINT_CHANNEL = "saga_outbox";

export interface RelayStats {
  /** Events this process published. */
  published: number;
  /** Batches this process published (NOTIFY transactions). */
  batches: number;
  /** Rounds run while holding the lease, with or without events. */
  rounds: number;
  /** Times this process took the lease. */
  leaderships: number;
  /** Batches that failed (NOTIFY queue full, connection lost): retried, cursor kept. */
  failures: number;
  retention: RetentionResult;
}

export interface Relay {
  readonly owner: string;
  readonly stats: RelayStats;
  /** Whether this process holds the relay lease. */
  readonly active: boolean;
  /** "Something was just committed to the outbox": wakes the active relay, here or (by NOTIFY) elsewhere. */
  hint(): void;
  stop(): Promise<void>;
}

export interface RelayConfig {
  /** Connection settings for the relay's own connection (a transaction pooler is fine). */
  connection: pg.ClientConfig;
  /** Connection settings for its listener (a direct connection); default `connection`. */
  listen?: pg.ClientConfig;
  /** Pool for hints sent to a relay in another process. */
  pool: pg.Pool;
  logger: Logger;
  relay: ResolvedRelay;
  retention: ResolvedRetention | null;
  /** The cursor row; tests run side-by-side relays of their own. Default `$relay`. */
  cursorName?: string;
}

const HINT_GAP_MS = 20;
/**
 * A hint `{ soon: true }` says a caller's transaction holding new sagas is about to commit (start() with a
 * client): for this long the active relay reads the outbox every BURST_POLL_MS, so the saga.started event
 * is published, and the workers woken, within milliseconds of the commit rather than at the next poll.
 */
const BURST_MS = 1_000;
const BURST_POLL_MS = 10;
const MAX_BACKOFF_MS = 5_000;

/**
 * Starts the outbox relay of this process. Every worker runs one; the lease in the `$relay` row of
 * saga.subscriptions makes one of them active at a time, and its epoch fences a relay that lost it.
 *
 * @example
 * const relay = startRelay({ connection, pool, logger, relay: resolveRelay(), retention: null });
 * relay.hint();
 * await relay.stop();
 */
export function startRelay(config: RelayConfig): Relay {
  const { logger, relay: options } = config;
  const name = config.cursorName ?? RELAY_CURSOR;
  const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const stats: RelayStats = {
    published: 0,
    batches: 0,
    rounds: 0,
    leaderships: 0,
    failures: 0,
    retention: { events: 0, sagas: 0 },
  };
  const waker = new Waker();
  let epoch: number | null = null;
  let stopping = false;
  let client: pg.Client | null = null;
  let nextRetention = 0;
  let hintTimer: NodeJS.Timeout | undefined;
  let lastHint = 0;
  let burstUntil = 0;

  // At most one hint per HINT_GAP_MS, and never one dropped: a hint asked for inside the gap goes at its end.
  const sendHint = () => {
    hintTimer = undefined;
    lastHint = Date.now();
    config.pool
      .query(`select pg_notify('${HINT_CHANNEL}', '')`)
      .catch((err: unknown) => logger.debug("relay hint failed (polling covers it)", { error: String(err) }));
  };

  const channel: Channel = openChannel(config.listen ?? config.connection, [HINT_CHANNEL], "pg-saga relay listener", logger, {
    onMessage: (_channel, payload) => {
      if ((payload as { soon?: unknown } | undefined)?.soon === true) burstUntil = Date.now() + BURST_MS;
      if (epoch !== null) waker.wake();
    },
    onConnected: () => waker.wake(),
  });

  /** The relay's own connection, so a burst of jobs never starves it of one; replaced after any error. */
  async function connection(): Promise<pg.Client> {
    if (client) return client;
    const c = new pg.Client({ ...config.connection, application_name: "pg-saga relay" });
    c.on("error", (err) => logger.warn("relay connection failed", { error: String(err) }));
    await c.connect();
    // Read by saga._event_message (sql/relay.sql) for this session's notifications.
    if (options.notify === "full") await c.query("select set_config('saga.relay_notify', 'full', false)");
    client = c;
    return c;
  }
  async function dropConnection(): Promise<void> {
    const c = client;
    client = null;
    await c?.end().catch(() => {});
  }

  async function round(): Promise<number> {
    const db = await connection();
    if (epoch === null) {
      epoch = await acquireRelayLease(db, name, owner, options.leaseMs);
      if (epoch === null) return options.leaseMs / 3;
      stats.leaderships++;
      logger.info("outbox relay active", { owner, epoch });
    }
    const result = await publishBatch(db, name, epoch, options.batchSize, options.leaseMs);
    if (result.published < 0) {
      logger.info("outbox relay lost its lease to another worker", { owner, epoch });
      epoch = null;
      return 0;
    }
    stats.rounds++;
    if (result.published > 0) {
      stats.published += result.published;
      stats.batches++;
    }
    if (config.retention && Date.now() >= nextRetention) {
      nextRetention = Date.now() + config.retention.intervalMs;
      const removed = await runRetention(db, config.retention);
      stats.retention.events += removed.events;
      stats.retention.sagas += removed.sagas;
      if (removed.events + removed.sagas > 0) logger.info("retention removed old rows", { ...removed });
    }
    // A full page, or a batch just finished: the next page or batch may be there already.
    if (result.pending) return 0;
    return Date.now() < burstUntil ? Math.min(options.pollMs, BURST_POLL_MS) : options.pollMs;
  }

  const loop = (async () => {
    let failures = 0;
    while (!stopping) {
      let delay: number;
      try {
        delay = await round();
        failures = 0;
      } catch (err) {
        failures++;
        stats.failures++;
        delay = Math.min(MAX_BACKOFF_MS, 50 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2);
        // 54000: NOTIFY queue full. The batch rolled back with its cursor; the events wait in the table.
        const queueFull = sqlState(err) === "54000";
        logger.warn(queueFull ? "NOTIFY queue is full; relay backs off" : "relay batch failed; will retry", {
          error: String(err),
          code: sqlState(err),
          retryInMs: Math.round(delay),
        });
        if (!queueFull) await dropConnection();
      }
      if (delay > 0 && !stopping) await waker.sleep(delay);
    }
  })();

  return {
    owner,
    stats,
    get active() {
      return epoch !== null;
    },
    hint() {
      if (epoch !== null) {
        waker.wake();
        return;
      }
      if (stopping || hintTimer) return;
      hintTimer = setTimeout(sendHint, Math.max(0, lastHint + HINT_GAP_MS - Date.now()));
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      if (hintTimer) clearTimeout(hintTimer);
      waker.wake();
      await loop;
      if (epoch !== null && client) await releaseLease(client, name, epoch).catch(() => {});
      epoch = null;
      await dropConnection();
      await channel.close();
    },
  };
}
