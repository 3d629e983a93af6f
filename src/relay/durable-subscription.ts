import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type pg from "pg";
import { toStoredError } from "../errors.js";
import type { Logger } from "../logger.js";
import { delayFor } from "../retry.js";
import { insertDeadLetter, queuedRedrives, settleRedrive } from "../sql/outbox-dead-letters.js";
import { acquireLease, commitCursor, releaseLease, renewLease } from "../sql/outbox-leases.js";
import { type Cursor, cursorLag, readPage, walFlushedTo } from "../sql/outbox-read.js";
import { batchDone, cursorAfter, xmaxOf } from "./cursor.js";
import { deadLetterFromRow, eventFromRow } from "./events.js";
import { type PayloadCodec, encodeValue, plainCodec } from "../codec/codec.js";
import type { ResolvedSubscribe } from "./options.js";
import type { EventHandler, SagaEvent, Subscription, SubscriptionMetrics } from "./types.js";
import { Waker } from "./waker.js";

/** A durable subscription as the event bus drives it. */
export interface DurableSubscription extends Subscription {
  readonly name: string;
  /** New events may be readable (the relay published some). */
  wake(): void;
  /** Dead letters were queued for redelivery. */
  redriveSoon(): void;
  counters(): Counters & { active: boolean };
}

interface Counters {
  delivered: number;
  failed: number;
  deadLettered: number;
  batches: number;
  batchEvents: number;
}

/**
 * A consumer that takes a whole page at once (a bridge to a broker): the events in per-saga `seq` order; the
 * cursor moves past the page only once it resolves. It throws to have the whole page read again later, and
 * returns the ids of the events it can never deliver (with why): those become dead letters.
 * @internal
 */
export type BatchHandler = (events: readonly SagaEvent[]) => Promise<ReadonlyMap<number, unknown>>;

// Rows scanned per page, as a multiple of batchSize, so a selective filter still moves the cursor along.
const SCAN_FACTOR = 4;
const MAX_BACKOFF_MS = 5_000;
const REDRIVE_CHECK_POLLS = 10;

/**
 * Consumes the outbox through a persisted cursor, at least once: handles a batch, then commits the cursor
 * past it. A lease (renewed by a timer, fenced by the epoch) lets one process consume at a time.
 */
export function startDurable(
  pool: pg.Pool,
  logger: Logger,
  options: ResolvedSubscribe & { durable: string },
  handler: EventHandler,
  codec: PayloadCodec = plainCodec,
  onBatch?: BatchHandler,
): DurableSubscription {
  const name = options.durable;
  const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const counters: Counters = { delivered: 0, failed: 0, deadLettered: 0, batches: 0, batchEvents: 0 };
  const waker = new Waker();
  const retryWaker = new Waker();
  let epoch: number | null = null;
  let cursor: Cursor = { tick: "1:1:", batchTick: null, xid: "0", id: 0, ahead: [] };
  let closed = false;
  let redrivePending = true;
  let pollsSinceRedrive = 0;
  let renewTimer: NodeJS.Timeout | undefined;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const lose = (why: string) => {
    if (epoch === null) return;
    logger.info("durable subscription lost its lease", { subscription: name, owner, why });
    epoch = null;
    if (renewTimer) clearInterval(renewTimer);
    renewTimer = undefined;
  };

  async function acquire(): Promise<boolean> {
    const got = await acquireLease(pool, {
      name,
      owner,
      leaseMs: options.leaseMs,
      fromNow: options.fromNow,
      filter: JSON.stringify(options.filter),
    });
    if (!got) return false;
    epoch = got.epoch;
    cursor = got.cursor;
    redrivePending = true;
    logger.info("durable subscription consuming", { subscription: name, owner, epoch });
    const mine = epoch;
    renewTimer = setInterval(() => {
      if (epoch !== mine) return;
      renewLease(pool, name, mine, options.leaseMs)
        .then((ok) => {
          if (!ok && epoch === mine) lose("another process took the lease over");
        })
        .catch((err: unknown) =>
          logger.warn("lease renewal failed", { subscription: name, error: String(err) }),
        );
    }, options.leaseMs / 3);
    return true;
  }

  /** Calls the handler up to maxAttempts times; `false` when interrupted (closed or lease lost) before the end. */
  async function deliver(
    event: SagaEvent,
    mine: number,
  ): Promise<{ ok: true } | { ok: false; error: unknown; attempts: number } | null> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= options.retry.maxAttempts; attempt++) {
      if (closed || epoch !== mine) return null;
      try {
        await handler(event);
        counters.delivered++;
        return { ok: true };
      } catch (err) {
        counters.failed++;
        lastError = err;
        logger.warn("subscription handler failed", {
          subscription: name,
          eventId: event.id,
          attempt,
          error: String(err),
        });
      }
      if (attempt < options.retry.maxAttempts) await retryWaker.sleep(delayFor(options.retry, attempt));
    }
    return { ok: false, error: lastError, attempts: options.retry.maxAttempts };
  }

  /** A batch handler's verdict on one event, as deliver() gives it. */
  function settled(refused: ReadonlyMap<number, unknown>, id: number) {
    if (!refused.has(id)) counters.delivered++;
    return refused.has(id)
      ? { ok: false as const, error: refused.get(id), attempts: 1 }
      : { ok: true as const };
  }

  // One cursor commit per page bounds the drain rate; a crash redelivers at most one page. So a page starts
  // small and doubles while each comes back full (a backlog), up to maxBatchSize; it is small again once caught up.
  let size = options.batchSize;

  async function store(mine: number, next: Cursor): Promise<boolean> {
    if (!(await commitCursor(pool, name, mine, next, options.leaseMs))) {
      lose("fenced at cursor commit");
      return false;
    }
    cursor = next;
    return true;
  }

  /**
   * One page of the current batch (sql/relay.sql): read, handle, commit the cursor. The page is committed only
   * when every event in it was handled (delivered or dead-lettered); an interrupted page comes again.
   * True when there is more to read right away.
   */
  async function batch(mine: number): Promise<boolean> {
    const page = await readPage(pool, cursor, options.filter, size, size * SCAN_FACTOR);
    if (page.rows.length === 0) {
      // The batch is finished, or there is nothing new: the batch's snapshot becomes the tick. A snapshot
      // that moved on without events is stored too, so an open transaction's rows leave the range scan.
      const finished = cursor.batchTick !== null;
      if (!finished && xmaxOf(page.cur) <= xmaxOf(cursor.tick)) return false;
      return (await store(mine, batchDone(page))) && finished;
    }
    let handled = 0;
    const events = page.rows.filter((r) => r.matches).map((r) => eventFromRow(r, codec));
    // Nothing reaches a handler that a crash could take back: if not on disk yet, the lease renewal flushes it.
    const durable = events.length === 0 || (await walFlushedTo(pool, page.lsn));
    if (!durable && !(await renewLease(pool, name, mine, options.leaseMs))) {
      lose("fenced before handing a page over");
      return false;
    }
    const refused = onBatch && events.length > 0 ? await onBatch(events) : null;
    for (const event of events) {
      const outcome = refused ? settled(refused, event.id) : await deliver(event, mine);
      if (outcome === null) return false;
      if (!outcome.ok) {
        await insertDeadLetter(pool, {
          subscription: name,
          eventId: event.id,
          event: JSON.stringify({ ...event, payload: encodeValue(codec, event.payload) }),
          error: JSON.stringify(toStoredError(outcome.error, false)),
          attempts: outcome.attempts,
        });
        counters.deadLettered++;
        logger.warn("event dead-lettered", {
          subscription: name,
          eventId: event.id,
          attempts: outcome.attempts,
        });
      }
      handled++;
    }
    if (handled > 0) {
      counters.batches++;
      counters.batchEvents += handled;
    }
    const full = page.more;
    if (!(await store(mine, cursorAfter(cursor, page)))) return false;
    size = full ? Math.min(size * 2, Math.max(options.maxBatchSize, options.batchSize)) : options.batchSize;
    return full;
  }

  async function redrive(mine: number): Promise<void> {
    redrivePending = false;
    pollsSinceRedrive = 0;
    for (const row of await queuedRedrives(pool, name, 100)) {
      const letter = deadLetterFromRow(row, codec);
      const outcome = await deliver(letter.event, mine);
      if (outcome === null) {
        redrivePending = true;
        return;
      }
      await settleRedrive(
        pool,
        letter.id,
        outcome.ok
          ? { delivered: true }
          : {
              delivered: false,
              error: JSON.stringify(toStoredError(outcome.error, false)),
              attempts: outcome.attempts,
            },
      );
      if (!outcome.ok) counters.deadLettered++;
    }
  }

  const loop = (async () => {
    let failures = 0;
    while (!closed) {
      let delay = options.pollMs;
      try {
        if (epoch === null && !(await acquire())) delay = Math.min(options.leaseMs / 3, options.pollMs * 5);
        markReady();
        const mine = epoch;
        if (mine !== null) {
          if (redrivePending || ++pollsSinceRedrive >= REDRIVE_CHECK_POLLS) await redrive(mine);
          if (await batch(mine)) delay = 0;
        }
        failures = 0;
      } catch (err) {
        failures++;
        markReady();
        delay = Math.min(MAX_BACKOFF_MS, 50 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2);
        logger.warn("durable subscription failed a round; will retry", {
          subscription: name,
          error: String(err),
        });
      }
      if (delay > 0 && !closed) await waker.sleep(delay);
    }
  })();

  return {
    name,
    ready,
    wake: () => waker.wake(),
    redriveSoon() {
      redrivePending = true;
      waker.wake();
    },
    counters: () => ({ ...counters, active: epoch !== null }),
    async metrics(): Promise<SubscriptionMetrics> {
      return {
        name,
        mode: "durable",
        delivered: counters.delivered,
        failed: counters.failed,
        deadLettered: counters.deadLettered,
        batches: counters.batches,
        averageBatchSize: counters.batches === 0 ? 0 : counters.batchEvents / counters.batches,
        lagMs: await cursorLag(pool, name),
        active: epoch !== null,
      };
    },
    async close() {
      if (closed) return loop;
      closed = true;
      waker.wake();
      retryWaker.wake();
      await loop;
      if (renewTimer) clearInterval(renewTimer);
      const mine = epoch;
      epoch = null;
      if (mine !== null) {
        await releaseLease(pool, name, mine).catch((err: unknown) =>
          logger.warn("could not hand the lease over", { subscription: name, error: String(err) }),
        );
      }
    },
  };
}
