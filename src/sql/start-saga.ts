import type { Executor } from "../executor.js";

export interface StartRow {
  id: string;
  created: boolean;
}

/** One round trip in the caller's transaction: instance, saga.started event, first job (sql/functions.sql). */
export async function startSaga(
  db: Executor,
  args: {
    name: string;
    version: number;
    input: string;
    idempotencyKey: string | null;
    metadata: string;
    timeoutMs: number | null;
    traceContext: string | null;
    parentId: string | null;
  },
): Promise<StartRow> {
  const { rows } = await db.query<StartRow>(
    "select id, created from saga._start($1, $2, $3::jsonb, $4, $5::jsonb, $6, $7, $8::uuid, true)",
    [
      args.name,
      args.version,
      args.input,
      args.idempotencyKey,
      args.metadata,
      args.timeoutMs,
      args.traceContext,
      args.parentId,
    ],
  );
  const row = rows[0];
  if (!row) throw new Error("saga._start returned no row");
  return row;
}
