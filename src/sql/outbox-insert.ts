import type { Executor } from "../executor.js";

/**
 * Writes application events into the outbox in the caller's transaction, in one statement and in order, so
 * they commit (and are delivered) with the caller's own writes or not at all. Returns their ids. Through
 * saga._publish (SECURITY DEFINER, sql/security.sql): saga_app may not write saga.outbox itself.
 */
export async function insertAppEvents(
  db: Executor,
  events: readonly { type: string; key: string | null; payload: string }[],
): Promise<number[]> {
  const { rows } = await db.query<{ id: string }>(
    "select id from saga._publish($1::text[], $2::text[], $3::text[]) as id",
    [events.map((e) => e.type), events.map((e) => e.key), events.map((e) => e.payload)],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}
