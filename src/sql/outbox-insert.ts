import type { Executor } from "../executor.js";

/**
 * Writes application events into the outbox in the caller's transaction, in one statement and in order, so
 * they commit (and are delivered) with the caller's own writes or not at all. Returns their ids.
 */
export async function insertAppEvents(
  db: Executor,
  events: readonly { type: string; key: string | null; payload: string }[],
): Promise<number[]> {
  const { rows } = await db.query<{ id: string }>(
    `insert into saga.outbox (type, key, payload)
     select e.type, e.key, e.payload::jsonb
     from unnest($1::text[], $2::text[], $3::text[]) with ordinality as e(type, key, payload, n)
     order by e.n
     returning id`,
    [events.map((e) => e.type), events.map((e) => e.key), events.map((e) => e.payload)],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}
