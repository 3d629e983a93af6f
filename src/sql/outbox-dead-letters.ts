import type { Executor } from "../executor.js";

export interface DeadLetterRow {
  id: string;
  subscription: string;
  event_id: string;
  event: Record<string, unknown>;
  error: { code: string; message: string; type: string };
  attempts: number;
  created_at: Date;
  redriven_at: Date | null;
  delivered_at: Date | null;
}

/**
 * Records an event the handler could not take. A crash between this and the cursor commit redelivers the
 * batch: the same event is then recorded once (dead_letters_subscription_idx narrows the check).
 */
export async function insertDeadLetter(
  db: Executor,
  args: { subscription: string; eventId: number; event: string; error: string; attempts: number },
): Promise<void> {
  await db.query(
    `insert into saga.dead_letters (subscription, event_id, event, error, attempts)
     select $1, $2, $3::jsonb, $4::jsonb, $5
     where not exists (select 1 from saga.dead_letters d
                       where d.subscription = $1 and d.event_id = $2 and d.delivered_at is null)`,
    [args.subscription, args.eventId, args.event, args.error, args.attempts],
  );
}

/** Dead letters of a subscription, oldest first. dead_letters_subscription_idx. */
export async function listDeadLetters(
  db: Executor,
  subscription: string,
  includeDelivered: boolean,
  limit: number,
): Promise<DeadLetterRow[]> {
  const { rows } = await db.query<DeadLetterRow>(
    `select id, subscription, event_id, event, error, attempts, created_at, redriven_at, delivered_at
     from saga.dead_letters
     where subscription = $1 and ($2::boolean or delivered_at is null)
     order by id limit $3`,
    [subscription, includeDelivered, limit],
  );
  return rows;
}

/** Queues dead letters for redelivery: one by id, or all of a subscription. Returns the subscriptions touched. */
export async function queueRedrive(
  db: Executor,
  target: { id: number } | { subscription: string },
): Promise<string[]> {
  const { rows } = await db.query<{ subscription: string }>(
    `update saga.dead_letters set redriven_at = now()
     where delivered_at is null and redriven_at is null
       and (case when $1::bigint is not null then id = $1::bigint else subscription = $2 end)
     returning subscription`,
    "id" in target ? [target.id, null] : [null, target.subscription],
  );
  return rows.map((r) => r.subscription);
}

/** The queued redrives of a subscription, oldest first. dead_letters_subscription_idx. */
export async function queuedRedrives(
  db: Executor,
  subscription: string,
  limit: number,
): Promise<DeadLetterRow[]> {
  const { rows } = await db.query<DeadLetterRow>(
    `select id, subscription, event_id, event, error, attempts, created_at, redriven_at, delivered_at
     from saga.dead_letters
     where subscription = $1 and redriven_at is not null and delivered_at is null
     order by id limit $2`,
    [subscription, limit],
  );
  return rows;
}

/** The outcome of a redelivery: delivered (kept as history), or dead again with the new error. Primary key. */
export async function settleRedrive(
  db: Executor,
  id: number,
  outcome: { delivered: true } | { delivered: false; error: string; attempts: number },
): Promise<void> {
  if (outcome.delivered) {
    await db.query("update saga.dead_letters set delivered_at = now() where id = $1", [id]);
  } else {
    await db.query(
      `update saga.dead_letters set redriven_at = null, error = $2::jsonb, attempts = attempts + $3 where id = $1`,
      [id, outcome.error, outcome.attempts],
    );
  }
}
