/**
 * Consumer-side deduplication for brokers that redeliver (RabbitMQ): the message id is recorded in the
 * consumer's own Postgres, in the same transaction as the consumer's effect, so a republished or redelivered
 * message finds its id there and does nothing.
 *
 * The table lives in the consumer's database, not in pg-saga's schema: that is where the effect is written,
 * and only a row in the same transaction makes "effect once" true. It is created on first use.
 */
import type pg from "pg";
import { sqlState } from "../db.js";
import { SagaError } from "../errors.js";

export interface ProcessOnceOptions {
  /** Names the consumer: two consumers of one message each process it once. */
  consumer: string;
  /** The message's id (AMQP `messageId`, `Nats-Msg-Id`). */
  messageId: string;
  /** Table (optionally `schema.table`) of processed ids. Default `pg_saga_processed_messages`. */
  table?: string;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/i;
const created = new WeakMap<pg.Pool, Set<string>>();

function tableName(table: string): string {
  const parts = table.split(".");
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p)))
    throw new SagaError(
      "INVALID_OPTIONS",
      `processOnce: table must be "name" or "schema.name"; got ${JSON.stringify(table)}`,
    );
  return parts.map((p) => `"${p}"`).join(".");
}

async function ensureTable(pool: pg.Pool, table: string): Promise<void> {
  const known = created.get(pool) ?? new Set<string>();
  created.set(pool, known);
  if (known.has(table)) return;
  try {
    await pool.query(
      `create table if not exists ${table} (
         consumer text not null, message_id text not null, processed_at timestamptz not null default now(),
         primary key (consumer, message_id))`,
    );
  } catch (err) {
    // Two consumers creating it at once: one of them loses the race on the catalog (its row type's name, its
    // key, or the table itself), and the table is there.
    if (!["23505", "42P07", "42710"].includes(sqlState(err) ?? "")) throw err;
  }
  known.add(table);
}

/**
 * Runs `effect` once per (consumer, message id): in one transaction, records the id and runs the effect
 * on the same client; a message seen before resolves `{ processed: false }` without running it. Ack the
 * message after this resolves. Old rows may be deleted once the broker can no longer redeliver them
 * (`delete from pg_saga_processed_messages where processed_at < now() - interval '7 days'`).
 *
 * @example
 * await channel.consume("billing", async (msg) => {
 *   await processOnce(pool, { consumer: "billing", messageId: msg!.properties.messageId }, (tx) =>
 *     tx.query("insert into invoices (saga_id) values ($1)", [JSON.parse(msg!.content.toString()).sagaId]));
 *   channel.ack(msg!);
 * });
 */
export async function processOnce<T>(
  pool: pg.Pool,
  options: ProcessOnceOptions,
  effect: (client: pg.PoolClient) => Promise<T>,
): Promise<{ processed: true; result: T } | { processed: false }> {
  if (typeof options?.consumer !== "string" || options.consumer.length === 0)
    throw new SagaError("INVALID_OPTIONS", "processOnce: consumer must be a non-empty string");
  if (typeof options.messageId !== "string" || options.messageId.length === 0)
    throw new SagaError(
      "INVALID_OPTIONS",
      "processOnce: messageId must be a non-empty string (is the message's id set?)",
    );
  const table = tableName(options.table ?? "pg_saga_processed_messages");
  await ensureTable(pool, table);
  const client = await pool.connect();
  try {
    await client.query("begin");
    // A concurrent delivery of the same id waits here for the first one's commit, then sees the row.
    const { rowCount } = await client.query(
      `insert into ${table} (consumer, message_id) values ($1, $2) on conflict do nothing`,
      [options.consumer, options.messageId],
    );
    if (rowCount === 0) {
      await client.query("rollback");
      return { processed: false };
    }
    const result = await effect(client);
    await client.query("commit");
    return { processed: true, result };
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
